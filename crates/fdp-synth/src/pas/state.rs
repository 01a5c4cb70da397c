//! The simulator's model of the hospital and the bookkeeping that keeps its
//! indexes (bed occupants, inpatient and leave lists, free-bed counts) in
//! step.

use std::collections::VecDeque;
use std::ops::Range;

use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;

use super::{render, PasSimulator};
use crate::error::SynthError;
use crate::hl7::escape_into;
use crate::people::{age_on, Cohort, Person, Sex};
use crate::trust::{BedStatus, DepartmentKind, Division, Trust, WardKind};

/// Chance that a returning patient is registered afresh under a second
/// hospital number, to be merged (A40) later.
const DUPLICATE_CHANCE: f64 = 0.04;
/// Chance that a new encounter is for someone the PAS already knows.
const RETURNING_CHANCE: f64 = 0.3;

/// A bed as the simulator needs it.
#[derive(Clone)]
pub(super) struct BedInfo {
    pub ward: u16,
    pub open: bool,
    pub id: String,
    /// PV1-3 for the bed, pre-rendered.
    pub location: Vec<u8>,
}

/// A ward as the simulator needs it.
#[derive(Clone)]
pub(super) struct WardInfo {
    pub site: u16,
    pub kind: WardKind,
    pub beds: Range<u32>,
    pub open_beds: u32,
    /// Consultants of the ward's specialty (indices into `Layout::consultants`).
    pub consultants: Vec<u16>,
    /// PV1-3 for the ward without a bed (pre-admissions).
    pub location: Vec<u8>,
}

/// An emergency or outpatient department.
#[derive(Clone)]
pub(super) struct DeptInfo {
    pub site: u16,
    pub emergency: bool,
    pub location: Vec<u8>,
}

/// A consultant, pre-rendered for PV1-7.
#[derive(Clone)]
pub(super) struct ConsultantInfo {
    pub xcn: Vec<u8>,
    pub tfc: u16,
}

/// The static shape of the trust, flattened and pre-rendered so message
/// building is mostly copying bytes.
#[derive(Clone)]
pub(super) struct Layout {
    pub ods: String,
    pub site_codes: Vec<String>,
    pub beds: Vec<BedInfo>,
    pub wards: Vec<WardInfo>,
    pub depts: Vec<DeptInfo>,
    pub consultants: Vec<ConsultantInfo>,
    /// EVN-5 values.
    pub clerks: Vec<Vec<u8>>,
    pub open_beds: u32,
    /// Department indices by kind, main site first.
    pub emergency_depts: Vec<u16>,
    pub clinic_depts: Vec<u16>,
    pub all_depts: Vec<u16>,
    /// Acute assessment units, where most transfers start.
    pub assessment_wards: Vec<u16>,
}

fn location(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'^');
        }
        escape_into(&mut out, p);
    }
    out
}

/// Treatment function codes are three digits; anything else maps to 0 and
/// is not written.
fn parse_tfc(s: &str) -> u16 {
    s.parse().unwrap_or(0)
}

