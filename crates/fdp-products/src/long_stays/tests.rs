//! The product alone, behind the demo policy, over tables in memory.

use fdp_govern::memory::MemoryTables;
use fdp_govern::Purpose;
use serde_json::{json, Value};

use crate::testing::DemoInstance;

/// Ward A: patients admitted 3, 10, 17 and 25 days before 30 November
/// noon, two of each; ward B: one admitted 30 days before who moved there
/// from ward A, and one discharged yesterday after 40 days.
fn tables() -> MemoryTables {
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").unwrap();
    let ago = |days: i64| (at - chrono::Duration::days(days)).to_rfc3339();
    let (mut admissions, mut stays) = (Vec::new(), Vec::new());
    let mut n = 0;
    let mut admit = |days: i64, discharged: Option<String>, wards: &[(&str, i64)]| {
        n += 1;
        let id = format!("A{n}");
        admissions.push(json!({"admission_id": id, "admission_timestamp": ago(days),
                               "discharge_timestamp": discharged}));
        for (i, (ward, from)) in wards.iter().enumerate() {
            let end = wards.get(i + 1).map(|(_, f)| ago(*f));
            stays.push(json!({"ward_stay_id": format!("{id}-{i}"), "admission_id": id,
                              "ward_id": ward, "start_timestamp": ago(*from), "end_timestamp": end}));
        }
    };
    for days in [3, 10, 17, 25] {
        for _ in 0..2 {
            admit(days, None, &[("RXX:A", days)]);
        }
    }
    admit(30, None, &[("RXX:A", 30), ("RXX:B", 2)]);
    admit(40, Some(ago(1)), &[("RXX:B", 40)]);
    MemoryTables::new()
        .with_rows("admission", &admissions)
        .unwrap()
        .with_rows("ward_stay", &stays)
        .unwrap()
}

#[tokio::test]
async fn long_stays_are_counted_from_admission_on_the_ward_the_patient_is_on() {
    let out = DemoInstance::new(tables())
        .view(
            "long-stays",
            "bed-manager",
            Purpose::Operations,
            "http",
            "by-ward",
            &[("at", "2026-11-30T12:00:00Z")],
        )
        .await
        .unwrap();
    let rows: Vec<Vec<Value>> = out.rows;
    assert_eq!(
        rows,
        vec![
            vec![json!("RXX:A"), json!(8), json!(6), json!(4), json!(2)],
            vec![json!("RXX:B"), json!(1), json!(1), json!(1), json!(1)],
        ]
    );
}
