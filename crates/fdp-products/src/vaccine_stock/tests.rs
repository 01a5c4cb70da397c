//! The product alone, behind the demo policy, over tables in memory.

use chrono::NaiveDate;
use fdp_govern::memory::MemoryTables;
use fdp_govern::Purpose;
use serde_json::{json, Value};

use super::{Batch, SiteStock};
use crate::testing::DemoInstance;

const COMIRNATY: &str = "39115611000001103";
const VAXZEVRIA: &str = "39114911000001105";

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Two sites counted on 2 March 2026, with bookings for the five days
/// from it, and a month of deliveries, doses given and wastage before it.
fn tables() -> MemoryTables {
    let count = |id: &str, site: &str, store: &str, item: &str, batch: &str, expiry: &str, doses: i64, at: &str| {
        json!({"stock_level_id": id, "site_id": site, "location_id": format!("{site}:{store}"),
               "item_code": item, "item_name": if item == COMIRNATY { Some("Comirnaty") } else { None },
               "category": "vaccine", "batch_number": batch, "expiry_date": expiry,
               "quantity": doses, "as_of_timestamp": at})
    };
    let stock = vec![
        count("1", "RXX01", "PHARM", COMIRNATY, "B1", "2026-03-03", 20, "2026-03-02T06:00:00Z"),
        count("2", "RXX01", "PHARM", COMIRNATY, "B2", "2026-04-30", 30, "2026-03-02T06:00:00Z"),
        // Expired the day before: not on hand.
        count("3", "RXX01", "PHARM", COMIRNATY, "B0", "2026-03-01", 12, "2026-03-02T06:00:00Z"),
        // An older count of the same store: superseded.
        count("4", "RXX01", "PHARM", COMIRNATY, "B1", "2026-03-03", 99, "2026-02-20T06:00:00Z"),
        // The hub's latest count was the day before.
        count("5", "RXX01", "VACHUB", COMIRNATY, "B3", "2026-03-05", 6, "2026-03-01T06:00:00Z"),
        count("6", "RXX02", "PHARM", COMIRNATY, "B4", "2026-06-01", 12, "2026-03-02T06:00:00Z"),
        // A count after the day asked for is not yet known.
        count("7", "RXX02", "PHARM", COMIRNATY, "B4", "2026-06-01", 500, "2026-03-03T06:00:00Z"),
        json!({"stock_level_id": "8", "site_id": "RXX01", "location_id": "RXX01:WARD", "item_code": "ABC123",
               "category": "supplies", "quantity": 400, "expiry_date": "2027-01-01", "as_of_timestamp": "2026-03-02T06:00:00Z"}),
    ];
    let mut appointments = Vec::new();
    let mut book = |site: &str, item: &str, day: u32, n: usize, status: &str, category: &str| {
        for _ in 0..n {
            let id = appointments.len();
            appointments.push(json!({"attendance_id": format!("A{id}"), "patient_id": format!("999{id:07}"),
                "healthcare_provider_ods_code": site, "code": item, "category": category,
                "booking_status": status, "start_date_time": format!("2026-03-{day:02}T10:00:00Z")}));
        }
    };
    for (d, n) in [(2, 5), (3, 5), (4, 10), (5, 10), (6, 10)] {
        book("RXX01", COMIRNATY, d, n, "booked", "vaccination");
        book("RXX01", VAXZEVRIA, d, 3, "booked", "vaccination");
    }
    for d in 2..=5 {
        book("RXX02", COMIRNATY, d, 4, "booked", "vaccination");
    }
    book("RXX01", COMIRNATY, 2, 2, "cancelled", "vaccination");
    book("RXX01", COMIRNATY, 3, 7, "booked", "outpatient");
    // After the five days asked for.
    book("RXX01", COMIRNATY, 7, 9, "booked", "vaccination");

    let moved = |id: &str, date: &str, kind: &str, doses: i64, reason: Option<&str>, category: &str| {
        json!({"stock_movement_id": id, "movement_date": date, "movement_type": kind, "site_id": "RXX01",
               "item_code": COMIRNATY, "category": category, "quantity": doses, "reason": reason})
    };
    let movements = vec![
        moved("M1", "2026-02-10", "receipt", 60, None, "vaccine"),
        moved("M2", "2026-02-20", "receipt", 30, None, "vaccine"),
        moved("M3", "2026-02-15", "wastage", 6, Some("Cold chain failure"), "vaccine"),
        moved("M4", "2026-02-25", "wastage", 2, Some("Vial not fully used"), "vaccine"),
        moved("M5", "2026-02-26", "wastage", 1, Some("Vial not fully used"), "vaccine"),
        moved("M6", "2026-01-01", "receipt", 100, None, "vaccine"),
        moved("M7", "2026-02-12", "receipt", 1000, None, "supplies"),
    ];
    let given = |id: &str, at: &str, status: &str| {
        json!({"vaccination_id": id, "patient_id": format!("999{id}"), "site_ods_code": "RXX01",
               "vaccine_code": COMIRNATY, "status": status, "occurrence_timestamp": at})
    };
    let vaccinations = vec![
        given("V1", "2026-02-11T10:00:00Z", "completed"),
        given("V2", "2026-02-21T10:00:00Z", "completed"),
        given("V3", "2026-03-02T09:00:00Z", "completed"),
        given("V4", "2026-02-21T11:00:00Z", "not-done"),
        given("V5", "2026-01-10T10:00:00Z", "completed"),
    ];
    MemoryTables::new()
        .with_rows("stock_level", &stock)
        .unwrap()
        .with_rows("appointment", &appointments)
        .unwrap()
        .with_rows("stock_movement", &movements)
        .unwrap()
        .with_rows("vaccination", &vaccinations)
        .unwrap()
}

