//! The discharge referral as a FHIR R4 document: what a trust sends a care
//! provider, how the provider stores it, and what is read back from it.
//!
//! The Bundle (type `collection`) holds the Patient, the Encounter it is
//! discharged from, the discharge summary (a Composition), the care needs
//! (a CarePlan) and the referral itself (a ServiceRequest). Entries refer
//! to each other by their `fullUrl`, so the receiving side can give each
//! resource an id of its own ([`to_store`]) without breaking a reference.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::bundle::{resolve_references, unpack, BundleKind};
use crate::primitives::is_valid_id;
use crate::systems;

/// The patient a referral is about, as the referring trust holds them.
#[derive(Debug, Clone, Default)]
pub struct ReferredPatient {
    /// The trust's id for the patient.
    pub id: String,
    pub nhs_number: Option<String>,
    /// The local hospital number.
    pub mrn: Option<String>,
    pub family: Option<String>,
    pub given: Option<String>,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<String>,
}

impl ReferredPatient {
    /// The patient as a FHIR Patient.
    pub fn resource(&self) -> Value {
        let mut patient = json!({"resourceType": "Patient", "id": self.id});
        let mut ids = Vec::new();
        if let Some(n) = &self.nhs_number {
            ids.push(json!({"system": systems::NHS_NUMBER, "value": n}));
        }
        if let Some(m) = &self.mrn {
            ids.push(json!({"system": "urn:oid:local-hospital-number", "value": m}));
        }
        patient["identifier"] = json!(ids);
        patient["name"] =
            json!([{"family": self.family, "given": self.given.iter().collect::<Vec<_>>()}]);
        if let Some(d) = &self.birth_date {
            patient["birthDate"] = json!(d);
        }
        patient
    }
}

/// What a trust refers: the patient, the admission they leave, and why.
#[derive(Debug, Clone)]
pub struct DischargeReferral {
    pub patient: ReferredPatient,
    /// The admission (spell) the patient is discharged from.
    pub admission_id: String,
    pub admitted_at: Option<DateTime<Utc>>,
    /// The referring trust and the care provider (ODS codes).
    pub from: String,
    pub to: String,
    pub summary: String,
    pub care_needs: Vec<String>,
    pub authored_at: DateTime<Utc>,
}

/// SNOMED CT: the referral's type and the summary's.
const REFERRAL_TO_SERVICE: &str = "3457005";
const DISCHARGE_SUMMARY: &str = "373942005";

impl DischargeReferral {
    /// The Bundle that carries it.
    pub fn bundle(&self) -> Value {
        let p = &self.patient;
        let patient_url = format!("urn:fdp:patient:{}", p.id);
        let encounter_url = format!("urn:fdp:encounter:{}", self.admission_id);
        let subject = json!({"reference": patient_url});
        let patient = p.resource();
        let organisation =
            |ods: &str| json!({"identifier": {"system": systems::ODS_ORGANISATION, "value": ods}});
        json!({
            "resourceType": "Bundle",
            "type": "collection",
            "timestamp": self.authored_at.to_rfc3339(),
            "entry": [
                {"fullUrl": patient_url, "resource": patient},
                {"fullUrl": encounter_url, "resource": {
                    "resourceType": "Encounter", "id": self.admission_id, "status": "in-progress",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                    "subject": subject,
                    "period": {"start": self.admitted_at.map(|t| t.to_rfc3339())}}},
                {"fullUrl": format!("urn:fdp:summary:{}", self.admission_id), "resource": {
                    "resourceType": "Composition", "status": "final",
                    "type": {"coding": [{"system": systems::SNOMED_CT, "code": DISCHARGE_SUMMARY, "display": "Discharge summary"}]},
                    "subject": subject,
                    "encounter": {"reference": encounter_url},
                    "date": self.authored_at.to_rfc3339(),
                    "author": [organisation(&self.from)],
                    "title": "Discharge summary",
                    "section": [{"title": "Summary", "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", escape(&self.summary))}}]}},
                {"fullUrl": format!("urn:fdp:careplan:{}", self.admission_id), "resource": {
                    "resourceType": "CarePlan", "status": "active", "intent": "plan",
                    "subject": subject,
                    "activity": self.care_needs.iter().map(|n| json!({"detail": {"status": "not-started", "description": n}})).collect::<Vec<_>>()}},
                {"fullUrl": format!("urn:fdp:referral:{}", self.admission_id), "resource": {
                    "resourceType": "ServiceRequest", "status": "active", "intent": "order",
                    "code": {"coding": [{"system": systems::SNOMED_CT, "code": REFERRAL_TO_SERVICE, "display": "Referral to service"}]},
                    "subject": subject,
                    "encounter": {"reference": encounter_url},
                    "authoredOn": self.authored_at.to_rfc3339(),
                    "requester": organisation(&self.from),
                    "performer": [organisation(&self.to)],
                    "note": self.care_needs.iter().map(|n| json!({"text": n})).collect::<Vec<_>>()}},
            ]
        })
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The resources of a referral received from `from` as message
/// `referral_id`, each with the id to store it under, references between
/// them rewritten to those ids.
///
/// The patient and the encounter keep the sender's id behind the sender's
/// ODS code (`RXX.M1`), so a second referral of the same patient is a new
/// version of the same Patient, and two trusts' patients never share an
/// id. The referral (the ServiceRequest) is stored under the message's id,
/// and the rest under it with their place (`{referral_id}.2`).
pub fn to_store(
    bundle: &Value,
    from: &str,
    referral_id: &str,
) -> Result<Vec<(Value, String)>, String> {
    with_ids(bundle, "a referral's record", |rt, given, index| match rt {
        "Patient" | "Encounter" if !given.is_empty() => sender_scoped(from, given),
        "ServiceRequest" => referral_id.to_string(),
        _ => format!("{referral_id}.{index}"),
    })
}

