//! A change to a waiting-list entry, proposed by one person and signed off
//! by another, as a FHIR R4 `Task`.
//!
//! The proposal is a Task with status `requested` (intent `proposal`): what
//! to change on which entry (`focus`, by the entry's identifier), for which
//! patient, from what to what, why (a coded reason: for a removal, the
//! national elective admission list removal reason beside a local one),
//! on what evidence, and who asked. The decision is the same Task updated
//! in place, `completed` (signed off) or `rejected`, with who decided and
//! when (`owner`, `lastModified`). So the resource's version history is
//! the change's own history, from the old value to the new, and the
//! canonical tables get a `ChangeLogRequest` for every proposal and a
//! `ValidatedChangelog` once one is decided (see [`crate::map`]).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// The source name under which the waiting list's actions store these
/// Tasks: the only source they are taken from.
pub const SOURCE: &str = "product:waiting-list";
/// Why a change request from anywhere else is refused.
pub const WRITTEN_ONLY_BY_ACTIONS: &str = "a waiting-list change is proposed and signed off through the waiting list's actions (POST /api/products/waiting-list/actions/propose/{entry} and …/sign-off/{change}), which record who proposed it and who signed it off; it is not written as a FHIR resource";

/// The code system of the kinds of change (`remove`, `change`).
pub const CHANGE_KIND: &str = "https://openfdp.nhs.uk/CodeSystem/waiting-list-change";
/// The national elective admission list removal reasons (the UK HL7 v2
/// table ZU029): 1 admitted electively, 2 admitted as an emergency for
/// the same condition, 3 died, 4 removed for other reasons.
pub const REMOVAL_REASON: &str = "https://openfdp.nhs.uk/CodeSystem/eal-removal-reason";
/// The local removal reasons, finer than the national four.
pub const LOCAL_REMOVAL_REASON: &str = "https://openfdp.nhs.uk/CodeSystem/eal-removal-reason-local";
/// The identifier system of elective admission list entries.
pub const EAL_ENTRY: &str = "https://openfdp.nhs.uk/Id/eal-entry";
/// The `Task.input` types a change carries.
pub const INPUT_PROPERTY: &str = "propertyToModify";
pub const INPUT_OLD_VALUE: &str = "oldValue";
pub const INPUT_NEW_VALUE: &str = "newValue";
pub const INPUT_EVIDENCE: &str = "primaryEvidenceSource";
pub const INPUT_RULE: &str = "originatingRule";

/// A reason an entry leaves the list: the local code, what it means, and
/// the national code it reports as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovalReason {
    pub code: &'static str,
    pub display: &'static str,
    pub national: &'static str,
}

/// The removal reasons a proposal may give.
pub const REMOVAL_REASONS: &[RemovalReason] = &[
    RemovalReason {
        code: "treated",
        display: "Already treated (admitted for the awaited procedure)",
        national: "1",
    },
    RemovalReason {
        code: "treated-as-emergency",
        display: "Treated as an emergency for the same condition",
        national: "2",
    },
    RemovalReason {
        code: "deceased",
        display: "The patient has died",
        national: "3",
    },
    RemovalReason {
        code: "duplicate",
        display: "A duplicate of another entry for the same treatment",
        national: "4",
    },
    RemovalReason {
        code: "no-longer-required",
        display: "Treatment no longer required (clinical decision)",
        national: "4",
    },
    RemovalReason {
        code: "declined",
        display: "The patient declined treatment",
        national: "4",
    },
    RemovalReason {
        code: "not-contactable",
        display: "Could not be contacted after the required attempts",
        national: "4",
    },
    RemovalReason {
        code: "transferred",
        display: "Transferred to another provider's list",
        national: "4",
    },
];

/// The national code's meaning.
pub fn national_display(code: &str) -> &'static str {
    match code {
        "1" => "Patient admitted electively",
        "2" => "Patient admitted as an emergency for the same condition",
        "3" => "Patient died",
        _ => "Patient removed for other reasons",
    }
}

