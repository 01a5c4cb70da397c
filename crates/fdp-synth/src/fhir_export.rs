//! A FHIR R4 Bulk Data export of realistic shape, as a trust's EPR would
//! produce it: one NDJSON file per resource type, UK Core identifiers (NHS
//! numbers with valid check digits, local hospital numbers, ODS codes),
//! names, dates of birth, addresses and postcodes, SNOMED CT, LOINC and
//! dm+d codes, and references between the resources. Per patient: 1
//! Patient, 8 Encounters, 16 Observations, 3 Conditions, 4 Immunizations, 2
//! Procedures, 1 ServiceRequest and 1 Appointment (36 resources, about 700
//! bytes each). The same data on every run.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Resources written per patient.
pub const PER_PATIENT: usize = 36;

/// The same data on every run.
type Rng = crate::Xorshift;

const CONDITIONS: &[(&str, &str)] = &[
    ("44054006", "Diabetes mellitus type 2"),
    ("38341003", "Hypertensive disorder"),
    ("195967001", "Asthma"),
    ("13645005", "Chronic obstructive lung disease"),
    ("840539006", "COVID-19"),
    ("49727002", "Cough"),
];
const PROCEDURES: &[(&str, &str)] = &[
    ("80146002", "Appendectomy"),
    ("73761001", "Colonoscopy"),
    ("387713003", "Surgical procedure"),
];
const VITALS: &[(&str, &str, &str, f64, f64)] = &[
    ("8310-5", "Body temperature", "Cel", 36.0, 2.5),
    ("8867-4", "Heart rate", "/min", 55.0, 60.0),
    ("29463-7", "Body weight", "kg", 40.0, 60.0),
];
const LABS: &[(&str, &str, &str, f64, f64)] = &[
    (
        "2339-0",
        "Glucose [Mass/volume] in Blood",
        "mmol/L",
        3.5,
        8.0,
    ),
    (
        "718-7",
        "Hemoglobin [Mass/volume] in Blood",
        "g/L",
        100.0,
        70.0,
    ),
];
const VACCINES: &[(&str, &str)] = &[
    ("39114911000001105", "COVID-19 Vaccine Vaxzevria"),
    ("39115611000001103", "Comirnaty COVID-19 mRNA Vaccine"),
    ("36509011000001106", "Fluenz Tetra nasal suspension"),
];
const SITES: &[&str] = &["RXX01", "RXX02", "RXX03"];
const SURNAMES: &[&str] = &[
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Patel", "Khan",
];
const GIVEN: &[&str] = &[
    "Olivia", "Amelia", "Isla", "Ava", "Oliver", "George", "Arthur", "Noah", "Muhammad", "Leo",
];

fn nhs_number(rng: &mut Rng) -> String {
    loop {
        let mut d = [0u8; 9];
        d[0] = 9;
        for x in d.iter_mut().skip(1) {
            *x = rng.below(10) as u8;
        }
        if let Some(c) = fdp_model::identifiers::nhs_number_check_digit_of(&d) {
            let mut s: String = d.iter().map(|x| char::from(b'0' + x)).collect();
            s.push(char::from(b'0' + c));
            return s;
        }
    }
}

fn when(rng: &mut Rng) -> String {
    let day = rng.below(28) + 1;
    let month = rng.below(12) + 1;
    let year = 2019 + rng.below(6);
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:00+00:00",
        rng.below(24),
        rng.below(60)
    )
}

