//! Real-world ADT sequences and the bed board state they must end in.
//!
//! Each test is a sequence of messages shaped like what NHS PAS feeds send
//! (UK v2.4 conventions, NHS number in PID-3 with `NHS^NH`), applied in order
//! through the same path as the live feed: classify, then the census.

use fdp_ingest::adt::census::{Census, SpellStatus};
use fdp_ingest::hl7v2::{self, Verdict};
use fdp_store::RecordStatus;

/// Valid NHS numbers (modulus 11).
const NHS_A: &str = "9434765919";
const NHS_B: &str = "9434765870";
const NHS_C: &str = "9728002467";

struct Feed {
    census: Census,
    seq: u64,
    ctrl: u32,
}

impl Feed {
    fn new() -> Self {
        Feed {
            census: Census::new(),
            seq: 0,
            ctrl: 0,
        }
    }

    /// Send one message; returns the verdict.
    fn send(&mut self, trigger: &str, body: &str) -> Verdict {
        self.ctrl += 1;
        let msg = format!(
            "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261120{:06}||ADT^{trigger}^ADT_{trigger}|C{:05}|P|2.4|||AL|NE|GBR|UNICODE UTF-8\r{}",
            100000 + self.ctrl,
            self.ctrl,
            body.replace('\n', "\r")
        );
        self.send_raw(msg.as_bytes())
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Verdict {
        let c = hl7v2::classify(bytes, "test", 1_763_600_000_000_000);
        self.seq += 1;
        let s = c.submission;
        let rec = s.into_record(self.seq);
        if rec.status == RecordStatus::Accepted {
            fdp_ingest::live::apply(&mut self.census, &rec);
        }
        c.verdict
    }

    fn bed_of(&self, admission: &str) -> Option<String> {
        self.census
            .spells
            .get(admission)
            .and_then(|s| s.bed_id.clone())
    }

    fn occupant_of(&self, bed: &str) -> Option<String> {
        self.census
            .occupant(&format!("RXX01:{bed}"))
            .map(|s| s.admission_id.clone())
    }

    fn check_invariants(&self) {
        let mut seen = std::collections::HashSet::new();
        for b in self.census.beds.values() {
            if let Some(a) = &b.occupant {
                assert!(seen.insert(a.clone()), "spell {a} in two beds");
                let s = &self.census.spells[a];
                assert_eq!(
                    s.status,
                    SpellStatus::Admitted,
                    "bed {} holds a {:?} spell",
                    b.bed_id,
                    s.status
                );
                assert_eq!(s.bed_id.as_deref(), Some(b.bed_id.as_str()));
            }
        }
        for s in self.census.spells.values() {
            if let Some(b) = &s.bed_id {
                assert_eq!(
                    self.census.beds[b].occupant.as_deref(),
                    Some(s.admission_id.as_str())
                );
            }
        }
    }
}

fn pid(nhs: &str, mrn: &str, name: &str) -> String {
    format!("PID|1||{nhs}^^^NHS^NH~{mrn}^^^RXX^MR||{name}^Test^^^Mx||19500101|F|||1 High Street^^Leeds^^LS1 1AA^GBR^H")
}

fn pv1(loc: &str, visit: &str, admit: &str) -> String {
    format!(
        "PV1|1|I|{loc}|21|||C100^JONES^Ann^^^Dr|||300{}{visit}^^^RXX^VN{}{admit}",
        "|".repeat(9),
        "|".repeat(25)
    )
}

fn pv1_prior(loc: &str, prior: &str, visit: &str) -> String {
    format!(
        "PV1|1|I|{loc}|21||{prior}|C100^JONES^Ann^^^Dr|||300{}{visit}^^^RXX^VN",
        "|".repeat(9)
    )
}

const W1B1: &str = "W1^BAY1^B1^RXX01";
const W1B2: &str = "W1^BAY1^B2^RXX01";
const W2B1: &str = "W2^BAY1^B1^RXX01";

#[test]
fn admit_transfer_discharge() {
    let mut f = Feed::new();
    assert_eq!(
        f.send(
            "A01",
            &format!(
                "EVN|A01|20261120080000\n{}\n{}",
                pid(NHS_A, "M1", "ALPHA"),
                pv1(W1B1, "V1", "20261120080000")
            )
        ),
        Verdict::Accept
    );
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V1"));
    f.send(
        "A02",
        &format!(
            "EVN|A02|20261120100000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1_prior(W2B1, W1B1, "V1")
        ),
    );
    assert_eq!(f.occupant_of("W1:BAY1:B1"), None);
    assert_eq!(f.occupant_of("W2:BAY1:B1").as_deref(), Some("V1"));
    assert_eq!(f.census.spells["V1"].stays.len(), 2);
    f.send(
        "A03",
        &format!(
            "EVN|A03|20261121100000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W2B1, "V1", "20261120080000")
        ),
    );
    assert_eq!(f.occupant_of("W2:BAY1:B1"), None);
    assert_eq!(f.census.spells["V1"].status, SpellStatus::Discharged);
    f.check_invariants();
}

#[test]
fn cancelled_admission_frees_the_bed_and_leaves_no_stay() {
    let mut f = Feed::new();
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.send(
        "A11",
        &format!(
            "EVN|A11|20261120081000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    assert_eq!(f.occupant_of("W1:BAY1:B1"), None);
    let s = &f.census.spells["V1"];
    assert_eq!(s.status, SpellStatus::Cancelled);
    assert!(s.stays.is_empty());
    // The bed can be taken by the next patient.
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120090000\n{}\n{}",
            pid(NHS_B, "M2", "BRAVO"),
            pv1(W1B1, "V2", "20261120090000")
        ),
    );
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V2"));
    f.check_invariants();
}

#[test]
fn cancelled_transfer_returns_the_patient_to_the_previous_bed() {
    let mut f = Feed::new();
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.send(
        "A02",
        &format!(
            "EVN|A02|20261120100000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1_prior(W2B1, W1B1, "V1")
        ),
    );
    f.send(
        "A12",
        &format!(
            "EVN|A12|20261120101500\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1_prior(W1B1, W2B1, "V1")
        ),
    );
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V1"));
    assert_eq!(f.occupant_of("W2:BAY1:B1"), None);
    let s = &f.census.spells["V1"];
    assert_eq!(s.stays.len(), 1, "the cancelled transfer's stay is gone");
    assert_eq!(s.stays[0].end_us, None);
    assert_eq!(f.census.warning_count, 0);
    f.check_invariants();
}

#[test]
fn cancelled_discharge_puts_the_patient_back() {
    let mut f = Feed::new();
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.send(
        "A03",
        &format!(
            "EVN|A03|20261121100000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    assert_eq!(f.occupant_of("W1:BAY1:B1"), None);
    f.send(
        "A13",
        &format!(
            "EVN|A13|20261121101000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V1"));
    let s = &f.census.spells["V1"];
    assert_eq!(s.status, SpellStatus::Admitted);
    assert_eq!(s.discharged_at_us, None);
    assert_eq!(s.stays.len(), 1);
    f.check_invariants();
}

#[test]
fn cancelled_discharge_to_another_bed_when_the_old_one_was_taken() {
    let mut f = Feed::new();
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.send(
        "A03",
        &format!(
            "EVN|A03|20261121100000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261121110000\n{}\n{}",
            pid(NHS_B, "M2", "BRAVO"),
            pv1(W1B1, "V2", "20261121110000")
        ),
    );
    f.send(
        "A13",
        &format!(
            "EVN|A13|20261121120000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B2, "V1", "20261120080000")
        ),
    );
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V2"));
    assert_eq!(f.occupant_of("W1:BAY1:B2").as_deref(), Some("V1"));
    f.check_invariants();
}

#[test]
fn a_resent_message_is_recognised_by_its_control_id() {
    // Dedup happens in the store (same sender and MSH-10); here we check the
    // key the classifier gives, and that a second identical A01 changes nothing.
    let mut f = Feed::new();
    let body = format!(
        "EVN|A01|20261120080000\n{}\n{}",
        pid(NHS_A, "M1", "ALPHA"),
        pv1(W1B1, "V1", "20261120080000")
    );
    let msg = format!(
        "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261120080000||ADT^A01|SAME1|P|2.4\r{}",
        body.replace('\n', "\r")
    );
    let a = hl7v2::classify(msg.as_bytes(), "x", 1);
    let b = hl7v2::classify(msg.as_bytes(), "y", 2);
    // The key is the sender, the control id and the content's digest.
    let key = a.submission.dedup_key.clone().unwrap();
    assert!(
        key.starts_with(&format!(
            "PAS\u{1f}RXX\u{1f}SAME1{}",
            fdp_store::DEDUP_CONTENT_SEPARATOR
        )),
        "{key:?}"
    );
    assert_eq!(a.submission.dedup_key, b.submission.dedup_key);
    // The same message with other line endings is the same content.
    let lf = msg.replace('\r', "\r\n");
    let c = hl7v2::classify(lf.as_bytes(), "z", 3);
    assert_eq!(c.submission.dedup_key, a.submission.dedup_key);
    f.send_raw(msg.as_bytes());
    let before = f.census.spells["V1"].clone();
    f.send_raw(msg.as_bytes());
    assert_eq!(f.census.spells["V1"], before);
    assert_eq!(f.census.warning_count, 0);
    f.check_invariants();
}

#[test]
fn double_admission_of_one_patient_keeps_them_in_one_bed() {
    let mut f = Feed::new();
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    // The PAS admits the same patient again under a new spell, elsewhere.
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120090000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W2B1, "V2", "20261120090000")
        ),
    );
    assert_eq!(f.occupant_of("W2:BAY1:B1").as_deref(), Some("V2"));
    assert_eq!(f.occupant_of("W1:BAY1:B1"), None, "one patient, one bed");
    assert!(f.census.warning_count >= 1);
    f.check_invariants();
}

