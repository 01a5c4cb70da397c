//! What a resource must satisfy before it is accepted.
//!
//! Structure and primitive formats are checked for every resource type, as
//! any FHIR server would. Beyond that, the elements OpenFDP maps are checked
//! against the rules of the codes they carry: an NHS number must pass its
//! modulus 11 check, a SNOMED CT id its Verhoeff check, and a clinical code
//! must come from a code system the canonical model can hold.

use serde_json::{Map, Value};

use crate::outcome::{Issue, IssueCode};
use crate::primitives::{is_valid_id, parse_date_time, parse_instant};
use crate::systems;

/// Every resource type of FHIR R4 (4.0.1).
pub const R4_RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

pub fn is_r4_resource_type(name: &str) -> bool {
    R4_RESOURCE_TYPES.contains(&name)
}

/// Element names whose values are FHIR `date` or `dateTime`.
fn is_date_element(key: &str) -> bool {
    key.ends_with("DateTime")
        || key.ends_with("Date")
        || matches!(
            key,
            "date"
                | "start"
                | "end"
                | "issued"
                | "authoredOn"
                | "created"
                | "recorded"
                | "lastUpdated"
                | "expirationDate"
                | "occurrenceDateTime"
        )
}

/// Check a resource. Errors mean it must be refused; warnings are kept with it.
pub fn validate(resource: &Value) -> Vec<Issue> {
    let mut issues = Vec::new();
    let Some(obj) = resource.as_object() else {
        issues.push(Issue::error(
            IssueCode::Structure,
            "",
            "a resource must be a JSON object",
        ));
        return issues;
    };
    let rt = match obj.get("resourceType").and_then(Value::as_str) {
        Some(rt) => rt,
        None => {
            issues.push(Issue::error(
                IssueCode::Required,
                "resourceType",
                "the resource has no resourceType",
            ));
            return issues;
        }
    };
    if !is_r4_resource_type(rt) {
        issues.push(Issue::error(
            IssueCode::NotSupported,
            format!("{rt}.resourceType"),
            format!("{rt:?} is not a FHIR R4 resource type"),
        ));
        return issues;
    }
    if let Some(id) = obj.get("id") {
        match id.as_str() {
            Some(s) if is_valid_id(s) => {}
            _ => issues.push(Issue::error(
                IssueCode::Value,
                format!("{rt}.id"),
                format!("{id} is not a valid id (1-64 letters, digits, '-' or '.')"),
            )),
        }
    }
    if let Some(lu) = obj.get("meta").and_then(|m| m.get("lastUpdated")) {
        if let Err(e) = lu
            .as_str()
            .ok_or("not a string".to_string())
            .and_then(parse_instant)
        {
            issues.push(Issue::error(
                IssueCode::Value,
                format!("{rt}.meta.lastUpdated"),
                e,
            ));
        }
    }
    walk_dates(obj, rt, &mut Vec::new(), &mut issues);
    match rt {
        "Patient" => check_patient(obj, &mut issues),
        "Condition" => check_coded(
            obj,
            rt,
            "code",
            &[systems::SNOMED_CT, systems::ICD10, systems::ICD10_UK],
            &mut issues,
        ),
        "Procedure" => check_coded(
            obj,
            rt,
            "code",
            &[systems::SNOMED_CT, systems::OPCS4],
            &mut issues,
        ),
        "Immunization" => check_coded(
            obj,
            rt,
            "vaccineCode",
            &[systems::SNOMED_CT, systems::CVX, systems::DMD],
            &mut issues,
        ),
        "Observation" => check_coded(
            obj,
            rt,
            "code",
            &[systems::LOINC, systems::SNOMED_CT],
            &mut issues,
        ),
        _ => {}
    }
    check_reference_shapes(resource, rt, &mut issues);
    issues
}

/// A step of the path to an element, kept as a stack while walking so that
/// a path string is only built for an element that has a problem.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn path_string(root: &str, steps: &[Step]) -> String {
    let mut s = root.to_string();
    for st in steps {
        match st {
            Step::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Step::Index(i) => {
                s.push('[');
                s.push_str(&i.to_string());
                s.push(']');
            }
        }
    }
    s
}