/// Write the export: one NDJSON file per resource type. Returns the files
/// and the number of resources.
pub fn write(dir: &Path, resources: usize) -> std::io::Result<(Vec<PathBuf>, usize)> {
    std::fs::create_dir_all(dir)?;
    let types = [
        "Patient",
        "Encounter",
        "Observation",
        "Condition",
        "Immunization",
        "Procedure",
        "ServiceRequest",
        "Appointment",
    ];
    let mut files = Vec::new();
    let mut out = Vec::new();
    for t in types {
        let path = dir.join(format!("{t}.ndjson"));
        out.push(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&path)?,
        ));
        files.push(path);
    }
    let patients = resources.div_ceil(PER_PATIENT);
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let mut n = 0;
    for p in 0..patients {
        let pid = format!("pat-{p:08}");
        let (given, family) = (rng.pick(GIVEN), rng.pick(SURNAMES));
        writeln!(
            out[0],
            r#"{{"resourceType":"Patient","id":"{pid}","meta":{{"profile":["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"]}},"identifier":[{{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"{nhs}"}},{{"type":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}}]}},"system":"https://fhir.rxx.nhs.uk/Id/mrn","value":"RXX{p:07}"}}],"name":[{{"use":"official","family":"{family}","given":["{given}"]}}],"gender":"{gender}","birthDate":"{by}-{bm:02}-{bd:02}","address":[{{"line":["{house} High Street"],"city":"Leeds","postalCode":"LS{district} {sector}AB"}}],"extension":[{{"url":"https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory","valueCodeableConcept":{{"coding":[{{"system":"https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategory","code":"{eth}"}}]}}}}],"generalPractitioner":[{{"type":"Organization","identifier":{{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"B8{gp:04}"}}}}]}}"#,
            nhs = nhs_number(&mut rng),
            gender = if rng.below(2) == 0 { "female" } else { "male" },
            by = 1930 + rng.below(90),
            bm = rng.below(12) + 1,
            bd = rng.below(28) + 1,
            house = rng.below(200) + 1,
            district = rng.below(28) + 1,
            sector = rng.below(10),
            eth = rng.pick(&["A", "B", "C", "H", "J", "M", "R"]),
            gp = rng.below(9999),
        )?;
        n += 1;
        let mut encounters = Vec::new();
        for e in 0..8 {
            let eid = format!("enc-{p:08}-{e}");
            let start = when(&mut rng);
            let class = if e == 0 { "IMP" } else { "AMB" };
            writeln!(
                out[1],
                r#"{{"resourceType":"Encounter","id":"{eid}","status":"finished","class":{{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"{class}"}},"type":[{{"coding":[{{"system":"http://snomed.info/sct","code":"185347001","display":"Encounter for problem"}}]}}],"subject":{{"reference":"Patient/{pid}"}},"period":{{"start":"{start}","end":"{start}"}},"serviceProvider":{{"identifier":{{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RXX"}},"display":"{site}"}}}}"#,
                site = rng.pick(SITES),
            )?;
            encounters.push((eid, start));
            n += 1;
        }
        for o in 0..16 {
            let (eid, at) = &encounters[o % encounters.len()];
            let lab = o % 4 == 3;
            let (code, name, unit, base, span) = if lab {
                *rng.pick(LABS)
            } else {
                *rng.pick(VITALS)
            };
            let value = base + (rng.below(1000) as f64 / 1000.0) * span;
            let category = if lab { "laboratory" } else { "vital-signs" };
            writeln!(
                out[2],
                r#"{{"resourceType":"Observation","id":"obs-{p:08}-{o}","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"{category}"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"{code}","display":"{name}"}}],"text":"{name}"}},"subject":{{"reference":"Patient/{pid}"}},"encounter":{{"reference":"Encounter/{eid}"}},"effectiveDateTime":"{at}","issued":"{at}","valueQuantity":{{"value":{value:.1},"unit":"{unit}","system":"http://unitsofmeasure.org","code":"{unit}"}}}}"#,
            )?;
            n += 1;
        }
        for (c, (eid, at)) in encounters.iter().take(3).enumerate() {
            let (code, name) = rng.pick(CONDITIONS);
            writeln!(
                out[3],
                r#"{{"resourceType":"Condition","id":"cond-{p:08}-{c}","clinicalStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}}]}},"verificationStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}}]}},"code":{{"coding":[{{"system":"http://snomed.info/sct","code":"{code}","display":"{name}"}}],"text":"{name}"}},"subject":{{"reference":"Patient/{pid}"}},"encounter":{{"reference":"Encounter/{eid}"}},"onsetDateTime":"{at}","recordedDate":"{at}"}}"#,
            )?;
            n += 1;
        }
        for i in 0..4 {
            let (code, name) = rng.pick(VACCINES);
            let (eid, at) = &encounters[i + 1];
            writeln!(
                out[4],
                r#"{{"resourceType":"Immunization","id":"imm-{p:08}-{i}","status":"completed","vaccineCode":{{"coding":[{{"system":"https://dmd.nhs.uk","code":"{code}","display":"{name}"}}]}},"patient":{{"reference":"Patient/{pid}"}},"encounter":{{"reference":"Encounter/{eid}"}},"occurrenceDateTime":"{at}","primarySource":true,"lotNumber":"LOT{lot}","protocolApplied":[{{"doseNumberPositiveInt":{dose}}}]}}"#,
                lot = rng.below(100_000),
                dose = i + 1,
            )?;
            n += 1;
        }
        for (q, (eid, at)) in encounters.iter().take(2).enumerate() {
            let (code, name) = rng.pick(PROCEDURES);
            writeln!(
                out[5],
                r#"{{"resourceType":"Procedure","id":"proc-{p:08}-{q}","status":"completed","code":{{"coding":[{{"system":"http://snomed.info/sct","code":"{code}","display":"{name}"}}],"text":"{name}"}},"subject":{{"reference":"Patient/{pid}"}},"encounter":{{"reference":"Encounter/{eid}"}},"performedDateTime":"{at}"}}"#,
            )?;
            n += 1;
        }
        let at = &encounters[7].1;
        writeln!(
            out[6],
            r#"{{"resourceType":"ServiceRequest","id":"ref-{p:08}","identifier":[{{"system":"https://fhir.nhs.uk/Id/UBRN","value":"{ubrn:012}"}}],"status":"active","intent":"order","priority":"routine","code":{{"text":"Referral to orthopaedic service"}},"subject":{{"reference":"Patient/{pid}"}},"authoredOn":"{at}"}}"#,
            ubrn = rng.below(1_000_000_000_000),
        )?;
        writeln!(
            out[7],
            r#"{{"resourceType":"Appointment","id":"appt-{p:08}","status":"booked","serviceType":[{{"coding":[{{"system":"http://snomed.info/sct","code":"394801008","display":"Trauma and orthopaedics"}}]}}],"start":"{at}","end":"{at}","minutesDuration":15,"basedOn":[{{"reference":"ServiceRequest/ref-{p:08}"}}],"participant":[{{"actor":{{"reference":"Patient/{pid}"}},"status":"accepted"}}]}}"#,
        )?;
        n += 2;
    }
    for mut w in out {
        w.flush()?;
        // On disk before the clock starts, as a delivered export would be.
        w.get_ref().sync_all()?;
    }
    Ok((files, n))
}