/// The resources of a collection Bundle (`what`, for errors), each with the
/// id `id_for(resourceType, given id, place)` chose, references between
/// them rewritten to those ids. The Bundle must hold a Patient.
pub(crate) fn with_ids(
    bundle: &Value,
    what: &str,
    id_for: impl Fn(&str, &str, usize) -> String,
) -> Result<Vec<(Value, String)>, String> {
    let (kind, entries) = unpack(bundle).map_err(|i| i.diagnostics)?;
    if kind != BundleKind::Collection {
        return Err(format!("{what} is a collection Bundle"));
    }
    let mut ids = HashMap::new();
    let mut resources = Vec::new();
    for e in entries {
        let Some(resource) = e.resource else {
            return Err(format!("{} has no resource", e.path()));
        };
        let rt = resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let given = resource["id"].as_str().unwrap_or_default();
        let id = id_for(&rt, given, e.index);
        if let Some(url) = &e.full_url {
            ids.insert(url.clone(), format!("{rt}/{id}"));
        }
        resources.push((resource, id));
    }
    if !resources
        .iter()
        .any(|(r, _)| r["resourceType"] == "Patient")
    {
        return Err(format!(
            "{what} names its patient: the Bundle has no Patient"
        ));
    }
    for (resource, id) in &mut resources {
        resource["id"] = json!(id);
        let unresolved = resolve_references(resource, &ids);
        if let Some((path, reference)) = unresolved.first() {
            return Err(format!(
                "{path} refers to {reference}, which the Bundle does not hold"
            ));
        }
    }
    Ok(resources)
}

/// `id` as `from` gave it, made an id of this instance: `RXX.M1`. An id
/// that would not be a valid FHIR id so (too long, or with characters FHIR
/// ids cannot hold) is replaced by a digest of it, the same every time.
pub(crate) fn sender_scoped(from: &str, id: &str) -> String {
    let scoped = format!("{from}.{id}");
    if is_valid_id(&scoped) {
        return scoped;
    }
    // FNV-1a: stable across runs and releases, which is all an id needs.
    let digest = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let from: String = from
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    format!("{from}.{digest:016x}")
}

/// What a referral's record says, as its page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferralRecord {
    /// Given names then family name.
    pub name: String,
    pub birth_date: String,
    pub nhs_number: Option<String>,
    /// The discharge summary's text, its markup taken out.
    pub summary: String,
}

