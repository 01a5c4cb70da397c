//! Anomalous messages: malformed ones a receiver must reject, and a valid
//! message of a type it does not process but must keep.
//!
//! None of these change the simulator's model. Where possible they concern
//! real patients and would change the bed board if wrongly processed (a
//! discharge, a transfer), so a receiver that lets one through diverges from
//! [`PasSimulator::expected_occupancy`] and the tests notice.

use chrono::{DateTime, Utc};
use rand::Rng;

use super::render::{self, Loc, MsgType, Pv1View};
use super::{AdtMessage, MalformedReason, MessageKind, PasSimulator};
use crate::hl7::MessageWriter;
use crate::people::{invalid_nhs_number, random_nhs_number, Cohort, Person};

/// The oversized field is this long plus a little.
const OVERSIZED_FIELD_BYTES: usize = 70_000;

/// Who an anomalous message is about.
enum Subject {
    /// A real open encounter.
    Open(u32),
    /// Someone made up for the message alone, when the hospital is empty.
    Transient {
        person: Box<Person>,
        mrn: String,
        dept: u16,
        visit: u64,
        at: DateTime<Utc>,
    },
}

impl PasSimulator {
    pub(super) fn anomalous(&mut self, now: DateTime<Utc>) -> AdtMessage {
        match self.rng.random_range(0..6) {
            0 => self.invalid_nhs_number_message(now),
            1 => self.missing_control_id_message(now),
            2 => self.bad_segment_id_message(now),
            3 => self.oversized_field_message(now),
            4 => self.invalid_utf8_message(now),
            _ => self.unprocessed_result(now),
        }
    }

    fn subject(&mut self, now: DateTime<Utc>) -> Subject {
        if let Some(e) = self.random_open_encounter() {
            return Subject::Open(e);
        }
        let nhs = random_nhs_number(&mut self.rng);
        let person = Person::generate(
            &mut self.rng,
            &self.catchment,
            Cohort::EmergencyAttendance,
            now.date_naive(),
            nhs,
        );
        Subject::Transient {
            person: Box::new(person),
            mrn: self.mrns.allocate(&mut self.rng),
            dept: self.layout.all_depts[0],
            visit: self.next_visit_number(),
            at: now,
        }
    }

    /// PID, PD1 and PV1 for `subject`, with an optional NHS number override
    /// and a final say over PV1.
    fn write_subject(
        &self,
        w: &mut MessageWriter,
        subject: &Subject,
        nhs: Option<&str>,
        adjust: impl FnOnce(&mut Pv1View),
    ) {
        let (person, mrn, mut v) = match subject {
            Subject::Open(e) => {
                let enc = &self.encounters[*e as usize];
                let p = &self.patients[enc.patient as usize];
                (&p.person, self.mrn_of(enc), self.pv1_of(enc))
            }
            Subject::Transient {
                person,
                mrn,
                dept,
                visit,
                at,
            } => (
                person.as_ref(),
                mrn.as_str(),
                Pv1View {
                    class: b'E',
                    loc: Loc::Dept(*dept),
                    prior: None,
                    admit_method: "",
                    consultant: None,
                    tfc: 180,
                    visit: *visit,
                    admitted: Some(*at),
                    discharged: None,
                    discharge_destination: None,
                },
            ),
        };
        render::write_pid_pd1(
            w,
            &self.layout.ods,
            person,
            nhs.unwrap_or(&person.nhs_number),
            mrn,
        );
        adjust(&mut v);
        self.write_pv1(w, &v);
    }

    fn malformed(
        &mut self,
        t: MsgType,
        now: DateTime<Utc>,
        reason: MalformedReason,
        body: impl FnOnce(&Self, &mut MessageWriter),
    ) -> AdtMessage {
        self.emit(t, now, now, now, MessageKind::Malformed(reason), body)
    }

    /// An A08 for a real patient whose NHS number fails modulus 11.
    fn invalid_nhs_number_message(&mut self, now: DateTime<Utc>) -> AdtMessage {
        let subject = self.subject(now);
        let bad = invalid_nhs_number(&mut self.rng);
        self.malformed(
            render::A08,
            now,
            MalformedReason::InvalidNhsNumber,
            |s, w| {
                s.write_subject(w, &subject, Some(&bad), |_| {});
            },
        )
    }

