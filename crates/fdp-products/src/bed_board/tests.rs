//! The bed board alone, behind real governance (the demo policy and a
//! nurse kept to ward W1), over a live census fed real ADT messages.

use std::collections::BTreeMap;

use fdp_govern::{GovernError, Purpose};
use fdp_govern::memory::MemoryTables;
use serde_json::{json, Value};

use super::feed::BoardFeed;
use super::{actions, admission, board_for, ID};
use crate::platform::{run_action, run_census_view, ActionRequest, Output, ProductError, Registry};
use crate::testing::{request, DemoInstance, LiveFeed};

const WARD_NURSE: &str = r#"
[role.ward-nurse]
description = "A nurse on ward W1"
[role.ward-nurse.direct-care]
objects = ["*"]
change = ["*"]
wards = ["W1"]
identifying = "show"
quasi_identifying = "show"
clinical = "show"
operational = "show"
"#;

/// ALPHA (V1) and BRAVO (V2) on ward W1, CHARLIE (V3) on W2, admitted on
/// 10, 20 and 25 November.
async fn fixture() -> (DemoInstance, LiveFeed) {
    let instance = DemoInstance::with_policy(MemoryTables::new(), WARD_NURSE);
    let feed = LiveFeed::new();
    feed.admit("V1", ("M1", "9434765919", "ALPHA"), ("W1", "B1"), 10).await;
    feed.admit("V2", ("M2", "9434765005", "BRAVO"), ("W1", "B2"), 20).await;
    feed.admit("V3", ("M3", "9434765013", "CHARLIE"), ("W2", "B1"), 25).await;
    (instance, feed)
}

async fn view(
    instance: &DemoInstance,
    feed: &LiveFeed,
    role: &str,
    purpose: Purpose,
    channel: &str,
    view: &str,
) -> Result<Output, ProductError> {
    run_census_view(
        &Registry::builtin(),
        ID,
        view,
        instance.governance(),
        &request(role, purpose, channel),
        &feed.live,
        &format!("test {view}"),
        &BTreeMap::new(),
    )
    .await
}

/// The value of `column` in each row, as text.
fn column(out: &Output, column: &str) -> Vec<String> {
    let i = out.columns.iter().position(|c| c.name == column).unwrap();
    out.rows
        .iter()
        .map(|r| match &r[i] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        })
        .collect()
}

async fn act(
    instance: &DemoInstance,
    feed: &LiveFeed,
    role: &str,
    purpose: Purpose,
    action: &str,
    target: &str,
    inputs: Value,
) -> Result<Value, ProductError> {
    run_action(
        &Registry::builtin(),
        ActionRequest {
            product: ID,
            action,
            target,
            inputs: &inputs,
            what: &format!("test {action} {target}"),
        },
        instance.governance(),
        &request(role, purpose, "http"),
        &feed.live,
        feed,
    )
    .await
}

#[tokio::test]
async fn every_bed_with_its_patient_as_each_grant_shows_them_and_audited() {
    let (instance, feed) = fixture().await;
    let out = view(&instance, &feed, "clinician", Purpose::DirectCare, "http", "beds")
        .await
        .unwrap();
    assert_eq!(column(&out, "name"), ["ALPHA, Test", "BRAVO, Test", "CHARLIE, Test"]);
    assert_eq!(column(&out, "ward"), ["W1", "W1", "W2"]);
    assert_eq!(column(&out, "state"), ["occupied"; 3]);
    let served = instance.audit().into_iter().last().unwrap();
    assert_eq!(served.what, "test beds");
    assert_eq!(served.patients.len(), 3, "{served:?}");

    // The nurse kept to W1 sees W1's beds only.
    let out = view(&instance, &feed, "ward-nurse", Purpose::DirectCare, "ui", "beds")
        .await
        .unwrap();
    assert_eq!(column(&out, "name"), ["ALPHA, Test", "BRAVO, Test"]);

    // An analyst running operations inside the instance: beds and stays,
    // no one's name, every patient id pseudonymised.
    let out = view(&instance, &feed, "analyst", Purpose::Operations, "ui", "beds")
        .await
        .unwrap();
    assert_eq!(column(&out, "name"), ["[masked]"; 3]);
    for id in column(&out, "patient_id") {
        assert!(id.starts_with('p') && id.contains('-') && !id.starts_with("M"), "{id}");
    }
    assert!(!serde_json::to_string(&out).unwrap().contains("ALPHA"));

    // The counts by ward.
    let out = view(&instance, &feed, "clinician", Purpose::DirectCare, "http", "wards")
        .await
        .unwrap();
    assert_eq!(column(&out, "occupied"), ["2", "1"]);
    assert_eq!(column(&out, "stay_14_plus").len(), 2);
}

