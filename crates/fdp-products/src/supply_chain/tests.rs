//! The product alone, behind the demo policy, over tables in memory.

use chrono::{Days, NaiveDate};
use fdp_govern::memory::MemoryTables;
use fdp_govern::Purpose;
use serde_json::{json, Value};

use crate::testing::DemoInstance;

const GLOVES: &str = "FTR202";
const CATHETER: &str = "MRB602";
const SHORT: &str = "RXX01:W01";
const SPARE: &str = "RXX01:W02";
const QUIET: &str = "RXX01:W03";
const AS_AT: &str = "2026-06-30";

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Three wards from February to June 2026. W01 uses ten pairs of gloves a
/// day, topped up every Monday, and its last top-up was missed: counted on
/// the 29th it holds none. W02 uses five a day and holds about a thousand
/// after a duplicated delivery, and its count finds a hundred more than
/// the books. W03 uses a catheter now and then.
fn tables() -> MemoryTables {
    tables_with(&[])
}

/// [`tables`] with more movements.
fn tables_with(more: &[Value]) -> MemoryTables {
    tables_with_all(more, &[], &[])
}

/// [`tables`] with more movements, counts and catalogue items.
fn tables_with_all(more: &[Value], more_stock: &[Value], more_catalogue: &[Value]) -> MemoryTables {
    let mut moves: Vec<Value> = more.to_vec();
    let mut mv = |location: &str, item: &str, date: NaiveDate, kind: &str, q: i64| {
        let n = moves.len();
        moves.push(json!({"stock_movement_id": format!("M{n}"), "movement_date": date.to_string(),
            "movement_type": kind, "item_code": item, "category": "supplies", "quantity": q,
            "site_id": "RXX01", "location_id": location}));
    };
    let start = day("2026-02-01");
    let mut d = start;
    while d <= day("2026-06-29") {
        mv(SHORT, GLOVES, d, "issue", 10);
        mv(SPARE, GLOVES, d, "issue", 5);
        // Mondays, until the last one was missed.
        if d.format("%u").to_string() == "1" && d < day("2026-06-22") {
            mv(SHORT, GLOVES, d, "receipt", 70);
            mv(SPARE, GLOVES, d, "receipt", 35);
        }
        if (d - start).num_days() % 40 == 7 {
            mv(QUIET, CATHETER, d, "issue", 2);
        }
        d = d + Days::new(1);
    }
    mv(SPARE, GLOVES, day("2026-05-20"), "receipt", 900);
    let count = |id: &str, location: &str, item: &str, date: &str, q: i64| {
        json!({"stock_level_id": id, "site_id": "RXX01", "location_id": location, "item_code": item,
               "category": "supplies", "quantity": q, "as_of_timestamp": format!("{date}T07:00:00Z")})
    };
    // Counts before the day's movements: 1 February, and the 29th of June.
    let mut stock = vec![
        count("C1", SHORT, GLOVES, "2026-02-01", 80),
        count("C2", SPARE, GLOVES, "2026-02-01", 40),
        count("C3", QUIET, CATHETER, "2026-02-01", 6),
        // 80 + 20 Mondays × 70 − 148 days × 10 = 0, as counted.
        count("C4", SHORT, GLOVES, "2026-06-29", 0),
        count("C5", SPARE, GLOVES, "2026-06-29", 1000),
    ];
    stock.extend(more_stock.iter().cloned());
    let mut catalogue = vec![
        json!({"item_code": GLOVES, "gtin": "05012345002026", "item_name": "Gloves nitrile medium",
               "product_category": "Gloves", "lead_time_days": 4, "critical": true, "equivalence_group": "gloves-exam-medium"}),
        json!({"item_code": CATHETER, "item_name": "Catheter Foley 14Ch", "product_category": "Continence and urology",
               "lead_time_days": 8, "critical": true}),
    ];
    catalogue.extend(more_catalogue.iter().cloned());
    MemoryTables::new()
        .with_rows("stock_movement", &moves)
        .unwrap()
        .with_rows("stock_level", &stock)
        .unwrap()
        .with_rows("supply_item", &catalogue)
        .unwrap()
}

async fn view(instance: &DemoInstance, view: &str, role: &str, params: &[(&str, &str)]) -> Result<(Vec<String>, Vec<Vec<Value>>), String> {
    instance
        .view(super::ID, role, Purpose::Operations, "http", view, params)
        .await
        .map(|a| (a.columns.iter().map(|c| c.name.clone()).collect(), a.rows))
        .map_err(|e| e.to_string())
}

