//! A waiting-list pathway moved to another provider (mutual aid), as FHIR:
//! what the referring trust sends with a booking request, how the provider
//! stores it, and the RTT extension by which a resource becomes one of the
//! pathway's activities.
//!
//! The Bundle (type `collection`) carries what an inter-provider transfer
//! needs for the clock to carry on where it was:
//! - the **Patient**;
//! - the **EpisodeOfCare**: the pathway, under its patient pathway
//!   identifier, which travels with the patient, with its service
//!   (treatment function) and consultant;
//! - the **ServiceRequest that started the clock**, dated the clock start
//!   with the status code it started with (10, 11 or 12);
//! - the **transfer** itself, a ServiceRequest to the provider, still a
//!   `draft` while the provider decides: the clinical priority, planned
//!   procedure, expected theatre minutes and the dates the list entry
//!   carries. Once accepted it becomes `active` with RTT status 21 (transfer
//!   to another provider, clock still running) on the day it was accepted;
//!   at the provider it also carries the new list entry's id, which makes it
//!   that provider's waiting-list entry ([`accepted`]).
//!
//! ## The RTT extension
//!
//! A ServiceRequest, Encounter, Procedure or Appointment carrying
//! [`RTT_STATUS_EXT`] is also a pathway activity (`PathwayActivity`): its
//! `status` (a coding from [`RTT_STATUS`]), its `pathway` (an identifier
//! from [`PATIENT_PATHWAY`]) and, where the resource's own date is not the
//! day the status was recorded, its `date`. A `draft` or
//! `entered-in-error` resource is no activity.

use chrono::NaiveDate;
use serde_json::{json, Value};

use crate::change_request::EAL_ENTRY;
use crate::referral::{sender_scoped, with_ids, ReferredPatient};
use crate::systems;

/// The extension making a resource a pathway activity.
pub const RTT_STATUS_EXT: &str = "https://openfdp.nhs.uk/StructureDefinition/rtt-period-status";
/// RTT period status codes (the NHS Data Dictionary's, 10 to 99).
pub const RTT_STATUS: &str = "https://openfdp.nhs.uk/CodeSystem/rtt-period-status";
/// Patient pathway identifiers, which travel with the patient.
pub const PATIENT_PATHWAY: &str = "https://openfdp.nhs.uk/Id/patient-pathway";
/// A list entry's clinical priority (P1a to P6), on the transfer.
pub const CLINICAL_PRIORITY_EXT: &str =
    "https://openfdp.nhs.uk/StructureDefinition/surgical-clinical-priority";
/// The minutes the case is expected to take in theatre, on the transfer.
pub const EXPECTED_THEATRE_MINUTES_EXT: &str =
    "https://openfdp.nhs.uk/StructureDefinition/expected-theatre-minutes";
/// The latest clinically appropriate date, on the transfer.
pub const LATEST_CLINICALLY_APPROPRIATE_EXT: &str =
    "https://openfdp.nhs.uk/StructureDefinition/latest-clinically-appropriate-date";
/// Treatment function codes.
pub const TREATMENT_FUNCTION: &str =
    "https://fhir.nhs.uk/CodeSystem/NHSDataModelAndDictionary-treatment-function";

/// RTT status 21: transfer to another provider, the clock still running.
pub const TRANSFERRED: &str = "21";

/// The pathway a trust moves, as its PTL shows it.
#[derive(Debug, Clone, Default)]
pub struct TransferredPathway {
    pub patient: ReferredPatient,
    /// The patient pathway identifier.
    pub pathway_id: String,
    pub specialty: Option<String>,
    pub treatment_function_code: Option<String>,
    pub consultant: Option<String>,
    /// The day the running clock started, and the code it started with.
    pub clock_start: NaiveDate,
    pub clock_start_code: String,
    /// P1a to P6.
    pub priority: Option<String>,
    pub decided_to_admit: Option<NaiveDate>,
    pub latest_clinically_appropriate: Option<NaiveDate>,
    /// OPCS-4.
    pub procedure_code: Option<String>,
    pub procedure_description: Option<String>,
    pub expected_theatre_minutes: Option<u32>,
    /// The trust and the provider (ODS codes).
    pub from: String,
    pub to: String,
    /// The theatre session offered, at the provider.
    pub session_id: String,
}

