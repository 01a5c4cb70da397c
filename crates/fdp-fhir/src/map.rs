//! FHIR R4 resources to rows of the canonical model.
//!
//! | FHIR | canonical object types |
//! |---|---|
//! | Patient | Patient |
//! | Encounter | Encounter; also Admission for inpatient classes, Appointment (an attendance) for ambulatory, virtual and home visits, and emergency attendances |
//! | EpisodeOfCare | PatientPathway (its id the patient pathway identifier where it carries one) |
//! | Condition | PatientDiagnosis |
//! | Observation | Observation (extension); also TestResult for laboratory observations |
//! | Procedure | Procedure |
//! | ServiceRequest, Encounter, Procedure or Appointment carrying the RTT extension (see [`crate::pathway_transfer`]) | also PathwayActivity (extension) |
//! | ServiceRequest carrying a list entry's identifier | also EalEntry, and Encounter (the planned admission) |
//! | Immunization | Vaccination (extension) |
//! | Appointment | Appointment |
//! | ServiceRequest | Referral |
//! | Location | Ward when its physical type is a ward, otherwise Site |
//! | Organization | Organisation (extension) |
//! | Practitioner | CareProfessional |
//! | Task (a waiting-list change, see [`crate::change_request`]) | ChangeLogRequest; also ValidatedChangelog once decided |
//! | SupplyRequest | StockMovement (extension): a transfer between two locations when it names where the stock comes from (`deliverFrom`); a dispatch out of that location when it goes to another organisation (`deliverTo` an ODS code); else an order |
//!
//! Canonical ids are the resources' logical ids, and references become the
//! id they point at, so canonical rows join the way the resources refer.
//! Other resource types are kept in raw and counted as not mapped.

use serde_json::{Map, Value};

use crate::bundle::reference_id;
use crate::pathway_transfer;
use crate::primitives::parse_date_time;
use crate::systems;

/// Resource types that map to the canonical model.
pub const MAPPED_TYPES: &[&str] = &[
    "Patient",
    "Encounter",
    "EpisodeOfCare",
    "Condition",
    "Observation",
    "Procedure",
    "Immunization",
    "Appointment",
    "ServiceRequest",
    "Location",
    "Organization",
    "Practitioner",
    "Task",
    "SupplyRequest",
];

/// The canonical object types a resource type can map to (which of them a
/// given resource fills can depend on its content, e.g. an Encounter's class).
pub fn object_types_of(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "Patient" => &["Patient"],
        "Encounter" => &["Encounter", "Admission", "Appointment", "PathwayActivity"],
        "EpisodeOfCare" => &["PatientPathway"],
        "Condition" => &["PatientDiagnosis"],
        "Observation" => &["Observation", "TestResult"],
        "Procedure" => &["Procedure", "PathwayActivity"],
        "Immunization" => &["Vaccination"],
        "Appointment" => &["Appointment", "PathwayActivity"],
        "ServiceRequest" => &["Referral", "EalEntry", "Encounter", "PathwayActivity"],
        "Location" => &["Ward", "Site"],
        "Organization" => &["Organisation"],
        "Practitioner" => &["CareProfessional"],
        "Task" => &["ChangeLogRequest", "ValidatedChangelog", "BookingRequest"],
        "SupplyRequest" => &["StockMovement"],
        _ => &[],
    }
}

/// Rows for the canonical tables, by object type name.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Mapped {
    pub rows: Vec<(&'static str, Map<String, Value>)>,
}

/// Map a validated resource whose logical id is `id`. `None` when its type
/// is not one the canonical model holds.
pub fn map_resource(resource: &Value, id: &str) -> Option<Mapped> {
    let rt = resource.get("resourceType")?.as_str()?;
    let r = R(resource);
    let mut out = Mapped::default();
    match rt {
        "Patient" => out.rows.push(("Patient", patient(&r, id))),
        "Encounter" => encounter(&r, id, &mut out),
        "EpisodeOfCare" => out.rows.push(("PatientPathway", episode_of_care(&r, id))),
        "Condition" => out.rows.push(("PatientDiagnosis", condition(&r, id))),
        "Observation" => observation(&r, id, &mut out),
        "Procedure" => out.rows.push(("Procedure", procedure(&r, id))),
        "Immunization" => out.rows.push(("Vaccination", immunization(&r, id))),
        "Appointment" => out.rows.push(("Appointment", appointment(&r, id))),
        "ServiceRequest" => {
            out.rows.push(("Referral", service_request(&r, id)));
            list_entry(&r, &mut out);
        }
        "Location" => location(&r, id, &mut out),
        "Organization" => out.rows.push(("Organisation", organization(&r, id))),
        "Practitioner" => out.rows.push(("CareProfessional", practitioner(&r, id))),
        "Task" if crate::change_request::is_change_request(resource) => {
            change_request(&r, id, &mut out)
        }
        "Task" if crate::booking_request::is_booking_request(resource) => {
            out.rows.push(("BookingRequest", booking_request(&r, id)))
        }
        "SupplyRequest" => out.rows.push(("StockMovement", supply_request(&r, id))),
        _ => return None,
    }
    if matches!(
        rt,
        "ServiceRequest" | "Encounter" | "Procedure" | "Appointment"
    ) {
        pathway_activity(&r, rt, id, &mut out);
    }
    Some(out)
}

/// Read-only helpers over a resource's JSON.
struct R<'a>(&'a Value);