#[test]
fn a_bed_given_to_a_second_patient_displaces_the_first() {
    let mut f = Feed::new();
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120090000\n{}\n{}",
            pid(NHS_B, "M2", "BRAVO"),
            pv1(W1B1, "V2", "20261120090000")
        ),
    );
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V2"));
    assert_eq!(f.bed_of("V1"), None);
    assert_eq!(f.census.spells["V1"].status, SpellStatus::Admitted);
    f.check_invariants();
}

#[test]
fn swap_exchanges_two_patients_beds() {
    let mut f = Feed::new();
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120081000\n{}\n{}",
            pid(NHS_B, "M2", "BRAVO"),
            pv1(W1B2, "V2", "20261120081000")
        ),
    );
    f.send(
        "A17",
        &format!(
            "EVN|A17|20261120120000\n{}\n{}\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B2, "V1", "20261120080000"),
            pid(NHS_B, "M2", "BRAVO"),
            pv1(W1B1, "V2", "20261120081000")
        ),
    );
    assert_eq!(f.occupant_of("W1:BAY1:B2").as_deref(), Some("V1"));
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V2"));
    assert_eq!(f.census.warning_count, 0, "{:?}", f.census.recent_warnings);
    f.check_invariants();
}

#[test]
fn leave_of_absence_keeps_the_bed() {
    let mut f = Feed::new();
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.send(
        "A21",
        &format!(
            "EVN|A21|20261121080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    assert!(f.census.spells["V1"].on_leave);
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V1"));
    f.send(
        "A22",
        &format!(
            "EVN|A22|20261121180000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    assert!(!f.census.spells["V1"].on_leave);
    f.check_invariants();
}

#[test]
fn merge_moves_spells_to_the_surviving_patient() {
    let mut f = Feed::new();
    // The same person registered twice under two hospital numbers.
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_C, "M9", "CHARLIE"),
            pv1(W1B1, "V9", "20261120080000")
        ),
    );
    f.send(
        "A08",
        "EVN|A08|20261120090000\nPID|1||M8^^^RXX^MR||CHARLIE^Test||19500101|F\nPV1|1|O",
    );
    assert!(f.census.patients.contains_key("M8"));
    f.send(
        "A40",
        &format!(
            "EVN|A40|20261120100000\n{}\nMRG|M8^^^RXX^MR",
            pid(NHS_C, "M9", "CHARLIE")
        ),
    );
    assert!(!f.census.patients.contains_key("M8"));
    assert_eq!(f.census.resolve_patient("M8"), "M9");
    // A later message under the retired number reaches the surviving record.
    f.send(
        "A08",
        "EVN|A08|20261120110000\nPID|1||M8^^^RXX^MR||CHARLIE^Updated||19500101|F",
    );
    assert_eq!(
        f.census.patients["M9"].first_name.as_deref(),
        Some("Updated")
    );
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V9"));
    f.check_invariants();
}

#[test]
fn merge_of_two_admitted_records_leaves_one_bed() {
    let mut f = Feed::new();
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120090000\nPID|1||M1B^^^RXX^MR||ALPHA^Test||19500101|F\n{}",
            pv1(W2B1, "V2", "20261120090000")
        ),
    );
    f.send(
        "A40",
        &format!(
            "EVN|A40|20261120100000\n{}\nMRG|M1B^^^RXX^MR",
            pid(NHS_A, "M1", "ALPHA")
        ),
    );
    let held: Vec<_> = f
        .census
        .beds
        .values()
        .filter(|b| b.occupant.is_some())
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(
        held[0].occupant.as_deref(),
        Some("V2"),
        "the newer spell keeps its bed"
    );
    f.check_invariants();
}

