use std::collections::HashSet;

use arrow_schema::{DataType, TimeUnit};
use fdp_model::{
    Cardinality, Model, ModelError, PropertyType, Sensitivity, ValidationError, META_PROPERTY,
    META_SENSITIVITY,
};
use serde_json::{json, Map, Value};

fn model() -> &'static Model {
    Model::canonical()
}

fn record(v: Value) -> Map<String, Value> {
    v.as_object().expect("test records are objects").clone()
}

#[test]
fn has_the_62_cdm_types_and_the_extensions() {
    let m = model();
    assert_eq!(m.cdm_types().count(), 62);
    let ext: Vec<&str> = m.extension_types().map(|t| t.name.as_str()).collect();
    assert_eq!(
        ext,
        [
            "Bed",
            "CareCapacity",
            "DischargeReadiness",
            "Vaccination",
            "Observation",
            "Organisation",
            "StaffShift",
            "StockLevel",
            "StockMovement",
            "SupplyItem",
            "PathwayActivity",
            "PostcodeLookup",
            "AreaDeprivation",
            "LsoaChange",
            "AreaHealthGeography",
            "GeneralPractice",
            "EthnicCategoryCode",
            "EthnicityCrosswalk",
            "PopulationEstimate",
            "PatientArea",
        ]
    );
    assert_eq!(m.object_types().len(), 82);
    // The CDM already has wards and sites; the extensions must use them, not copy them.
    for name in ["Ward", "Site"] {
        assert!(!m.object_type(name).unwrap().extension, "{name}");
    }
    let names: HashSet<&str> = m.object_types().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), 82);
    let property_count: usize = m.cdm_types().map(|t| t.properties.len()).sum();
    assert!(property_count > 1_200, "{property_count}");
}

#[test]
fn ward_stay_matches_the_cdm() {
    let t = model().object_type("WardStay").unwrap();
    assert_eq!(t.table, "ward_stay");
    assert_eq!(t.primary_key, "wardStayId");
    assert_eq!(t.primary_key_property().column, "ward_stay_id");
    assert!(!t.extension);
    assert!(t
        .data_dictionary
        .as_deref()
        .is_some_and(|u| u.starts_with("https://www.datadictionary.nhs.uk/")));
    let columns: Vec<&str> = t.properties.iter().map(|p| p.column.as_str()).collect();
    for c in [
        "ward_stay_id",
        "patient_id",
        "ward_id",
        "start_timestamp",
        "end_timestamp",
        "admission_id",
        "rv_group_ids",
    ] {
        assert!(columns.contains(&c), "{c} missing from {columns:?}");
    }
    assert_eq!(columns[0], "ward_stay_id", "key comes first");
    let start = t.property("startTimestamp").unwrap();
    assert_eq!(start.property_type, PropertyType::Timestamp);
    assert!(start.data_dictionary.is_some());
    assert_eq!(
        t.property_by_column("rv_group_ids").unwrap().property_type,
        PropertyType::StringList
    );
    let ward = t.link("ward").unwrap();
    assert_eq!(ward.target, "Ward");
    assert_eq!(ward.cardinality, Some(Cardinality::One));
    let fk = ward.foreign_key.as_ref().unwrap();
    assert_eq!(
        (fk.object.as_str(), fk.property.as_str()),
        ("WardStay", "wardId")
    );
}

#[test]
fn keys_are_present_and_only_keys_are_not_null() {
    for t in model().object_types() {
        let pk = t.primary_key_property();
        assert!(!pk.nullable, "{}", t.name);
        assert_eq!(t.properties[0].name, t.primary_key, "{}: key first", t.name);
        for p in &t.properties[1..] {
            assert!(p.nullable, "{}.{}", t.name, p.name);
        }
    }
}