impl<'a> R<'a> {
    fn at(&self, path: &str) -> Option<&'a Value> {
        let mut v = self.0;
        for part in path.split('.') {
            v = match v {
                Value::Array(a) => a.first()?.get(part)?,
                _ => v.get(part)?,
            };
        }
        match v {
            Value::Array(a) => a.first(),
            Value::Null => None,
            other => Some(other),
        }
    }

    fn s(&self, path: &str) -> Option<String> {
        self.at(path).and_then(Value::as_str).map(str::to_string)
    }

    fn b(&self, path: &str) -> Option<bool> {
        self.at(path).and_then(Value::as_bool)
    }

    fn reference(&self, path: &str) -> Option<String> {
        self.s(&format!("{path}.reference"))
            .and_then(|r| reference_id(&r).map(str::to_string))
    }

    fn date(&self, path: &str) -> Option<String> {
        self.s(path)
            .and_then(|s| parse_date_time(&s).ok())
            .and_then(|d| d.date_string())
    }

    fn timestamp(&self, path: &str) -> Option<String> {
        self.s(path)
            .and_then(|s| parse_date_time(&s).ok())
            .and_then(|d| d.timestamp_string())
    }

    fn codings(&self, path: &str) -> Vec<&'a Value> {
        self.at(path)
            .and_then(|cc| cc.get("coding"))
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }

    /// The code from `system` in the CodeableConcept at `path`.
    fn code_in(&self, path: &str, system: &str) -> Option<String> {
        self.codings(path)
            .into_iter()
            .find(|c| c.get("system").and_then(Value::as_str) == Some(system))
            .and_then(|c| c.get("code")?.as_str().map(str::to_string))
    }

    fn first_code(&self, path: &str) -> Option<(Option<String>, String)> {
        let c = self.codings(path).into_iter().next()?;
        Some((
            c.get("system").and_then(Value::as_str).map(str::to_string),
            c.get("code")?.as_str()?.to_string(),
        ))
    }

    /// `CodeableConcept.text`, else the first coding's display.
    fn text(&self, path: &str) -> Option<String> {
        self.s(&format!("{path}.text")).or_else(|| {
            self.codings(path)
                .into_iter()
                .find_map(|c| c.get("display")?.as_str().map(str::to_string))
        })
    }

    fn identifier(&self, system: &str) -> Option<String> {
        self.0
            .get("identifier")?
            .as_array()?
            .iter()
            .find(|i| i.get("system").and_then(Value::as_str) == Some(system))
            .and_then(|i| i.get("value")?.as_str().map(str::to_string))
    }

    fn extension(&self, url: &str) -> Option<&'a Value> {
        self.0
            .get("extension")?
            .as_array()?
            .iter()
            .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
    }

    fn telecom(&self, system: &str) -> Option<String> {
        self.0
            .get("telecom")?
            .as_array()?
            .iter()
            .find(|t| t.get("system").and_then(Value::as_str) == Some(system))
            .and_then(|t| t.get("value")?.as_str().map(str::to_string))
    }
}

fn row(pairs: Vec<(&str, Option<Value>)>) -> Map<String, Value> {
    pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect()
}

fn s(v: Option<String>) -> Option<Value> {
    v.map(Value::String)
}

fn id(v: &str) -> Option<Value> {
    Some(Value::String(v.to_string()))
}

fn patient(r: &R, pid: &str) -> Map<String, Value> {
    let given = r.s("name.given");
    let family = r.s("name.family");
    let full = r.s("name.text").or_else(|| match (&given, &family) {
        (Some(g), Some(f)) => Some(format!("{g} {f}")),
        (g, f) => g.clone().or(f.clone()),
    });
    let nhs = r
        .identifier(systems::NHS_NUMBER)
        .map(|n| n.replace(' ', ""));
    // A hospital number is an identifier typed MR; UK Core trusts also use
    // their own systems for it, which is all we can tell apart from the NHS number.
    let mrn =
        r.0.get("identifier")
            .and_then(Value::as_array)
            .and_then(|ids| {
                ids.iter()
                    .find(|i| {
                        i.get("type")
                            .and_then(|t| t.get("coding"))
                            .and_then(Value::as_array)
                            .is_some_and(|c| {
                                c.iter()
                                    .any(|c| c.get("code").and_then(Value::as_str) == Some("MR"))
                            })
                    })
                    .and_then(|i| i.get("value")?.as_str().map(str::to_string))
            });
    let ethnic = r.extension(systems::ETHNIC_CATEGORY_EXT);
    let ethnic_code = ethnic
        .and_then(|e| {
            e.get("valueCodeableConcept")?
                .get("coding")?
                .get(0)?
                .get("code")?
                .as_str()
        })
        .map(str::to_string);
    let ethnic_text = ethnic.and_then(|e| {
        let cc = e.get("valueCodeableConcept")?;
        cc.get("text")
            .or_else(|| cc.get("coding")?.get(0)?.get("display"))?
            .as_str()
            .map(str::to_string)
    });
    let deceased_at = r.s("deceasedDateTime");
    let address_lines: Vec<String> = r
        .at("address")
        .and_then(|a| a.get("line"))
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    row(vec![
        ("person_id", id(pid)),
        ("nhs_number", s(nhs)),
        ("mrn", s(mrn)),
        ("title", s(r.s("name.prefix"))),
        ("first_name", s(given)),
        ("surname", s(family)),
        ("full_name", s(full)),
        ("date_of_birth", s(r.date("birthDate"))),
        ("date_of_death", s(r.date("deceasedDateTime"))),
        (
            "deceased",
            r.b("deceasedBoolean")
                .or(deceased_at.map(|_| true))
                .map(Value::Bool),
        ),
        ("sex", s(r.s("gender"))),
        ("address_line_1", s(address_lines.first().cloned())),
        ("address_line_2", s(address_lines.get(1).cloned())),
        ("address_city", s(r.s("address.city"))),
        ("postcode", s(r.s("address.postalCode"))),
        ("phone_number", s(r.telecom("phone"))),
        ("ethnic_category_code", s(ethnic_code)),
        ("ethnic_category", s(ethnic_text)),
        (
            "person_marital_status_code",
            s(r.first_code("maritalStatus").map(|c| c.1)),
        ),
        ("person_marital_status", s(r.text("maritalStatus"))),
        (
            "preferred_spoken_language",
            s(r.text("communication.language")),
        ),
        ("registered_gp", s(r.reference("generalPractitioner"))),
    ])
}

