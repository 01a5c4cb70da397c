//! The validation queue's changes: an administrator proposes one
//! (a `ChangeLogRequest`), a clinician signs it off or rejects it (a
//! `ValidatedChangelog`). Both are FHIR `Task`s (see
//! [`fdp_fhir::change_request`]) stored through ingest, so each change is
//! kept as made, versioned, with its lineage, and mapped to the canonical
//! tables the PTL reads: a removal signed off takes the entry off the list
//! over the extract, not in it.
//!
//! What is checked, through the caller's own governed session (so a record
//! the grant does not show is answered as absent): the entry exists and is
//! on the list; an entry has one change awaiting sign-off at a time; a
//! change is decided once, and never by the person who proposed it.

use chrono::Utc;
use fdp_fhir::change_request::{
    decided, removal_reason, ChangeKind, ChangeProposal, Decision, REMOVAL_REASONS,
};
use fdp_govern::GovernedSession;
use serde_json::{json, Value};

use super::text;
use crate::platform::{ParamValue, Params, ProductError, RecordIntake, RecordsChange};

/// The action proposing a change to an entry.
pub const PROPOSE: &str = "propose";
/// The action deciding a proposed change.
pub const SIGN_OFF: &str = "sign-off";

/// The entry properties a change may set, by their model names, and the
/// values each takes.
pub const CHANGEABLE: &[(&str, &[&str])] = &[(
    "priorityType",
    &["P1a", "P1b", "P2", "P3", "P4", "P5", "P6"],
)];

/// The first row of `sql`'s answer, as JSON, if any.
async fn first_row(session: &GovernedSession, sql: &str) -> Result<Option<Value>, ProductError> {
    let result = session.query(sql).await?;
    let rows = result
        .rows_json()
        .map_err(|e| ProductError::Failed(e.to_string()))?;
    Ok(rows.as_array().and_then(|r| r.first()).cloned())
}

fn text_of(row: &Value, column: &str) -> Option<String> {
    row.get(column).and_then(Value::as_str).map(str::to_string)
}