impl Layout {
    pub fn new(trust: &Trust) -> Result<Layout, SynthError> {
        let consultants: Vec<ConsultantInfo> = trust
            .consultants
            .iter()
            .map(|c| {
                let mut xcn = Vec::with_capacity(48);
                escape_into(&mut xcn, &c.code);
                xcn.push(b'^');
                escape_into(&mut xcn, &c.family_name.to_uppercase());
                xcn.push(b'^');
                escape_into(&mut xcn, &c.given_name);
                xcn.extend_from_slice(b"^^^");
                escape_into(&mut xcn, &c.title);
                ConsultantInfo {
                    xcn,
                    tfc: parse_tfc(&c.treatment_function_code),
                }
            })
            .collect();
        let mut layout = Layout {
            ods: trust.ods_code.clone(),
            site_codes: trust.sites.iter().map(|s| s.code.clone()).collect(),
            beds: Vec::new(),
            wards: Vec::new(),
            depts: Vec::new(),
            clerks: trust
                .clerks
                .iter()
                .map(|c| location(&[&c.user_id, &c.family_name.to_uppercase(), &c.given_name]))
                .collect(),
            consultants,
            open_beds: 0,
            emergency_depts: Vec::new(),
            clinic_depts: Vec::new(),
            all_depts: Vec::new(),
            assessment_wards: Vec::new(),
        };
        if layout.clerks.is_empty() {
            layout.clerks.push(b"PAS".to_vec());
        }
        for (s, site) in trust.sites.iter().enumerate() {
            for dept in &site.departments {
                let emergency = dept.kind == DepartmentKind::Emergency;
                let kind = if emergency { "DEPT" } else { "CLINIC" };
                layout.depts.push(DeptInfo {
                    site: s as u16,
                    emergency,
                    location: location(&[&dept.code, "", "", &site.code, "", kind, &site.name]),
                });
            }
            for ward in &site.wards {
                let start = layout.beds.len() as u32;
                let mut open = 0;
                let w = layout.wards.len() as u16;
                for bed in &ward.beds {
                    let is_open = bed.status == BedStatus::Open;
                    open += u32::from(is_open);
                    layout.beds.push(BedInfo {
                        ward: w,
                        open: is_open,
                        id: bed.id.clone(),
                        location: location(&[
                            &ward.code, &bed.bay, &bed.label, &site.code, "", "BED", &site.name,
                        ]),
                    });
                }
                let tfc = parse_tfc(ward.kind.treatment_function_code());
                layout.wards.push(WardInfo {
                    site: s as u16,
                    kind: ward.kind,
                    beds: start..layout.beds.len() as u32,
                    open_beds: open,
                    consultants: (0..layout.consultants.len() as u16)
                        .filter(|c| layout.consultants[*c as usize].tfc == tfc)
                        .collect(),
                    location: location(&[&ward.code, "", "", &site.code, "", "WARD", &site.name]),
                });
                layout.open_beds += open;
            }
        }
        for (d, dept) in layout.depts.iter().enumerate() {
            let list = if dept.emergency {
                &mut layout.emergency_depts
            } else {
                &mut layout.clinic_depts
            };
            list.push(d as u16);
            layout.all_depts.push(d as u16);
        }
        layout.assessment_wards = (0..layout.wards.len() as u16)
            .filter(|w| layout.wards[*w as usize].kind.division() == Division::Assessment)
            .collect();
        if layout.open_beds == 0 {
            return Err(SynthError::InvalidPasConfig(
                "the trust has no open beds".to_string(),
            ));
        }
        if layout.beds.len() > u32::MAX as usize / 2 || layout.wards.len() > u16::MAX as usize {
            return Err(SynthError::InvalidPasConfig(
                "the trust is too large".to_string(),
            ));
        }
        Ok(layout)
    }

    pub fn ward_of(&self, bed: u32) -> u16 {
        self.beds[bed as usize].ward
    }

    pub fn kind_of_bed(&self, bed: u32) -> WardKind {
        self.wards[self.ward_of(bed) as usize].kind
    }
}

/// Someone the PAS holds a record for.
#[derive(Clone)]
pub(super) struct Patient {
    pub person: Person,
    pub mrn: String,
    /// A second hospital number registered in error, awaiting an A40 merge.
    pub dup_mrn: Option<String>,
    /// Each person is duplicated at most once so old encounters' numbers stay
    /// unambiguous.
    pub ever_duplicated: bool,
    /// The patient's one open encounter, if any.
    pub open: Option<u32>,
    /// Recent discharges (which an A13 could reopen) referring to this
    /// patient; the record must not be recycled while any exist.
    pub recent_refs: u8,
    pub deceased: bool,
    /// Rendered PID-4 onwards and PD1 while the patient has an open
    /// encounter, so busy patients are not re-escaped for every message.
    pub demographics: Option<Vec<u8>>,
}

impl Patient {
    /// Free to start a new encounter or to be forgotten.
    fn dormant(&self) -> bool {
        self.open.is_none() && self.recent_refs == 0 && self.dup_mrn.is_none()
    }
}

/// Where an encounter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EncState {
    PreAdmit {
        ward: u16,
    },
    Attendance {
        dept: u16,
    },
    Inpatient {
        bed: u32,
    },
    /// Closed, kept while an A13 could still reopen it.
    Discharged {
        bed: u32,
    },
    /// Slot unused.
    Free,
}

/// The latest transfer of a spell, so an A12 can undo it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Transfer {
    pub from: u32,
    pub at: DateTime<Utc>,
    pub consultant: Option<u16>,
    pub tfc: u16,
}