fn rtt(code: &str, pathway: &str, date: Option<NaiveDate>) -> Value {
    let mut parts = vec![
        json!({"url": "status", "valueCoding": {"system": RTT_STATUS, "code": code}}),
        json!({"url": "pathway", "valueIdentifier": {"system": PATIENT_PATHWAY, "value": pathway}}),
    ];
    if let Some(d) = date {
        parts.push(json!({"url": "date", "valueDate": d.to_string()}));
    }
    json!({"url": RTT_STATUS_EXT, "extension": parts})
}

fn organisation(ods: &str) -> Value {
    json!({"identifier": {"system": systems::ODS_ORGANISATION, "value": ods}})
}

impl TransferredPathway {
    /// The Bundle a booking request carries (see the module's docs).
    pub fn bundle(&self, authored_at: chrono::DateTime<chrono::Utc>) -> Value {
        let patient_url = format!("urn:fdp:patient:{}", self.patient.id);
        let pathway_url = format!("urn:fdp:pathway:{}", self.pathway_id);
        let subject = json!({"reference": patient_url});
        let mut pathway_type = vec![json!({"text": "RTT"})];
        if let Some(code) = &self.treatment_function_code {
            pathway_type.push(json!({"coding": [{"system": TREATMENT_FUNCTION, "code": code, "display": self.specialty}]}));
        } else if let Some(name) = &self.specialty {
            pathway_type.push(json!({"coding": [{"system": TREATMENT_FUNCTION, "display": name}]}));
        }
        let mut episode = json!({
            "resourceType": "EpisodeOfCare", "id": self.pathway_id, "status": "active",
            "identifier": [{"system": PATIENT_PATHWAY, "value": self.pathway_id}],
            "type": pathway_type,
            "patient": subject,
            "managingOrganization": organisation(&self.from),
            "period": {"start": self.clock_start.to_string()},
        });
        if let Some(c) = &self.consultant {
            episode["careManager"] = json!({"display": c});
        }
        let mut extension = vec![rtt(TRANSFERRED, &self.pathway_id, None)];
        if let Some(p) = &self.priority {
            extension.push(json!({"url": CLINICAL_PRIORITY_EXT, "valueCode": p}));
        }
        if let Some(m) = self.expected_theatre_minutes {
            extension.push(json!({"url": EXPECTED_THEATRE_MINUTES_EXT, "valueInteger": m}));
        }
        if let Some(d) = self.latest_clinically_appropriate {
            extension.push(
                json!({"url": LATEST_CLINICALLY_APPROPRIATE_EXT, "valueDate": d.to_string()}),
            );
        }
        let mut code = json!({"text": self.procedure_description});
        if let Some(c) = &self.procedure_code {
            code["coding"] = json!([{"system": systems::OPCS4, "code": c, "display": self.procedure_description}]);
        }
        let mut transfer = json!({
            "resourceType": "ServiceRequest", "id": "transfer", "status": "draft", "intent": "order",
            "extension": extension,
            "code": code,
            "subject": subject,
            "supportingInfo": [{"reference": pathway_url}],
            "authoredOn": authored_at.to_rfc3339(),
            "requester": organisation(&self.from),
            "performer": [organisation(&self.to)],
            "note": [{"text": format!("Mutual aid: theatre session {} at {}", self.session_id, self.to)}],
        });
        if let Some(d) = self.decided_to_admit {
            transfer["occurrencePeriod"] = json!({"start": d.to_string()});
        }
        json!({
            "resourceType": "Bundle",
            "type": "collection",
            "timestamp": authored_at.to_rfc3339(),
            "entry": [
                {"fullUrl": patient_url, "resource": self.patient.resource()},
                {"fullUrl": pathway_url, "resource": episode},
                {"fullUrl": format!("urn:fdp:clock-start:{}", self.pathway_id), "resource": {
                    "resourceType": "ServiceRequest", "id": "clock-start", "status": "completed", "intent": "order",
                    "extension": [rtt(&self.clock_start_code, &self.pathway_id, None)],
                    "code": {"text": "Referral to treatment: the clock start"},
                    "subject": subject,
                    "supportingInfo": [{"reference": pathway_url}],
                    "authoredOn": self.clock_start.to_string(),
                    "requester": organisation(&self.from)}},
                {"fullUrl": format!("urn:fdp:transfer:{}", self.pathway_id), "resource": transfer},
            ]
        })
    }
}