    /// An A03 discharging a real inpatient, with MSH cut short after MSH-9.
    fn missing_control_id_message(&mut self, now: DateTime<Utc>) -> AdtMessage {
        let reason = MalformedReason::MissingControlId;
        let mut m = match self.random_active_inpatient() {
            Some(e) => self.malformed(render::A03, now, reason, |s, w| {
                s.write_subject(w, &Subject::Open(e), None, |v| {
                    v.discharged = Some(now);
                    v.discharge_destination = Some("19");
                });
            }),
            None => {
                let subject = self.subject(now);
                self.malformed(render::A08, now, reason, |s, w| {
                    s.write_subject(w, &subject, None, |_| {});
                })
            }
        };
        m.bytes = truncate_msh_before_control_id(&m.bytes);
        m
    }

    /// An A02 moving a real inpatient to a free bed, with `P1D` for `PID`.
    fn bad_segment_id_message(&mut self, now: DateTime<Utc>) -> AdtMessage {
        let reason = MalformedReason::BadSegmentId;
        // A plausible move (same ward, else any ward that takes the
        // patient) so only the broken segment id makes it wrong.
        let target = self.random_active_inpatient().and_then(|e| {
            let from = self.bed_of(e)?;
            let ward = self.layout.ward_of(from);
            let who = self.sex_age(self.encounters[e as usize].patient, now.date_naive());
            let to = match self.random_free_bed(ward) {
                Some(b) => b,
                None => {
                    let other = self.pick_ward(|_| 1.0, Some(who))?;
                    self.random_free_bed(other)?
                }
            };
            Some((e, from, to))
        });
        let mut m = match target {
            Some((e, from, to)) => self.malformed(render::A02, now, reason, |s, w| {
                s.write_subject(w, &Subject::Open(e), None, |v| {
                    v.loc = Loc::Bed(to);
                    v.prior = Some(Loc::Bed(from));
                });
            }),
            None => {
                let subject = self.subject(now);
                self.malformed(render::A08, now, reason, |s, w| {
                    s.write_subject(w, &subject, None, |_| {});
                })
            }
        };
        if let Some(at) = segment_start(&m.bytes, b"PID") {
            m.bytes[at + 1] = b'1';
        }
        m
    }

    /// An A08 whose PID-11 is over 70,000 bytes long.
    fn oversized_field_message(&mut self, now: DateTime<Utc>) -> AdtMessage {
        let subject = self.subject(now);
        let extra = OVERSIZED_FIELD_BYTES + self.rng.random_range(1..2_000);
        let mut m = self.malformed(render::A08, now, MalformedReason::OversizedField, |s, w| {
            s.write_subject(w, &subject, None, |_| {});
        });
        if let Some(at) = segment_start(&m.bytes, b"PID").and_then(|p| field_start(&m.bytes, p, 11))
        {
            m.bytes.splice(at..at, std::iter::repeat_n(b'X', extra));
        }
        m
    }

    /// An A08 with bytes in PID-5 that are not UTF-8.
    fn invalid_utf8_message(&mut self, now: DateTime<Utc>) -> AdtMessage {
        let subject = self.subject(now);
        let mut m = self.malformed(render::A08, now, MalformedReason::InvalidUtf8, |s, w| {
            s.write_subject(w, &subject, None, |_| {});
        });
        if let Some(at) = segment_start(&m.bytes, b"PID").and_then(|p| field_start(&m.bytes, p, 5))
        {
            // A lead byte followed by a non-continuation byte, then a byte
            // that never appears in UTF-8.
            m.bytes.splice(at..at, [0xC3, 0x28, 0xFF]);
        }
        m
    }