fn encounter(r: &R, eid: &str, out: &mut Mapped) {
    let class = r.s("class.code");
    let patient = r.reference("subject");
    let start = r.timestamp("period.start");
    let end = r.timestamp("period.end");
    let status = r.s("status");
    let provider = r.reference("serviceProvider");
    out.rows.push((
        "Encounter",
        row(vec![
            ("encounter_id", id(eid)),
            ("patient_id", s(patient.clone())),
            ("encounter_type", s(class.clone())),
            ("title", s(r.text("type"))),
            ("admission_status", s(status.clone())),
            ("priority", s(r.text("priority"))),
            ("site_id", s(provider.clone())),
            ("site", s(r.s("serviceProvider.display"))),
            (
                "primary_consultant_id",
                s(r.reference("participant.individual")),
            ),
            (
                "primary_consultant_name",
                s(r.s("participant.individual.display")),
            ),
            ("created_date", s(r.date("period.start"))),
            ("external_id", s(r.s("identifier.value"))),
        ]),
    ));
    match class.as_deref() {
        Some("IMP" | "ACUTE" | "NONAC" | "OBSENC" | "PRENC") => out.rows.push((
            "Admission",
            row(vec![
                ("admission_id", id(eid)),
                ("encounter_id", id(eid)),
                ("patient_id", s(patient)),
                ("admission_status", s(status)),
                ("start_timestamp", s(start.clone())),
                ("admission_timestamp", s(start)),
                ("discharge_timestamp", s(end)),
                (
                    "admission_source_code",
                    s(r.first_code("hospitalization.admitSource").map(|c| c.1)),
                ),
                ("admission_source", s(r.text("hospitalization.admitSource"))),
                (
                    "destination_of_discharge_code",
                    s(r.first_code("hospitalization.dischargeDisposition")
                        .map(|c| c.1)),
                ),
                (
                    "destination_of_discharge",
                    s(r.text("hospitalization.dischargeDisposition")),
                ),
                ("admission_type", s(r.text("type"))),
            ]),
        )),
        Some("AMB" | "VR" | "HH" | "EMER" | "FLD" | "SS") => out.rows.push((
            "Appointment",
            row(vec![
                ("attendance_id", id(eid)),
                ("patient_id", s(patient)),
                ("start_date_time", s(start)),
                ("end_date_time", s(end)),
                ("attendance_status", s(status)),
                ("type", s(r.text("type"))),
                ("code", s(r.first_code("type").map(|c| c.1))),
                ("category", s(class)),
                ("healthcare_provider", s(r.s("serviceProvider.display"))),
                ("referral_id", s(r.reference("basedOn"))),
            ]),
        )),
        _ => {}
    }
}

fn episode_of_care(r: &R, eid: &str) -> Map<String, Value> {
    let service = treatment_function(r);
    row(vec![
        (
            "pathway_id",
            s(Some(
                r.identifier(pathway_transfer::PATIENT_PATHWAY)
                    .unwrap_or_else(|| eid.to_string()),
            )),
        ),
        (
            "treatment_function_code",
            s(service.as_ref().and_then(|c| c.0.clone())),
        ),
        ("specialty_name", s(service.and_then(|c| c.1))),
        ("patient_id", s(r.reference("patient"))),
        ("pathway_status", s(r.s("status"))),
        ("pathway_type", s(r.text("type"))),
        ("referral_id", s(r.reference("referralRequest"))),
        ("referral_date", s(r.date("period.start"))),
        ("site_id", s(r.reference("managingOrganization"))),
        ("consultant_id", s(r.reference("careManager"))),
        ("consultant_name", s(r.s("careManager.display"))),
    ])
}

fn condition(r: &R, cid: &str) -> Map<String, Value> {
    row(vec![
        ("diagnosis_id", id(cid)),
        ("patient_id", s(r.reference("subject"))),
        ("encounter_id", s(r.reference("encounter"))),
        (
            "diagnosis_snomed_ct_code",
            s(r.code_in("code", systems::SNOMED_CT)),
        ),
        (
            "diagnosis_icd_10_code",
            s(r.code_in("code", systems::ICD10)
                .or_else(|| r.code_in("code", systems::ICD10_UK))),
        ),
        ("diagnosis_name", s(r.text("code"))),
        (
            "diagnosis_start_date",
            s(r.date("onsetDateTime")
                .or_else(|| r.date("onsetPeriod.start"))),
        ),
        (
            "diagnosis_end_date",
            s(r.date("abatementDateTime")
                .or_else(|| r.date("abatementPeriod.end"))),
        ),
        ("diagnosis_timestamp", s(r.timestamp("recordedDate"))),
        ("active", s(r.first_code("clinicalStatus").map(|c| c.1))),
    ])
}