/// The reason with local code `code`.
pub fn removal_reason(code: &str) -> Option<&'static RemovalReason> {
    REMOVAL_REASONS.iter().find(|r| r.code == code)
}

/// What a proposal asks: remove an entry, or change one of its properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Remove(&'static RemovalReason),
    /// Set the entry's `property` (a model property name, e.g.
    /// `priorityType`) to `new_value`.
    Change {
        property: String,
        new_value: String,
    },
}

/// A change proposed to one entry on the elective admission list.
#[derive(Debug, Clone)]
pub struct ChangeProposal {
    /// The Task's id.
    pub id: String,
    pub eal_id: String,
    pub patient_id: String,
    pub kind: ChangeKind,
    /// What the entry shows now (`on the list`, or the property's value).
    pub old_value: String,
    /// The evidence: a validation rule's finding, a letter, a record.
    pub evidence: String,
    /// The validation rule that flagged the entry, if one did.
    pub rule: Option<String>,
    pub comments: Option<String>,
    pub requested_by: String,
    pub at: DateTime<Utc>,
}

/// How a proposal was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    SignedOff,
    Rejected,
}

impl Decision {
    pub fn status(self) -> &'static str {
        match self {
            Decision::SignedOff => "completed",
            Decision::Rejected => "rejected",
        }
    }

    /// The status's words on the queue.
    pub fn describe(self) -> &'static str {
        match self {
            Decision::SignedOff => "signed off",
            Decision::Rejected => "rejected",
        }
    }
}

fn input(kind: &str, value: &str) -> Value {
    json!({"type": {"text": kind}, "valueString": value})
}

impl ChangeProposal {
    /// The proposal as a Task awaiting sign-off.
    pub fn to_task(&self) -> Value {
        let (code, text, property, new_value, reason) = match &self.kind {
            ChangeKind::Remove(r) => (
                "remove",
                "Remove from the waiting list",
                "removal".to_string(),
                format!("removed: {}", r.display),
                Some(json!({
                    "coding": [
                        {"system": REMOVAL_REASON, "code": r.national, "display": national_display(r.national)},
                        {"system": LOCAL_REMOVAL_REASON, "code": r.code, "display": r.display}
                    ],
                    "text": r.display
                })),
            ),
            ChangeKind::Change {
                property,
                new_value,
            } => (
                "change",
                "Change a waiting-list entry",
                property.clone(),
                new_value.clone(),
                None,
            ),
        };
        let mut inputs = vec![
            input(INPUT_PROPERTY, &property),
            input(INPUT_OLD_VALUE, &self.old_value),
            input(INPUT_NEW_VALUE, &new_value),
            input(INPUT_EVIDENCE, &self.evidence),
        ];
        if let Some(rule) = &self.rule {
            inputs.push(input(INPUT_RULE, rule));
        }
        let mut task = json!({
            "resourceType": "Task",
            "id": self.id,
            "status": "requested",
            "intent": "proposal",
            "code": {"coding": [{"system": CHANGE_KIND, "code": code}], "text": text},
            "focus": {"identifier": {"system": EAL_ENTRY, "value": self.eal_id}},
            "for": {"reference": format!("Patient/{}", self.patient_id)},
            "authoredOn": self.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "requester": {"display": self.requested_by},
            "input": inputs,
        });
        if let Some(r) = reason {
            task["reasonCode"] = r;
        }
        if let Some(c) = &self.comments {
            task["note"] = json!([{"text": c}]);
        }
        task
    }
}