/// A hospital spell, attendance or pre-admission: one visit number.
#[derive(Debug, Clone, Copy)]
pub(super) struct Encounter {
    pub visit: u64,
    pub patient: u32,
    /// Recorded under the patient's duplicate number (until merged).
    pub uses_dup: bool,
    pub state: EncState,
    /// Admission (or arrival) time; PV1-44.
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// PV1-4 admission method.
    pub admit_method: &'static str,
    pub consultant: Option<u16>,
    /// PV1-10 treatment function code.
    pub tfc: u16,
    pub on_leave: bool,
    /// Position in `inpatients` while an inpatient.
    pub list_pos: u32,
    /// Position in `on_leave` while on leave.
    pub leave_pos: u32,
    pub last_transfer: Option<Transfer>,
    /// Has left its admission bed; an A11 only cancels untouched admissions.
    pub moved: bool,
    /// Admitted directly by an A01 (not from a pre-admission or attendance).
    pub via_a01: bool,
}

impl Encounter {
    pub fn new(
        visit: u64,
        patient: u32,
        uses_dup: bool,
        state: EncState,
        at: DateTime<Utc>,
    ) -> Self {
        Encounter {
            visit,
            patient,
            uses_dup,
            state,
            started_at: at,
            ended_at: None,
            admit_method: "",
            consultant: None,
            tfc: 0,
            on_leave: false,
            list_pos: 0,
            leave_pos: 0,
            last_transfer: None,
            moved: false,
            via_a01: false,
        }
    }
}

/// Which bounded "recent events" list to push to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Recent {
    Admits,
    Transfers,
    Discharges,
}

/// How many recent admissions, transfers and discharges stay cancellable.
pub(super) const RECENT_CAP: usize = 16;

impl PasSimulator {
    pub(super) fn mrn_of(&self, enc: &Encounter) -> &str {
        let p = &self.patients[enc.patient as usize];
        match (&p.dup_mrn, enc.uses_dup) {
            (Some(dup), true) => dup,
            _ => &p.mrn,
        }
    }

    pub(super) fn next_visit_number(&mut self) -> u64 {
        let v = self.next_visit;
        self.next_visit += 1;
        v
    }

    pub(super) fn next_control_id(&mut self) -> String {
        let n = self.next_control;
        self.next_control += 1;
        // Hand-rolled rather than format!: this runs for every message.
        let prefix = &self.cfg.sending_facility;
        let mut id = String::with_capacity(prefix.len() + 10);
        id.push_str(prefix);
        let mut digits = [b'0'; 20];
        let (mut i, mut v) = (digits.len(), n);
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let start = i.min(digits.len() - 10);
        id.extend(digits[start..].iter().map(|d| char::from(*d)));
        id
    }

    /// Stores a new open encounter and makes it its patient's open one.
    pub(super) fn alloc_encounter(&mut self, enc: Encounter) -> u32 {
        let patient = enc.patient;
        let e = match self.free_encounters.pop() {
            Some(i) => {
                self.encounters[i as usize] = enc;
                i
            }
            None => {
                self.encounters.push(enc);
                (self.encounters.len() - 1) as u32
            }
        };
        self.open_for(patient, e);
        e
    }

    /// Makes `e` the patient's open encounter.
    pub(super) fn open_for(&mut self, patient: u32, e: u32) {
        let p = &mut self.patients[patient as usize];
        p.open = Some(e);
        if p.demographics.is_none() {
            p.demographics = Some(render::demographics(&p.person));
        }
    }

    /// The patient no longer has an open encounter.
    pub(super) fn close_for(&mut self, patient: u32) {
        let p = &mut self.patients[patient as usize];
        p.open = None;
        p.demographics = None;
    }

    /// Re-renders cached demographics after a change.
    pub(super) fn refresh_demographics(&mut self, patient: u32) {
        let p = &mut self.patients[patient as usize];
        if p.demographics.is_some() {
            p.demographics = Some(render::demographics(&p.person));
        }
    }

    pub(super) fn release_encounter(&mut self, e: u32) {
        self.encounters[e as usize].state = EncState::Free;
        self.free_encounters.push(e);
    }

