//! The ongoing ADT event stream.

use chrono::{DateTime, Duration, Timelike, Utc};
use rand::Rng;

use super::flow::{
    clinic_suits, discharge_destination, elective_method, elective_weight, emergency_method,
    emergency_weight, transfer_targets,
};
use super::render::{self, Loc};
use super::state::{EncState, Encounter, Recent};
use super::{AdtMessage, PasSimulator};
use crate::people::{Cohort, Sex};
use crate::rng::pick_index_weighted;
use crate::trust::{Division, WardKind};

/// How far back an admission, transfer or discharge may still be cancelled.
const CANCEL_WINDOW_HOURS: i64 = 12;
/// Open attendances remembered for A06 and A08; older ones end silently.
const ATTENDANCE_CAP: usize = 200;
/// Pending pre-admissions; older ones lapse silently.
const PRE_ADMIT_CAP: usize = 80;
/// How strongly admissions and discharges react to occupancy off target:
/// at 5 points below target admissions run at twice their base rate.
const OCCUPANCY_GAIN: f64 = 20.0;
/// Share of A01s that are planned admissions.
const ELECTIVE_SHARE: f64 = 0.25;

/// The event types [`PasSimulator::next`] chooses between, in weight order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    Admit,
    PreAdmit,
    Transfer,
    Discharge,
    Update,
    Register,
    OutpatientToInpatient,
    InpatientToOutpatient,
    CancelAdmit,
    CancelTransfer,
    CancelDischarge,
    SwapBeds,
    LeaveStart,
    LeaveReturn,
    Merge,
}

const EVENTS: [Ev; 15] = [
    Ev::Admit,
    Ev::PreAdmit,
    Ev::Transfer,
    Ev::Discharge,
    Ev::Update,
    Ev::Register,
    Ev::OutpatientToInpatient,
    Ev::InpatientToOutpatient,
    Ev::CancelAdmit,
    Ev::CancelTransfer,
    Ev::CancelDischarge,
    Ev::SwapBeds,
    Ev::LeaveStart,
    Ev::LeaveReturn,
    Ev::Merge,
];

fn within_window(now: DateTime<Utc>, then: DateTime<Utc>) -> bool {
    now - then <= Duration::hours(CANCEL_WINDOW_HOURS)
}

impl PasSimulator {
    /// The next ADT message at wall-clock time `now`.
    ///
    /// With probability [`PasConfig::malformed_share`](super::PasConfig)
    /// the message is anomalous (see [`MessageKind`](super::MessageKind))
    /// and leaves the model untouched. Otherwise an event is drawn from the
    /// configured mix, applied to the model, and rendered. All events are
    /// stamped `now` (MSH-7, EVN-2, EVN-6), truncated to whole seconds.
    /// Times are written as `yyyyMMddHHmmss` of the UTC instant, with no
    /// offset.
    ///
    /// Conventions (segments end in `\r`):
    /// - `MSH|^~\&|PAS|RXX|OPENFDP|RXX|<now>||ADT^<event>^<structure>|<control id>|P|2.4|||AL|NE|GBR|UNICODE UTF-8`;
    ///   control ids are the sending facility and a ten-digit counter.
    /// - `EVN|<event>|<recorded>|||<user>^<SURNAME>^<Given>|<occurred>`
    /// - `PID|1||<NHS number>^^^NHS^NH~<MRN>^^^<ODS>^MR||<SURNAME>^<Given>^<Middle>^^<Title>||<dob>|<sex>|||<line1>^<line2>^<town>^^<postcode>^GBR^H||<phone>|||||||||<ethnic>^^^||||||||`
    /// - `PD1|||^^<GP practice>`
    /// - `PV1|1|<class>|<location>|<admission method>||<prior location>|<consultant>^<SURNAME>^<Given>^^^<Title>|||<treatment function>|||||||||<spell>^^^<ODS>^VN|||||||||||||||||<discharge destination>|||<site code>|||||<admitted>|<discharged>`
    ///   where a bed location is `<ward>^<bay>^<bed label>^<site code>^^BED^<site name>`,
    ///   a pre-admission's `<ward>^^^<site code>^^WARD^<site name>` and an
    ///   attendance's `<department>^^^<site code>^^DEPT|CLINIC^<site name>`.
    ///   Classes: `I` inpatient, `E` emergency attendance, `O` outpatient,
    ///   `P` pre-admission.
    /// - A02 and A12 carry PV1-6; A12's PV1-3 is where the patient goes back
    ///   to and PV1-6 the bed of the cancelled transfer. A06 and A07 carry the
    ///   previous location in PV1-6. A17 has two PID/PD1/PV1 groups, each
    ///   PV1-3 the new bed and PV1-6 the old. A40 is PID (surviving numbers),
    ///   PD1 and `MRG|<retired MRN>^^^<ODS>^MR`.
    pub fn next(&mut self, now: DateTime<Utc>) -> AdtMessage {
        let now = whole_seconds(now);
        let share = self.cfg.malformed_share;
        if share > 0.0 && self.rng.random_bool(share) {
            return self.anomalous(now);
        }
        let mut weights = self.event_weights();
        for _ in 0..EVENTS.len() {
            let Some(i) = pick_index_weighted(&mut self.rng, &weights) else {
                break;
            };
            if let Some(m) = self.try_event(EVENTS[i], now) {
                return m;
            }
            weights[i] = 0.0;
        }
        self.register(now)
    }