    /// A well-formed ORU^R01 full blood count for a real patient.
    fn unprocessed_result(&mut self, now: DateTime<Utc>) -> AdtMessage {
        let subject = self.subject(now);
        let order = self.rng.random_range(100_000_000u64..999_999_999);
        let hb: u32 = self.rng.random_range(85..175);
        let wbc: u32 = self.rng.random_range(30..180);
        let plt: u32 = self.rng.random_range(90..450);
        self.emit(
            render::R01,
            now,
            now,
            now,
            MessageKind::Unprocessed,
            |s, w| {
                s.write_subject(w, &subject, None, |_| {});
                w.segment("ORC")
                    .field()
                    .raw(b"RE")
                    .field()
                    .number(order, 1)
                    .field()
                    .number(order, 1);
                w.segment("OBR")
                    .field()
                    .raw(b"1")
                    .field()
                    .number(order, 1)
                    .field()
                    .number(order, 1)
                    .field()
                    .raw(b"FBC^Full blood count^LOCAL")
                    .fields(3)
                    .timestamp(&now)
                    .fields(15)
                    .timestamp(&now)
                    .fields(3)
                    .raw(b"F");
                let results = [
                    Analyte {
                        code: b"HB^Haemoglobin^LOCAL",
                        units: b"g/L",
                        tenths: u64::from(hb) * 10,
                        decimals: false,
                        range: b"115-165",
                        flag: if hb < 115 { b"L" } else { b"N" },
                    },
                    Analyte {
                        code: b"WBC^White cell count^LOCAL",
                        units: b"10*9/L",
                        tenths: u64::from(wbc),
                        decimals: true,
                        range: b"4.0-11.0",
                        flag: if wbc > 110 { b"H" } else { b"N" },
                    },
                    Analyte {
                        code: b"PLT^Platelets^LOCAL",
                        units: b"10*9/L",
                        tenths: u64::from(plt) * 10,
                        decimals: false,
                        range: b"150-400",
                        flag: if plt < 150 { b"L" } else { b"N" },
                    },
                ];
                for (i, a) in results.iter().enumerate() {
                    w.segment("OBX")
                        .field()
                        .number(i as u64 + 1, 1)
                        .field()
                        .raw(b"NM")
                        .field()
                        .raw(a.code)
                        .fields(2)
                        .number(a.tenths / 10, 1);
                    if a.decimals {
                        w.raw(b".").number(a.tenths % 10, 1);
                    }
                    w.field()
                        .raw(a.units)
                        .field()
                        .raw(a.range)
                        .field()
                        .raw(a.flag)
                        .fields(3)
                        .raw(b"F")
                        .fields(3)
                        .timestamp(&now);
                }
            },
        )
    }
}

/// One numeric result in the unprocessed ORU.
struct Analyte {
    code: &'static [u8],
    units: &'static [u8],
    /// Value in tenths, so one decimal place can be shown without floats.
    tenths: u64,
    decimals: bool,
    range: &'static [u8],
    flag: &'static [u8],
}

/// Start of segment `id` (at the message start or after a `\r`).
fn segment_start(bytes: &[u8], id: &[u8; 3]) -> Option<usize> {
    if bytes.starts_with(id) {
        return Some(0);
    }
    bytes
        .windows(4)
        .position(|w| w[0] == b'\r' && &w[1..] == id)
        .map(|p| p + 1)
}

/// Offset where field `n` of the segment starting at `seg` begins: just
/// after its `n`th field separator (for MSH, field `n + 1`).
fn field_start(bytes: &[u8], seg: usize, n: usize) -> Option<usize> {
    let mut seen = 0;
    for (i, b) in bytes[seg..].iter().enumerate() {
        match b {
            b'\r' => return None,
            b'|' => {
                seen += 1;
                if seen == n {
                    return Some(seg + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The message with MSH ending after MSH-9 (so no MSH-10 control id and
/// nothing after it).
fn truncate_msh_before_control_id(bytes: &[u8]) -> Vec<u8> {
    let msh_end = bytes
        .iter()
        .position(|b| *b == b'\r')
        .unwrap_or(bytes.len());
    // MSH-10 starts after the ninth separator (the first is MSH-1 itself).
    match field_start(bytes, 0, 9) {
        Some(start) => {
            let mut out = Vec::with_capacity(bytes.len());
            out.extend_from_slice(&bytes[..start - 1]);
            out.extend_from_slice(&bytes[msh_end..]);
            out
        }
        None => bytes.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_surgery() {
        let m =
            b"MSH|^~\\&|A|B|C|D|20250101000000||ADT^A03^ADT_A03|X1|P|2.4\rEVN|A03\rPID|1||123\r";
        let t = truncate_msh_before_control_id(m);
        assert_eq!(
            t,
            b"MSH|^~\\&|A|B|C|D|20250101000000||ADT^A03^ADT_A03\rEVN|A03\rPID|1||123\r".to_vec()
        );
        let pid = segment_start(m, b"PID").unwrap();
        assert_eq!(&m[pid..pid + 3], b"PID");
        assert_eq!(field_start(m, pid, 3), Some(pid + 7));
        assert_eq!(field_start(m, pid, 4), None);
    }
}