/// A merge after a restart from a snapshot (the census read back, its
/// index of spells by patient not yet built) moves every spell of the
/// merged record, and the bed the patient keeps is the one a later
/// admission frees.
#[test]
fn merge_after_a_snapshot_moves_every_spell_and_keeps_one_bed() {
    let mut f = Feed::new();
    let m1b = "PID|1||M1B^^^RXX^MR||ALPHA^Test||19500101|F";
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261119080000\n{m1b}\n{}",
            pv1(W1B2, "V0", "20261119080000")
        ),
    );
    f.send(
        "A03",
        &format!(
            "EVN|A03|20261119180000\n{m1b}\n{}",
            pv1(W1B2, "V0", "20261119080000")
        ),
    );
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120090000\n{m1b}\n{}",
            pv1(W2B1, "V2", "20261120090000")
        ),
    );
    let json = serde_json::to_string(&f.census).expect("the census serialises");
    f.census = serde_json::from_str(&json).expect("and reads back");
    f.send(
        "A40",
        &format!(
            "EVN|A40|20261120100000\n{}\nMRG|M1B^^^RXX^MR",
            pid(NHS_A, "M1", "ALPHA")
        ),
    );
    for spell in ["V0", "V1", "V2"] {
        assert_eq!(
            f.census.spells[spell].patient_id, "M1",
            "spell {spell} belongs to the surviving record"
        );
    }
    assert_eq!(f.bed_of("V1"), None, "the older spell gave up its bed");
    assert_eq!(f.bed_of("V2").as_deref(), Some("RXX01:W2:BAY1:B1"));
    f.check_invariants();
    // The patient holds one bed, under V2: admitting them again frees it.
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120110000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V3", "20261120110000")
        ),
    );
    assert_eq!(f.bed_of("V2"), None, "one bed per patient after the merge");
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V3"));
    f.check_invariants();
}