    fn event_weights(&self) -> [f64; 15] {
        let m = &self.cfg.mix;
        let err = self.cfg.target_occupancy - self.occupancy();
        let fill = (1.0 + OCCUPANCY_GAIN * err).clamp(0.05, 4.0);
        let empty = (1.0 - OCCUPANCY_GAIN * err).clamp(0.05, 4.0);
        let free = self.layout.open_beds > self.occupied;
        let active = self.inpatients.len() - self.on_leave.len();
        let open = self.inpatients.len() + self.attendances.len() + self.pre_admits.len();
        let on = |cond: bool, w: f64| if cond { w } else { 0.0 };
        [
            on(free, m.admit * fill),
            m.pre_admit,
            on(active > 0 && free, m.transfer),
            on(active > 0, m.discharge * empty),
            on(open > 0, m.update),
            m.register,
            on(
                !self.attendances.is_empty() && free,
                m.outpatient_to_inpatient * fill,
            ),
            on(active > 0, m.inpatient_to_outpatient * empty),
            on(!self.recent_admits.is_empty(), m.cancel_admit * empty),
            on(!self.recent_transfers.is_empty(), m.cancel_transfer),
            on(
                !self.recent_discharges.is_empty() && free,
                m.cancel_discharge * fill,
            ),
            on(active >= 2, m.swap_beds),
            on(
                active > 0 && self.on_leave.len() < (self.inpatients.len() / 40).max(2),
                m.leave_start,
            ),
            on(!self.on_leave.is_empty(), m.leave_return),
            on(!self.pending_merges.is_empty(), m.merge),
        ]
    }

    fn try_event(&mut self, ev: Ev, now: DateTime<Utc>) -> Option<AdtMessage> {
        match ev {
            Ev::Admit => self.admit(now),
            Ev::PreAdmit => self.pre_admit(now),
            Ev::Transfer => self.transfer(now),
            Ev::Discharge => self.discharge(now),
            Ev::Update => self.update(now),
            Ev::Register => Some(self.register(now)),
            Ev::OutpatientToInpatient => self.outpatient_to_inpatient(now),
            Ev::InpatientToOutpatient => self.inpatient_to_outpatient(now),
            Ev::CancelAdmit => self.cancel_admit(now),
            Ev::CancelTransfer => self.cancel_transfer(now),
            Ev::CancelDischarge => self.cancel_discharge(now),
            Ev::SwapBeds => self.swap_beds(now),
            Ev::LeaveStart => self.leave_start(now),
            Ev::LeaveReturn => self.leave_return(now),
            Ev::Merge => self.merge(now),
        }
    }

    /// A ward drawn with probability proportional to `weight(self, ward)`.
    fn pick_ward_with(&mut self, weight: impl Fn(&Self, usize) -> f64) -> Option<u16> {
        // Reuses a buffer: this runs for most events.
        let mut weights = std::mem::take(&mut self.scratch);
        weights.clear();
        weights.extend((0..self.layout.wards.len()).map(|i| weight(self, i)));
        let picked = pick_index_weighted(&mut self.rng, &weights);
        self.scratch = weights;
        picked.map(|i| i as u16)
    }