fn observation(r: &R, oid: &str, out: &mut Mapped) {
    let code = r
        .code_in("code", systems::LOINC)
        .or_else(|| r.code_in("code", systems::SNOMED_CT));
    let system = if r.code_in("code", systems::LOINC).is_some() {
        Some(systems::LOINC.to_string())
    } else {
        code.as_ref().map(|_| systems::SNOMED_CT.to_string())
    };
    let number = r.at("valueQuantity.value").and_then(Value::as_f64);
    let unit = r
        .s("valueQuantity.unit")
        .or_else(|| r.s("valueQuantity.code"));
    let value_string = r.s("valueString");
    let value_code = r.first_code("valueCodeableConcept").map(|c| c.1);
    let value_text = r.text("valueCodeableConcept");
    let effective = r
        .timestamp("effectiveDateTime")
        .or_else(|| r.timestamp("effectivePeriod.start"));
    let category = r.first_code("category").map(|c| c.1);
    let patient = r.reference("subject");
    let encounter = r.reference("encounter");
    out.rows.push((
        "Observation",
        row(vec![
            ("observation_id", id(oid)),
            ("patient_id", s(patient.clone())),
            ("encounter_id", s(encounter.clone())),
            ("status", s(r.s("status"))),
            ("category", s(category.clone())),
            ("code", s(code.clone())),
            ("code_system", s(system)),
            ("name", s(r.text("code"))),
            ("effective_timestamp", s(effective.clone())),
            (
                "value_double",
                number
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number),
            ),
            (
                "value_string",
                s(value_string.clone().or(value_text.clone())),
            ),
            ("value_code", s(value_code.clone())),
            ("unit", s(unit.clone())),
            (
                "interpretation",
                s(r.first_code("interpretation").map(|c| c.1)),
            ),
        ]),
    ));
    if category.as_deref() == Some("laboratory") {
        let (value, kind) = match (number, &value_string, &value_text) {
            (Some(n), _, _) => (Some(n.to_string()), "quantity"),
            (None, Some(v), _) => (Some(v.clone()), "string"),
            (None, None, Some(v)) => (Some(v.clone()), "coded"),
            _ => (None, "none"),
        };
        out.rows.push((
            "TestResult",
            row(vec![
                ("test_result_id", id(oid)),
                ("patient_id", s(patient)),
                ("attendance_id", s(encounter)),
                ("test_id", s(code)),
                ("test_name", s(r.text("code"))),
                ("test_date", s(effective)),
                ("test_ordered_timestamp", s(r.timestamp("issued"))),
                ("value", s(value)),
                (
                    "value_double",
                    number
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number),
                ),
                ("unit", s(unit)),
                ("test_value_type", s(Some(kind.to_string()))),
            ]),
        ));
    }
}

fn procedure(r: &R, pid: &str) -> Map<String, Value> {
    let when = r
        .s("performedDateTime")
        .or_else(|| r.s("performedPeriod.start"));
    let parsed = when.and_then(|w| parse_date_time(&w).ok());
    row(vec![
        ("procedure_id", id(pid)),
        ("patient_id", s(r.reference("subject"))),
        ("encounter_id", s(r.reference("encounter"))),
        (
            "procedure_snomed_ct_code",
            s(r.code_in("code", systems::SNOMED_CT)),
        ),
        ("procedure_opcs_code", s(r.code_in("code", systems::OPCS4))),
        ("procedure", s(r.text("code"))),
        (
            "procedure_timestamp",
            s(parsed.and_then(|p| p.timestamp_string())),
        ),
        ("procedure_date", s(parsed.and_then(|p| p.date_string()))),
        ("primary_consultant_id", s(r.reference("performer.actor"))),
    ])
}

fn immunization(r: &R, iid: &str) -> Map<String, Value> {
    let (system, code) = r
        .codings("vaccineCode")
        .into_iter()
        .find_map(|c| {
            let sys = c.get("system")?.as_str()?;
            let code = c.get("code")?.as_str()?;
            [systems::SNOMED_CT, systems::DMD, systems::CVX]
                .contains(&sys)
                .then(|| (sys.to_string(), code.to_string()))
        })
        .map(|(a, b)| (Some(a), Some(b)))
        .unwrap_or((None, None));
    let procedure_ext = r.extension(
        "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-VaccinationProcedure",
    );
    let dose = r
        .at("protocolApplied.doseNumberPositiveInt")
        .and_then(Value::as_i64)
        .or_else(|| {
            r.s("protocolApplied.doseNumberString")
                .and_then(|d| d.parse().ok())
        });
    row(vec![
        ("vaccination_id", id(iid)),
        ("patient_id", s(r.reference("patient"))),
        ("encounter_id", s(r.reference("encounter"))),
        ("status", s(r.s("status"))),
        ("vaccine_code", s(code)),
        ("vaccine_code_system", s(system)),
        ("vaccine_name", s(r.text("vaccineCode"))),
        ("occurrence_timestamp", s(r.timestamp("occurrenceDateTime"))),
        ("dose_number", dose.map(Value::from)),
        (
            "vaccination_procedure_code",
            s(procedure_ext
                .and_then(|e| {
                    e.get("valueCodeableConcept")?
                        .get("coding")?
                        .get(0)?
                        .get("code")?
                        .as_str()
                })
                .map(str::to_string)),
        ),
        ("batch_number", s(r.s("lotNumber"))),
        (
            "site_ods_code",
            s(r.s("location.identifier.value")
                .or_else(|| r.reference("location"))),
        ),
        ("performer_id", s(r.reference("performer.actor"))),
        ("primary_source", r.b("primarySource").map(Value::Bool)),
        ("reason_not_given", s(r.text("statusReason"))),
    ])
}