#[test]
fn sensitivity_tags() {
    let m = model();
    let tag = |t: &str, p: &str| m.object_type(t).unwrap().property(p).unwrap().sensitivity;
    assert_eq!(tag("Patient", "nhsNumber"), Sensitivity::Identifying);
    assert_eq!(tag("Patient", "dateOfBirth"), Sensitivity::Identifying);
    assert_eq!(tag("Patient", "postcode"), Sensitivity::Identifying);
    assert_eq!(tag("Patient", "mrn"), Sensitivity::Identifying);
    assert_eq!(tag("Patient", "nextOfKinName"), Sensitivity::Identifying);
    assert_eq!(tag("Patient", "sex"), Sensitivity::QuasiIdentifying);
    assert_eq!(
        tag("Patient", "ethnicCategory"),
        Sensitivity::QuasiIdentifying
    );
    assert_eq!(tag("Patient", "dateOfDeath"), Sensitivity::QuasiIdentifying);
    assert_eq!(
        tag("PatientDiagnosis", "diagnosisIcd10Code"),
        Sensitivity::Clinical
    );
    assert_eq!(tag("Procedure", "procedureOpcsCode"), Sensitivity::Clinical);
    assert_eq!(
        tag("ScoredAssessment", "personScore"),
        Sensitivity::Clinical
    );
    assert_eq!(
        tag(
            "MentalHealthActLegalStatus",
            "mentalHealthActLegalStatusClassification"
        ),
        Sensitivity::Clinical
    );
    assert_eq!(tag("WardStay", "startTimestamp"), Sensitivity::Operational);
    assert_eq!(tag("WardStay", "wardId"), Sensitivity::Operational);
    assert_eq!(tag("WardStay", "patientId"), Sensitivity::Identifying);
    assert_eq!(tag("Ward", "wardCode"), Sensitivity::Operational);
    assert_eq!(
        tag("DischargeReadiness", "patientId"),
        Sensitivity::Identifying
    );
    assert_eq!(tag("Bed", "status"), Sensitivity::Operational);
    let patient = m.object_type("Patient").unwrap();
    assert!(patient.properties_with(Sensitivity::Identifying).count() >= 10);
}

#[test]
fn lookups() {
    let m = model();
    assert_eq!(
        m.object_type_by_table("ward_stay").unwrap().name,
        "WardStay"
    );
    assert_eq!(m.find("ward_stay").unwrap().name, "WardStay");
    assert_eq!(m.find("WARDSTAY").unwrap().name, "WardStay");
    // The published API names this type in lower camel case.
    let mdt = m.find("mdtMeeting").unwrap();
    assert_eq!(mdt.name, "MdtMeeting");
    assert_eq!(mdt.api_name.as_deref(), Some("mdtMeeting"));
    assert!(m.find("NoSuchThing").is_none());
    let ws = m.object_type("WardStay").unwrap();
    assert_eq!(ws.find_property("ward_id").unwrap().name, "wardId");
    assert_eq!(ws.find_property("wardId").unwrap().column, "ward_id");
    let into_ward: Vec<String> = m
        .links_to("Ward")
        .map(|(t, l)| format!("{}.{}", t.name, l.name))
        .collect();
    assert!(into_ward.contains(&"WardStay.ward".to_string()));
    assert!(into_ward.contains(&"Bed.ward".to_string()));
}

#[test]
fn every_link_resolves() {
    let m = model();
    let mut links = 0;
    for t in m.object_types() {
        for l in &t.links {
            links += 1;
            assert!(m.object_type(&l.target).is_some());
            if let Some(fk) = &l.foreign_key {
                let holder = m.object_type(&fk.object).unwrap();
                assert!(holder.property(&fk.property).is_some());
                assert!(fk.object == t.name || fk.object == l.target);
            }
        }
    }
    assert!(links >= 254, "{links}");
}