    /// A ward with a free bed, drawn by `weight(kind)` times free beds and
    /// restricted to wards that accept the patient (if known).
    pub(super) fn pick_ward(
        &mut self,
        weight: fn(WardKind) -> f64,
        patient: Option<(Sex, u32)>,
    ) -> Option<u16> {
        self.pick_ward_with(|s, i| {
            let kind = s.layout.wards[i].kind;
            if patient.is_none_or(|(sex, age)| kind.accepts(sex, age)) {
                weight(kind) * f64::from(s.ward_free[i])
            } else {
                0.0
            }
        })
    }

    fn admit(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        let elective = self.rng.random_bool(ELECTIVE_SHARE);
        if elective && self.rng.random_bool(0.6) {
            if let Some(m) = self.admit_pre_admitted(now) {
                return Some(m);
            }
        }
        let ward = if elective {
            self.pick_ward(elective_weight, None)
        } else {
            None
        }
        .or_else(|| self.pick_ward(emergency_weight, None))
        .or_else(|| self.pick_ward(|_| 1.0, None))?;
        let kind = self.layout.wards[ward as usize].kind;
        let today = now.date_naive();
        let (patient, uses_dup) = self.patient_for(kind.cohort(), today, |s, a| kind.accepts(s, a));
        let bed = self.random_free_bed(ward)?;
        let method = if elective && elective_weight(kind) > 0.0 {
            elective_method(&mut self.rng)
        } else {
            emergency_method(&mut self.rng, kind)
        };
        let visit = self.next_visit_number();
        let mut enc = Encounter::new(visit, patient, uses_dup, EncState::Inpatient { bed }, now);
        enc.admit_method = method;
        enc.consultant = self.consultant_for_ward(ward);
        enc.tfc = tfc_of(kind);
        enc.via_a01 = true;
        let e = self.alloc_encounter(enc);
        self.add_inpatient(e, bed);
        self.push_recent(Recent::Admits, e);
        Some(self.emit_now(render::A01, now, |s, w| {
            let enc = &s.encounters[e as usize];
            s.write_patient(w, enc);
            s.write_pv1(w, &s.pv1_of(enc));
        }))
    }

    /// Admits the longest-waiting pre-admission whose ward has room.
    fn admit_pre_admitted(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        let found = self.pre_admits.iter().take(10).position(|&(e, visit)| {
            let enc = &self.encounters[e as usize];
            match enc.state {
                EncState::PreAdmit { ward } if enc.visit == visit => {
                    self.ward_free[ward as usize] > 0
                }
                _ => false,
            }
        })?;
        let (e, _) = self.pre_admits.remove(found)?;
        let EncState::PreAdmit { ward } = self.encounters[e as usize].state else {
            return None;
        };
        let bed = self.random_free_bed(ward)?;
        self.encounters[e as usize].started_at = now;
        self.add_inpatient(e, bed);
        Some(self.emit_now(render::A01, now, |s, w| {
            let enc = &s.encounters[e as usize];
            s.write_patient(w, enc);
            s.write_pv1(w, &s.pv1_of(enc));
        }))
    }

    fn pre_admit(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        let ward = self.pick_ward_with(|s, i| {
            let w = &s.layout.wards[i];
            elective_weight(w.kind) * f64::from(w.open_beds)
        })?;
        let kind = self.layout.wards[ward as usize].kind;
        let (patient, uses_dup) =
            self.patient_for(kind.cohort(), now.date_naive(), |s, a| kind.accepts(s, a));
        let visit = self.next_visit_number();
        let mut enc = Encounter::new(visit, patient, uses_dup, EncState::PreAdmit { ward }, now);
        enc.admit_method = elective_method(&mut self.rng);
        enc.consultant = self.consultant_for_ward(ward);
        enc.tfc = tfc_of(kind);
        let e = self.alloc_encounter(enc);
        if let Some(old) = Self::push_open(&mut self.pre_admits, (e, visit), PRE_ADMIT_CAP) {
            self.expire(old);
        }
        Some(self.emit_now(render::A05, now, |s, w| {
            let enc = &s.encounters[e as usize];
            s.write_patient(w, enc);
            s.write_pv1(w, &s.pv1_of(enc));
        }))
    }