#[test]
fn bad_messages_are_quarantined_with_a_reason_and_place() {
    let mut f = Feed::new();
    // A bad NHS number (check digit) and no hospital number: the patient
    // cannot be identified at all.
    let v = f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            "PID|1||9434765918^^^NHS^NH||ALPHA^Test||19500101|F",
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    match v {
        Verdict::Quarantine {
            reason, location, ..
        } => {
            assert!(
                reason.contains("NHS number") && reason.contains("9434765918"),
                "{reason}"
            );
            assert!(
                location.contains("PID") && location.contains("field 3"),
                "{location}"
            );
        }
        other => panic!("expected quarantine, got {other:?}"),
    }
    // A02 without a location.
    let v = f.send(
        "A02",
        &format!(
            "EVN|A02|20261120080000\n{}\nPV1|1|I||||||||||||||||||V1",
            pid(NHS_A, "M1", "ALPHA")
        ),
    );
    assert!(
        matches!(v, Verdict::Quarantine { ref location, .. } if location.contains("PV1")),
        "{v:?}"
    );
    // Truncated MSH.
    let v = f.send_raw(b"MSH|^~\\&|PAS|RXX\rPID|1");
    assert!(matches!(v, Verdict::Quarantine { .. }));
    // Garbage.
    let v = f.send_raw(b"\x00\x01garbage\xff");
    assert!(matches!(v, Verdict::Quarantine { .. }));
    // A bad date.
    let v = f.send(
        "A01",
        &format!(
            "EVN|A01|2026-11-20\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    assert!(
        matches!(v, Verdict::Quarantine { ref reason, .. } if reason.contains("EVN-2")),
        "{v:?}"
    );
    // Nothing bad reached the census.
    assert!(f.census.spells.is_empty());
}

#[test]
fn messages_we_do_not_process_are_kept_not_rejected() {
    let mut f = Feed::new();
    let oru = "MSH|^~\\&|LAB|RXX|OPENFDP|RXX|20261120080000||ORU^R01|L1|P|2.4\rPID|1||9434765919^^^NHS^NH\rOBR|1\rOBX|1|NM|X^Y||1";
    assert_eq!(f.send_raw(oru.as_bytes()), Verdict::Unprocessed);
    let a60 = format!("EVN|A60|20261120080000\n{}", pid(NHS_A, "M1", "ALPHA"));
    assert_eq!(f.send("A60", &a60), Verdict::Unprocessed);
}

#[test]
fn simhospital_identifier_conventions() {
    // NHSNBR^NHSNMBR as Simulated Hospital sends it, MRN typed MRN.
    let mut f = Feed::new();
    let msg = "MSH|^~\\&|SIMHOSP|SFAC|RAPP|RFAC|20200508130643||ADT^A01|5|T|2.3|||AL||44|ASCII\rEVN|A01|20200508130643|||C006^Woolfson^Kathleen^^^Dr^^^DRNBR^PRSNL^^^ORGDR|\rPID|1|2590157853^^^SIMULATOR MRN^MRN|2590157853^^^SIMULATOR MRN^MRN~2478684691^^^NHSNBR^NHSNMBR||Esterkin^AKI Scenario 6^^^Miss^^CURRENT||19890118000000|F|||170 Juice Place^^London^^RW21 6KC^GBR^HOME||020 5368 1665^HOME|||||||||R^Other - Chinese^^^||||||||\rPD1|||FAMILY PRACTICE^^12345|\rPV1|1|I|RenalWard^MainRoom^Bed 1^Simulated Hospital^^BED^Main Building^5|28b|||C006^Woolfson^Kathleen^^^Dr^^^DRNBR^PRSNL^^^ORGDR|||MED|||||||||6145914547062969032^^^^visitid||||||||||||||||||||||ARRIVED|||20200508130643||\r";
    assert_eq!(f.send_raw(msg.as_bytes()), Verdict::Accept);
    let p = &f.census.patients["2590157853"];
    assert_eq!(p.nhs_number.as_deref(), Some("2478684691"));
    assert_eq!(p.surname.as_deref(), Some("Esterkin"));
    let bed = "Simulated Hospital:RenalWard:MainRoom:Bed 1";
    assert_eq!(
        f.census.occupant(bed).map(|s| s.admission_id.as_str()),
        Some("6145914547062969032")
    );
}

#[test]
fn a_visit_moved_to_another_patient_keeps_one_bed_each() {
    let mut f = Feed::new();
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120081000\n{}\n{}",
            pid(NHS_B, "M2", "BRAVO"),
            pv1(W1B2, "V2", "20261120081000")
        ),
    );
    // The PAS corrects V1's patient to M2.
    f.send(
        "A08",
        &format!(
            "EVN|A08|20261120090000\n{}\n{}",
            pid(NHS_B, "M2", "BRAVO"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.check_invariants();
    // M1 comes back under a new spell: M2's bed must not be touched.
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120100000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W2B1, "V3", "20261120100000")
        ),
    );
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V1"));
    assert_eq!(f.occupant_of("W2:BAY1:B1").as_deref(), Some("V3"));
    f.check_invariants();
}

#[test]
fn merge_keeps_the_newer_spell_whatever_the_ids_and_the_index_stays_right() {
    let mut f = Feed::new();
    // The surviving record's older spell has the id that sorts last.
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V9", "20261120080000")
        ),
    );
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120090000\nPID|1||M1B^^^RXX^MR||ALPHA^Test||19500101|F\n{}",
            pv1(W2B1, "V1", "20261120090000")
        ),
    );
    f.send(
        "A40",
        &format!(
            "EVN|A40|20261120100000\n{}\nMRG|M1B^^^RXX^MR",
            pid(NHS_A, "M1", "ALPHA")
        ),
    );
    assert_eq!(f.occupant_of("W2:BAY1:B1").as_deref(), Some("V1"));
    assert_eq!(f.occupant_of("W1:BAY1:B1"), None);
    f.check_invariants();
    // A new spell for the same person frees V1's bed: one bed per patient.
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120110000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B2, "V3", "20261120110000")
        ),
    );
    assert_eq!(f.occupant_of("W1:BAY1:B2").as_deref(), Some("V3"));
    assert_eq!(f.occupant_of("W2:BAY1:B1"), None);
    f.check_invariants();
}

#[test]
fn late_messages_do_not_put_a_discharged_spell_back_in_a_bed() {
    let mut f = Feed::new();
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.send(
        "A03",
        &format!(
            "EVN|A03|20261121100000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    f.send(
        "A12",
        &format!(
            "EVN|A12|20261121101500\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1_prior(W1B1, W2B1, "V1")
        ),
    );
    assert_eq!(f.occupant_of("W1:BAY1:B1"), None);
    f.send(
        "A01",
        &format!(
            "EVN|A01|20261121110000\n{}\n{}",
            pid(NHS_B, "M2", "BRAVO"),
            pv1(W1B2, "V2", "20261121110000")
        ),
    );
    f.send(
        "A17",
        &format!(
            "EVN|A17|20261121120000\n{}\n{}\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA"),
            pv1(W1B2, "V1", "20261120080000"),
            pid(NHS_B, "M2", "BRAVO"),
            pv1(W1B1, "V2", "20261121110000")
        ),
    );
    assert_eq!(f.census.spells["V1"].status, SpellStatus::Discharged);
    assert_eq!(f.census.spells["V1"].bed_id, None);
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V2"));
    assert!(f.census.warning_count >= 2);
    f.check_invariants();
}

// ---------------------------------------------------------------------------
// Patients without a usable NHS number: admitted under the hospital number,
// flagged, linked once traced. Never refused, never keyed by a bad number.

use fdp_ingest::adt::event::NhsNumberStatus;

