use cdm_gen::{check, generate, generate_from_files, CheckOutcome, GenError, Inputs, Paths};
use fdp_model::{Cardinality, PropertyType, Sensitivity};

/// The committed cdm.json must be exactly what the generator makes from the spec. CI runs
/// with `shared/` beside the workspace; without it there is nothing to compare against.
#[test]
fn committed_cdm_json_is_up_to_date() {
    let paths = Paths::defaults();
    if !paths.spec.exists() {
        eprintln!("skipping: {} not found", paths.spec.display());
        return;
    }
    let generated = generate_from_files(&paths).expect("generation succeeds");
    assert_eq!(
        check(&paths, &generated).unwrap(),
        CheckOutcome::UpToDate,
        "run `cargo run -p cdm-gen` and commit crates/fdp-model/model/cdm.json"
    );
    let s = &generated.summary;
    assert_eq!(s.object_types, 62);
    assert_eq!(s.links, 254);
    assert!(s.unmapped.is_empty(), "{:?}", s.unmapped);
    // Regeneration is byte-for-byte stable.
    assert_eq!(
        generate_from_files(&paths).unwrap().json(),
        generated.json()
    );
    // No prose from the spec: descriptions never reach the declaration.
    assert!(!generated.json().contains("\"description\":"));
    assert!(!generated.json().contains("foreign key"));
}

const SPEC: &str = r##"
openapi: 3.0.1
paths:
  /api/v2/ontologies/o/objects/Ward/{primaryKey}:
    get: {}
  /api/v2/ontologies/o/objects/Ward/{primaryKey}/links/wardStays:
    get:
      responses:
        "200":
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/Osdk.ListWardStayResponse"
  /api/v2/ontologies/o/objects/Ward/{primaryKey}/links/wardStays/{linkedObjectPrimaryKey}:
    get:
      responses:
        "200":
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/Ward.WardStay"
  /api/v2/ontologies/o/objects/wardStay/{primaryKey}/links/ward:
    get:
      responses:
        "200":
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/Osdk.ListWardResponse"
  /api/v2/ontologies/o/objects/wardStay/{primaryKey}/links/patient:
    get:
      responses:
        "200":
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/Osdk.ListPatientResponse"
components:
  schemas:
    Osdk.Ward:
      type: object
      description: "A ward. https://www.datadictionary.nhs.uk/nhs_business_definitions/ward.html"
      properties:
        __apiName: {type: string}
        __primaryKey: {type: string}
        beds: {type: integer}
        wardId: {type: string, description: Primary key.}
    Osdk.WardProperties: {type: string, enum: [wardId, beds]}
    Osdk.WardStay:
      type: object
      properties:
        __rid: {type: string}
        endTimestamp: {type: string, format: date-time, description: "Ended. https://www.datadictionary.nhs.uk/data_elements/end_date__ward_stay_.html."}
        hours: {type: string, format: long}
        patientId: {type: string, description: A foreign key to the patient.}
        rvGroupIds: {type: array, nullable: true, items: {type: string}}
        score: {type: number, format: double}
        seen: {type: boolean}
        stayDate: {type: string, format: date}
        wardId: {type: string, description: A foreign key to the ward.}
        wardStayId: {type: string}
        weird: {type: object}
    Osdk.WardStayProperties: {type: string}
    Osdk.Patient:
      type: object
      properties:
        nhsNumber: {type: string}
        personId: {type: string}
    Osdk.PatientProperties: {type: string}
    Osdk.ListWardResponse: {type: object}
"##;

const RULES: &str = r#"
default = "operational"
[identifying]
names = ["nhsNumber", "personId"]
patterns = ["*patientId"]
[clinical]
names = ["score"]
"#;

const KEYS: &str = r#"
[primary_keys]
Patient = { property = "personId", reason = "test" }
"#;

const NO_EXTENSIONS: &str = r#"{"object_types": []}"#;

fn run(
    spec: &str,
    rules: &str,
    keys: &str,
    extensions: &str,
) -> Result<cdm_gen::Generated, GenError> {
    generate(&Inputs {
        spec,
        sensitivity: rules,
        primary_keys: keys,
        extensions,
    })
}