fn walk_dates<'a>(
    obj: &'a Map<String, Value>,
    root: &str,
    steps: &mut Vec<Step<'a>>,
    issues: &mut Vec<Issue>,
) {
    for (k, v) in obj {
        // Narrative is XHTML, and contained resources are checked as written.
        if k == "text" || k == "div" {
            continue;
        }
        steps.push(Step::Key(k));
        match v {
            Value::String(s) if is_date_element(k) => {
                let checked = if k == "lastUpdated" || k == "issued" {
                    parse_instant(s).map(|_| ())
                } else {
                    parse_date_time(s).map(|_| ())
                };
                if let Err(e) = checked {
                    issues.push(Issue::error(IssueCode::Value, path_string(root, steps), e));
                }
            }
            Value::Object(o) => walk_dates(o, root, steps, issues),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Object(o) = item {
                        steps.push(Step::Index(i));
                        walk_dates(o, root, steps, issues);
                        steps.pop();
                    }
                }
            }
            _ => {}
        }
        steps.pop();
    }
}

fn check_patient(obj: &Map<String, Value>, issues: &mut Vec<Issue>) {
    for (i, ident) in array(obj, "identifier").iter().enumerate() {
        if ident.get("system").and_then(Value::as_str) != Some(systems::NHS_NUMBER) {
            continue;
        }
        let at = format!("Patient.identifier[{i}].value");
        match ident.get("value").and_then(Value::as_str) {
            None => issues.push(Issue::error(
                IssueCode::Required,
                at,
                "an NHS number identifier has no value",
            )),
            Some(v) => {
                if let Err(e) = fdp_model::identifiers::parse_nhs_number(v) {
                    issues.push(Issue::error(
                        IssueCode::BusinessRule,
                        at,
                        format!("{v:?} is not a valid NHS number: {e}"),
                    ));
                }
            }
        }
    }
    if let Some(g) = obj.get("gender") {
        if !matches!(g.as_str(), Some("male" | "female" | "other" | "unknown")) {
            issues.push(Issue::error(
                IssueCode::CodeInvalid,
                "Patient.gender",
                format!("{g} is not one of male, female, other, unknown"),
            ));
        }
    }
}

/// A mapped clinical code must have at least one coding from a code system
/// the canonical model holds, and codes from those systems must be well formed.
fn check_coded(
    obj: &Map<String, Value>,
    rt: &str,
    element: &str,
    known: &[&str],
    issues: &mut Vec<Issue>,
) {
    let Some(cc) = obj.get(element) else {
        issues.push(Issue::error(
            IssueCode::Required,
            format!("{rt}.{element}"),
            format!("{rt}.{element} is required"),
        ));
        return;
    };
    let codings = cc
        .get("coding")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if codings.is_empty() {
        issues.push(Issue::error(
            IssueCode::Required,
            format!("{rt}.{element}.coding"),
            format!(
                "{rt}.{element} has no coding; a code from {} is needed",
                known.join(", ")
            ),
        ));
        return;
    }
    let mut any_known = false;
    for (i, c) in codings.iter().enumerate() {
        let at = format!("{rt}.{element}.coding[{i}]");
        let system = c.get("system").and_then(Value::as_str).unwrap_or("");
        let code = c.get("code").and_then(Value::as_str).unwrap_or("");
        if !known.contains(&system) {
            continue;
        }
        any_known = true;
        let verdict = match system {
            systems::SNOMED_CT => fdp_model::identifiers::parse_sctid(code)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            systems::ICD10 | systems::ICD10_UK => fdp_model::identifiers::parse_icd10(code)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            systems::OPCS4 => fdp_model::identifiers::parse_opcs4(code)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            _ if code.is_empty() => Err("the coding has no code".to_string()),
            _ => Ok(()),
        };
        if let Err(e) = verdict {
            issues.push(Issue::error(
                IssueCode::CodeInvalid,
                format!("{at}.code"),
                e,
            ));
        }
    }
    if !any_known {
        let found: Vec<&str> = codings
            .iter()
            .map(|c| {
                c.get("system")
                    .and_then(Value::as_str)
                    .unwrap_or("(no system)")
            })
            .collect();
        issues.push(Issue::error(
            IssueCode::CodeInvalid,
            format!("{rt}.{element}.coding"),
            format!(
                "unknown code system {}: {rt}.{element} needs a coding from {}",
                found.join(", "),
                known.join(", ")
            ),
        ));
    }
}

