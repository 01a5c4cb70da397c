//! Segment rendering for the simulator's messages.

use chrono::{DateTime, Utc};
use rand::Rng;

use super::state::{EncState, Encounter, Layout};
use super::{AdtMessage, MessageKind, PasSimulator};
use crate::hl7::{MessageWriter, MshHeader};
use crate::people::Person;

/// A message type: trigger event, MSH-9, and whether it has an EVN segment.
#[derive(Debug, Clone, Copy)]
pub(super) struct MsgType {
    pub code: &'static str,
    pub msh9: &'static str,
    pub evn: bool,
}

macro_rules! adt {
    ($name:ident, $code:literal, $structure:literal) => {
        pub(super) const $name: MsgType = MsgType {
            code: $code,
            msh9: concat!("ADT^", $code, "^", $structure),
            evn: true,
        };
    };
}

adt!(A01, "A01", "ADT_A01");
adt!(A02, "A02", "ADT_A02");
adt!(A03, "A03", "ADT_A03");
adt!(A04, "A04", "ADT_A01");
adt!(A05, "A05", "ADT_A05");
adt!(A06, "A06", "ADT_A06");
adt!(A07, "A07", "ADT_A06");
adt!(A08, "A08", "ADT_A01");
adt!(A11, "A11", "ADT_A09");
adt!(A12, "A12", "ADT_A12");
adt!(A13, "A13", "ADT_A01");
adt!(A17, "A17", "ADT_A17");
adt!(A21, "A21", "ADT_A21");
adt!(A22, "A22", "ADT_A21");
adt!(A40, "A40", "ADT_A39");

/// Observation result: kept but not processed by the platform.
pub(super) const R01: MsgType = MsgType {
    code: "R01",
    msh9: "ORU^R01^ORU_R01",
    evn: false,
};

/// A patient location for PV1-3 or PV1-6.
#[derive(Debug, Clone, Copy)]
pub(super) enum Loc {
    Bed(u32),
    Ward(u16),
    Dept(u16),
}

impl Layout {
    fn loc_bytes(&self, loc: Loc) -> &[u8] {
        match loc {
            Loc::Bed(b) => &self.beds[b as usize].location,
            Loc::Ward(w) => &self.wards[w as usize].location,
            Loc::Dept(d) => &self.depts[d as usize].location,
        }
    }

    fn loc_site(&self, loc: Loc) -> &str {
        let site = match loc {
            Loc::Bed(b) => self.wards[self.ward_of(b) as usize].site,
            Loc::Ward(w) => self.wards[w as usize].site,
            Loc::Dept(d) => self.depts[d as usize].site,
        };
        &self.site_codes[site as usize]
    }
}

/// Everything PV1 carries.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pv1View {
    /// PV1-2: `I`, `O`, `E` or `P` (pre-admit).
    pub class: u8,
    pub loc: Loc,
    pub prior: Option<Loc>,
    pub admit_method: &'static str,
    pub consultant: Option<u16>,
    pub tfc: u16,
    pub visit: u64,
    pub admitted: Option<DateTime<Utc>>,
    pub discharged: Option<DateTime<Utc>>,
    pub discharge_destination: Option<&'static str>,
}

pub(super) fn write_evn(
    w: &mut MessageWriter,
    code: &str,
    recorded: &DateTime<Utc>,
    occurred: &DateTime<Utc>,
    operator: &[u8],
) {
    w.segment("EVN")
        .field()
        .raw(code.as_bytes())
        .field()
        .timestamp(recorded)
        .fields(3)
        .raw(operator)
        .field()
        .timestamp(occurred);
}

/// PID with the NHS number and one hospital number in PID-3, then PD1.
pub(super) fn write_pid_pd1(
    w: &mut MessageWriter,
    ods: &str,
    person: &Person,
    nhs: &str,
    mrn: &str,
) {
    write_pid_identifiers(w, ods, nhs, mrn);
    write_demographics(w, person);
}

/// `PID|1||<nhs>^^^NHS^NH~<mrn>^^^<ods>^MR`: the part of PID that depends
/// on which record a message is about.
fn write_pid_identifiers(w: &mut MessageWriter, ods: &str, nhs: &str, mrn: &str) {
    w.segment("PID")
        .field()
        .raw(b"1")
        .fields(2)
        .text(nhs)
        .raw(b"^^^NHS^NH~")
        .text(mrn)
        .components(3)
        .text(ods)
        .raw(b"^MR");
}

/// PID-4 to PID-30 and the PD1 segment: the person's demographics, which
/// change only on an A08 and so can be rendered once and reused.
fn write_demographics(w: &mut MessageWriter, person: &Person) {
    w.fields(2)
        .text_upper(&person.family_name)
        .component()
        .text(&person.given_name)
        .component();
    if let Some(m) = &person.middle_name {
        w.text(m);
    }
    w.components(2)
        .text(&person.title)
        .fields(2)
        .date(person.date_of_birth)
        .field()
        .raw(person.sex.code().as_bytes())
        .fields(3);
    let a = &person.address;
    w.text(&a.line1).component();
    if let Some(l2) = &a.line2 {
        w.text(l2);
    }
    w.component()
        .text(&a.town)
        .components(2)
        .text(&a.postcode)
        .raw(b"^GBR^H")
        .fields(2);
    if let Some(p) = &person.phone {
        w.text(p);
    }
    let mut eth = [0u8; 4];
    w.fields(9)
        .raw(person.ethnic_category.encode_utf8(&mut eth).as_bytes())
        .raw(b"^^^")
        .fields(8);
    w.segment("PD1")
        .fields(3)
        .raw(b"^^")
        .text(&person.gp_practice);
}