fn cell<'a>(columns: &[String], row: &'a [Value], name: &str) -> &'a Value {
    &row[columns.iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name}"))]
}

#[tokio::test]
async fn the_short_ward_is_met_from_the_ward_holding_spare_and_the_transfer_moves_the_stock() {
    let instance = DemoInstance::new(tables());
    let (cols, rows) = view(&instance, "stock", "supplies-lead", &[("as_at", AS_AT)]).await.unwrap();
    let line = |loc: &str, item: &str| {
        rows.iter()
            .find(|r| cell(&cols, r, "location") == &json!(loc) && cell(&cols, r, "item_code") == &json!(item))
            .cloned()
            .unwrap_or_else(|| panic!("no line {loc} {item}: {rows:?}"))
    };
    let short = line(SHORT, GLOVES);
    // 0 counted on the 29th, ten used that day: the books say -10 and
    // nothing is on the shelf.
    assert_eq!(cell(&cols, &short, "status"), &json!("out of stock"), "{short:?}");
    let spare = line(SPARE, GLOVES);
    assert_eq!(cell(&cols, &spare, "status"), &json!("above maximum"));
    assert_eq!(cell(&cols, &spare, "on_hand"), &json!(995.0));
    assert_eq!(cell(&cols, &spare, "category"), &json!("Gloves"));

    let (cols, rows) = view(&instance, "suggestions", "supplies-lead", &[("as_at", AS_AT)]).await.unwrap();
    let transfer = rows
        .iter()
        .find(|r| cell(&cols, r, "to") == &json!(SHORT))
        .cloned()
        .unwrap_or_else(|| panic!("nothing suggested for {SHORT}: {rows:?}"));
    assert_eq!(cell(&cols, &transfer, "kind"), &json!("transfer"));
    assert_eq!(cell(&cols, &transfer, "from"), &json!(SPARE));
    let quantity = cell(&cols, &transfer, "quantity").as_f64().unwrap();
    assert!(quantity > 250.0, "{transfer:?}");
    assert!(!rows.iter().any(|r| cell(&cols, r, "kind") == &json!("order") && cell(&cols, r, "to") == &json!(SHORT)));
    let id = cell(&cols, &transfer, "suggestion").as_str().unwrap().to_string();

    let done = instance
        .act(super::ID, super::ACCEPT, &id, ("sam.supplies", "supplies-lead"), Purpose::Operations, json!({"as_at": AS_AT}))
        .await
        .unwrap();
    assert_eq!(done["status"], json!("moved"));
    assert_eq!(done["from"], json!(SPARE));

    let (cols, rows) = view(&instance, "stock", "supplies-lead", &[("as_at", AS_AT), ("item", GLOVES)]).await.unwrap();
    let on_hand = |loc: &str| {
        rows.iter()
            .find(|r| cell(&cols, r, "location") == &json!(loc))
            .map(|r| cell(&cols, r, "on_hand").as_f64().unwrap())
            .unwrap()
    };
    assert_eq!(on_hand(SHORT), -10.0 + quantity);
    assert_eq!(on_hand(SPARE), 995.0 - quantity);
    // Accepted once: the same suggestion no longer stands.
    let again = instance
        .act(super::ID, super::ACCEPT, &id, ("sam.supplies", "supplies-lead"), Purpose::Operations, json!({"as_at": AS_AT}))
        .await
        .unwrap_err();
    assert!(again.to_string().contains("no suggestion"), "{again}");
}

#[tokio::test]
async fn discrepancies_and_history_are_shown() {
    let instance = DemoInstance::new(tables());
    let (cols, rows) = view(&instance, "discrepancies", "supplies-lead", &[("as_at", AS_AT)]).await.unwrap();
    // W02: 40 + 20 × 35 + 900 − 148 × 5 = 900 by the books on the morning
    // of the 29th, 1000 counted.
    let w02 = rows.iter().find(|r| cell(&cols, r, "location") == &json!(SPARE)).unwrap();
    assert_eq!(cell(&cols, w02, "difference"), &json!(100.0), "{rows:?}");
    assert_eq!(cell(&cols, w02, "expected"), &json!(900.0));
    // W01's count agreed with its books.
    assert!(!rows.iter().any(|r| cell(&cols, r, "location") == &json!(SHORT)), "{rows:?}");

    let (cols, rows) = view(&instance, "history", "supplies-lead", &[("as_at", AS_AT), ("location", SPARE), ("item", GLOVES)])
        .await
        .unwrap();
    let months: Vec<&Value> = rows.iter().map(|r| cell(&cols, r, "month")).collect();
    assert_eq!(months.first(), Some(&&json!("2026-02")));
    // Five complete months, then three ahead with a band.
    assert_eq!(rows.len(), 5 + 3, "{rows:?}");
    let march = &rows[1];
    assert_eq!(cell(&cols, march, "use"), &json!(155.0));
    let ahead = &rows[5];
    assert!(cell(&cols, ahead, "lower").as_f64().unwrap() <= cell(&cols, ahead, "forecast").as_f64().unwrap());
    assert!(view(&instance, "history", "supplies-lead", &[("as_at", AS_AT)]).await.is_err());
}

