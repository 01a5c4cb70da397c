//! The census against the PAS simulator's own record of who is in which bed.
//!
//! The simulator knows exactly where every patient is after each message it
//! emits (cancellations, swaps, leave and merges included). Feeding its
//! stream through classification and the census must give the same beds.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use fdp_ingest::adt::census::Census;
use fdp_ingest::adt::{canonical, event::bed_id};
use fdp_ingest::{hl7v2, live};
use fdp_store::RawRecord;
use fdp_synth::{MalformedReason, MessageKind, PasConfig, PasSimulator, Trust, TrustSpec};

fn record(seq: u64, bytes: &[u8]) -> (RawRecord, hl7v2::Verdict) {
    let c = hl7v2::classify(bytes, "synth", 1_763_600_000_000_000 + seq as i64);
    let s = c.submission;
    (s.into_record(seq), c.verdict)
}

/// Synthetic bed id → the census's id for the same bed.
fn bed_ids(trust: &Trust) -> BTreeMap<String, String> {
    trust
        .beds()
        .map(|b| {
            (
                b.bed.id.clone(),
                bed_id(&b.site.code, &b.ward.code, &b.bed.bay, &b.bed.label),
            )
        })
        .collect()
}

fn compare(census: &Census, sim: &PasSimulator, ids: &BTreeMap<String, String>, at: usize) {
    let mut mismatches = Vec::new();
    for (synth_bed, expected) in sim.expected_occupancy() {
        let ours = census.occupant(&ids[&synth_bed]);
        let ok = match (&expected, ours) {
            (None, None) => true,
            (Some(e), Some(s)) => {
                s.admission_id == e.spell_id
                    && s.on_leave == e.on_leave
                    && census.patients[&s.patient_id].nhs_number.as_deref()
                        == Some(e.nhs_number.as_str())
            }
            _ => false,
        };
        if !ok {
            mismatches.push(format!(
                "{synth_bed}: simulator {:?}, census {:?}",
                expected.as_ref().map(|e| (&e.spell_id, e.on_leave)),
                ours.map(|s| (&s.admission_id, s.on_leave))
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "after {at} messages, {} beds differ, e.g. {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(5)]
    );
}

#[test]
fn census_matches_the_simulator_bed_for_bed() {
    for seed in [3u64, 11] {
        let trust = Trust::generate(seed, TrustSpec::default()).unwrap();
        let ids = bed_ids(&trust);
        let mut sim = PasSimulator::new(&trust, seed, PasConfig::for_trust(&trust)).unwrap();
        let mut census = Census::new();
        for b in live::parse_bed_register(trust.bed_register_csv().as_bytes()).unwrap() {
            census.register_bed(b);
        }
        let start = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
        let mut seq = 0u64;
        for m in sim.census(start) {
            seq += 1;
            let (rec, verdict) = record(seq, &m.bytes);
            assert_eq!(
                verdict,
                hl7v2::Verdict::Accept,
                "census message {}",
                m.control_id
            );
            live::apply(&mut census, &rec);
        }
        compare(&census, &sim, &ids, seq as usize);
        let mut now = start;
        for i in 0..20_000 {
            now += Duration::seconds(45);
            let m = sim.next(now);
            seq += 1;
            let (rec, verdict) = record(seq, &m.bytes);
            match (&m.kind, &verdict) {
                (MessageKind::Valid, hl7v2::Verdict::Accept) => {}
                (MessageKind::Valid, v) => {
                    panic!("valid {} message {} judged {v:?}", m.event, m.control_id)
                }
                // A patient's NHS number failing its check is no reason to
                // refuse the message: it is accepted under the hospital
                // number, flagged, and the number on record is kept.
                (
                    MessageKind::Malformed(MalformedReason::InvalidNhsNumber),
                    hl7v2::Verdict::Accept,
                ) => {}
                (MessageKind::Malformed(why), hl7v2::Verdict::Quarantine { .. }) => {
                    assert_ne!(*why, MalformedReason::InvalidNhsNumber, "{}", m.control_id);
                }
                (MessageKind::Malformed(why), v) => {
                    panic!("malformed ({why:?}) message {} judged {v:?}", m.control_id)
                }
                (MessageKind::Unprocessed, hl7v2::Verdict::Unprocessed) => {}
                (k, v) => panic!("{k:?} message {} judged {v:?}", m.control_id),
            }
            live::apply(&mut census, &rec);
            if i % 2_000 == 1_999 {
                compare(&census, &sim, &ids, seq as usize);
            }
        }
        compare(&census, &sim, &ids, seq as usize);

        // Every canonical row the census implies fits the model's tables.
        let model = fdp_model::Model::canonical();
        for (type_name, rows) in canonical::rows(&census) {
            let ot = model.object_type(type_name).unwrap();
            let schema = Arc::new(ot.arrow_schema());
            let batch = fdp_store::rows::batch_from_rows(&schema, &rows)
                .unwrap_or_else(|e| panic!("{type_name}: {e}"));
            assert_eq!(batch.num_rows(), rows.len());
        }
    }
}

/// Months of feed through a census that retires what finished a month ago:
/// the beds still match the simulator, and the census stays a month large.
#[test]
fn a_census_with_retention_matches_the_simulator_after_months() {
    let seed = 5u64;
    let trust = Trust::generate(seed, TrustSpec::default()).unwrap();
    let ids = bed_ids(&trust);
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut feed = fdp_synth::pas::Feed::new(&trust, seed, start, 70, 500).unwrap();
    let mut census = Census::new();
    census.retention_days = Some(30);
    for b in live::parse_bed_register(trust.bed_register_csv().as_bytes()).unwrap() {
        census.register_bed(b);
    }
    let mut seq = 0u64;
    let mut most_spells = 0;
    while let Some(m) = feed.next() {
        seq += 1;
        // Received as it happened, so the census's clock follows the feed.
        let c = hl7v2::classify(&m.bytes, "synth", m.at.timestamp_micros());
        let rec = c.submission.into_record(seq);
        live::apply(&mut census, &rec);
        most_spells = most_spells.max(census.spells.len());
        if seq.is_multiple_of(10_000) {
            compare(&census, feed.simulator(), &ids, seq as usize);
        }
    }
    compare(&census, feed.simulator(), &ids, seq as usize);
    let retired: usize = census.retired.spells.len();
    assert!(retired > 0, "seventy days of feed retire spells");
    // The snapshot of a census that has retired keeps all of it.
    let dir = tempfile::tempdir().unwrap();
    live::snapshot::save(dir.path(), &census).expect("the snapshot is saved");
    let back = live::snapshot::load(dir.path()).expect("the snapshot loads");
    assert!(back == census, "the snapshot round-trips");
    assert!(
        census.spells.len() < retired,
        "the live census holds about a month of seventy days: {} live, {retired} retired",
        census.spells.len()
    );
}
