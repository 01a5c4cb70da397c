//! Discharge referrals alone, behind real governance (the demo policy, a
//! nurse whose grant masks names, and a national data opt-out), over a
//! live census fed real ADT messages.

use std::collections::HashMap;

use chrono::Utc;
use fdp_fhir::referral::ReferralRecord;
use fdp_govern::memory::MemoryTables;
use fdp_govern::{GovernError, Purpose};
use serde_json::Value;

use super::{discharge_referral, governed, nhs_numbers, Asked, NewReferral, Referral, Status};
use crate::platform::ProductError;
use crate::testing::{request, DemoInstance, LiveFeed};

const MASKED_NURSE: &str = r#"
[role.masked-nurse]
description = "A nurse whose grant masks names"
[role.masked-nurse.direct-care]
objects = ["*"]
identifying = "mask"
quasi_identifying = "show"
clinical = "show"
operational = "show"
"#;

/// ALPHA (V1, NHS 9434765919) and BRAVO (V2, NHS 9434765005, who has
/// opted out of secondary use) on ward W1.
async fn fixture() -> (DemoInstance, LiveFeed) {
    let instance = DemoInstance::with_policy(MemoryTables::new(), MASKED_NURSE);
    instance.opt_out(&["9434765005"]);
    let feed = LiveFeed::new();
    feed.admit("V1", ("M1", "9434765919", "ALPHA"), ("W1", "B1"), 10)
        .await;
    feed.admit("V2", ("M2", "9434765005", "BRAVO"), ("W1", "B2"), 20)
        .await;
    (instance, feed)
}

fn asked(admission: &str) -> Asked {
    Asked {
        admission_id: admission.into(),
        to: "CARE1".into(),
        lawful_basis: "UK GDPR 6(1)(e) and 9(2)(h): direct care".into(),
        care_needs: vec!["nursing care".into(), "hoist for transfers".into()],
        summary: "Medically optimised; home with a package of care".into(),
    }
}

/// A referral of `asked` by someone in `role` for `purpose`, from RXX.
async fn refer(
    instance: &DemoInstance,
    feed: &LiveFeed,
    role: &str,
    purpose: Purpose,
    asked: Asked,
) -> Result<NewReferral, ProductError> {
    discharge_referral(
        &feed.live,
        instance.governance(),
        request(role, purpose, "http"),
        "RXX",
        asked,
    )
    .await
}

#[tokio::test]
async fn a_referral_carries_the_record_from_the_census_and_is_audited_with_the_patient() {
    let (instance, feed) = fixture().await;
    let made = refer(
        &instance,
        &feed,
        "clinician",
        Purpose::DirectCare,
        asked("V1"),
    )
    .await
    .unwrap();
    assert_eq!(made.patient, "M1");
    assert_eq!(made.admission.as_deref(), Some("V1"));
    let record = ReferralRecord::read(&made.bundle);
    assert_eq!(record.nhs_number.as_deref(), Some("9434765919"));
    assert_eq!(record.name, "Test ALPHA");
    assert_eq!(
        record.summary,
        "Medically optimised; home with a package of care"
    );
    let entry = instance
        .audit()
        .into_iter()
        .rev()
        .find(|e| e.what.contains("discharge referral of admission V1"))
        .expect("the read of the record is audited");
    assert_eq!(entry.patients, ["M1"]);
    assert_eq!(
        entry.justification.as_deref(),
        Some("UK GDPR 6(1)(e) and 9(2)(h): direct care")
    );
}

#[tokio::test]
async fn a_referral_is_refused_saying_why() {
    let (instance, feed) = fixture().await;
    let no_basis = Asked {
        lawful_basis: " ".into(),
        ..asked("V1")
    };
    let e = refer(&instance, &feed, "clinician", Purpose::DirectCare, no_basis)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProductError::Param { name, .. } if name == "lawful_basis"),
        "{e}"
    );
    let e = refer(&instance, &feed, "analyst", Purpose::Planning, asked("V1"))
        .await
        .unwrap_err();
    assert!(e.is_refusal(), "{e}");
    let e = refer(
        &instance,
        &feed,
        "clinician",
        Purpose::DirectCare,
        asked("V9"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ProductError::NotFound(_)), "{e}");
    // A whole record cannot go with a field masked.
    let e = refer(
        &instance,
        &feed,
        "masked-nurse",
        Purpose::DirectCare,
        asked("V1"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, ProductError::Govern(GovernError::Refused(_))),
        "{e}"
    );
    assert!(e.is_refusal(), "{e}");
}

/// A referral received of `patient` with `bundle`, and one sent of M2.
fn ledger(bundle: Value) -> Vec<Referral> {
    let now = Utc::now();
    let referral = |id: &str, from: &str, to: &str, patient: &str| Referral {
        id: id.into(),
        from: from.into(),
        to: to.into(),
        patient: patient.into(),
        admission: Some("V".into()),
        lawful_basis: "direct care".into(),
        care_needs: vec!["hoist for transfers".into()],
        status: Status::Delivered,
        reason: None,
        sent_at: now,
        updated_at: now,
        record: Vec::new(),
        bundle: Value::Null,
    };
    let mut received = referral("r1", "RYY", "RXX", "M1");
    received.record = vec!["Patient/RYY.M1".into()];
    received.bundle = bundle;
    vec![received, referral("r2", "RXX", "CARE1", "M2")]
}

#[tokio::test]
async fn a_policy_decides_what_is_seen_of_referrals() {
    let (instance, feed) = fixture().await;
    let made = refer(
        &instance,
        &feed,
        "clinician",
        Purpose::DirectCare,
        asked("V1"),
    )
    .await
    .unwrap();
    let all = ledger(made.bundle);
    let numbers = nhs_numbers(&feed.live, &all).await;
    // The number of the patient sent (whose record is not kept with the
    // referral) comes from the census.
    assert_eq!(
        numbers,
        HashMap::from([("M2".to_string(), "9434765005".to_string())])
    );
    let seen = |role: &str, purpose: Purpose| {
        let view = instance
            .governance()
            .product_view(
                &request(role, purpose, "ui"),
                &["patient", "admission"],
                "test referrals",
            )
            .unwrap();
        governed(all.clone(), &view, &numbers)
    };

    // Direct care, everything shown: both, whole.
    let clinician = seen("clinician", Purpose::DirectCare);
    assert_eq!(clinician.len(), 2);
    assert_eq!(clinician[0].patient, "M1");
    assert_eq!(clinician[0].care_needs, ["hoist for transfers"]);
    assert!(!clinician[0].bundle.is_null());
    assert_eq!(clinician[0].record, ["Patient/RYY.M1"]);

    // A grant that masks names: no whole record, and where it was stored
    // not said either; the care needs (identifying notes) masked.
    let masked = seen("masked-nurse", Purpose::DirectCare);
    assert_eq!(masked.len(), 2);
    assert!(masked
        .iter()
        .all(|r| r.bundle.is_null() && r.record.is_empty()));
    assert!(masked[0]
        .care_needs
        .iter()
        .all(|n| n != "hoist for transfers"));

    // Planning: the patient who opted out is left out, whichever side of
    // the referral they are on, and the rest are pseudonymised.
    let planning = seen("analyst", Purpose::Planning);
    assert_eq!(planning.len(), 1, "{planning:?}");
    assert_eq!(planning[0].id, "r1");
    assert_ne!(planning[0].patient, "M1");
    assert!(planning[0].bundle.is_null());
}