/// Propose a change to entry `eal_id` as `by`.
pub async fn propose(
    eal_id: &str,
    session: &GovernedSession,
    inputs: &Params,
    by: &str,
) -> Result<RecordsChange, ProductError> {
    let entry = first_row(
        session,
        &format!(
            "SELECT eal_id, patient_id, priority_type FROM eal_entry WHERE eal_id = {}",
            text(eal_id)
        ),
    )
    .await?
    .ok_or_else(|| ProductError::NotAdmitted(format!("no entry {eal_id} is shown to the caller")))?;
    let on_list = first_row(
        session,
        &format!(
            "SELECT e.eal_id FROM eal_entry e \
             LEFT JOIN (SELECT eal_id FROM validated_changelog WHERE removed AND validated = 'yes') v \
               ON v.eal_id = e.eal_id \
             WHERE e.eal_id = {} AND (e.removal_date IS NULL OR e.removal_date > {}) \
               AND v.eal_id IS NULL",
            text(eal_id),
            ParamValue::Date(Utc::now().date_naive()).sql_literal()
        ),
    )
    .await?;
    if on_list.is_none() {
        return Err(ProductError::Conflict(format!(
            "entry {eal_id} is no longer on the waiting list"
        )));
    }
    if let Some(open) = first_row(
        session,
        &format!(
            "SELECT change_log_id, description FROM change_log_request \
             WHERE eal_id = {} AND NOT coalesce(resolved, false)",
            text(eal_id)
        ),
    )
    .await?
    {
        return Err(ProductError::Conflict(format!(
            "a change to entry {eal_id} already awaits sign-off: {} ({})",
            text_of(&open, "change_log_id").unwrap_or_default(),
            text_of(&open, "description").unwrap_or_default()
        )));
    }
    let evidence = inputs.text("evidence").unwrap_or_default();
    let (kind, old_value) = match inputs.text("property") {
        None => {
            let code = inputs.text("reason").ok_or_else(|| ProductError::Param {
                name: "reason".into(),
                message: "a removal needs its reason".into(),
            })?;
            let reason = removal_reason(&code).ok_or_else(|| ProductError::Param {
                name: "reason".into(),
                message: format!(
                    "{code:?} is not a removal reason (the reasons: {})",
                    REMOVAL_REASONS
                        .iter()
                        .map(|r| r.code)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
            (ChangeKind::Remove(reason), "on the list".to_string())
        }
        Some(property) => {
            let Some((_, allowed)) = CHANGEABLE.iter().find(|(p, _)| *p == property) else {
                return Err(ProductError::Param {
                    name: "property".into(),
                    message: format!(
                        "{property:?} cannot be changed here (what can: {}; leave it out to remove the entry)",
                        CHANGEABLE
                            .iter()
                            .map(|(p, _)| *p)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            };
            let new_value = inputs.text("new_value").unwrap_or_default();
            if !allowed.contains(&new_value.as_str()) {
                return Err(ProductError::Param {
                    name: "new_value".into(),
                    message: format!(
                        "{new_value:?} is not a value of {property} ({})",
                        allowed.join(", ")
                    ),
                });
            }
            let old = text_of(&entry, "priority_type").unwrap_or_else(|| "(none)".into());
            (
                ChangeKind::Change {
                    property: property.clone(),
                    new_value,
                },
                old,
            )
        }
    };
    let patient_id = text_of(&entry, "patient_id");
    let proposal = ChangeProposal {
        id: fdp_ingest::fhir::new_id(),
        eal_id: eal_id.to_string(),
        patient_id: patient_id.clone().unwrap_or_default(),
        kind,
        old_value,
        evidence,
        rule: inputs.text("rule"),
        comments: inputs.text("comments"),
        requested_by: by.to_string(),
        at: Utc::now(),
    };
    let task = proposal.to_task();
    Ok(RecordsChange {
        records: vec![(task.clone(), proposal.id.clone())],
        patients: patient_id.into_iter().collect(),
        answer: json!({
            "change": proposal.id,
            "entry": eal_id,
            "status": "awaiting sign-off",
            "record": format!("Task/{}", proposal.id),
        }),
    })
}

/// Decide change `change_id` as `by`.
pub async fn sign_off(
    change_id: &str,
    session: &GovernedSession,
    held: &dyn RecordIntake,
    inputs: &Params,
    by: &str,
) -> Result<RecordsChange, ProductError> {
    let request = first_row(
        session,
        &format!(
            "SELECT change_log_id, eal_id, requested_by, resolved FROM change_log_request \
             WHERE change_log_id = {}",
            text(change_id)
        ),
    )
    .await?
    .ok_or_else(|| {
        ProductError::NotAdmitted(format!("no change {change_id} is shown to the caller"))
    })?;
    if request.get("resolved").and_then(Value::as_bool) == Some(true) {
        return Err(ProductError::Conflict(format!(
            "change {change_id} was already decided"
        )));
    }
    match text_of(&request, "requested_by") {
        Some(proposer) if proposer == by => {
            return Err(ProductError::Forbidden(format!(
                "{by} proposed change {change_id}: it is signed off by someone else"
            )))
        }
        Some(_) => {}
        None => {
            return Err(ProductError::Forbidden(format!(
                "who proposed change {change_id} is not shown under this grant, so a sign-off cannot be checked"
            )))
        }
    }
    let decision = match inputs.text("decision").as_deref() {
        Some("sign-off") | None => Decision::SignedOff,
        Some("reject") => Decision::Rejected,
        Some(other) => {
            return Err(ProductError::Param {
                name: "decision".into(),
                message: format!("{other:?} is not sign-off or reject"),
            })
        }
    };
    let record = format!("Task/{change_id}");
    let task = held
        .current(std::slice::from_ref(&record))
        .into_iter()
        .next()
        .filter(fdp_fhir::change_request::is_change_request)
        .ok_or_else(|| {
            ProductError::Failed(format!(
                "change {change_id} is listed but its record {record} is not held"
            ))
        })?;
    if task.get("status").and_then(Value::as_str) != Some("requested") {
        return Err(ProductError::Conflict(format!(
            "change {change_id} was already decided"
        )));
    }
    let comments = inputs.text("comments");
    let task = decided(&task, decision, by, Utc::now(), comments.as_deref());
    let patients = task
        .pointer("/for/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
        .into_iter()
        .collect();
    Ok(RecordsChange {
        records: vec![(task, change_id.to_string())],
        patients,
        answer: json!({
            "change": change_id,
            "entry": text_of(&request, "eal_id"),
            "status": decision.describe(),
            "record": record,
        }),
    })
}