/// `task` (a proposal) decided by `by` at `at`, with `comments`.
pub fn decided(
    task: &Value,
    decision: Decision,
    by: &str,
    at: DateTime<Utc>,
    comments: Option<&str>,
) -> Value {
    let mut t = task.clone();
    t["status"] = json!(decision.status());
    t["businessStatus"] = json!({"text": decision.describe()});
    t["owner"] = json!({"display": by});
    t["lastModified"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    if let Some(c) = comments {
        let mut notes = t
            .get("note")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        notes.push(json!({"text": c, "authorString": by}));
        t["note"] = Value::Array(notes);
    }
    t
}

/// Whether `task` is one of these changes (by its code's system).
pub fn is_change_request(task: &Value) -> bool {
    task.get("resourceType").and_then(Value::as_str) == Some("Task")
        && task
            .pointer("/code/coding")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.get("system").and_then(Value::as_str) == Some(CHANGE_KIND))
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::map_resource;

    fn proposal() -> ChangeProposal {
        ChangeProposal {
            id: "chg-1".into(),
            eal_id: "EAL1".into(),
            patient_id: "P1".into(),
            kind: ChangeKind::Remove(removal_reason("deceased").unwrap()),
            old_value: "on the list".into(),
            evidence: "patient_pathway.patient_deceased = true".into(),
            rule: Some("deceased".into()),
            comments: Some("Death notified by the GP".into()),
            requested_by: "Ann Admin".into(),
            at: "2026-12-01T09:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_proposal_is_a_valid_task_mapped_to_a_change_log_request() {
        let task = proposal().to_task();
        assert!(crate::validate::validate(&task)
            .iter()
            .all(|i| !i.is_error()));
        assert!(is_change_request(&task));
        let mapped = map_resource(&task, "chg-1").unwrap();
        let types: Vec<&str> = mapped.rows.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, ["ChangeLogRequest"], "not decided yet");
        let row = &mapped.rows[0].1;
        assert_eq!(row["change_log_id"], "chg-1");
        assert_eq!(row["eal_id"], "EAL1");
        assert_eq!(row["action_type"], "remove");
        assert_eq!(row["property_to_modify"], "removal");
        assert_eq!(row["requested_by"], "Ann Admin");
        assert_eq!(row["resolved"], false);
        assert_eq!(
            row["description"],
            "removal: on the list → removed: The patient has died (national 3, Patient died)"
        );
        assert_eq!(
            row["originating_waiting_list_alert_rule_types"],
            json!(["deceased"])
        );
    }

    #[test]
    fn a_signed_off_task_is_also_a_validated_changelog_that_removes_the_entry() {
        let at: DateTime<Utc> = "2026-12-02T14:30:00Z".parse().unwrap();
        let task = decided(
            &proposal().to_task(),
            Decision::SignedOff,
            "Dr Bea Consultant",
            at,
            Some("Agreed"),
        );
        let mapped = map_resource(&task, "chg-1").unwrap();
        let (t, request) = &mapped.rows[0];
        assert_eq!(*t, "ChangeLogRequest");
        assert_eq!(request["resolved"], true);
        assert_eq!(request["closed_by"], "Dr Bea Consultant");
        let (t, v) = &mapped.rows[1];
        assert_eq!(*t, "ValidatedChangelog");
        assert_eq!(v["change_log_id"], "chg-1");
        assert_eq!(v["status"], "signed off");
        assert_eq!(v["validated"], "yes");
        assert_eq!(v["removed"], true);
        assert_eq!(v["removal_date"], "2026-12-02");
        assert_eq!(v["patient_id"], "P1");
        assert_eq!(v["requested_by"], "Ann Admin");
        assert_eq!(v["closed_by"], "Dr Bea Consultant");
        assert_eq!(v["comments"], "Death notified by the GP\nAgreed");
    }

    #[test]
    fn a_rejected_removal_removes_nothing() {
        let task = decided(
            &proposal().to_task(),
            Decision::Rejected,
            "Dr Bea Consultant",
            Utc::now(),
            None,
        );
        let mapped = map_resource(&task, "chg-1").unwrap();
        let v = &mapped.rows[1].1;
        assert_eq!(v["status"], "rejected");
        assert_eq!(v["validated"], "no");
        assert_eq!(v["removed"], false);
        assert!(v.get("removal_date").is_none());
    }

    #[test]
    fn every_local_reason_reports_a_national_one() {
        for r in REMOVAL_REASONS {
            assert!(["1", "2", "3", "4"].contains(&r.national), "{}", r.code);
        }
    }
}