    /// A random active patient on a random assessment unit, if it has one.
    fn random_assessment_patient(&mut self) -> Option<u32> {
        let units = &self.layout.assessment_wards;
        if units.is_empty() {
            return None;
        }
        let ward = units[self.rng.random_range(0..units.len())];
        let beds = self.layout.wards[ward as usize].beds.clone();
        let active = |s: &Self, b: u32| {
            s.bed_occupant[b as usize].filter(|e| !s.encounters[*e as usize].on_leave)
        };
        let n = beds.clone().filter(|b| active(self, *b).is_some()).count();
        if n == 0 {
            return None;
        }
        let k = self.rng.random_range(0..n);
        beds.filter_map(|b| active(self, b)).nth(k)
    }

    fn transfer(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        let today = now.date_naive();
        for _ in 0..4 {
            let e = if self.rng.random_bool(0.5) {
                self.random_assessment_patient()
            } else {
                None
            };
            let e = e.or_else(|| self.random_active_inpatient())?;
            let enc = self.encounters[e as usize];
            let from = self.bed_of(e)?;
            let from_ward = self.layout.ward_of(from);
            let kind = self.layout.wards[from_ward as usize].kind;
            let targets = transfer_targets(kind);
            let (sex, age) = self.sex_age(enc.patient, today);
            let picked = self.pick_ward_with(|s, i| {
                let w = &s.layout.wards[i];
                if !targets.contains(&w.kind) || !w.kind.accepts(sex, age) {
                    return 0.0;
                }
                let factor = if i == from_ward as usize {
                    0.3
                } else if w.kind.division() == Division::CriticalCare {
                    0.15
                } else {
                    1.0
                };
                factor * f64::from(s.ward_free[i])
            });
            let Some(to_ward) = picked else {
                continue;
            };
            let to = self.random_free_bed(to_ward)?;
            let to_kind = self.layout.wards[to_ward as usize].kind;
            let consultant = if tfc_of(to_kind) == enc.tfc {
                enc.consultant
            } else {
                self.consultant_for_ward(to_ward)
            };
            self.move_inpatient(e, to);
            let m = &mut self.encounters[e as usize];
            m.last_transfer = Some(super::state::Transfer {
                from,
                at: now,
                consultant: enc.consultant,
                tfc: enc.tfc,
            });
            m.consultant = consultant;
            m.tfc = tfc_of(to_kind);
            m.moved = true;
            self.push_recent(Recent::Transfers, e);
            return Some(self.emit_now(render::A02, now, |s, w| {
                let enc = &s.encounters[e as usize];
                s.write_patient(w, enc);
                let mut v = s.pv1_of(enc);
                v.prior = Some(Loc::Bed(from));
                s.write_pv1(w, &v);
            }));
        }
        None
    }

    fn discharge(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        let a = self.random_active_inpatient()?;
        let b = self.random_active_inpatient()?;
        // Longer stays are likelier to end next: of two, the earlier admitted
        // usually goes.
        let (longer, shorter) =
            if self.encounters[a as usize].started_at <= self.encounters[b as usize].started_at {
                (a, b)
            } else {
                (b, a)
            };
        let e = if self.rng.random_bool(0.7) {
            longer
        } else {
            shorter
        };
        let bed = self.remove_inpatient(e);
        let destination = discharge_destination(&mut self.rng);
        let enc = &mut self.encounters[e as usize];
        enc.state = EncState::Discharged { bed };
        enc.ended_at = Some(now);
        let patient = enc.patient;
        self.close_for(patient);
        let p = &mut self.patients[patient as usize];
        p.recent_refs += 1;
        p.deceased = destination == "79";
        let msg = self.emit_now(render::A03, now, |s, w| {
            let enc = &s.encounters[e as usize];
            s.write_patient(w, enc);
            let mut v = s.pv1_of(enc);
            v.discharge_destination = Some(destination);
            s.write_pv1(w, &v);
        });
        // After rendering: pushing may release an old spell's slot.
        self.push_recent(Recent::Discharges, e);
        Some(msg)
    }

    /// An open encounter of any kind, inpatients twice as likely.
    pub(super) fn random_open_encounter(&mut self) -> Option<u32> {
        let inp = self.inpatients.len();
        let att = self.attendances.len();
        let pre = self.pre_admits.len();
        let total = 2 * inp + att + pre;
        if total == 0 {
            return None;
        }
        let r = self.rng.random_range(0..total);
        Some(if r < 2 * inp {
            self.inpatients[r / 2]
        } else if r < 2 * inp + att {
            self.attendances[r - 2 * inp].0
        } else {
            self.pre_admits[r - 2 * inp - att].0
        })
    }