/// The resources of a booking request's record received from `from` as
/// message `request_id`, each with the id to store it under. The patient
/// and the pathway keep the sender's id behind its ODS code (`RXX.M1`), so
/// a second request for the same patient is a new version of the same
/// Patient; the transfer is stored under the request's id and the clock
/// start under `{request_id}.start`.
pub fn to_store(
    bundle: &Value,
    from: &str,
    request_id: &str,
) -> Result<Vec<(Value, String)>, String> {
    let resources = with_ids(
        bundle,
        "a booking request's record",
        |rt, given, index| match (rt, given) {
            ("Patient" | "EpisodeOfCare", g) if !g.is_empty() => sender_scoped(from, g),
            ("ServiceRequest", "transfer") => request_id.to_string(),
            ("ServiceRequest", "clock-start") => format!("{request_id}.start"),
            _ => format!("{request_id}.{index}"),
        },
    )?;
    let count = |id: &str| resources.iter().filter(|(_, i)| i == id).count();
    let kinds: Vec<&str> = resources
        .iter()
        .map(|(r, _)| r["resourceType"].as_str().unwrap_or_default())
        .collect();
    if kinds.len() != 4
        || !["Patient", "EpisodeOfCare"]
            .iter()
            .all(|k| kinds.contains(k))
        || count(request_id) != 1
        || count(&format!("{request_id}.start")) != 1
    {
        return Err(format!(
            "a booking request's record holds the Patient, the EpisodeOfCare (the pathway), the clock start and the transfer, once each; this one holds {} ({} of them the transfer)",
            kinds.join(", "),
            count(request_id)
        ));
    }
    Ok(resources)
}

/// The transfer (`draft`) as accepted on `on`: `active`, with RTT status
/// 21 on that day and, at the provider, the id of the list entry it makes
/// (`eal_id`).
pub fn accepted(transfer: &Value, on: NaiveDate, eal_id: Option<&str>) -> Value {
    let mut t = transfer.clone();
    t["status"] = json!("active");
    let pathway = pathway_of(transfer).unwrap_or_default();
    if let Some(exts) = t["extension"].as_array_mut() {
        exts.retain(|e| e["url"] != RTT_STATUS_EXT);
        exts.push(rtt(TRANSFERRED, &pathway, Some(on)));
    }
    if let Some(id) = eal_id {
        t["identifier"] = json!([{"system": EAL_ENTRY, "value": id}]);
    }
    t
}

/// The pathway a resource's RTT extension names.
pub fn pathway_of(resource: &Value) -> Option<String> {
    rtt_part(resource, "pathway")?
        .get("valueIdentifier")?
        .get("value")?
        .as_str()
        .map(str::to_string)
}

fn rtt_part<'a>(resource: &'a Value, part: &str) -> Option<&'a Value> {
    resource
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e["url"] == RTT_STATUS_EXT)?
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e["url"] == part)
}