/// PID with an NHS number repetition (any value) and PID-32, the NHS number
/// status indicator.
fn pid_with_status(nhs: &str, mrn: &str, name: &str, status: &str) -> String {
    let nhs_rep = if nhs.is_empty() {
        String::new()
    } else {
        format!("{nhs}^^^NHS^NH~")
    };
    format!(
        "PID|1||{nhs_rep}{mrn}^^^RXX^MR||{name}^Test^^^Mx||19500101|F{}|{status}",
        "|".repeat(23)
    )
}

fn status_of(f: &Feed, patient: &str) -> Option<NhsNumberStatus> {
    f.census.patients[patient].nhs_number_status.clone()
}

fn canonical_patient(f: &Feed, patient: &str) -> serde_json::Map<String, serde_json::Value> {
    fdp_ingest::adt::canonical::rows(&f.census)["Patient"]
        .iter()
        .find(|r| r["person_id"] == patient)
        .cloned()
        .expect("the patient has a canonical row")
}

#[test]
fn an_impossible_date_of_birth_is_left_empty_and_the_patient_admitted() {
    let mut f = Feed::new();
    let verdict = f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid(NHS_A, "M1", "ALPHA").replace("|19500101|", "|19503112|"),
            pv1(W1B1, "V1", "20261120080000")
        ),
    );
    assert!(matches!(verdict, Verdict::Accept), "{verdict:?}");
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V1"));
    let p = &f.census.patients[&f.census.spells["V1"].patient_id];
    assert_eq!(p.date_of_birth, None);
    assert_eq!(p.surname.as_deref(), Some("ALPHA"));
    assert!(
        f.census
            .recent_warnings
            .iter()
            .any(|w| w.message.contains("PID-7") && w.message.contains("19503112")),
        "the data engineer is told which field: {:?}",
        f.census.recent_warnings
    );
}

#[test]
fn placeholder_nhs_numbers_are_admitted_flagged_and_linked_when_traced() {
    let mut f = Feed::new();
    // The unconscious patient in ED: the PAS fills PID-3 with 9999999999.
    let v = f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            pid("9999999999", "M900", "UNKNOWN"),
            pv1(W1B1, "V900", "20261120080000")
        ),
    );
    assert_eq!(
        v,
        Verdict::Accept,
        "a placeholder NHS number is no reason to refuse"
    );
    // On the board, under the hospital number.
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V900"));
    assert_eq!(f.census.spells["V900"].patient_id, "M900");
    let p = &f.census.patients["M900"];
    assert_eq!(
        p.nhs_number, None,
        "an invalid number is never kept as the number"
    );
    match status_of(&f, "M900") {
        Some(NhsNumberStatus::Invalid { value, why }) => {
            assert_eq!(value, "9999999999");
            assert!(why.contains("placeholder"), "{why}");
            assert!(
                !why.chars().any(|c| c.is_ascii_digit()),
                "the reason is shown where numbers are not: it quotes none of it: {why}"
            );
        }
        other => panic!("expected invalid, got {other:?}"),
    }
    // The data engineer is told.
    assert!(
        f.census
            .recent_warnings
            .iter()
            .any(|w| w.message.contains("M900") && w.message.contains("no usable NHS number")),
        "{:?}",
        f.census.recent_warnings
    );
    // The canonical row carries the status, and never the bad number.
    let row = canonical_patient(&f, "M900");
    assert_eq!(row["nhs_number"], serde_json::Value::Null);
    assert_eq!(row["nhs_number_status_indicator_local_code"], "invalid");
    assert_eq!(
        row["nhs_number_status_indicator_code"],
        serde_json::Value::Null
    );
    assert!(
        !row.values()
            .any(|v| v.as_str().is_some_and(|s| s.contains("9999999999"))),
        "{row:?}"
    );

    // A later message repeating the placeholder changes nothing.
    f.send(
        "A08",
        &format!(
            "EVN|A08|20261120090000\n{}\n{}",
            pid("9999999999", "M900", "UNKNOWN"),
            pv1(W1B1, "V900", "20261120080000")
        ),
    );
    assert_eq!(f.census.patients["M900"].nhs_number, None);

    // The trace comes back: an A31 with the real number links the record.
    let v = f.send(
        "A31",
        &format!(
            "EVN|A31|20261120100000\n{}",
            pid_with_status(NHS_C, "M900", "DOE", "01")
        ),
    );
    assert_eq!(v, Verdict::Accept);
    assert_eq!(f.census.patients["M900"].nhs_number.as_deref(), Some(NHS_C));
    assert_eq!(status_of(&f, "M900"), Some(NhsNumberStatus::Verified));
    assert!(f
        .census
        .recent_warnings
        .iter()
        .any(|w| w.message.contains("M900") && w.message.contains("linked")));
    // Still in the same bed, under the same key.
    assert_eq!(f.occupant_of("W1:BAY1:B1").as_deref(), Some("V900"));
    assert_eq!(
        canonical_patient(&f, "M900")["nhs_number_status_indicator_code"],
        "01"
    );

    // Once known, a message with the placeholder again keeps the verified
    // number (and says so).
    f.send(
        "A08",
        &format!(
            "EVN|A08|20261120110000\n{}\n{}",
            pid("9999999999", "M900", "DOE"),
            pv1(W1B1, "V900", "20261120080000")
        ),
    );
    assert_eq!(f.census.patients["M900"].nhs_number.as_deref(), Some(NHS_C));
    assert_eq!(status_of(&f, "M900"), Some(NhsNumberStatus::Verified));
    f.check_invariants();
}