fn appointment(r: &R, aid: &str) -> Map<String, Value> {
    // The patient is the participant whose actor is a Patient.
    let patient =
        r.0.get("participant")
            .and_then(Value::as_array)
            .and_then(|ps| {
                ps.iter().find_map(|p| {
                    let reference = p.get("actor")?.get("reference")?.as_str()?;
                    (reference.starts_with("Patient/") || reference.contains("/Patient/"))
                        .then(|| reference_id(reference).map(str::to_string))
                        .flatten()
                })
            });
    row(vec![
        ("attendance_id", id(aid)),
        ("patient_id", s(patient)),
        ("booking_status", s(r.s("status"))),
        ("start_date_time", s(r.timestamp("start"))),
        ("end_date_time", s(r.timestamp("end"))),
        (
            "booked_duration",
            r.at("minutesDuration")
                .and_then(Value::as_i64)
                .map(Value::from),
        ),
        ("date_time_booked", s(r.timestamp("created"))),
        ("cancellation_reason", s(r.text("cancelationReason"))),
        ("type", s(r.text("appointmentType"))),
        ("code", s(r.first_code("serviceType").map(|c| c.1))),
        ("specialty_name", s(r.text("specialty"))),
        (
            "priority",
            r.at("priority").map(|p| Value::String(p.to_string())),
        ),
        ("referral_id", s(r.reference("basedOn"))),
        ("appointment_free_text", s(r.s("comment"))),
    ])
}

/// A request for supplies: with `deliverFrom` a location, stock moved
/// from there to `deliverTo` (one row for both ends, the quantity counted
/// into `deliverTo` and out of `from_location_id`); without, an order for
/// `deliverTo` that changes nothing on hand until it is received.
fn supply_request(r: &R, rid: &str) -> Map<String, Value> {
    let location = |path: &str| {
        r.s(&format!("{path}.identifier.value"))
            .or_else(|| r.reference(path))
    };
    let to = location("deliverTo");
    let from = location("deliverFrom");
    // Stock sent from one of this organisation's locations to another
    // organisation leaves the location, and goes nowhere it holds.
    let to_organisation =
        r.s("deliverTo.identifier.system").as_deref() == Some(systems::ODS_ORGANISATION);
    let (kind, to, from) = match (from, to_organisation) {
        (Some(from), true) => ("dispatch", Some(from), None),
        (Some(from), false) => ("transfer", to, Some(from)),
        (None, _) => ("order", to, None),
    };
    let site = to
        .as_deref()
        .map(|l| l.split(':').next().unwrap_or(l).to_string());
    let item = r
        .code_in("itemCodeableConcept", systems::NHS_SUPPLY_CHAIN_NPC)
        .map(|c| c.trim().to_uppercase());
    row(vec![
        ("stock_movement_id", id(rid)),
        ("movement_type", s(Some(kind.to_string()))),
        (
            "movement_date",
            s(r.date("occurrenceDateTime")
                .or_else(|| r.date("authoredOn"))),
        ),
        ("item_code", s(item.clone())),
        ("code_system", item.map(|_| Value::String("NPC".into()))),
        ("item_name", s(r.s("itemCodeableConcept.text"))),
        ("category", s(Some("supplies".to_string()))),
        (
            "quantity",
            r.at("quantity.value")
                .and_then(Value::as_f64)
                .map(|q| Value::from(q.round() as i64)),
        ),
        ("site_id", s(site)),
        ("location_id", s(to)),
        ("from_location_id", s(from)),
        (
            "reference",
            s(r.identifier(systems::SUPPLY_SUGGESTION)
                .or_else(|| Some(format!("SupplyRequest/{rid}")))),
        ),
        ("reason", s(r.text("reasonCode"))),
    ])
}

fn service_request(r: &R, sid: &str) -> Map<String, Value> {
    row(vec![
        ("referral_id", id(sid)),
        ("patient_id", s(r.reference("subject"))),
        ("status", s(r.s("status"))),
        ("priority", s(r.s("priority"))),
        ("date_referral_created", s(r.date("authoredOn"))),
        ("referrer_id", s(r.reference("requester"))),
        ("service_type_requested", s(r.text("code"))),
        (
            "service_type_requested_code",
            s(r.first_code("code").map(|c| c.1)),
        ),
        ("ubrn", s(r.identifier(systems::UBRN))),
        ("source_unique_id", s(r.s("identifier.value"))),
        ("referral_notes", s(notes(r))),
        ("service_id", s(r.reference("performer"))),
        (
            "referring_organisation_ods_code",
            s(r.s("requester.identifier.value")),
        ),
    ])
}

/// The treatment function (code, name) among an EpisodeOfCare's types.
fn treatment_function(r: &R) -> Option<(Option<String>, Option<String>)> {
    r.0.get("type")?.as_array()?.iter().find_map(|t| {
        let c = t.get("coding")?.as_array()?.iter().find(|c| {
            c.get("system").and_then(Value::as_str) == Some(pathway_transfer::TREATMENT_FUNCTION)
        })?;
        let text = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
        Some((text("code"), text("display")))
    })
}