/// What a resource's RTT extension says: the status code, the pathway and
/// the day it names (if it names one). `None` where the resource carries
/// none, or is a draft or entered in error.
pub fn rtt_activity(resource: &Value) -> Option<(String, String, Option<String>)> {
    if matches!(
        resource.get("status").and_then(Value::as_str),
        Some("draft" | "entered-in-error")
    ) {
        return None;
    }
    let code = rtt_part(resource, "status")?
        .get("valueCoding")?
        .get("code")?
        .as_str()?
        .to_string();
    let pathway = pathway_of(resource)?;
    let date = rtt_part(resource, "date")
        .and_then(|d| d.get("valueDate"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Some((code, pathway, date))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pathway() -> TransferredPathway {
        TransferredPathway {
            patient: ReferredPatient {
                id: "9434765919".into(),
                nhs_number: Some("9434765919".into()),
                family: Some("ALPHA".into()),
                given: Some("Test".into()),
                ..Default::default()
            },
            pathway_id: "PW1".into(),
            specialty: Some("Trauma and Orthopaedics".into()),
            treatment_function_code: Some("110".into()),
            consultant: Some("Mr Bone".into()),
            clock_start: NaiveDate::from_ymd_opt(2025, 6, 2).unwrap(),
            clock_start_code: "10".into(),
            priority: Some("P3".into()),
            decided_to_admit: NaiveDate::from_ymd_opt(2025, 9, 1),
            latest_clinically_appropriate: None,
            procedure_code: Some("W401".into()),
            procedure_description: Some("Knee replacement".into()),
            expected_theatre_minutes: Some(120),
            from: "RXX".into(),
            to: "RYY".into(),
            session_id: "S1".into(),
        }
    }

    #[test]
    fn the_record_is_stored_under_ids_of_the_provider_and_only_the_clock_start_is_an_activity() {
        let bundle = pathway().bundle(chrono::Utc::now());
        let stored = to_store(&bundle, "RXX", "m1").unwrap();
        let ids: Vec<&str> = stored.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(ids, ["RXX.9434765919", "RXX.PW1", "m1.start", "m1"]);
        // References follow the new ids.
        assert_eq!(
            stored[3].0["subject"]["reference"],
            "Patient/RXX.9434765919"
        );
        let activities: Vec<_> = stored.iter().filter_map(|(r, _)| rtt_activity(r)).collect();
        assert_eq!(activities, [("10".into(), "PW1".into(), None)]);
        // Accepted, the transfer is status 21 on the day, under the entry.
        let day = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        let t = accepted(&stored[3].0, day, Some("RYY-E1"));
        assert_eq!(
            rtt_activity(&t),
            Some(("21".into(), "PW1".into(), Some("2026-12-04".into())))
        );
        assert_eq!(t["identifier"][0]["value"], "RYY-E1");
    }

    #[test]
    fn a_record_without_its_transfer_or_with_two_is_refused() {
        let mut bundle = pathway().bundle(chrono::Utc::now());
        let transfer = bundle["entry"][3].clone();
        bundle["entry"].as_array_mut().unwrap().pop();
        let e = to_store(&bundle, "RXX", "m1").unwrap_err();
        assert!(e.contains("0 of them the transfer"), "{e}");
        let mut twice = transfer.clone();
        twice["fullUrl"] = json!("urn:fdp:transfer:again");
        bundle["entry"].as_array_mut().unwrap().push(transfer);
        bundle["entry"].as_array_mut().unwrap().push(twice);
        let e = to_store(&bundle, "RXX", "m1").unwrap_err();
        assert!(e.contains("2 of them the transfer"), "{e}");
    }

    #[test]
    fn the_record_maps_to_the_pathway_its_activities_and_once_accepted_a_list_entry() {
        let stored = to_store(&pathway().bundle(chrono::Utc::now()), "RXX", "m1").unwrap();
        let rows = |i: usize, r: Option<&Value>| {
            crate::map::map_resource(r.unwrap_or(&stored[i].0), &stored[i].1)
                .unwrap()
                .rows
        };
        let episode = rows(1, None);
        assert_eq!(episode[0].0, "PatientPathway");
        assert_eq!(episode[0].1["pathway_id"], "PW1");
        assert_eq!(episode[0].1["specialty_name"], "Trauma and Orthopaedics");
        assert_eq!(episode[0].1["treatment_function_code"], "110");
        let start = rows(2, None);
        let activity = &start
            .iter()
            .find(|(t, _)| *t == "PathwayActivity")
            .unwrap()
            .1;
        assert_eq!(activity["activity_date"], "2025-06-02");
        assert_eq!(activity["rtt_status_code"], "10");
        assert_eq!(activity["patient_id"], "RXX.9434765919");
        // The draft transfer is a referral only.
        let draft: Vec<&str> = rows(3, None).iter().map(|(t, _)| *t).collect();
        assert_eq!(draft, ["Referral"]);
        let day = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        let taken = accepted(&stored[3].0, day, Some("RYY-E1"));
        let accepted_rows = rows(3, Some(&taken));
        let of = |t: &str| &accepted_rows.iter().find(|(k, _)| *k == t).unwrap().1;
        assert_eq!(of("EalEntry")["eal_id"], "RYY-E1");
        assert_eq!(of("EalEntry")["pathway_id"], "PW1");
        assert_eq!(of("EalEntry")["priority_type"], "P3");
        assert_eq!(of("EalEntry")["decided_to_admit_date"], "2025-09-01");
        assert_eq!(of("Encounter")["estimated_total_theatre_time"], 120);
        assert_eq!(of("Encounter")["intended_primary_procedure_code"], "W401");
        assert_eq!(of("PathwayActivity")["rtt_status_code"], "21");
        assert_eq!(of("PathwayActivity")["activity_date"], "2026-12-04");
        // At the referring trust, accepted without an entry: the activity only.
        let at_trust = accepted(&stored[3].0, day, None);
        let kinds: Vec<&str> = rows(3, Some(&at_trust)).iter().map(|(t, _)| *t).collect();
        assert_eq!(kinds, ["Referral", "PathwayActivity"]);
    }
}