#[tokio::test]
async fn patients_one_by_one_never_leave_under_a_secondary_purpose() {
    let (instance, feed) = fixture().await;
    let refused = view(&instance, &feed, "analyst", Purpose::Planning, "http", "beds")
        .await
        .unwrap_err();
    assert!(refused.is_refusal(), "{refused}");
    assert!(refused.to_string().contains("one by one"), "{refused}");
    let audited = instance.audit().into_iter().last().unwrap();
    assert!(audited.outcome.starts_with("refused"), "{audited:?}");
    // A role with no grant for the purpose is refused too.
    let refused = view(&instance, &feed, "researcher", Purpose::DirectCare, "ui", "beds")
        .await
        .unwrap_err();
    assert!(refused.is_refusal(), "{refused}");
}

#[tokio::test]
async fn readiness_is_recorded_checked_and_audited_with_its_patient() {
    let (instance, feed) = fixture().await;
    let recorded = act(
        &instance,
        &feed,
        "ward-nurse",
        Purpose::DirectCare,
        actions::READINESS,
        "V1",
        json!({"medically_optimised": true, "medically_optimised_date": "2026-11-28",
               "discharge_pathway": 1, "waiting_for": ["package of care", " "]}),
    )
    .await
    .unwrap();
    assert_eq!(recorded["updated_by"], "a ward-nurse");
    assert_eq!(recorded["waiting_for"], json!(["package of care"]));
    let census = feed.live.read().await;
    assert_eq!(census.readiness["V1"].discharge_pathway, Some(1));
    drop(census);
    let change = instance.audit().into_iter().last().unwrap();
    assert_eq!((change.kind.as_str(), change.patients.as_slice()), ("change", &["M1".to_string()][..]));

    // Wrong inputs are named, and nothing is recorded.
    for (inputs, named) in [
        (json!({"medically_optimised": true, "discharge_pathway": 7}), "discharge_pathway"),
        (json!({"medically_optimised": "yes please"}), "medically_optimised"),
        (json!({"medically_optimised": true, "expected_discharge_date": "next week"}), "expected_discharge_date"),
        (json!({"discharge_pathway": 1}), "medically_optimised"),
        (json!({"medically_optimised": true, "ward": "W2"}), "ward"),
    ] {
        let e = act(&instance, &feed, "clinician", Purpose::DirectCare, actions::READINESS, "V2", inputs)
            .await
            .unwrap_err();
        assert!(matches!(&e, ProductError::Param { name, .. } if name == named), "{e}");
    }
    assert!(!feed.live.read().await.readiness.contains_key("V2"));

    // An admission that is not there.
    let e = act(&instance, &feed, "clinician", Purpose::DirectCare, actions::READINESS, "V9",
        json!({"medically_optimised": false})).await.unwrap_err();
    assert!(matches!(e, ProductError::NotFound(_)), "{e}");
}

#[tokio::test]
async fn a_change_outside_the_grant_is_refused_before_anything_is_looked_up() {
    let (instance, feed) = fixture().await;
    // Planning never changes records: refused alike for an admission that
    // exists and one that does not, so the refusal tells nothing.
    for target in ["V1", "no-such-admission"] {
        let e = act(&instance, &feed, "analyst", Purpose::Planning, actions::READINESS, target,
            json!({"medically_optimised": true})).await.unwrap_err();
        assert!(e.is_refusal(), "{e}");
    }
    // The nurse kept to W1 cannot change CHARLIE's on W2, nor close W2's
    // bed: answered as not there, audited as refused.
    let e = act(&instance, &feed, "ward-nurse", Purpose::DirectCare, actions::READINESS, "V3",
        json!({"medically_optimised": true})).await.unwrap_err();
    assert!(matches!(&e, ProductError::NotFound(m) if m.contains("among those the grant shows")), "{e}");
    let audited = instance.audit().into_iter().last().unwrap();
    assert!(audited.outcome.starts_with("refused"), "{audited:?}");
    assert!(!feed.live.read().await.readiness.contains_key("V3"));
    let w2_bed = feed.live.read().await.spells["V3"].bed_id.clone().unwrap();
    let e = act(&instance, &feed, "ward-nurse", Purpose::DirectCare, actions::BED_STATUS, &w2_bed,
        json!({"closed": true})).await.unwrap_err();
    assert!(matches!(e, ProductError::NotFound(_)), "{e}");
    assert_eq!(feed.live.read().await.beds[&w2_bed].status, fdp_ingest::adt::census::BedStatus::Open);
}