#[test]
fn arrow_schema_types() {
    let m = model();
    let ws = m.object_type("WardStay").unwrap().arrow_schema();
    let pk = ws.field_with_name("ward_stay_id").unwrap();
    assert_eq!(pk.data_type(), &DataType::Utf8);
    assert!(!pk.is_nullable());
    let start = ws.field_with_name("start_timestamp").unwrap();
    assert_eq!(
        start.data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert!(start.is_nullable());
    assert_eq!(start.metadata()[META_PROPERTY], "startTimestamp");
    assert_eq!(
        ws.field_with_name("patient_id").unwrap().metadata()[META_SENSITIVITY],
        "identifying"
    );
    match ws.field_with_name("rv_group_ids").unwrap().data_type() {
        DataType::List(item) => assert_eq!(item.data_type(), &DataType::Utf8),
        other => panic!("rv_group_ids is {other:?}"),
    }
    assert_eq!(ws.metadata()["fdp.object_type"], "WardStay");

    let expected = [
        (PropertyType::String, DataType::Utf8),
        (PropertyType::Integer, DataType::Int32),
        (PropertyType::Long, DataType::Int64),
        (PropertyType::Double, DataType::Float64),
        (PropertyType::Boolean, DataType::Boolean),
        (PropertyType::Date, DataType::Date32),
    ];
    // Every type used anywhere in the model maps as specified, in every schema.
    let mut seen = HashSet::new();
    for t in m.object_types() {
        let schema = t.arrow_schema();
        assert_eq!(schema.fields().len(), t.properties.len());
        for p in &t.properties {
            seen.insert(p.property_type);
            let field = schema.field_with_name(&p.column).unwrap();
            assert_eq!(field.data_type(), &p.property_type.arrow_data_type());
            if let Some((_, dt)) = expected.iter().find(|(pt, _)| *pt == p.property_type) {
                assert_eq!(field.data_type(), dt);
            }
        }
    }
    assert_eq!(
        seen.len(),
        PropertyType::ALL.len(),
        "every type is exercised"
    );
}

#[test]
fn valid_records_pass() {
    let ws = model().object_type("WardStay").unwrap();
    let ok = record(json!({
        "wardStayId": "WS1",
        "patientId": "P1",
        "ward_id": "W1",
        "startTimestamp": "2024-05-01T09:30:00Z",
        "endTimestamp": null,
        "rvGroupIds": ["a", "b"]
    }));
    assert_eq!(ws.validate_record(&ok), Ok(()));

    let dr = model().object_type("DischargeReadiness").unwrap();
    let ok = record(json!({
        "admissionId": "A1",
        "medicallyOptimised": true,
        "medicallyOptimisedDate": "2024-05-02",
        "dischargePathway": 1,
        "waitingFor": ["package of care", "transport"],
        "updatedTimestamp": "2024-05-02T10:00:00+01:00"
    }));
    assert_eq!(dr.validate_record(&ok), Ok(()));

    let su = model().object_type("StaffUnavailability").unwrap();
    assert_eq!(
        su.property("hours").unwrap().property_type,
        PropertyType::Long
    );
    assert_eq!(
        su.validate_record(&record(json!({"id": "1", "hours": "8"}))),
        Ok(())
    );
    assert_eq!(
        su.validate_record(&record(json!({"id": "1", "hours": 8}))),
        Ok(())
    );
}

fn errors(type_name: &str, v: Value) -> Vec<ValidationError> {
    model()
        .object_type(type_name)
        .unwrap()
        .validate_record(&record(v))
        .expect_err("record should be rejected")
        .0
}

#[test]
fn validation_errors_name_the_property() {
    let errs = errors(
        "WardStay",
        json!({"wardStayId": "WS1", "bedNumber": "12", "startTimestamp": 5}),
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        matches!(&errs[0], ValidationError::UnknownProperty { property, .. } if property == "bedNumber")
    );
    assert!(matches!(
        &errs[1],
        ValidationError::WrongType { property, expected: PropertyType::Timestamp, found: "number", .. }
            if property == "startTimestamp"
    ));
    assert_eq!(
        errs[0].to_string(),
        "WardStay: unknown property `bedNumber`"
    );
    assert_eq!(
        errs[1].to_string(),
        "WardStay.startTimestamp: expected timestamp, found number"
    );
}

#[test]
fn primary_key_must_be_present() {
    for bad in [
        json!({"wardId": "W1"}),
        json!({"wardStayId": null}),
        json!({"ward_stay_id": "  "}),
    ] {
        let errs = errors("WardStay", bad);
        assert!(
            matches!(&errs[..], [ValidationError::MissingPrimaryKey { property, .. }] if property == "wardStayId"),
            "{errs:?}"
        );
    }
}

#[test]
fn value_checks() {
    let e = errors(
        "WardStay",
        json!({"wardStayId": "1", "startTimestamp": "2024-05-01T09:30:00"}),
    );
    assert!(
        matches!(&e[0], ValidationError::InvalidValue { property, .. } if property == "startTimestamp")
    );
    let e = errors(
        "Appointment",
        json!({"attendanceId": "1", "orderedDate": "2024-02-30"}),
    );
    assert!(
        matches!(&e[0], ValidationError::InvalidValue { property, .. } if property == "orderedDate")
    );
    let e = errors(
        "Appointment",
        json!({"attendanceId": "1", "bookedDuration": 3_000_000_000i64}),
    );
    assert!(
        matches!(&e[0], ValidationError::InvalidValue { property, .. } if property == "bookedDuration")
    );
    let e = errors(
        "Appointment",
        json!({"attendanceId": "1", "bookedDuration": 1.5}),
    );
    assert!(matches!(
        &e[0],
        ValidationError::WrongType {
            found: "number with a fraction",
            ..
        }
    ));
    let e = errors(
        "WardStay",
        json!({"wardStayId": "1", "rvGroupIds": ["a", 1]}),
    );
    assert!(
        matches!(&e[0], ValidationError::InvalidValue { property, .. } if property == "rvGroupIds")
    );
    let e = errors(
        "WardStay",
        json!({"wardStayId": "1", "wardId": "W", "ward_id": "W"}),
    );
    assert!(
        matches!(&e[0], ValidationError::DuplicateProperty { property, .. } if property == "wardId")
    );
    let e = errors(
        "DischargeReadiness",
        json!({"admissionId": "A1", "dischargePathway": 4, "waitingFor": ["transport", "a unicorn"]}),
    );
    assert_eq!(e.len(), 2);
    assert!(
        matches!(&e[0], ValidationError::NotAllowed { property, value, .. } if property == "dischargePathway" && value == "4")
    );
    assert!(
        matches!(&e[1], ValidationError::NotAllowed { property, value, .. } if property == "waitingFor" && value == "a unicorn")
    );
    let all = fdp_model::ValidationErrors(e).to_string();
    assert!(
        all.contains("dischargePathway") && all.contains("waitingFor"),
        "{all}"
    );
}

#[test]
fn describe_lists_types_and_properties() {
    let m = model();
    let text = m.describe();
    assert!(text.starts_with(
        "82 object types (62 from the FDP Canonical Data Model, 20 OpenFDP extensions)"
    ));
    assert!(text.contains("WardStay [CDM]"));
    assert!(text.contains("Bed [OpenFDP extension]"));
    let one = m.object_type("WardStay").unwrap().describe();
    assert!(one.contains("  table: ward_stay"));
    assert!(one.contains("  primary key: ward_stay_id"));
    let line = one
        .lines()
        .find(|l| l.trim_start().starts_with("patient_id"))
        .unwrap();
    assert!(
        line.contains("string") && line.contains("identifying"),
        "{line}"
    );
    assert!(one.contains("ward -> Ward (one) via WardStay.wardId"));
    let pathway = m.object_type("DischargeReadiness").unwrap().describe();
    assert!(pathway.contains("one of: 0, 1, 2, 3"), "{pathway}");
    let summary = m.describe_summary();
    assert_eq!(summary.lines().count(), 83);
    assert!(summary
        .lines()
        .any(|l| l.starts_with("Bed ") && l.ends_with("[extension]")));
}

#[test]
fn loading_rejects_inconsistent_documents() {
    let base = json!({"object_types": [{
        "name": "Thing", "table": "thing", "primary_key": "thingId", "extension": false,
        "properties": [{"name": "thingId", "column": "thing_id", "type": "string", "nullable": false, "sensitivity": "operational"}],
        "links": []
    }]});
    let empty = r#"{"object_types": []}"#;
    assert!(Model::from_json(&base.to_string(), empty).is_ok());

    let mut bad = base.clone();
    bad["object_types"][0]["primary_key"] = json!("nope");
    assert!(matches!(
        Model::from_json(&bad.to_string(), empty),
        Err(ModelError::MissingPrimaryKey { .. })
    ));

    let mut bad = base.clone();
    bad["object_types"][0]["properties"][0]["nullable"] = json!(true);
    assert!(matches!(
        Model::from_json(&bad.to_string(), empty),
        Err(ModelError::NullablePrimaryKey { .. })
    ));

    let mut bad = base.clone();
    bad["object_types"][0]["links"] = json!([{"name": "x", "target": "Nowhere"}]);
    assert!(matches!(
        Model::from_json(&bad.to_string(), empty),
        Err(ModelError::UnknownLinkTarget { .. })
    ));

    // An extension must say so, and may not reuse a CDM table.
    assert!(matches!(
        Model::from_json(empty, &base.to_string()),
        Err(ModelError::ExtensionFlag { .. })
    ));
    let mut ext = base.clone();
    ext["object_types"][0]["extension"] = json!(true);
    ext["object_types"][0]["name"] = json!("Other");
    assert!(matches!(
        Model::from_json(&base.to_string(), &ext.to_string()),
        Err(ModelError::DuplicateTable { .. })
    ));

    let mut bad = base;
    bad["object_types"][0]["properties"][0]["sensitivity"] = json!("secret");
    assert!(matches!(
        Model::from_json(&bad.to_string(), empty),
        Err(ModelError::Parse { .. })
    ));
}

#[test]
fn embedded_documents_are_stable() {
    // Reserialising must reproduce the files byte for byte, or regeneration would churn.
    let cdm: fdp_model::ModelDocument = serde_json::from_str(fdp_model::CDM_JSON).unwrap();
    assert_eq!(cdm.to_pretty_json(), fdp_model::CDM_JSON);
    let ext: fdp_model::ModelDocument = serde_json::from_str(fdp_model::EXTENSIONS_JSON).unwrap();
    assert_eq!(ext.to_pretty_json(), fdp_model::EXTENSIONS_JSON);
}

#[test]
fn tags_and_types_parse_from_text() {
    for s in Sensitivity::ALL {
        assert_eq!(s.as_str().parse::<Sensitivity>(), Ok(s));
    }
    for t in PropertyType::ALL {
        assert_eq!(t.as_str().parse::<PropertyType>(), Ok(t));
    }
    assert!("secret".parse::<Sensitivity>().is_err());
}