impl ReferralRecord {
    /// Read a referral's Bundle (as sent, or as stored and reassembled).
    pub fn read(bundle: &Value) -> ReferralRecord {
        let resources: Vec<&Value> = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
            .collect();
        let of_type = |t: &str| resources.iter().copied().find(|r| r["resourceType"] == t);
        let mut record = ReferralRecord::default();
        if let Some(p) = of_type("Patient") {
            let name = &p["name"][0];
            let given: Vec<&str> = name["given"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            record.name = format!(
                "{} {}",
                given.join(" "),
                name["family"].as_str().unwrap_or_default()
            )
            .trim()
            .to_string();
            record.birth_date = p["birthDate"].as_str().unwrap_or_default().to_string();
            record.nhs_number = p["identifier"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["system"] == systems::NHS_NUMBER)
                .and_then(|i| i["value"].as_str())
                .map(str::to_string);
        }
        let div = of_type("Composition")
            .and_then(|c| c["section"][0]["text"]["div"].as_str())
            .unwrap_or_default();
        let mut in_tag = false;
        for c in div.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => record.summary.push(c),
                _ => {}
            }
        }
        record.summary = record
            .summary
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        record
    }
}

/// A collection Bundle of `resources`, in the order given.
pub fn collection(resources: impl IntoIterator<Item = Value>) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": resources.into_iter().map(|r| {
            let url = format!("{}/{}", r["resourceType"].as_str().unwrap_or_default(), r["id"].as_str().unwrap_or_default());
            json!({"fullUrl": url, "resource": r})
        }).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn referral() -> DischargeReferral {
        DischargeReferral {
            patient: ReferredPatient {
                id: "M1".into(),
                nhs_number: Some("9434765919".into()),
                mrn: Some("M1".into()),
                family: Some("ALPHA".into()),
                given: Some("Test".into()),
                birth_date: Some("1950-01-01".into()),
            },
            admission_id: "SPELL1".into(),
            admitted_at: None,
            from: "RXX".into(),
            to: "CARE1".into(),
            summary: "Home with <carers> & a hoist".into(),
            care_needs: vec!["nursing care".into(), "hoist for transfers".into()],
            authored_at: Utc::now(),
        }
    }

    #[test]
    fn the_record_reads_back_as_it_was_written() {
        let record = ReferralRecord::read(&referral().bundle());
        assert_eq!(record.name, "Test ALPHA");
        assert_eq!(record.birth_date, "1950-01-01");
        assert_eq!(record.nhs_number.as_deref(), Some("9434765919"));
        assert_eq!(record.summary, "Home with <carers> & a hoist");
    }

    #[test]
    fn the_receiver_scopes_ids_by_sender_and_keeps_every_reference() {
        let stored = to_store(&referral().bundle(), "RXX", "0123abcd").unwrap();
        let ids: Vec<(&str, &str)> = stored
            .iter()
            .map(|(r, id)| (r["resourceType"].as_str().unwrap(), id.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("Patient", "RXX.M1"),
                ("Encounter", "RXX.SPELL1"),
                ("Composition", "0123abcd.2"),
                ("CarePlan", "0123abcd.3"),
                ("ServiceRequest", "0123abcd"),
            ]
        );
        let request = &stored[4].0;
        assert_eq!(request["id"], "0123abcd");
        assert_eq!(request["subject"]["reference"], "Patient/RXX.M1");
        assert_eq!(request["encounter"]["reference"], "Encounter/RXX.SPELL1");
        // Reassembled, the record reads the same.
        let again = collection(stored.into_iter().map(|(r, _)| r));
        assert_eq!(
            ReferralRecord::read(&again),
            ReferralRecord::read(&referral().bundle())
        );
    }

    #[test]
    fn a_record_that_is_not_a_whole_referral_is_refused_saying_why() {
        let e = to_store(&json!({"resourceType": "Patient"}), "RXX", "1").unwrap_err();
        assert!(e.contains("Bundle"), "{e}");
        let mut bundle = referral().bundle();
        bundle["entry"].as_array_mut().unwrap().remove(0);
        let e = to_store(&bundle, "RXX", "1").unwrap_err();
        assert!(
            e.contains("refers to urn:fdp:patient:M1") || e.contains("no Patient"),
            "{e}"
        );
        assert!(sender_scoped("RXX", "a/b").starts_with("RXX."));
        assert!(is_valid_id(&sender_scoped("RXX", &"x".repeat(200))));
    }
}