#[tokio::test]
async fn the_heat_map_and_area_demand_cover_every_location_and_item() {
    let instance = DemoInstance::new(tables());
    let (cols, rows) = view(&instance, "heat-map", "supplies-lead", &[("as_at", AS_AT)]).await.unwrap();
    let cells: Vec<(Value, Value)> = rows
        .iter()
        .map(|r| (cell(&cols, r, "location").clone(), cell(&cols, r, "category").clone()))
        .collect();
    assert_eq!(
        cells,
        vec![
            (json!(SHORT), json!("Gloves")),
            (json!(SPARE), json!("Gloves")),
            (json!(QUIET), json!("Continence and urology")),
        ]
    );
    let (cols, rows) = view(&instance, "demand", "supplies-lead", &[("as_at", AS_AT)]).await.unwrap();
    let gloves = rows.iter().find(|r| cell(&cols, r, "item_code") == &json!(GLOVES)).unwrap();
    assert_eq!(cell(&cols, gloves, "locations"), &json!(2));
    let f = cell(&cols, gloves, "forecast_per_month").as_f64().unwrap();
    // About 300 and 150 a month.
    assert!((400.0..500.0).contains(&f), "{f}");
}

#[tokio::test]
async fn only_the_supplies_grant_sees_or_moves_stock() {
    let instance = DemoInstance::new(tables());
    // The analyst reads stock for operations but has no catalogue: the
    // product still answers, without categories.
    assert!(view(&instance, "stock", "analyst", &[("as_at", AS_AT)]).await.is_ok());
    // No change is granted to the analyst.
    let (cols, rows) = view(&instance, "suggestions", "supplies-lead", &[("as_at", AS_AT)]).await.unwrap();
    let id = cell(&cols, &rows[0], "suggestion").as_str().unwrap().to_string();
    let refused = instance
        .act(super::ID, super::ACCEPT, &id, ("ann.analyst", "analyst"), Purpose::Operations, json!({"as_at": AS_AT}))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("stock_movement"), "{refused}");
    // Roles without stock see nothing of it.
    assert!(view(&instance, "stock", "theatre-scheduler", &[("as_at", AS_AT)]).await.is_err());
    // Planning is not a purpose the product serves.
    assert!(instance
        .view(super::ID, "supplies-lead", Purpose::Planning, "http", "stock", &[])
        .await
        .is_err());
    // A location written to widen the filter matches none.
    let (_, widened) = view(&instance, "stock", "supplies-lead", &[("as_at", AS_AT), ("location", "x' OR '1' = '1")]).await.unwrap();
    assert!(widened.is_empty(), "{widened:?}");
    // A made-up suggestion is not found.
    let none = instance
        .act(super::ID, super::ACCEPT, "T-000000000000", ("sam.supplies", "supplies-lead"), Purpose::Operations, json!({"as_at": AS_AT}))
        .await
        .unwrap_err();
    assert!(none.to_string().contains("T-000000000000"), "{none}");
}