    fn update(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        let e = self.random_open_encounter()?;
        let enc = self.encounters[e as usize];
        let p = enc.patient as usize;
        let today = now.date_naive();
        let r: f64 = self.rng.random();
        let rng = &mut self.rng;
        let catchment = &self.catchment;
        let person = &mut self.patients[p].person;
        match r {
            r if r < 0.3 => person.change_phone(rng, catchment),
            r if r < 0.6 => person.move_house(rng, catchment),
            r if r < 0.72 => person.change_gp(rng, catchment),
            r if r < 0.8 => {
                if !person.change_family_name(rng, today) {
                    person.change_phone(rng, catchment);
                }
            }
            _ => {
                // No demographic change: a new responsible consultant.
                if let EncState::Inpatient { bed } = enc.state {
                    let ward = self.layout.ward_of(bed);
                    let c = self.consultant_for_ward(ward);
                    self.encounters[e as usize].consultant = c;
                }
            }
        }
        self.refresh_demographics(enc.patient);
        Some(self.emit_now(render::A08, now, |s, w| {
            let enc = &s.encounters[e as usize];
            s.write_patient(w, enc);
            s.write_pv1(w, &s.pv1_of(enc));
        }))
    }

    /// A04: an emergency attendance or outpatient appointment. Always
    /// possible, so it is the fallback event.
    fn register(&mut self, now: DateTime<Utc>) -> AdtMessage {
        let emergency = self.rng.random_bool(0.7);
        let depts = if emergency {
            &self.layout.emergency_depts
        } else {
            &self.layout.clinic_depts
        };
        let depts = if depts.is_empty() {
            &self.layout.all_depts
        } else {
            depts
        };
        // The main site's department sees most attendances.
        let dept = if self.rng.random_bool(0.7) {
            depts[0]
        } else {
            depts[self.rng.random_range(0..depts.len())]
        };
        let emergency = self.layout.depts[dept as usize].emergency;
        let cohort = if emergency {
            Cohort::EmergencyAttendance
        } else {
            Cohort::Outpatient
        };
        let (patient, uses_dup) = self.patient_for(cohort, now.date_naive(), |_, _| true);
        let visit = self.next_visit_number();
        let mut enc = Encounter::new(visit, patient, uses_dup, EncState::Attendance { dept }, now);
        if emergency {
            enc.tfc = 180;
        } else if !self.layout.consultants.is_empty() {
            let (sex, age) = self.sex_age(patient, now.date_naive());
            let n = self.layout.consultants.len();
            let mut c = self.rng.random_range(0..n);
            for _ in 0..16 {
                if clinic_suits(self.layout.consultants[c].tfc, sex, age) {
                    break;
                }
                c = self.rng.random_range(0..n);
            }
            enc.consultant = Some(c as u16);
            enc.tfc = self.layout.consultants[c].tfc;
        }
        let e = self.alloc_encounter(enc);
        if let Some(old) = Self::push_open(&mut self.attendances, (e, visit), ATTENDANCE_CAP) {
            self.expire(old);
        }
        self.emit_now(render::A04, now, |s, w| {
            let enc = &s.encounters[e as usize];
            s.write_patient(w, enc);
            s.write_pv1(w, &s.pv1_of(enc));
        })
    }

    fn outpatient_to_inpatient(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        let today = now.date_naive();
        for _ in 0..4 {
            if self.attendances.is_empty() {
                return None;
            }
            let i = self.rng.random_range(0..self.attendances.len());
            let (e, visit) = self.attendances[i];
            let enc = self.encounters[e as usize];
            let EncState::Attendance { dept } = enc.state else {
                continue;
            };
            if enc.visit != visit {
                continue;
            }
            let emergency = self.layout.depts[dept as usize].emergency;
            let who = self.sex_age(enc.patient, today);
            let Some(ward) = self.pick_ward(emergency_weight, Some(who)) else {
                continue;
            };
            let bed = self.random_free_bed(ward)?;
            self.attendances.remove(i);
            let kind = self.layout.wards[ward as usize].kind;
            let consultant = self.consultant_for_ward(ward);
            let m = &mut self.encounters[e as usize];
            m.started_at = now;
            m.admit_method = if emergency { "21" } else { "24" };
            m.consultant = consultant;
            m.tfc = tfc_of(kind);
            self.add_inpatient(e, bed);
            return Some(self.emit_now(render::A06, now, |s, w| {
                let enc = &s.encounters[e as usize];
                s.write_patient(w, enc);
                let mut v = s.pv1_of(enc);
                v.prior = Some(Loc::Dept(dept));
                s.write_pv1(w, &v);
            }));
        }
        None
    }