    /// Puts encounter `e` into free open `bed` as an inpatient.
    pub(super) fn add_inpatient(&mut self, e: u32, bed: u32) {
        debug_assert!(self.bed_occupant[bed as usize].is_none());
        debug_assert!(self.layout.beds[bed as usize].open);
        self.bed_occupant[bed as usize] = Some(e);
        self.ward_free[self.layout.ward_of(bed) as usize] -= 1;
        self.occupied += 1;
        let pos = self.inpatients.len() as u32;
        self.inpatients.push(e);
        let enc = &mut self.encounters[e as usize];
        enc.state = EncState::Inpatient { bed };
        enc.list_pos = pos;
        enc.on_leave = false;
    }

    /// Takes inpatient `e` out of its bed (ending any leave); returns the bed.
    /// The caller sets the encounter's new state.
    pub(super) fn remove_inpatient(&mut self, e: u32) -> u32 {
        if self.encounters[e as usize].on_leave {
            self.set_leave(e, false);
        }
        let enc = self.encounters[e as usize];
        let EncState::Inpatient { bed } = enc.state else {
            unreachable!("remove_inpatient on {:?}", enc.state)
        };
        self.bed_occupant[bed as usize] = None;
        self.ward_free[self.layout.ward_of(bed) as usize] += 1;
        self.occupied -= 1;
        let pos = enc.list_pos as usize;
        self.inpatients.swap_remove(pos);
        if let Some(&moved) = self.inpatients.get(pos) {
            self.encounters[moved as usize].list_pos = pos as u32;
        }
        bed
    }

    /// Moves inpatient `e` to free open bed `to`.
    pub(super) fn move_inpatient(&mut self, e: u32, to: u32) {
        let EncState::Inpatient { bed: from } = self.encounters[e as usize].state else {
            unreachable!("move_inpatient on a non-inpatient")
        };
        debug_assert!(self.bed_occupant[to as usize].is_none());
        self.bed_occupant[from as usize] = None;
        self.ward_free[self.layout.ward_of(from) as usize] += 1;
        self.bed_occupant[to as usize] = Some(e);
        self.ward_free[self.layout.ward_of(to) as usize] -= 1;
        self.encounters[e as usize].state = EncState::Inpatient { bed: to };
    }

    pub(super) fn set_leave(&mut self, e: u32, on: bool) {
        let enc = &mut self.encounters[e as usize];
        if enc.on_leave == on {
            return;
        }
        enc.on_leave = on;
        if on {
            enc.leave_pos = self.on_leave.len() as u32;
            self.on_leave.push(e);
        } else {
            let pos = enc.leave_pos as usize;
            self.on_leave.swap_remove(pos);
            if let Some(&moved) = self.on_leave.get(pos) {
                self.encounters[moved as usize].leave_pos = pos as u32;
            }
        }
    }

    pub(super) fn bed_of(&self, e: u32) -> Option<u32> {
        match self.encounters[e as usize].state {
            EncState::Inpatient { bed } => Some(bed),
            _ => None,
        }
    }

    /// A uniformly chosen free open bed on `ward`.
    pub(super) fn random_free_bed(&mut self, ward: u16) -> Option<u32> {
        let free = self.ward_free[ward as usize];
        if free == 0 {
            return None;
        }
        let mut k = self.rng.random_range(0..free);
        for b in self.layout.wards[ward as usize].beds.clone() {
            if self.layout.beds[b as usize].open && self.bed_occupant[b as usize].is_none() {
                if k == 0 {
                    return Some(b);
                }
                k -= 1;
            }
        }
        None
    }

    /// A random inpatient who is not on leave.
    pub(super) fn random_active_inpatient(&mut self) -> Option<u32> {
        if self.inpatients.len() <= self.on_leave.len() {
            return None;
        }
        for _ in 0..32 {
            let e = self.inpatients[self.rng.random_range(0..self.inpatients.len())];
            if !self.encounters[e as usize].on_leave {
                return Some(e);
            }
        }
        None
    }

    pub(super) fn consultant_for_ward(&mut self, ward: u16) -> Option<u16> {
        let list = &self.layout.wards[ward as usize].consultants;
        if list.is_empty() {
            return None;
        }
        Some(list[self.rng.random_range(0..list.len())])
    }