/// A resource carrying the RTT extension is also one of its pathway's
/// activities, on the day the extension names or else its own.
fn pathway_activity(r: &R, rt: &str, aid: &str, out: &mut Mapped) {
    let Some((code, pathway, date)) = pathway_transfer::rtt_activity(r.0) else {
        return;
    };
    let (own_date, patient, kind) = match rt {
        "ServiceRequest" => (r.date("authoredOn"), r.reference("subject"), "referral"),
        "Encounter" => (
            r.date("period.start"),
            r.reference("subject"),
            match r.s("class.code").as_deref() {
                Some("AMB" | "VR") => "outpatient attendance",
                Some("IMP" | "ACUTE" | "NONAC") => "admission",
                _ => "other",
            },
        ),
        "Procedure" => (
            r.date("performedDateTime")
                .or_else(|| r.date("performedPeriod.start")),
            r.reference("subject"),
            "procedure",
        ),
        _ => (r.date("start"), None, "outpatient attendance"),
    };
    let kind = if code == pathway_transfer::TRANSFERRED {
        "transfer"
    } else {
        kind
    };
    out.rows.push((
        "PathwayActivity",
        row(vec![
            ("activity_id", id(aid)),
            ("pathway_id", s(Some(pathway))),
            ("patient_id", s(patient)),
            ("activity_date", s(date.or(own_date))),
            ("activity_type", s(Some(kind.to_string()))),
            ("rtt_status_code", s(Some(code))),
            ("source_system", s(Some("FHIR".into()))),
            ("source_reference", s(Some(format!("{rt}/{aid}")))),
        ]),
    ));
}

/// A ServiceRequest naming a list entry (and not a draft) is that entry,
/// and the planned admission it is listed for.
fn list_entry(r: &R, out: &mut Mapped) {
    let Some(eal) = r.identifier(crate::change_request::EAL_ENTRY) else {
        return;
    };
    if matches!(r.s("status").as_deref(), Some("draft" | "entered-in-error")) {
        return;
    }
    let pathway = pathway_transfer::pathway_of(r.0);
    let patient = r.reference("subject");
    let ext = |url: &str| r.extension(url);
    out.rows.push((
        "EalEntry",
        row(vec![
            ("eal_id", s(Some(eal.clone()))),
            ("pathway_id", s(pathway.clone())),
            ("episode_id", s(pathway.clone())),
            ("patient_id", s(patient.clone())),
            (
                "priority_type",
                s(ext(pathway_transfer::CLINICAL_PRIORITY_EXT)
                    .and_then(|e| e.get("valueCode")?.as_str().map(str::to_string))),
            ),
            ("decided_to_admit_date", s(r.date("occurrencePeriod.start"))),
            (
                "latest_clinically_appropriate_date",
                s(ext(pathway_transfer::LATEST_CLINICALLY_APPROPRIATE_EXT)
                    .and_then(|e| e.get("valueDate")?.as_str().map(str::to_string))),
            ),
        ]),
    ));
    out.rows.push((
        "Encounter",
        row(vec![
            ("encounter_id", s(Some(eal.clone()))),
            ("eal_id", s(Some(eal))),
            ("pathway_id", s(pathway)),
            ("patient_id", s(patient)),
            ("encounter_type", s(Some("elective".into()))),
            (
                "intended_primary_procedure_code",
                s(r.code_in("code", systems::OPCS4)),
            ),
            ("intended_primary_procedure_description", s(r.text("code"))),
            (
                "estimated_total_theatre_time",
                ext(pathway_transfer::EXPECTED_THEATRE_MINUTES_EXT)
                    .and_then(|e| e.get("valueInteger")?.as_i64())
                    .map(Value::from),
            ),
        ]),
    ));
}

/// A waiting-list change: the request, and once decided (`completed` is
/// signed off, `rejected` is not) the validated changelog entry.
fn change_request(r: &R, cid: &str, out: &mut Mapped) {
    use crate::change_request::{
        national_display, INPUT_EVIDENCE, INPUT_NEW_VALUE, INPUT_OLD_VALUE, INPUT_PROPERTY,
        INPUT_RULE, LOCAL_REMOVAL_REASON, REMOVAL_REASON,
    };
    let input = |kind: &str| -> Option<String> {
        r.0.get("input")?
            .as_array()?
            .iter()
            .find(|i| i.pointer("/type/text").and_then(Value::as_str) == Some(kind))
            .and_then(|i| i.get("valueString")?.as_str().map(str::to_string))
    };
    let action = r.first_code("code").map(|c| c.1);
    let property = input(INPUT_PROPERTY);
    let new_value = input(INPUT_NEW_VALUE);
    let national = r.code_in("reasonCode", REMOVAL_REASON);
    let description = match (&property, input(INPUT_OLD_VALUE), &new_value) {
        (Some(p), Some(old), Some(new)) => Some(match &national {
            Some(n) => format!("{p}: {old} → {new} (national {n}, {})", national_display(n)),
            None => format!("{p}: {old} → {new}"),
        }),
        _ => None,
    };
    let rules = input(INPUT_RULE).map(|rule| Value::Array(vec![Value::String(rule)]));
    let status = r.s("status");
    let decided = matches!(status.as_deref(), Some("completed" | "rejected"));
    let signed_off = status.as_deref() == Some("completed");
    let closed_at = decided.then(|| r.timestamp("lastModified")).flatten();
    let closed_by = decided.then(|| r.s("owner.display")).flatten();
    let comments = notes(r);
    // What the request and its decision both say, in the same columns.
    let shared = vec![
        ("change_log_id", id(cid)),
        ("action_type", s(action.clone())),
        ("description", s(description)),
        ("eal_id", s(r.s("focus.identifier.value"))),
        ("property_to_modify", s(property)),
        ("new_value", s(new_value)),
        ("primary_evidence_source", s(input(INPUT_EVIDENCE))),
        ("originating_waiting_list_alert_rule_types", rules),
        ("requested_by", s(r.s("requester.display"))),
        ("timestamp", s(r.timestamp("authoredOn"))),
        ("task_type", s(Some("Waiting list validation".into()))),
        ("closed_at", s(closed_at.clone())),
        ("closed_by", s(closed_by.clone())),
    ];
    let mut request = shared.clone();
    request.extend([
        ("free_text_comments", s(comments.clone())),
        ("resolved", Some(Value::Bool(decided))),
    ]);
    out.rows.push(("ChangeLogRequest", row(request)));
    if !decided {
        return;
    }
    let removed = signed_off && action.as_deref() == Some("remove");
    let mut validated = shared;
    validated.extend([
        ("patient_id", s(r.reference("for"))),
        ("comments", s(comments)),
        ("resolved", Some(Value::Bool(true))),
        ("status", s(r.s("businessStatus.text"))),
        (
            "validated",
            s(Some(if signed_off { "yes" } else { "no" }.into())),
        ),
        ("removed", Some(Value::Bool(removed))),
        (
            "removal_date",
            s(removed.then(|| r.date("lastModified")).flatten()),
        ),
        (
            "required_action",
            s(r.code_in("reasonCode", LOCAL_REMOVAL_REASON)),
        ),
        ("care_professional_name", s(closed_by.clone())),
        ("status_updated_by_user", s(closed_by)),
        ("status_updated_timestamp", s(closed_at)),
    ]);
    out.rows.push(("ValidatedChangelog", row(validated)));
}

