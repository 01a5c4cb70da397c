//! The census as rows of the canonical model's tables.
//!
//! Column names are the model's (the CDM's in snake_case); the model's
//! declaration decides the Arrow types, so a change there changes the tables
//! without touching this file.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::census::{BedStatus, Census, DischargeReadiness, RetiredBatch, Spell, SpellStatus};
use super::event::PatientDetails;

/// Rows for one canonical table, keyed by the model's object type name.
pub type TableRows = BTreeMap<&'static str, Vec<Map<String, Value>>>;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("rows are built from json! objects"),
    }
}

/// The canonical tables the census fills, by the model's object type name.
pub const TABLES: [&str; 7] = [
    "Admission",
    "Bed",
    "DischargeReadiness",
    "Patient",
    "Site",
    "Ward",
    "WardStay",
];

/// Every canonical row the census implies.
pub fn rows(census: &Census) -> TableRows {
    TABLES
        .iter()
        .map(|name| (*name, table_rows(census, name)))
        .collect()
}

/// The rows of one canonical table (one of [`TABLES`]; another name has
/// none). A writer deriving one table at a time holds one table's rows.
pub fn table_rows(census: &Census, type_name: &str) -> Vec<Map<String, Value>> {
    match type_name {
        "Patient" => census.patients.values().map(patient_row).collect(),
        "Admission" => census
            .spells
            .values()
            .map(|s| admission_row(s, census.readiness.get(&s.admission_id)))
            .collect(),
        "WardStay" => census.spells.values().flat_map(ward_stay_rows).collect(),
        "Ward" => places(census)
            .0
            .iter()
            .map(|(id, (site, ward))| {
                obj(json!({"ward_id": id, "ward_code": ward, "site": site, "site_ods_code": site}))
            })
            .collect(),
        "Site" => places(census)
            .1
            .keys()
            .map(|s| obj(json!({"id": s, "name": s, "site_ods_code": s})))
            .collect(),
        "Bed" => census
            .beds
            .values()
            .map(|b| {
                let occupant = b.occupant.as_ref().and_then(|a| census.spells.get(a));
                obj(json!({
                    "bed_id": b.bed_id,
                    "site_id": b.site,
                    "ward_id": format!("{}:{}", b.site, b.ward),
                    "bay": b.room,
                    "bed_label": b.label,
                    "bed_type": b.bed_type,
                    "status": match b.status { BedStatus::Open => "open", BedStatus::Closed => "closed" },
                    "closed_reason": b.closed_reason,
                    "admission_id": occupant.map(|s| s.admission_id.clone()),
                    "patient_id": occupant.map(|s| s.patient_id.clone()),
                }))
            })
            .collect(),
        "DischargeReadiness" => census
            .readiness
            .values()
            .map(|r| {
                readiness_row(
                    r,
                    census
                        .spells
                        .get(&r.admission_id)
                        .map(|s| s.patient_id.as_str()),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

type Wards = BTreeMap<String, (String, String)>;

/// The wards (id → site, ward) and sites the bed register and the spells
/// name.
fn places(census: &Census) -> (Wards, BTreeMap<String, ()>) {
    let mut wards = Wards::new();
    let mut sites: BTreeMap<String, ()> = BTreeMap::new();
    for b in census.beds.values() {
        wards.insert(
            format!("{}:{}", b.site, b.ward),
            (b.site.clone(), b.ward.clone()),
        );
        sites.insert(b.site.clone(), ());
    }
    for s in census.spells.values() {
        for stay in &s.stays {
            let l = &stay.location;
            wards.insert(l.ward_id(), (l.site.clone(), l.ward.clone()));
            sites.insert(l.site.clone(), ());
        }
    }
    (wards, sites)
}

/// The canonical tables a retirement takes rows out of.
pub const ARCHIVE_TABLES: [&str; 4] = ["Admission", "DischargeReadiness", "Patient", "WardStay"];

/// One archive table's rows of a retirement (one of [`ARCHIVE_TABLES`];
/// another name has none).
pub fn archive_table_rows(batch: &RetiredBatch, type_name: &str) -> Vec<Map<String, Value>> {
    match type_name {
        "Patient" => batch.patients.iter().map(patient_row).collect(),
        "Admission" => {
            let readiness: BTreeMap<&str, &DischargeReadiness> = batch
                .readiness
                .iter()
                .map(|r| (r.admission_id.as_str(), r))
                .collect();
            batch
                .spells
                .iter()
                .map(|s| admission_row(s, readiness.get(s.admission_id.as_str()).copied()))
                .collect()
        }
        "WardStay" => batch.spells.iter().flat_map(ward_stay_rows).collect(),
        "DischargeReadiness" => {
            let patient_of: BTreeMap<&str, &str> = batch
                .spells
                .iter()
                .map(|s| (s.admission_id.as_str(), s.patient_id.as_str()))
                .collect();
            batch
                .readiness
                .iter()
                .map(|r| readiness_row(r, patient_of.get(r.admission_id.as_str()).copied()))
                .collect()
        }
        _ => Vec::new(),
    }
}

fn patient_row(p: &PatientDetails) -> Map<String, Value> {
    let full = match (&p.first_name, &p.surname) {
        (Some(f), Some(s)) => Some(format!("{f} {s}")),
        (None, Some(s)) => Some(s.clone()),
        (Some(f), None) => Some(f.clone()),
        (None, None) => None,
    };
    obj(json!({
        "person_id": p.patient_id,
        "mrn": p.mrn,
        "nhs_number": p.nhs_number,
        "nhs_number_status_indicator": p.nhs_number_status.as_ref().map(|s| s.describe()),
        "nhs_number_status_indicator_code": p.nhs_number_status.as_ref().and_then(|s| s.data_dictionary_code()),
        "nhs_number_status_indicator_local_code": p.nhs_number_status.as_ref().map(|s| s.local_code()),
        "title": p.title,
        "first_name": p.first_name,
        "surname": p.surname,
        "full_name": full,
        "date_of_birth": p.date_of_birth,
        "sex": p.sex,
        "address_line_1": p.address_line1,
        "address_line_2": p.address_line2,
        "address_city": p.address_city,
        "postcode": p.postcode,
        "phone_number": p.phone_number,
        "ethnic_category_code": p.ethnic_category_code,
        "registered_gp": p.registered_gp,
    }))
}

fn readiness_row(r: &DischargeReadiness, patient_id: Option<&str>) -> Map<String, Value> {
    obj(json!({
        "admission_id": r.admission_id,
        "patient_id": patient_id,
        "medically_optimised": r.medically_optimised,
        "medically_optimised_date": r.medically_optimised_date,
        "discharge_pathway": r.discharge_pathway,
        "waiting_for": r.waiting_for,
        "expected_discharge_date": r.expected_discharge_date,
        "updated_by": r.updated_by,
        "updated_timestamp": r.updated_at_us,
    }))
}

/// A spell's ward stays; a cancelled admission never happened and has none.
fn ward_stay_rows(s: &Spell) -> Vec<Map<String, Value>> {
    if s.status == SpellStatus::Cancelled {
        return Vec::new();
    }
    ward_stays(s)
        .into_iter()
        .enumerate()
        .map(|(n, stay)| {
            obj(json!({
                "ward_stay_id": format!("{}-{}", s.admission_id, n + 1),
                "admission_id": s.admission_id,
                "patient_id": s.patient_id,
                "ward_id": stay.0,
                "start_timestamp": stay.1,
                "end_timestamp": stay.2,
            }))
        })
        .collect()
}

fn admission_row(s: &Spell, readiness: Option<&DischargeReadiness>) -> Map<String, Value> {
    let current = s.stays.last();
    obj(json!({
        "admission_id": s.admission_id,
        "patient_id": s.patient_id,
        "admission_status": s.status.as_str(),
        "admission_timestamp": s.admitted_at_us,
        "start_timestamp": s.admitted_at_us,
        "discharge_timestamp": s.discharged_at_us,
        "patient_classification_local_code": s.patient_class,
        "method_of_admission_local_code": s.admission_method,
        "specialty_id": s.specialty,
        "site_name": current.map(|c| c.location.site.clone()),
        "ward": current.map(|c| c.location.ward.clone()),
        "discharge_pathway": readiness.and_then(|r| r.discharge_pathway).map(|p| p.to_string()),
        "discharge_ready_date": readiness.and_then(|r| r.medically_optimised_date.clone()),
        // The CDM has this as a timestamp; staff record a date.
        "estimated_discharge_date": readiness
            .and_then(|r| r.expected_discharge_date.as_deref())
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros()),
        "admission_external_id": s.admission_id,
    }))
}

/// A spell's stays merged into ward stays: consecutive stays on the same
/// ward (bed moves within a ward) are one ward stay.
fn ward_stays(s: &Spell) -> Vec<(String, i64, Option<i64>)> {
    let mut out: Vec<(String, i64, Option<i64>)> = Vec::new();
    for stay in &s.stays {
        let ward = stay.location.ward_id();
        match out.last_mut() {
            Some(last) if last.0 == ward => last.2 = stay.end_us,
            _ => out.push((ward, stay.start_us, stay.end_us)),
        }
    }
    out
}