/// References must be relative (`Type/id`), absolute URLs, `urn:uuid:`,
/// `urn:oid:` or contained (`#id`).
fn check_reference_shapes(v: &Value, rt: &str, issues: &mut Vec<Issue>) {
    fn walk<'a>(v: &'a Value, root: &str, steps: &mut Vec<Step<'a>>, issues: &mut Vec<Issue>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("reference") {
                    if !reference_shape_ok(r) {
                        issues.push(Issue::error(
                            IssueCode::Value,
                            format!("{}.reference", path_string(root, steps)),
                            format!("{r:?} is not a reference (Type/id, a URL, urn:uuid: or #id)"),
                        ));
                    }
                }
                for (k, child) in o {
                    if k != "contained" && k != "text" && (child.is_object() || child.is_array()) {
                        steps.push(Step::Key(k));
                        walk(child, root, steps, issues);
                        steps.pop();
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if item.is_object() || item.is_array() {
                        steps.push(Step::Index(i));
                        walk(item, root, steps, issues);
                        steps.pop();
                    }
                }
            }
            _ => {}
        }
    }
    walk(v, rt, &mut Vec::new(), issues);
}

fn reference_shape_ok(r: &str) -> bool {
    if r.starts_with('#') || r.starts_with("urn:uuid:") || r.starts_with("urn:oid:") {
        return true;
    }
    if r.starts_with("http://") || r.starts_with("https://") {
        return true;
    }
    // Conditional references are allowed in Bundles: Type?search
    let base = r.split('?').next().unwrap_or(r);
    let mut parts = base.split('/');
    match (parts.next(), parts.next()) {
        (Some(t), Some(id)) => is_r4_resource_type(t) && (is_valid_id(id) || r.contains('?')),
        (Some(t), None) => r.contains('?') && is_r4_resource_type(t),
        _ => false,
    }
}

fn array<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    obj.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(v: Value) -> Vec<String> {
        validate(&v)
            .into_iter()
            .filter(|i| i.is_error())
            .map(|i| i.one_line())
            .collect()
    }

    #[test]
    fn a_good_uk_core_patient_passes() {
        let p = json!({"resourceType": "Patient", "id": "p1",
            "identifier": [{"system": systems::NHS_NUMBER, "value": "9434765919"}],
            "birthDate": "1970-01-31", "gender": "female"});
        assert!(errors(p).is_empty());
    }

    #[test]
    fn nhs_number_failing_modulus_11_is_named() {
        let p = json!({"resourceType": "Patient",
            "identifier": [{"system": "x", "value": "1"}, {"system": systems::NHS_NUMBER, "value": "9434765918"}]});
        let e = errors(p);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "Patient.identifier[1].value: \"9434765918\" is not a valid NHS number"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn wrong_date_format_is_located() {
        let e = errors(json!({"resourceType": "Encounter", "period": {"start": "01/02/2020"}}));
        assert!(
            e[0].starts_with("Encounter.period.start: \"01/02/2020\" is not a FHIR date"),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_code_system_is_refused() {
        let e = errors(
            json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://example.org/local-codes", "code": "X1"}]}}),
        );
        assert_eq!(e.len(), 1);
        assert!(
            e[0].contains("unknown code system http://example.org/local-codes"),
            "{e:?}"
        );
    }

    #[test]
    fn bad_snomed_check_digit_is_refused() {
        let e = errors(json!({"resourceType": "Condition",
            "code": {"coding": [{"system": systems::SNOMED_CT, "code": "49727003"}]}}));
        assert!(e[0].starts_with("Condition.code.coding[0].code"), "{e:?}");
    }

    #[test]
    fn unknown_resource_type_and_bad_reference() {
        assert!(
            errors(json!({"resourceType": "Pateint"}))[0].contains("not a FHIR R4 resource type")
        );
        let e = errors(
            json!({"resourceType": "Observation", "subject": {"reference": "not a ref"},
            "code": {"coding": [{"system": systems::LOINC, "code": "8310-5"}]}}),
        );
        assert_eq!(e, vec!["Observation.subject.reference: \"not a ref\" is not a reference (Type/id, a URL, urn:uuid: or #id)"]);
    }
}