    fn inpatient_to_outpatient(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        for _ in 0..4 {
            let e = self.random_active_inpatient()?;
            let bed = self.bed_of(e)?;
            let kind = self.layout.kind_of_bed(bed);
            if matches!(kind.division(), Division::CriticalCare) || kind == WardKind::LabourWard {
                continue;
            }
            let site = self.layout.wards[self.layout.ward_of(bed) as usize].site;
            let dept = (0..self.layout.depts.len() as u16)
                .filter(|d| !self.layout.depts[*d as usize].emergency)
                .min_by_key(|d| self.layout.depts[*d as usize].site != site)?;
            self.remove_inpatient(e);
            let visit = {
                let m = &mut self.encounters[e as usize];
                m.state = EncState::Attendance { dept };
                m.last_transfer = None;
                m.moved = true;
                m.visit
            };
            if let Some(old) = Self::push_open(&mut self.attendances, (e, visit), ATTENDANCE_CAP) {
                self.expire(old);
            }
            return Some(self.emit_now(render::A07, now, |s, w| {
                let enc = &s.encounters[e as usize];
                s.write_patient(w, enc);
                let mut v = s.pv1_of(enc);
                v.prior = Some(Loc::Bed(bed));
                s.write_pv1(w, &v);
            }));
        }
        None
    }

    fn cancel_admit(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        for i in (0..self.recent_admits.len()).rev() {
            let (e, visit) = self.recent_admits[i];
            let enc = self.encounters[e as usize];
            let eligible = enc.visit == visit
                && matches!(enc.state, EncState::Inpatient { .. })
                && enc.via_a01
                && !enc.moved
                && !enc.on_leave
                && within_window(now, enc.started_at);
            if !eligible {
                continue;
            }
            self.recent_admits.remove(i);
            let msg = self.emit_now(render::A11, now, |s, w| {
                let enc = &s.encounters[e as usize];
                s.write_patient(w, enc);
                s.write_pv1(w, &s.pv1_of(enc));
            });
            self.remove_inpatient(e);
            self.close_for(enc.patient);
            self.release_encounter(e);
            return Some(msg);
        }
        None
    }

    fn cancel_transfer(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        for i in (0..self.recent_transfers.len()).rev() {
            let (e, visit) = self.recent_transfers[i];
            let enc = self.encounters[e as usize];
            let (EncState::Inpatient { bed: current }, Some(t)) = (enc.state, enc.last_transfer)
            else {
                continue;
            };
            let eligible = enc.visit == visit
                && !enc.on_leave
                && within_window(now, t.at)
                && self.bed_occupant[t.from as usize].is_none();
            if !eligible {
                continue;
            }
            self.recent_transfers.remove(i);
            self.move_inpatient(e, t.from);
            let m = &mut self.encounters[e as usize];
            m.consultant = t.consultant;
            m.tfc = t.tfc;
            m.last_transfer = None;
            return Some(self.emit_now(render::A12, now, |s, w| {
                let enc = &s.encounters[e as usize];
                s.write_patient(w, enc);
                let mut v = s.pv1_of(enc);
                v.prior = Some(Loc::Bed(current));
                s.write_pv1(w, &v);
            }));
        }
        None
    }