/// A theatre booking request (see [`crate::booking_request`]).
fn booking_request(r: &R, bid: &str) -> Map<String, Value> {
    use crate::booking_request::{
        INPUT_AM_PM, INPUT_CONSULTANT, INPUT_DATE, INPUT_MINUTES, INPUT_SESSION,
        INPUT_SESSION_MINUTES, INPUT_THEATRE,
    };
    let input = |kind: &str| -> Option<&Value> {
        r.0.get("input")?
            .as_array()?
            .iter()
            .find(|i| i.pointer("/type/text").and_then(Value::as_str) == Some(kind))
    };
    let text = |kind: &str| {
        s(input(kind).and_then(|i| i.get("valueString")?.as_str().map(str::to_string)))
    };
    let number = |kind: &str| input(kind).and_then(|i| i.get("valueInteger").cloned());
    let by = r.s("requester.display");
    row(vec![
        ("booking_request_id", id(bid)),
        ("encounter_id", s(r.s("focus.identifier.value"))),
        ("person_id", s(r.reference("for"))),
        ("theatre_session_id", text(INPUT_SESSION)),
        ("date", text(INPUT_DATE)),
        ("am_pm", text(INPUT_AM_PM)),
        ("theatre_name", text(INPUT_THEATRE)),
        ("consultant_id", text(INPUT_CONSULTANT)),
        (
            "theatre_session_primary_consultant_id",
            text(INPUT_CONSULTANT),
        ),
        (
            "encounter_estimated_total_theatre_time",
            number(INPUT_MINUTES),
        ),
        (
            "theatre_session_planned_duration_minutes",
            number(INPUT_SESSION_MINUTES),
        ),
        ("status", s(r.s("status"))),
        ("action", s(r.s("code.text"))),
        ("title", s(r.s("code.text"))),
        ("reason", s(r.s("reasonCode.text"))),
        ("task_type", s(Some("Theatre booking".into()))),
        ("task_priority", s(r.s("priority"))),
        ("assigned_team_name", s(r.s("owner.display"))),
        ("user_id", s(by.clone())),
        ("updated_by", s(by)),
        ("timestamp", s(r.timestamp("authoredOn"))),
        (
            "updated_at",
            s(r.timestamp("lastModified")
                .or_else(|| r.timestamp("authoredOn"))),
        ),
    ])
}