#[tokio::test]
async fn what_is_left_once_the_short_ward_is_met_is_spare_and_a_dispatch_takes_it_away() {
    let instance = DemoInstance::new(tables());
    let number = |cols: &[String], r: &[Value], k: &str| cell(cols, r, k).as_f64().unwrap();
    let (cols, rows) = view(&instance, "demand", "supplies-lead", &[("as_at", AS_AT)]).await.unwrap();
    let gloves = rows.iter().find(|r| cell(&cols, r, "item_code") == &json!(GLOVES)).unwrap();
    // W02's thousand covers W01's need, and what is left is spare: nothing
    // is to be ordered.
    let spare = number(&cols, gloves, "spare");
    assert!(spare >= 1.0, "{gloves:?}");
    assert_eq!(number(&cols, gloves, "to_order"), 0.0);
    let (scols, srows) = view(&instance, "spare", "supplies-lead", &[("as_at", AS_AT)]).await.unwrap();
    assert_eq!(srows.len(), 1, "{srows:?}");
    assert_eq!(cell(&scols, &srows[0], "location"), &json!(SPARE));
    assert_eq!(cell(&scols, &srows[0], "reason"), &json!("above maximum"));
    assert_eq!(number(&scols, &srows[0], "quantity"), spare);
    // What the transfer to W01 takes is not spare: W02's surplus less it.
    let (tcols, trows) = view(&instance, "suggestions", "supplies-lead", &[("as_at", AS_AT)]).await.unwrap();
    let moved: f64 = trows.iter().filter(|r| cell(&tcols, r, "kind") == &json!("transfer")).map(|r| number(&tcols, r, "quantity")).sum();
    assert_eq!(number(&cols, gloves, "surplus") - moved, spare);

    // Sent to another trust: gone from W02, and not use.
    let (kcols, before) = view(&instance, "stock", "supplies-lead", &[("as_at", AS_AT), ("location", SPARE)]).await.unwrap();
    let dispatch = json!({"stock_movement_id": "D1", "movement_date": AS_AT, "movement_type": "dispatch",
        "item_code": GLOVES, "category": "supplies", "quantity": 200, "site_id": "RXX01", "location_id": SPARE});
    let sent = DemoInstance::new(tables_with(&[dispatch]));
    let (_, after) = view(&sent, "stock", "supplies-lead", &[("as_at", AS_AT), ("location", SPARE)]).await.unwrap();
    assert_eq!(number(&kcols, &after[0], "on_hand"), number(&kcols, &before[0], "on_hand") - 200.0);
    assert_eq!(cell(&kcols, &after[0], "amc"), cell(&kcols, &before[0], "amc"));
}

#[tokio::test]
async fn a_short_item_names_the_equivalents_its_ward_holds_beyond_their_own_need() {
    const OTHER_BRAND: &str = "FTR292";
    const OTHER_SIZE: &str = "FTR203";
    let count = |id: &str, location: &str, item: &str, q: i64| {
        json!({"stock_level_id": id, "site_id": "RXX01", "location_id": location, "item_code": item,
               "category": "supplies", "quantity": q, "as_of_timestamp": "2026-06-29T07:00:00Z"})
    };
    // W01 is out of medium gloves but holds 300 of another maker's medium
    // gloves, used two a day, and 300 large gloves, which do not fit.
    let moves: Vec<Value> = (1..=28)
        .map(|d| {
            json!({"stock_movement_id": format!("A{d}"), "movement_date": format!("2026-06-{d:02}"),
                "movement_type": "issue", "item_code": OTHER_BRAND, "category": "supplies", "quantity": 2,
                "site_id": "RXX01", "location_id": SHORT})
        })
        .collect();
    let stock = [count("C6", SHORT, OTHER_BRAND, 300), count("C7", SHORT, OTHER_SIZE, 300)];
    let catalogue = [
        json!({"item_code": OTHER_BRAND, "item_name": "Gloves nitrile medium (second supplier)", "product_category": "Gloves",
               "lead_time_days": 4, "critical": true, "equivalence_group": "gloves-exam-medium"}),
        json!({"item_code": OTHER_SIZE, "item_name": "Gloves nitrile large", "product_category": "Gloves",
               "lead_time_days": 4, "critical": true, "equivalence_group": "gloves-exam-large"}),
    ];
    let instance = DemoInstance::new(tables_with_all(&moves, &stock, &catalogue));
    let (cols, rows) = view(&instance, "shortages", "supplies-lead", &[("as_at", AS_AT)]).await.unwrap();
    let short = rows
        .iter()
        .find(|r| cell(&cols, r, "location") == &json!(SHORT) && cell(&cols, r, "item_code") == &json!(GLOVES))
        .unwrap_or_else(|| panic!("{rows:?}"));
    let alternatives = cell(&cols, short, "alternatives").as_str().unwrap();
    assert!(alternatives.starts_with(&format!("{OTHER_BRAND} (")), "{alternatives}");
    assert!(!alternatives.contains(OTHER_SIZE), "{alternatives}");
    // What is named as spare leaves the alternative its own reorder point.
    let spare: f64 = alternatives[OTHER_BRAND.len() + 2..].split(' ').next().unwrap().parse().unwrap();
    assert!(spare > 200.0 && spare < 300.0, "{alternatives}");
    // W02 holds no equivalent: nothing is named for an item without one.
    let (_, rows) = view(&DemoInstance::new(tables()), "shortages", "supplies-lead", &[("as_at", AS_AT)]).await.unwrap();
    assert!(rows.iter().all(|r| cell(&cols, r, "alternatives") == &json!("")), "{rows:?}");
}