#[test]
fn small_spec_end_to_end() {
    let g = run(SPEC, RULES, KEYS, NO_EXTENSIONS).unwrap();
    let names: Vec<&str> = g
        .document
        .object_types
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["Patient", "Ward", "WardStay"]);

    let ward = &g.document.object_types[1];
    assert_eq!(ward.primary_key, "wardId");
    assert_eq!(ward.properties[0].name, "wardId", "key first");
    assert_eq!(
        ward.data_dictionary.as_deref(),
        Some("https://www.datadictionary.nhs.uk/nhs_business_definitions/ward.html")
    );

    let stay = &g.document.object_types[2];
    assert_eq!(stay.table, "ward_stay");
    assert_eq!(stay.api_name.as_deref(), Some("wardStay"));
    // Not declared, so found by `<type>Id` naming.
    assert_eq!(stay.primary_key, "wardStayId");
    let ty = |n: &str| stay.property(n).unwrap().property_type;
    assert_eq!(ty("endTimestamp"), PropertyType::Timestamp);
    assert_eq!(ty("hours"), PropertyType::Long);
    assert_eq!(ty("rvGroupIds"), PropertyType::StringList);
    assert_eq!(ty("score"), PropertyType::Double);
    assert_eq!(ty("seen"), PropertyType::Boolean);
    assert_eq!(ty("stayDate"), PropertyType::Date);
    assert!(stay.property("__rid").is_none());
    assert!(
        stay.property("weird").is_none(),
        "unmapped types are left out"
    );
    assert_eq!(g.summary.unmapped.len(), 1, "{:?}", g.summary.unmapped);
    assert!(g.summary.unmapped[0].starts_with("WardStay.weird"));
    assert_eq!(
        stay.property("endTimestamp")
            .unwrap()
            .data_dictionary
            .as_deref(),
        Some("https://www.datadictionary.nhs.uk/data_elements/end_date__ward_stay_.html")
    );
    assert_eq!(
        stay.property("patientId").unwrap().sensitivity,
        Sensitivity::Identifying
    );
    assert_eq!(
        stay.property("score").unwrap().sensitivity,
        Sensitivity::Clinical
    );
    assert_eq!(
        stay.property("seen").unwrap().sensitivity,
        Sensitivity::Operational
    );
    assert_eq!(
        stay.property("endTimestamp").unwrap().column,
        "end_timestamp"
    );
    assert!(!stay.property("wardStayId").unwrap().nullable);
    assert!(stay.property("wardId").unwrap().nullable);

    let to_ward = stay.link("ward").unwrap();
    assert_eq!(to_ward.cardinality, Some(Cardinality::One));
    assert_eq!(to_ward.foreign_key.as_ref().unwrap().property, "wardId");
    let to_patient = stay.link("patient").unwrap();
    assert_eq!(to_patient.target, "Patient");
    assert_eq!(to_patient.foreign_key.as_ref().unwrap().object, "WardStay");
    let stays = ward.link("wardStays").unwrap();
    assert_eq!(stays.cardinality, Some(Cardinality::Many));
    let fk = stays.foreign_key.as_ref().unwrap();
    assert_eq!(
        (fk.object.as_str(), fk.property.as_str()),
        ("WardStay", "wardId")
    );
    assert_eq!(g.summary.links, 3);

    let text = g.summary.to_string();
    assert!(text.contains("CDM: 3 object types"), "{text}");
    assert!(text.contains("unmapped (1)"), "{text}");
}

#[test]
fn keys_list_must_stay_in_step_with_the_spec() {
    // Listing a key the spec already declares is refused, so the list cannot go stale.
    let keys = "[primary_keys]\nPatient = { property = \"personId\", reason = \"x\" }\nWard = { property = \"beds\", reason = \"x\" }\n";
    assert!(matches!(
        run(SPEC, RULES, keys, NO_EXTENSIONS),
        Err(GenError::Keys(_))
    ));
    // A type with no key anywhere is an error, not a guess.
    assert!(matches!(
        run(SPEC, RULES, "[primary_keys]\n", NO_EXTENSIONS),
        Err(GenError::Keys(_))
    ));
    let keys = "[primary_keys]\nPatient = { property = \"nope\", reason = \"x\" }\n";
    assert!(matches!(
        run(SPEC, RULES, keys, NO_EXTENSIONS),
        Err(GenError::Keys(_))
    ));
    let keys = "[primary_keys]\nPatient = { property = \"personId\", reason = \"x\" }\nGhost = { property = \"id\", reason = \"x\" }\n";
    assert!(matches!(
        run(SPEC, RULES, keys, NO_EXTENSIONS),
        Err(GenError::Keys(_))
    ));
}

#[test]
fn extensions_must_agree_with_the_rules() {
    let ext = r#"{"object_types": [{
        "name": "Bed", "table": "bed", "primary_key": "bedId", "extension": true,
        "properties": [
          {"name": "bedId", "column": "bed_id", "type": "string", "nullable": false, "sensitivity": "operational"},
          {"name": "patientId", "column": "patient_id", "type": "string", "nullable": true, "sensitivity": "operational"}
        ],
        "links": [{"name": "ward", "target": "Ward"}]
    }]}"#;
    match run(SPEC, RULES, KEYS, ext) {
        Err(GenError::ExtensionTags(m)) => assert!(m[0].contains("Bed.patientId"), "{m:?}"),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("mismatched tag accepted"),
    }
    let fixed = ext.replace(
        r#""nullable": true, "sensitivity": "operational""#,
        r#""nullable": true, "sensitivity": "identifying""#,
    );
    let g = run(SPEC, RULES, KEYS, &fixed).unwrap();
    assert_eq!(g.summary.extension_types, 1);
    // Extension links are checked against the generated CDM.
    let dangling = fixed.replace(r#""target": "Ward""#, r#""target": "Nowhere""#);
    assert!(matches!(
        run(SPEC, RULES, KEYS, &dangling),
        Err(GenError::Model(_))
    ));
}

#[test]
fn overrides_must_name_real_properties() {
    let rules = format!(
        "{RULES}\n[[overrides]]\nobject = \"Ward\"\nproperty = \"bedz\"\nsensitivity = \"clinical\"\nreason = \"typo\"\n"
    );
    assert!(matches!(
        run(SPEC, &rules, KEYS, NO_EXTENSIONS),
        Err(GenError::Rules(_))
    ));
}