    fn cancel_discharge(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        for i in (0..self.recent_discharges.len()).rev() {
            let (e, visit) = self.recent_discharges[i];
            let enc = self.encounters[e as usize];
            let EncState::Discharged { bed } = enc.state else {
                continue;
            };
            let eligible = enc.visit == visit
                && self.patients[enc.patient as usize].open.is_none()
                && enc.ended_at.is_some_and(|t| within_window(now, t));
            if !eligible {
                continue;
            }
            let target = if self.bed_occupant[bed as usize].is_none() {
                bed
            } else {
                match self.random_free_bed(self.layout.ward_of(bed)) {
                    Some(b) => b,
                    None => continue,
                }
            };
            self.recent_discharges.remove(i);
            self.open_for(enc.patient, e);
            let p = &mut self.patients[enc.patient as usize];
            p.recent_refs -= 1;
            p.deceased = false;
            let m = &mut self.encounters[e as usize];
            m.ended_at = None;
            m.last_transfer = None;
            m.moved = true;
            self.add_inpatient(e, target);
            return Some(self.emit_now(render::A13, now, |s, w| {
                let enc = &s.encounters[e as usize];
                s.write_patient(w, enc);
                s.write_pv1(w, &s.pv1_of(enc));
            }));
        }
        None
    }

    fn swap_beds(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        for _ in 0..4 {
            let a = self.random_active_inpatient()?;
            let bed_a = self.bed_of(a)?;
            let ward = self.layout.ward_of(bed_a);
            let beds = self.layout.wards[ward as usize].beds.clone();
            let others = beds
                .clone()
                .filter(|b| {
                    self.bed_occupant[*b as usize]
                        .is_some_and(|o| o != a && !self.encounters[o as usize].on_leave)
                })
                .count();
            if others == 0 {
                continue;
            }
            let k = self.rng.random_range(0..others);
            let bed_b = beds
                .filter(|b| {
                    self.bed_occupant[*b as usize]
                        .is_some_and(|o| o != a && !self.encounters[o as usize].on_leave)
                })
                .nth(k)?;
            let b = self.bed_occupant[bed_b as usize]?;
            self.bed_occupant[bed_a as usize] = Some(b);
            self.bed_occupant[bed_b as usize] = Some(a);
            for (e, bed) in [(a, bed_b), (b, bed_a)] {
                let m = &mut self.encounters[e as usize];
                m.state = EncState::Inpatient { bed };
                m.last_transfer = None;
                m.moved = true;
            }
            return Some(self.emit_now(render::A17, now, |s, w| {
                for (e, old) in [(a, bed_a), (b, bed_b)] {
                    let enc = &s.encounters[e as usize];
                    s.write_patient(w, enc);
                    let mut v = s.pv1_of(enc);
                    v.prior = Some(Loc::Bed(old));
                    s.write_pv1(w, &v);
                }
            }));
        }
        None
    }

    fn leave_start(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        for _ in 0..6 {
            let e = self.random_active_inpatient()?;
            let enc = self.encounters[e as usize];
            let kind = self.layout.kind_of_bed(self.bed_of(e)?);
            // Leave is for settled patients on ordinary wards.
            let unsuitable = kind.is_short_stay()
                || kind.division() == Division::CriticalCare
                || now - enc.started_at < Duration::hours(24);
            if unsuitable {
                continue;
            }
            self.set_leave(e, true);
            return Some(self.emit_now(render::A21, now, |s, w| {
                let enc = &s.encounters[e as usize];
                s.write_patient(w, enc);
                s.write_pv1(w, &s.pv1_of(enc));
            }));
        }
        None
    }

    fn leave_return(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        if self.on_leave.is_empty() {
            return None;
        }
        let e = self.on_leave[self.rng.random_range(0..self.on_leave.len())];
        self.set_leave(e, false);
        Some(self.emit_now(render::A22, now, |s, w| {
            let enc = &s.encounters[e as usize];
            s.write_patient(w, enc);
            s.write_pv1(w, &s.pv1_of(enc));
        }))
    }

    fn merge(&mut self, now: DateTime<Utc>) -> Option<AdtMessage> {
        if self.pending_merges.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.pending_merges.len());
        let p = self.pending_merges.swap_remove(i);
        let retired = self.patients[p as usize].dup_mrn.take()?;
        Some(self.emit_now(render::A40, now, |s, w| {
            let patient = &s.patients[p as usize];
            let person = &patient.person;
            render::write_pid_pd1(w, &s.layout.ods, person, &person.nhs_number, &patient.mrn);
            render::write_mrg(w, &s.layout.ods, &retired);
        }))
    }
}

/// HL7 timestamps carry whole seconds; keeping the model to the same
/// precision lets receivers compare times exactly.
pub(super) fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

pub(super) fn tfc_of(kind: WardKind) -> u16 {
    kind.treatment_function_code().parse().unwrap_or(0)
}