#[tokio::test]
async fn a_bed_closed_shows_closed_with_its_reason() {
    let (instance, feed) = fixture().await;
    // Free W1's second bed by discharging BRAVO, then close it.
    let bed = feed.live.read().await.spells["V2"].bed_id.clone().unwrap();
    feed.send(&format!(
        "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261130090000||ADT^A03^ADT_A03|D00001|P|2.4|||AL|NE|GBR|UNICODE UTF-8\nEVN|A03|20261130090000\nPID|1||9434765005^^^NHS^NH~M2^^^RXX^MR||BRAVO^Test^^^Mx||19500101|F\nPV1|1|I|W1^BAY1^B2^RXX01|21|||C100^JONES^Ann^^^Dr|||300{}V2^^^RXX^VN{}20261120080000|20261130090000",
        "|".repeat(9), "|".repeat(25)
    ))
    .await;
    act(&instance, &feed, "bed-manager", Purpose::Operations, actions::BED_STATUS, &bed,
        json!({"closed": true, "reason": "deep clean"})).await.unwrap();
    let out = view(&instance, &feed, "clinician", Purpose::DirectCare, "ui", "beds").await.unwrap();
    let states = column(&out, "state");
    assert_eq!(states, ["occupied", "closed", "occupied"], "{out:?}");
    let (board, _) = board_for(instance.governance(), &request("clinician", Purpose::DirectCare, "ui"), &feed.live, "test board")
        .await
        .unwrap();
    let closed = board.sites[0].wards[0].beds.iter().find(|b| b.bed_id == bed).unwrap();
    assert_eq!(closed.closed_reason.as_deref(), Some("deep clean"));
    assert_eq!(board.counts.closed, 1);
}

#[tokio::test]
async fn the_live_feed_sends_what_changed_and_audits_who_appears() {
    let (instance, feed) = fixture().await;
    let (first, view) = board_for(
        instance.governance(),
        &request("ward-nurse", Purpose::DirectCare, "ui"),
        &feed.live,
        "test events",
    )
    .await
    .unwrap();
    let mut updates = BoardFeed::opened(&first, view);
    let now = chrono::Utc::now();
    let update = updates.next(&feed.live).await.unwrap();
    assert_eq!(update["beds"].as_object().unwrap().len(), 2, "W1's beds only: {update}");
    assert_eq!(update["counts"]["occupied"], 2);
    let unchanged = updates.next_from(&*feed.live.read().await, now).unwrap();
    assert!(unchanged["beds"].as_object().unwrap().is_empty(), "{unchanged}");

    // BRAVO is medically optimised: one bed changes, flagged `mo`.
    act(&instance, &feed, "ward-nurse", Purpose::DirectCare, actions::READINESS, "V2",
        json!({"medically_optimised": true})).await.unwrap();
    let update = updates.next_from(&*feed.live.read().await, now).unwrap();
    let beds = update["beds"].as_object().unwrap();
    assert_eq!(beds.len(), 1, "{update}");
    assert!(beds.values().next().unwrap()["flags"].as_str().unwrap().contains("mo"));

    // A patient admitted to W1 appears, and the stream is audited with them
    // (and no one on W2 ever is).
    feed.admit("V4", ("M4", "9434765021", "DELTA"), ("W1", "B3"), 30).await;
    feed.admit("V5", ("M5", "9434765048", "ECHO"), ("W2", "B2"), 30).await;
    let before = instance.audit().len();
    let update = updates.next_from(&*feed.live.read().await, now).unwrap();
    assert!(update.to_string().contains("DELTA") && !update.to_string().contains("ECHO"), "{update}");
    let audited: Vec<_> = instance.audit().into_iter().skip(before).collect();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].patients, ["M4"]);

    // A patient admitted to W1 whom the PAS has not yet given a bed is on
    // the board all the same, and audited when they appear.
    feed.admit_without_bed("V6", ("M6", "9434765056", "FOXTROT"), "W1", 30).await;
    let before = instance.audit().len();
    updates.next_from(&*feed.live.read().await, now).unwrap();
    let audited: Vec<_> = instance.audit().into_iter().skip(before).collect();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].patients, ["M6"]);
}

#[tokio::test]
async fn an_admission_as_the_policy_shows_it() {
    let (instance, feed) = fixture().await;
    let (record, _) = admission::admission_for(
        instance.governance(),
        &request("bed-manager", Purpose::Operations, "ui"),
        &feed.live,
        "V1",
        "test admission",
    )
    .await
    .unwrap();
    assert_eq!(record.name, "Test ALPHA");
    assert_eq!(record.nhs_number, "[masked]");
    assert_eq!(record.stays.len(), 1);
    assert_eq!(record.stays[0].ward.as_deref(), Some("W1"));
    let served = instance.audit().into_iter().last().unwrap();
    assert_eq!(served.patients, ["M1"]);

    let Err(refused) = admission::admission_for(
        instance.governance(),
        &request("ward-nurse", Purpose::DirectCare, "ui"),
        &feed.live,
        "V3",
        "test admission",
    )
    .await
    else {
        panic!("the nurse on W1 saw an admission on W2");
    };
    assert!(matches!(refused, ProductError::Govern(GovernError::Refused(_))), "{refused}");
}