/// Pre-rendered [`write_demographics`] output for a patient.
pub(super) fn demographics(person: &Person) -> Vec<u8> {
    let mut w = MessageWriter::with_capacity(256);
    write_demographics(&mut w, person);
    w.into_bytes()
}

pub(super) fn write_pv1(w: &mut MessageWriter, layout: &Layout, v: &Pv1View) {
    w.segment("PV1")
        .field()
        .raw(b"1")
        .field()
        .raw(&[v.class])
        .field()
        .raw(layout.loc_bytes(v.loc))
        .field()
        .raw(v.admit_method.as_bytes())
        .fields(2);
    if let Some(p) = v.prior {
        w.raw(layout.loc_bytes(p));
    }
    w.field();
    if let Some(c) = v.consultant {
        w.raw(&layout.consultants[c as usize].xcn);
    }
    w.fields(3);
    if v.tfc != 0 {
        w.number(u64::from(v.tfc), 3);
    }
    w.fields(9)
        .number(v.visit, 1)
        .components(3)
        .text(&layout.ods)
        .raw(b"^VN")
        .fields(17);
    if let Some(d) = v.discharge_destination {
        w.raw(d.as_bytes());
    }
    w.fields(3).text(layout.loc_site(v.loc)).fields(5);
    if let Some(a) = &v.admitted {
        w.timestamp(a);
    }
    if let Some(d) = &v.discharged {
        w.field().timestamp(d);
    }
}

pub(super) fn write_mrg(w: &mut MessageWriter, ods: &str, retired_mrn: &str) {
    w.segment("MRG")
        .field()
        .text(retired_mrn)
        .components(3)
        .text(ods)
        .raw(b"^MR");
}

impl PasSimulator {
    /// Builds a message: MSH, EVN (for ADT), then `body`. Takes the next
    /// control id and a random PAS user for EVN-5.
    pub(super) fn emit(
        &mut self,
        t: MsgType,
        msh_time: DateTime<Utc>,
        recorded: DateTime<Utc>,
        occurred: DateTime<Utc>,
        kind: MessageKind,
        body: impl FnOnce(&Self, &mut MessageWriter),
    ) -> AdtMessage {
        let control_id = self.next_control_id();
        let clerk = self.rng.random_range(0..self.layout.clerks.len());
        let mut w = MessageWriter::with_capacity(1024);
        let header = MshHeader {
            sending_application: &self.cfg.sending_application,
            sending_facility: &self.cfg.sending_facility,
            receiving_application: &self.cfg.receiving_application,
            receiving_facility: &self.cfg.receiving_facility,
        };
        w.msh(&header, &msh_time, t.msh9, &control_id);
        if t.evn {
            write_evn(
                &mut w,
                t.code,
                &recorded,
                &occurred,
                &self.layout.clerks[clerk],
            );
        }
        body(self, &mut w);
        AdtMessage {
            bytes: w.finish(),
            control_id,
            event: t.code.to_string(),
            kind,
            at: msh_time,
        }
    }

    /// A message stamped `now` throughout.
    pub(super) fn emit_now(
        &mut self,
        t: MsgType,
        now: DateTime<Utc>,
        body: impl FnOnce(&Self, &mut MessageWriter),
    ) -> AdtMessage {
        self.emit(t, now, now, now, MessageKind::Valid, body)
    }

    /// PID and PD1 for an encounter's patient, under the number the
    /// encounter is recorded with.
    pub(super) fn write_patient(&self, w: &mut MessageWriter, enc: &Encounter) {
        let p = &self.patients[enc.patient as usize];
        write_pid_identifiers(w, &self.layout.ods, &p.person.nhs_number, self.mrn_of(enc));
        match &p.demographics {
            Some(cached) => {
                w.raw(cached);
            }
            None => write_demographics(w, &p.person),
        }
    }

    /// PV1 for an encounter as it stands.
    pub(super) fn pv1_of(&self, enc: &Encounter) -> Pv1View {
        let (class, loc, admitted) = match enc.state {
            EncState::PreAdmit { ward } => (b'P', Loc::Ward(ward), None),
            EncState::Attendance { dept } => {
                let class = if self.layout.depts[dept as usize].emergency {
                    b'E'
                } else {
                    b'O'
                };
                (class, Loc::Dept(dept), Some(enc.started_at))
            }
            EncState::Inpatient { bed } | EncState::Discharged { bed } => {
                (b'I', Loc::Bed(bed), Some(enc.started_at))
            }
            EncState::Free => unreachable!("rendering a released encounter"),
        };
        Pv1View {
            class,
            loc,
            prior: None,
            admit_method: enc.admit_method,
            consultant: enc.consultant,
            tfc: enc.tfc,
            visit: enc.visit,
            admitted,
            discharged: enc.ended_at,
            discharge_destination: None,
        }
    }

    pub(super) fn write_pv1(&self, w: &mut MessageWriter, v: &Pv1View) {
        write_pv1(w, &self.layout, v);
    }
}
