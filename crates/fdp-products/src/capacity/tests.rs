//! Matching patients to places, over a feed made here.

use chrono::Utc;
use fdp_govern::memory::MemoryTables;
use fdp_govern::Purpose;
use serde_json::json;

use super::*;
use crate::bed_board::{actions, board_for, ID};
use crate::platform::{run_action, ActionRequest, Registry};
use crate::testing::{request, DemoInstance, LiveFeed};

fn offer(kind: &str, free: u32, minutes_ago: i64) -> Offer {
    Offer {
        kind: kind.into(),
        location: format!("{kind} place"),
        specialty: None,
        free,
        total: Some(10),
        detail: None,
        updated_at: Utc::now() - chrono::Duration::minutes(minutes_ago),
        slot: None,
    }
}

#[test]
fn a_patient_is_offered_free_fresh_places_that_suit_the_pathway() {
    let feed = vec![Published {
        publisher: "VCH".into(),
        role: "care-provider".into(),
        offers: vec![
            offer("nursing", 2, 10),
            offer("dementia", 0, 5),
            offer("residential", 1, 60 * 48),
            offer("virtual-ward", 4, 1),
        ],
        published_at: Utc::now(),
        received_at: Utc::now(),
    }];
    let day = chrono::Duration::hours(24);
    let p3 = places_for(&feed, Some(3), Utc::now(), day);
    assert_eq!(
        p3.iter().map(|o| o.offer.kind.as_str()).collect::<Vec<_>>(),
        ["nursing"],
        "no dementia place is free and the residential figure is two days old"
    );
    let p1 = places_for(&feed, Some(1), Utc::now(), day);
    assert_eq!(p1[0].offer.kind, "virtual-ward");
    assert!(places_for(&feed, Some(0), Utc::now(), day).is_empty());
    assert!(places_for(&feed, None, Utc::now(), day).is_empty());
}

const WARD_CLERK: &str = r#"
[role.ward-clerk]
description = "Keeps the ward's records; not granted capacity"
[role.ward-clerk.direct-care]
objects = ["patient", "admission", "ward_stay", "ward", "bed", "discharge_readiness"]
identifying = "show"
quasi_identifying = "show"
clinical = "show"
operational = "show"
"#;

#[tokio::test]
async fn each_medically_optimised_patient_is_offered_places_their_grant_may_see() {
    let instance = DemoInstance::with_policy(MemoryTables::new(), WARD_CLERK);
    let feed = LiveFeed::new();
    feed.admit("V1", ("M1", "9434765919", "ALPHA"), ("W1", "B1"), 10)
        .await;
    feed.admit("V2", ("M2", "9434765005", "BRAVO"), ("W1", "B2"), 20)
        .await;
    for (admission, pathway) in [("V1", 3), ("V2", 1)] {
        let inputs = json!({"medically_optimised": true, "discharge_pathway": pathway});
        run_action(
            &Registry::builtin(),
            ActionRequest {
                product: ID,
                action: actions::READINESS,
                target: admission,
                inputs: &inputs,
                what: "test readiness",
            },
            instance.governance(),
            &request("clinician", Purpose::DirectCare, "ui"),
            &feed.live,
            &feed,
        )
        .await
        .unwrap();
    }
    let published = vec![Published {
        publisher: "VCH".into(),
        role: "care-provider".into(),
        offers: vec![offer("nursing", 2, 10), offer("dementia", 1, 5)],
        published_at: Utc::now(),
        received_at: Utc::now(),
    }];
    let options_as = |role: &'static str| {
        let (instance, feed, published) = (&instance, &feed, &published);
        async move {
            let req = request(role, Purpose::DirectCare, "ui");
            let (board, view) = board_for(instance.governance(), &req, &feed.live, "test")
                .await
                .unwrap();
            discharge_options(&board, Some(published), &view, Utc::now())
        }
    };
    let options = options_as("clinician").await;
    assert_eq!(options.len(), 2);
    let v1 = options.iter().find(|o| o.admission_id == "V1").unwrap();
    assert_eq!(v1.pathway, Some(3));
    assert_eq!(
        v1.places
            .iter()
            .map(|p| p.offer.kind.clone().unwrap())
            .collect::<Vec<_>>(),
        ["dementia", "nursing"],
        "the freshest first"
    );
    assert_eq!(v1.places[0].publisher.as_deref(), Some("VCH"));
    let v2 = options.iter().find(|o| o.admission_id == "V2").unwrap();
    assert_eq!(
        v2.suitable, 0,
        "pathway 1 wants a virtual ward; none is offered"
    );
    // A grant without capacity sees the patients waiting, and no place.
    let options = options_as("ward-clerk").await;
    assert_eq!(options.len(), 2);
    assert!(options
        .iter()
        .all(|o| o.places.is_empty() && o.suitable == 0));
}