#[test]
fn missing_and_unverified_nhs_numbers_are_admitted_and_flagged() {
    let mut f = Feed::new();
    // A newborn before registration: no NHS number, trace postponed (08).
    assert_eq!(
        f.send(
            "A01",
            &format!(
                "EVN|A01|20261120080000\n{}\n{}",
                pid_with_status("", "M901", "BABY", "08"),
                pv1(W1B1, "V901", "20261120080000")
            ),
        ),
        Verdict::Accept
    );
    assert_eq!(
        status_of(&f, "M901"),
        Some(NhsNumberStatus::Missing {
            code: Some("08".into())
        })
    );
    // An overseas visitor with no number and no status at all.
    assert_eq!(
        f.send(
            "A01",
            &format!(
                "EVN|A01|20261120080000\n{}\n{}",
                "PID|1||M902^^^RXX^MR||VISITOR^Test||19800101|M",
                pv1(W1B2, "V902", "20261120080000")
            ),
        ),
        Verdict::Accept
    );
    assert_eq!(
        status_of(&f, "M902"),
        Some(NhsNumberStatus::Missing { code: None })
    );
    // A valid number the PAS says it has not traced (02): kept, but not
    // shown as verified.
    assert_eq!(
        f.send(
            "A01",
            &format!(
                "EVN|A01|20261120080000\n{}\n{}",
                pid_with_status(NHS_B, "M903", "TRACE", "02"),
                pv1(W2B1, "V903", "20261120080000")
            ),
        ),
        Verdict::Accept
    );
    assert_eq!(f.census.patients["M903"].nhs_number.as_deref(), Some(NHS_B));
    let st = status_of(&f, "M903").unwrap();
    assert!(st.needs_attention());
    assert_eq!(st.data_dictionary_code(), Some("02"));
    // A PAS claiming "verified" (01) for a number that fails its check is
    // not believed.
    assert_eq!(
        f.send(
            "A01",
            &format!(
                "EVN|A01|20261120080000\n{}\n{}",
                pid_with_status("9434765918", "M904", "TYPO", "01"),
                pv1("W2^BAY1^B2^RXX01", "V904", "20261120080000")
            ),
        ),
        Verdict::Accept
    );
    let st = status_of(&f, "M904").unwrap();
    assert_eq!(st.local_code(), "invalid");
    assert_eq!(st.data_dictionary_code(), None);
    assert_eq!(f.census.patients["M904"].nhs_number, None);

    // The board holds all four, each flagged.
    for (bed, spell) in [
        ("W1:BAY1:B1", "V901"),
        ("W1:BAY1:B2", "V902"),
        ("W2:BAY1:B1", "V903"),
        ("W2:BAY1:B2", "V904"),
    ] {
        assert_eq!(f.occupant_of(bed).as_deref(), Some(spell));
    }
    for p in ["M901", "M902", "M903", "M904"] {
        assert!(status_of(&f, p).unwrap().needs_attention(), "{p}");
    }
    f.check_invariants();
}

#[test]
fn a_message_with_no_patient_identifier_at_all_is_refused() {
    let mut f = Feed::new();
    // Only a placeholder NHS number: nothing to key the patient by.
    let v = f.send(
        "A01",
        &format!(
            "EVN|A01|20261120080000\n{}\n{}",
            "PID|1||9999999999^^^NHS^NH||NOBODY^Test||19500101|F",
            pv1(W1B1, "V905", "20261120080000")
        ),
    );
    match v {
        Verdict::Quarantine { reason, .. } => {
            assert!(reason.contains("no usable patient identifier"), "{reason}")
        }
        other => panic!("expected quarantine, got {other:?}"),
    }
    assert!(f.census.spells.is_empty());
}

// ---------------------------------------------------------------------------
// Control ids: a re-send is the same sender, control id and content; the
// same control id with other content is a new message. Through the real
// store, which is where re-sends are recognised.

mod through_the_store {
    use super::*;
    use fdp_ingest::live::Live;
    use fdp_store::{Store, StoreConfig};
    use std::sync::Arc;

    struct Instance {
        store: Option<Store>,
        live: Arc<Live>,
        receiver: hl7v2::Receiver,
    }

    impl Instance {
        async fn open(dir: &std::path::Path) -> Instance {
            let mut config = StoreConfig::new(dir);
            config.raw_flush_interval = std::time::Duration::from_millis(20);
            let opened = Store::open(config).await.unwrap();
            let mut census = Census::new();
            census.retention_days = Some(30);
            let live = Live::new(fdp_ingest::live::replay(census, &opened.history));
            tokio::spawn(fdp_ingest::live::run_applier(live.clone(), opened.feed));
            Instance {
                store: Some(opened.store),
                live,
                receiver: hl7v2::Receiver::new("RXX"),
            }
        }

        /// Send one message; returns (ACK code, was it a duplicate).
        async fn send(&self, msg: &str) -> (String, bool) {
            let committer = self.store.as_ref().unwrap().committer();
            let reply = self
                .receiver
                .receive(&committer, msg.as_bytes().to_vec(), "test")
                .await;
            self.live
                .applied_through(committer.committed_through())
                .await;
            let ack = String::from_utf8(reply.ack).unwrap();
            let code = ack
                .split('\r')
                .find(|s| s.starts_with("MSA"))
                .and_then(|s| s.split('|').nth(1))
                .unwrap_or("")
                .to_string();
            (code, reply.duplicate)
        }

        async fn occupant(&self, bed: &str) -> Option<String> {
            self.live
                .read()
                .await
                .occupant(&format!("RXX01:{bed}"))
                .map(|s| s.admission_id.clone())
        }

        async fn stop(mut self) {
            let store = self.store.take().unwrap();
            let through = store.committer().committed_through();
            store.raw_flushed_through(through).await;
            store.shutdown().await;
        }
    }