    /// Sex and age of an encounter's patient on `today`.
    pub(super) fn sex_age(&self, patient: u32, today: NaiveDate) -> (Sex, u32) {
        let p = &self.patients[patient as usize].person;
        (p.sex, age_on(p.date_of_birth, today))
    }

    /// A patient for a new encounter: sometimes someone already known (and
    /// then occasionally under a new duplicate number), otherwise a new
    /// person from `cohort`. `accept` filters returning patients.
    /// Returns the patient and whether the encounter uses the duplicate.
    pub(super) fn patient_for(
        &mut self,
        cohort: Cohort,
        today: NaiveDate,
        accept: impl Fn(Sex, u32) -> bool,
    ) -> (u32, bool) {
        if !self.patients.is_empty() && self.rng.random_bool(RETURNING_CHANCE) {
            for _ in 0..4 {
                let i = self.rng.random_range(0..self.patients.len());
                let p = &self.patients[i];
                if !p.dormant() || p.deceased {
                    continue;
                }
                let (sex, age) = self.sex_age(i as u32, today);
                if !accept(sex, age) {
                    continue;
                }
                let duplicate =
                    !self.patients[i].ever_duplicated && self.rng.random_bool(DUPLICATE_CHANCE);
                if duplicate {
                    let dup = self.mrns.allocate(&mut self.rng);
                    let p = &mut self.patients[i];
                    p.dup_mrn = Some(dup);
                    p.ever_duplicated = true;
                    self.pending_merges.push(i as u32);
                }
                return (i as u32, duplicate);
            }
        }
        (self.new_patient(cohort, today), false)
    }

    /// Registers a new person, reusing a forgotten patient's slot once the
    /// pool is full.
    pub(super) fn new_patient(&mut self, cohort: Cohort, today: NaiveDate) -> u32 {
        let nhs = self.nhs_numbers.allocate();
        let person = Person::generate(&mut self.rng, &self.catchment, cohort, today, nhs);
        let patient = Patient {
            person,
            mrn: self.mrns.allocate(&mut self.rng),
            dup_mrn: None,
            ever_duplicated: false,
            open: None,
            recent_refs: 0,
            deceased: false,
            demographics: None,
        };
        if self.patients.len() >= self.cfg.max_known_patients {
            for _ in 0..8 {
                let i = self.rng.random_range(0..self.patients.len());
                if self.patients[i].dormant() {
                    self.patients[i] = patient;
                    return i as u32;
                }
            }
        }
        self.patients.push(patient);
        (self.patients.len() - 1) as u32
    }

    pub(super) fn push_recent(&mut self, list: Recent, e: u32) {
        let item = (e, self.encounters[e as usize].visit);
        let deque = match list {
            Recent::Admits => &mut self.recent_admits,
            Recent::Transfers => &mut self.recent_transfers,
            Recent::Discharges => &mut self.recent_discharges,
        };
        deque.push_back(item);
        if deque.len() <= RECENT_CAP {
            return;
        }
        let Some((old, visit)) = deque.pop_front() else {
            return;
        };
        if let Recent::Discharges = list {
            // Too old to cancel now: the closed spell can be forgotten.
            let enc = self.encounters[old as usize];
            if enc.visit == visit && matches!(enc.state, EncState::Discharged { .. }) {
                self.patients[enc.patient as usize].recent_refs -= 1;
                self.release_encounter(old);
            }
        }
    }

    /// Appends to a capped open-encounter queue; the oldest entry beyond the
    /// cap is closed silently (a pre-admission that never happened, an
    /// attendance that ended without an admission).
    pub(super) fn push_open(
        queue: &mut VecDeque<(u32, u64)>,
        item: (u32, u64),
        cap: usize,
    ) -> Option<(u32, u64)> {
        queue.push_back(item);
        if queue.len() > cap {
            queue.pop_front()
        } else {
            None
        }
    }

    /// Closes an expired pre-admission or attendance without a message.
    pub(super) fn expire(&mut self, (e, visit): (u32, u64)) {
        let enc = self.encounters[e as usize];
        if enc.visit != visit
            || !matches!(
                enc.state,
                EncState::PreAdmit { .. } | EncState::Attendance { .. }
            )
        {
            return;
        }
        self.close_for(enc.patient);
        self.release_encounter(e);
    }
}
