//! The product alone, behind the demo policy, over tables in memory.

use fdp_govern::memory::MemoryTables;
use fdp_govern::Purpose;
use serde_json::{json, Value};

use crate::platform::ProductError;
use crate::testing::DemoInstance;

/// Ward A: ten patients medically optimised on 20 November, still in; ward
/// B: two, optimised on 25 November. Not counted: one not optimised, one
/// discharged, one optimised only after the day asked about.
fn tables() -> MemoryTables {
    let mut readiness = Vec::new();
    let mut admissions = Vec::new();
    let mut stays = Vec::new();
    let mut admit = |id: String, ward: &str, mo: Option<&str>, discharged: Option<&str>| {
        readiness.push(json!({"admission_id": id, "patient_id": format!("P-{id}"),
            "medically_optimised": mo.is_some(), "medically_optimised_date": mo, "discharge_pathway": 2}));
        admissions.push(json!({"admission_id": id, "patient_id": format!("P-{id}"),
            "admission_timestamp": "2026-11-01T08:00:00Z", "discharge_timestamp": discharged}));
        stays.push(json!({"ward_stay_id": format!("S-{id}"), "admission_id": id, "patient_id": format!("P-{id}"),
            "ward_id": ward, "start_timestamp": "2026-11-01T08:00:00Z",
            "end_timestamp": discharged}));
    };
    for i in 0..10 {
        admit(format!("A{i}"), "RXX:A", Some("2026-11-20"), None);
    }
    for i in 0..2 {
        admit(format!("B{i}"), "RXX:B", Some("2026-11-25"), None);
    }
    admit("C0".into(), "RXX:A", None, None);
    admit(
        "C1".into(),
        "RXX:A",
        Some("2026-11-20"),
        Some("2026-11-26T10:00:00Z"),
    );
    admit("C2".into(), "RXX:B", Some("2026-12-02"), None);
    MemoryTables::new()
        .with_rows("discharge_readiness", &readiness)
        .unwrap()
        .with_rows("admission", &admissions)
        .unwrap()
        .with_rows("ward_stay", &stays)
        .unwrap()
}

struct Fixture(DemoInstance);

fn fixture() -> Fixture {
    Fixture(DemoInstance::new(tables()))
}

impl Fixture {
    async fn view(
        &self,
        role: &str,
        purpose: Purpose,
        channel: &str,
        view: &str,
        params: &[(&str, &str)],
    ) -> Result<(Vec<String>, Vec<Vec<Value>>), ProductError> {
        let out = self
            .0
            .view("discharge-delays", role, purpose, channel, view, params)
            .await?;
        Ok((out.columns.iter().map(|c| c.name.clone()).collect(), out.rows))
    }
}

const AS_AT: &[(&str, &str)] = &[("as_at", "2026-11-30")];

#[tokio::test]
async fn delays_by_ward_count_the_patients_still_in_and_for_how_long() {
    let f = fixture();
    let (columns, rows) = f
        .view("bed-manager", Purpose::Operations, "http", "by-ward", AS_AT)
        .await
        .unwrap();
    assert_eq!(columns, ["ward_id", "patients", "mean_days_delayed"]);
    assert_eq!(
        rows,
        vec![
            vec![json!("RXX:A"), json!(10), json!(10.0)],
            vec![json!("RXX:B"), json!(2), json!(5.0)],
        ]
    );
    // The day asked about decides who counts.
    let (_, rows) = f
        .view(
            "bed-manager",
            Purpose::Operations,
            "http",
            "by-ward",
            &[("as_at", "2026-11-22")],
        )
        .await
        .unwrap();
    assert_eq!(rows, vec![vec![json!("RXX:A"), json!(11), json!(2.0)]]);
}

#[tokio::test]
async fn under_planning_small_wards_and_patients_one_by_one_do_not_leave() {
    let f = fixture();
    let (_, rows) = f
        .view("analyst", Purpose::Planning, "http", "by-ward", AS_AT)
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        1,
        "ward B's two patients are withheld: {rows:?}"
    );
    assert_eq!(rows[0][0], json!("RXX:A"));
    let (_, rows) = f
        .view("analyst", Purpose::Planning, "http", "patients", AS_AT)
        .await
        .unwrap();
    assert!(
        rows.is_empty(),
        "row-level answers left under planning: {rows:?}"
    );
    // Inside the instance the analyst sees the patients, pseudonymised.
    let (columns, rows) = f
        .view("analyst", Purpose::Planning, "ui", "patients", AS_AT)
        .await
        .unwrap();
    assert_eq!(rows.len(), 12);
    let id = columns.iter().position(|c| c == "patient_id").unwrap();
    for row in &rows {
        let shown = row[id].as_str().unwrap();
        assert!(!shown.starts_with("P-"), "not pseudonymised: {shown}");
    }
}

#[tokio::test]
async fn the_platform_refuses_what_the_manifest_or_the_grant_does_not_allow() {
    let f = fixture();
    // The researcher's purpose is not one the product is for.
    let e = f
        .view("researcher", Purpose::Research, "http", "by-ward", AS_AT)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ProductError::Purpose { .. } | ProductError::Govern(_)),
        "{e}"
    );
    // The IG lead's grant covers none of what it reads.
    let e = f
        .view(
            "information-governance-lead",
            Purpose::Operations,
            "http",
            "by-ward",
            AS_AT,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ProductError::NotGranted { .. }), "{e}");
    assert!(e.is_refusal());
    // Parameters are typed, and only the declared ones are taken.
    for (params, named) in [
        (&[("as_at", "last tuesday")][..], "as_at"),
        (&[("ward", "RXX:A")][..], "ward"),
        (
            &[("as_at", "2026-11-30'; DROP TABLE admission; --")][..],
            "as_at",
        ),
    ] {
        let e = f
            .view(
                "bed-manager",
                Purpose::Operations,
                "http",
                "by-ward",
                params,
            )
            .await
            .unwrap_err();
        assert!(e.is_bad_request() && e.to_string().contains(named), "{e}");
    }
}