async fn view(view: &str, role: &str, purpose: Purpose, params: &[(&str, &str)]) -> Result<Vec<Vec<Value>>, String> {
    DemoInstance::new(tables())
        .view(super::ID, role, purpose, "http", view, params)
        .await
        .map(|a| a.rows)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn cover_is_shortest_first_from_the_latest_count_in_date_against_standing_bookings() {
    let rows = view("cover", "vaccination-lead", Purpose::Operations, &[("as_at", "2026-03-02"), ("days", "5")])
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            // Booked for a product the site holds none of.
            vec![json!("RXX01"), json!(VAXZEVRIA), Value::Null, json!(0), json!(15), json!(3.0), json!(0), json!(15), json!(0), Value::Null],
            // Twelve doses meet three days of four.
            vec![json!("RXX02"), json!(COMIRNATY), json!("Comirnaty"), json!(12), json!(16), json!(3.2), json!(3), json!(4), json!(0), json!("2026-06-01")],
            // B1 (20, expiring on the 3rd) meets ten bookings and ten expire;
            // B3 and B2 meet the rest, and six doses of B2 are left.
            vec![json!("RXX01"), json!(COMIRNATY), json!("Comirnaty"), json!(56), json!(40), json!(8.0), json!(5), json!(0), json!(10), json!("2026-03-03")],
        ]
    );
    let one = view("cover", "vaccination-lead", Purpose::Operations, &[("as_at", "2026-03-02"), ("days", "5"), ("site", "RXX02")])
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0][0], json!("RXX02"));
    // A site written to widen the filter is a site no row has.
    for view_name in ["cover", "wastage"] {
        let widened = view(
            view_name,
            "vaccination-lead",
            Purpose::Operations,
            &[("as_at", "2026-03-02"), ("site", "RXX01' OR '1' = '1")],
        )
        .await
        .unwrap();
        assert!(widened.is_empty(), "{view_name}: {widened:?}");
    }
}

#[tokio::test]
async fn each_batch_shows_the_doses_booked_before_its_expiry_and_those_at_risk() {
    let rows = view("batches", "vaccination-lead", Purpose::Operations, &[("as_at", "2026-03-02"), ("days", "5")])
        .await
        .unwrap();
    let rxx01: Vec<(Value, Value, Value)> = rows
        .iter()
        .filter(|r| r[0] == json!("RXX01"))
        .map(|r| (r[2].clone(), r[5].clone(), r[6].clone()))
        .collect();
    assert_eq!(
        rxx01,
        vec![
            (json!("B1"), json!(10), json!(10)),
            (json!("B3"), json!(6), json!(0)),
            // Expires after the booked days: no booking says yet.
            (json!("B2"), Value::Null, Value::Null),
        ]
    );
}

#[tokio::test]
async fn wastage_is_supplied_less_given_with_the_reasons_recorded() {
    let rows = view("wastage", "vaccination-lead", Purpose::Operations, &[("as_at", "2026-03-02")])
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![vec![
            json!("RXX01"),
            json!(COMIRNATY),
            json!(90),
            json!(3),
            json!(87),
            json!(9),
            json!(10.0),
            json!("Cold chain failure: 6; Vial not fully used: 3"),
        ]]
    );
    let reasons = view("wastage-by-reason", "vaccination-lead", Purpose::Operations, &[("as_at", "2026-03-02")])
        .await
        .unwrap();
    assert_eq!(reasons[0], vec![json!("Cold chain failure"), json!("RXX01"), json!(COMIRNATY), json!(6)]);
    assert_eq!(reasons[1][3], json!(3));
    let err = view("wastage", "vaccination-lead", Purpose::Operations, &[("as_at", "2026-03-02"), ("from", "2026-03-05")])
        .await
        .unwrap_err();
    assert!(err.contains("after as_at"), "{err}");
}

#[tokio::test]
async fn only_roles_granted_stock_and_bookings_for_operations_see_them() {
    // The analyst's operations grant holds stock but not appointments.
    let err = view("cover", "analyst", Purpose::Operations, &[("as_at", "2026-03-02")])
        .await
        .unwrap_err();
    assert!(err.contains("appointment"), "{err}");
    // Planning is not a purpose the product serves.
    assert!(view("cover", "vaccination-lead", Purpose::Planning, &[]).await.is_err());
    assert!(view("cover", "vaccination-lead", Purpose::Operations, &[("days", "0")]).await.is_err());
}

#[test]
fn batches_are_used_first_expiry_first_and_none_after_its_expiry() {
    let b = |expiry: &str, doses: u64| Batch {
        expiry: day(expiry),
        batch: expiry.into(),
        doses,
    };
    // Nothing booked before the first batch expires: all of it at risk.
    let s = SiteStock {
        item_name: None,
        batches: vec![b("2026-03-03", 10), b("2026-03-20", 10)],
        booked: vec![0, 0, 4, 4],
    };
    let c = s.cover(day("2026-03-02"));
    assert_eq!((c.at_risk, c.unmet, c.days_of_cover), (10, 0, Some(4 + 2 * 4 / 8)));
    // A day's bookings beyond what is left in date: cover ends that day.
    let s = SiteStock {
        item_name: None,
        batches: vec![b("2026-03-02", 3)],
        booked: vec![2, 2, 2],
    };
    let c = s.cover(day("2026-03-02"));
    assert_eq!((c.at_risk, c.unmet, c.days_of_cover), (1, 4, Some(1)));
    // Nothing booked: no cover to give.
    let s = SiteStock {
        item_name: None,
        batches: vec![b("2026-04-01", 30)],
        booked: vec![0; 7],
    };
    assert_eq!(s.cover(day("2026-03-02")).days_of_cover, None);
}