    fn message(trigger: &str, control_id: &str, time: &str, body: &str) -> String {
        format!(
            "MSH|^~\\&|EPIC|RXX|OPENFDP|RXX|{time}||ADT^{trigger}^ADT_{trigger}|{control_id}|P|2.4\r{}",
            body.replace('\n', "\r")
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reused_control_ids_are_applied_and_true_resends_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let i = Instance::open(dir.path()).await;
        let admit = message(
            "A01",
            "1",
            "20261120080000",
            &format!(
                "EVN|A01|20261120080000\n{}\n{}",
                pid(NHS_A, "M1", "ALPHA"),
                pv1(W1B1, "V1", "20261120080000")
            ),
        );
        // The interface engine restarted and began counting from 1 again:
        // the cancellation reuses the admission's control id.
        let cancel = message(
            "A11",
            "1",
            "20261120083000",
            &format!(
                "EVN|A11|20261120083000\n{}\n{}",
                pid(NHS_A, "M1", "ALPHA"),
                pv1(W1B1, "V1", "20261120080000")
            ),
        );
        assert_eq!(i.send(&admit).await, ("AA".into(), false));
        assert_eq!(i.occupant("W1:BAY1:B1").await.as_deref(), Some("V1"));

        assert_eq!(
            i.send(&cancel).await,
            ("AA".into(), false),
            "the same control id with other content is a new message"
        );
        assert_eq!(
            i.occupant("W1:BAY1:B1").await,
            None,
            "the cancellation was applied: the bed is free"
        );
        {
            let census = i.live.read().await;
            assert_eq!(
                census.spells["V1"].status,
                fdp_ingest::adt::census::SpellStatus::Cancelled
            );
            assert!(
                census
                    .recent_warnings
                    .iter()
                    .any(|w| w.message.contains("control id 1")
                        && w.message.contains("other content")),
                "the reuse is reported: {:?}",
                census.recent_warnings
            );
        }

        // True re-sends of either (the engine replaying its queue) are
        // acknowledged and change nothing: the admission is not revived.
        assert_eq!(i.send(&admit).await, ("AA".into(), true));
        assert_eq!(i.send(&cancel).await, ("AA".into(), true));
        assert_eq!(i.occupant("W1:BAY1:B1").await, None);

        // A third message under the same id, another patient admitted.
        let other = message(
            "A01",
            "1",
            "20261120090000",
            &format!(
                "EVN|A01|20261120090000\n{}\n{}",
                pid(NHS_B, "M2", "BRAVO"),
                pv1(W1B1, "V2", "20261120090000")
            ),
        );
        assert_eq!(i.send(&other).await, ("AA".into(), false));
        assert_eq!(i.occupant("W1:BAY1:B1").await.as_deref(), Some("V2"));
        i.stop().await;

        // The window outlives a restart: the re-sends are still known.
        let i = Instance::open(dir.path()).await;
        assert_eq!(i.occupant("W1:BAY1:B1").await.as_deref(), Some("V2"));
        assert_eq!(i.send(&admit).await, ("AA".into(), true));
        assert_eq!(i.send(&cancel).await, ("AA".into(), true));
        assert_eq!(i.send(&other).await, ("AA".into(), true));
        assert_eq!(i.occupant("W1:BAY1:B1").await.as_deref(), Some("V2"));
        {
            let census = i.live.read().await;
            assert_eq!(
                census.spells["V1"].status,
                fdp_ingest::adt::census::SpellStatus::Cancelled
            );
        }
        i.stop().await;
    }

    /// The newest version of a canonical table: its operation, the rows it
    /// encoded and the raw sequence its lineage reaches.
    async fn newest_version(dir: &std::path::Path, table: &str) -> (String, i64, u64) {
        use fdp_store::tables::{self, Layer};
        let t = tables::open(
            &tables::table_location(dir, Layer::Canonical, table).unwrap(),
            None,
        )
        .await
        .unwrap();
        let v = tables::history(&t, 1).await.unwrap().remove(0);
        (
            v.operation.unwrap_or_default(),
            v.rows_written.unwrap_or(-1),
            v.lineage.unwrap()["through_seq"].as_u64().unwrap(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn canonical_tables_are_written_as_the_rows_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        let i = Instance::open(dir.path()).await;
        for n in 1..=20 {
            let bed = format!("W1^BAY1^B{n}^RXX01");
            i.send(&message(
                "A01",
                &format!("A{n}"),
                "20261120080000",
                &format!(
                    "EVN|A01|20261120080000\n{}\n{}",
                    pid("9999999999", &format!("M{n}"), "PATIENT"),
                    pv1(&bed, &format!("V{n}"), "20261120080000")
                ),
            ))
            .await;
        }
        let store = i.store.as_ref().unwrap();
        let mut written = 0;
        fdp_ingest::live::write_canonical(&i.live, store, &mut written)
            .await
            .unwrap();
        let (op, rows, _) = newest_version(dir.path(), "admission").await;
        assert_eq!(
            (op.as_str(), rows),
            ("WRITE", 20),
            "the first write is whole"
        );

        // One more admission: one new row in each table it touches, and
        // the tables it does not touch get no new version.
        let ward_before = newest_version(dir.path(), "ward").await;
        i.send(&message(
            "A01",
            "A21",
            "20261120090000",
            &format!(
                "EVN|A01|20261120090000\n{}\n{}",
                pid(NHS_B, "M21", "BRAVO"),
                pv1("W1^BAY1^B21^RXX01", "V21", "20261120090000")
            ),
        ))
        .await;
        let through = store.committer().committed_through();
        fdp_ingest::live::write_canonical(&i.live, store, &mut written)
            .await
            .unwrap();
        for table in ["admission", "patient"] {
            let (op, rows, seq) = newest_version(dir.path(), table).await;
            assert_eq!(op, "MERGE", "{table} is written as changes");
            assert_eq!(rows, 1, "{table}: only the new row is encoded");
            assert_eq!(seq, through, "{table}'s lineage reaches the new record");
        }
        assert_eq!(
            newest_version(dir.path(), "ward").await,
            ward_before,
            "an unchanged table gets no new version"
        );
        let census = i.live.read().await;
        assert!(census.spells.contains_key("V21"));
        drop(census);
        i.stop().await;
    }

    /// The values of `column` in canonical table `table` (one part).
    async fn column_of(dir: &std::path::Path, table: &str, column: &str) -> Vec<String> {
        use fdp_store::tables::{self, Layer};
        let path = tables::table_location(dir, Layer::Canonical, table).unwrap();
        if !path.exists().await.unwrap() {
            return Vec::new();
        }
        let t = tables::open(&path, None).await.unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_table("t", t.table_provider().await.unwrap())
            .unwrap();
        let batches = ctx
            .sql(&format!("SELECT CAST(\"{column}\" AS VARCHAR) FROM t"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in batches {
            let c = datafusion::arrow::compute::cast(
                b.column(0),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let c = c
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .unwrap();
            out.extend(c.iter().flatten().map(str::to_string));
        }
        out.sort();
        out
    }

    /// Both parts of a table: (live, archive).
    async fn parts(dir: &std::path::Path, table: &str, column: &str) -> (Vec<String>, Vec<String>) {
        (
            column_of(dir, table, column).await,
            column_of(dir, &format!("{table}@adt-archive"), column).await,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finished_spells_leave_the_live_census_for_the_archive_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let i = Instance::open(dir.path()).await;
        let at = |day: &str| format!("2026{day}080000");
        i.send(&message(
            "A01",
            "1",
            &at("0901"),
            &format!(
                "EVN|A01|{}\n{}\n{}",
                at("0901"),
                pid(NHS_A, "M1", "ALPHA"),
                pv1(W1B1, "V1", &at("0901"))
            ),
        ))
        .await;
        i.send(&message(
            "A03",
            "2",
            &at("0903"),
            &format!(
                "EVN|A03|{}\n{}\n{}",
                at("0903"),
                pid(NHS_A, "M1", "ALPHA"),
                pv1(W1B1, "V1", &at("0901"))
            ),
        ))
        .await;
        i.send(&message(
            "A01",
            "3",
            &at("0920"),
            &format!(
                "EVN|A01|{}\n{}\n{}",
                at("0920"),
                pid(NHS_B, "M2", "BRAVO"),
                pv1(W1B2, "V2", &at("0920"))
            ),
        ))
        .await;
        let store = i.store.as_ref().unwrap();
        let mut written = 0;
        fdp_ingest::live::write_canonical(&i.live, store, &mut written)
            .await
            .unwrap();
        {
            let census = i.live.read().await;
            assert!(
                census.spells.contains_key("V1"),
                "within 30 days of the newest event nothing is retired"
            );
        }
        // Three weeks on, an update about someone else moves the census's
        // clock: V1 ended more than 30 days before it.
        i.send(&message(
            "A08",
            "4",
            &at("1120"),
            &format!("EVN|A08|{}\n{}", at("1120"), pid(NHS_C, "M3", "CHARLIE")),
        ))
        .await;
        {
            let census = i.live.read().await;
            assert!(!census.spells.contains_key("V1"), "V1 is retired");
            assert!(!census.patients.contains_key("M1"), "and its patient");
            assert!(census.spells.contains_key("V2"), "V2 is in a bed");
            assert_eq!(census.retired.pending.len(), 1);
            assert_eq!(
                i.live
                    .read()
                    .await
                    .occupant("RXX01:W1:BAY1:B2")
                    .map(|s| s.admission_id.clone()),
                Some("V2".into())
            );
        }
        fdp_ingest::live::write_canonical(&i.live, store, &mut written)
            .await
            .unwrap();
        assert!(i.live.read().await.retired.pending.is_empty());
        assert_eq!(
            parts(dir.path(), "admission", "admission_id").await,
            (vec!["V2".to_string()], vec!["V1".to_string()]),
            "V1 moved to the archive part, once"
        );
        assert_eq!(
            parts(dir.path(), "patient", "person_id").await,
            (
                vec!["M2".to_string(), "M3".to_string()],
                vec!["M1".to_string()]
            )
        );
        assert_eq!(
            parts(dir.path(), "ward_stay", "admission_id").await.1,
            vec!["V1"]
        );
        i.stop().await;

        // A restart replays the same records, retires V1 again under the
        // same batch, and the archive does not take it twice.
        let i = Instance::open(dir.path()).await;
        let store = i.store.as_ref().unwrap();
        let mut written = 0;
        fdp_ingest::live::write_canonical(&i.live, store, &mut written)
            .await
            .unwrap();
        assert_eq!(
            parts(dir.path(), "admission", "admission_id").await,
            (vec!["V2".to_string()], vec!["V1".to_string()])
        );

        // The patient comes back: the live row replaces the archived one.
        i.send(&message(
            "A08",
            "5",
            &at("1125"),
            &format!("EVN|A08|{}\n{}", at("1125"), pid(NHS_A, "M1", "ALPHA")),
        ))
        .await;
        fdp_ingest::live::write_canonical(&i.live, store, &mut written)
            .await
            .unwrap();
        assert_eq!(
            parts(dir.path(), "patient", "person_id").await,
            (
                vec!["M1".to_string(), "M2".to_string(), "M3".to_string()],
                Vec::<String>::new()
            ),
            "one row for M1, live"
        );
        i.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn placeholder_nhs_number_through_the_listener_path_is_acknowledged_aa() {
        let dir = tempfile::tempdir().unwrap();
        let i = Instance::open(dir.path()).await;
        let admit = message(
            "A01",
            "ED1",
            "20261120080000",
            &format!(
                "EVN|A01|20261120080000\n{}\n{}",
                pid("9999999999", "M77", "UNKNOWN"),
                pv1(W1B1, "V77", "20261120080000")
            ),
        );
        assert_eq!(i.send(&admit).await, ("AA".into(), false));
        assert_eq!(i.occupant("W1:BAY1:B1").await.as_deref(), Some("V77"));
        i.stop().await;
    }
}