/// Every note's text, a line each: a referral's notes are often a list
/// (one care need a note).
fn notes(r: &R) -> Option<String> {
    let lines: Vec<&str> =
        r.0.get("note")?
            .as_array()?
            .iter()
            .filter_map(|n| n.get("text")?.as_str())
            .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn location(r: &R, lid: &str, out: &mut Mapped) {
    let physical = r.first_code("physicalType").map(|c| c.1);
    let ods = r
        .identifier(systems::ODS_SITE)
        .or_else(|| r.identifier(systems::ODS_ORGANISATION));
    if physical.as_deref() == Some("wa") {
        out.rows.push((
            "Ward",
            row(vec![
                ("ward_id", id(lid)),
                (
                    "ward_code",
                    s(r.s("identifier.value").or_else(|| r.s("name"))),
                ),
                ("site", s(r.reference("partOf"))),
                ("site_ods_code", s(ods)),
            ]),
        ));
    } else {
        out.rows.push((
            "Site",
            row(vec![
                ("id", id(lid)),
                ("name", s(r.s("name"))),
                ("site_ods_code", s(ods)),
            ]),
        ));
    }
}

fn organization(r: &R, oid: &str) -> Map<String, Value> {
    let lines: Vec<String> = r
        .at("address")
        .and_then(|a| a.get("line"))
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    row(vec![
        ("organisation_id", id(oid)),
        ("ods_code", s(r.identifier(systems::ODS_ORGANISATION))),
        ("name", s(r.s("name"))),
        ("organisation_type", s(r.text("type"))),
        ("active", r.b("active").map(Value::Bool)),
        (
            "parent_ods_code",
            s(r.s("partOf.identifier.value")
                .or_else(|| r.reference("partOf"))),
        ),
        ("address_line_1", s(lines.first().cloned())),
        ("address_line_2", s(lines.get(1).cloned())),
        ("address_city", s(r.s("address.city"))),
        (
            "address_county",
            s(r.s("address.district").or_else(|| r.s("address.state"))),
        ),
        ("postcode", s(r.s("address.postalCode"))),
        ("phone_number", s(r.telecom("phone"))),
        ("website", s(r.telecom("url"))),
    ])
}

fn practitioner(r: &R, pid: &str) -> Map<String, Value> {
    let name = r.s("name.text").or_else(|| {
        let parts: Vec<String> = [r.s("name.prefix"), r.s("name.given"), r.s("name.family")]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    });
    let (body, number) = match (r.identifier(systems::GMC), r.identifier(systems::NMC)) {
        (Some(g), _) => (Some("GMC"), Some(g)),
        (None, Some(n)) => (Some("NMC"), Some(n)),
        _ => (None, None),
    };
    row(vec![
        ("care_professional_id", id(pid)),
        ("care_professional_local_id", s(r.s("identifier.value"))),
        ("name", s(name)),
        ("is_active", r.b("active").map(Value::Bool)),
        (
            "professional_registration_body",
            s(body.map(str::to_string)),
        ),
        ("professional_registration_entry_id", s(number)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uk_core_patient() {
        let p = json!({"resourceType": "Patient", "id": "p1",
            "identifier": [{"system": systems::NHS_NUMBER, "value": "943 476 5919"},
                           {"type": {"coding": [{"code": "MR"}]}, "system": "https://trust.nhs.uk/mrn", "value": "RXX123"}],
            "name": [{"given": ["Ann", "B"], "family": "Smith", "prefix": ["Mrs"]}],
            "birthDate": "1970-01-31", "gender": "female",
            "address": [{"line": ["1 High St"], "city": "Leeds", "postalCode": "LS1 4AP"}],
            "extension": [{"url": systems::ETHNIC_CATEGORY_EXT,
               "valueCodeableConcept": {"coding": [{"code": "A", "display": "British"}]}}],
            "generalPractitioner": [{"reference": "Organization/B82001"}]});
        let m = map_resource(&p, "p1").unwrap();
        let (t, r) = &m.rows[0];
        assert_eq!(*t, "Patient");
        assert_eq!(r["nhs_number"], "9434765919");
        assert_eq!(r["mrn"], "RXX123");
        assert_eq!(r["full_name"], "Ann Smith");
        assert_eq!(r["ethnic_category_code"], "A");
        assert_eq!(r["registered_gp"], "B82001");
        assert_eq!(r["postcode"], "LS1 4AP");
    }

    #[test]
    fn a_supply_request_is_a_transfer_when_it_names_where_from_else_an_order() {
        let loc = |l: &str| json!({"identifier": {"system": systems::SUPPLY_LOCATION, "value": l}});
        let mut r = json!({"resourceType": "SupplyRequest", "status": "completed",
            "itemCodeableConcept": {"coding": [{"system": systems::NHS_SUPPLY_CHAIN_NPC, "code": " ftr202 "}], "text": "Gloves"},
            "quantity": {"value": 40}, "occurrenceDateTime": "2026-03-01",
            "deliverTo": loc("RXX01:W01"), "deliverFrom": loc("RXX01:W02"),
            "identifier": [{"system": systems::SUPPLY_SUGGESTION, "value": "T-abc"}],
            "reasonCode": [{"text": "held above its maximum"}]});
        let m = map_resource(&r, "s1").unwrap();
        let (t, row) = &m.rows[0];
        assert_eq!(*t, "StockMovement");
        assert_eq!(row["movement_type"], "transfer");
        assert_eq!(row["item_code"], "FTR202");
        assert_eq!(row["quantity"], 40);
        assert_eq!(row["location_id"], "RXX01:W01");
        assert_eq!(row["from_location_id"], "RXX01:W02");
        assert_eq!(row["site_id"], "RXX01");
        assert_eq!(row["movement_date"], "2026-03-01");
        assert_eq!(row["reference"], "T-abc");
        // To another organisation: out of the location it comes from.
        let mut sent = r.clone();
        sent["deliverTo"] =
            json!({"identifier": {"system": systems::ODS_ORGANISATION, "value": "RYY"}});
        let m = map_resource(&sent, "s3").unwrap();
        let row = &m.rows[0].1;
        assert_eq!(row["movement_type"], "dispatch");
        assert_eq!(row["location_id"], "RXX01:W02");
        assert_eq!(row["site_id"], "RXX01");
        assert!(row.get("from_location_id").is_none());
        r.as_object_mut().unwrap().remove("deliverFrom");
        let m = map_resource(&r, "s2").unwrap();
        assert_eq!(m.rows[0].1["movement_type"], "order");
        assert!(m.rows[0].1.get("from_location_id").is_none());
    }

    #[test]
    fn inpatient_encounter_is_also_an_admission() {
        let e = json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"},
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2024-01-01T10:00:00Z", "end": "2024-01-03T12:00:00+00:00"}});
        let m = map_resource(&e, "e1").unwrap();
        let types: Vec<_> = m.rows.iter().map(|r| r.0).collect();
        assert_eq!(types, vec!["Encounter", "Admission"]);
        assert_eq!(
            m.rows[1].1["discharge_timestamp"],
            "2024-01-03T12:00:00.000000Z"
        );
    }

    #[test]
    fn lab_observation_is_also_a_test_result() {
        let o = json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": systems::LOINC, "code": "2339-0", "display": "Glucose"}]},
            "subject": {"reference": "urn:uuid:p1"}, "valueQuantity": {"value": 5.4, "unit": "mmol/L"}});
        let m = map_resource(&o, "o1").unwrap();
        assert_eq!(m.rows.len(), 2);
        assert_eq!(m.rows[1].1["value"], "5.4");
        assert_eq!(m.rows[0].1["patient_id"], "p1");
    }

    #[test]
    fn unmapped_types_say_so() {
        assert!(map_resource(&json!({"resourceType": "Claim"}), "c").is_none());
    }
}
