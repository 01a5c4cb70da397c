//! The census: messages that bring an empty hospital to a realistic
//! starting state.

use chrono::{DateTime, Duration, Utc};
use rand::seq::IndexedRandom;
use rand::Rng;

use super::events::{tfc_of, whole_seconds};
use super::flow::{
    elapsed_stay, elective_method, elective_weight, emergency_method, emergency_weight,
};
use super::render::{self, Loc};
use super::state::{EncState, Encounter};
use super::{AdtMessage, MessageKind, PasSimulator};
use crate::trust::{Division, WardKind};

/// Share of medical and surgical inpatients (in more than 12 hours) who came
/// through an assessment unit and so get an A01 there and an A02 to their
/// current bed.
const VIA_ASSESSMENT_SHARE: f64 = 0.4;

/// Where a census patient was first admitted, when that was not their
/// current bed.
#[derive(Clone, Copy)]
struct FirstBed {
    bed: u32,
    consultant: Option<u16>,
    tfc: u16,
    moved_at: DateTime<Utc>,
}

struct Plan {
    e: u32,
    admitted: DateTime<Utc>,
    first: Option<FirstBed>,
}

impl PasSimulator {
    /// Messages that fill the hospital to its target occupancy (give or
    /// take a point) as of `now`: one A01 per occupied bed dated at the
    /// patient's admission (EVN-2, EVN-6 and PV1-44 in the past, MSH-7 =
    /// `now`), and for some patients an A01 to an assessment unit followed
    /// by an A02 to their current bed. Messages come in event-time order so
    /// no bed is ever double booked along the way.
    ///
    /// Meant to be called once, before [`next`](Self::next); on a hospital
    /// already at or above target it returns nothing.
    pub fn census(&mut self, now: DateTime<Utc>) -> Vec<AdtMessage> {
        let now = whole_seconds(now);
        let today = now.date_naive();
        let jitter = self.rng.random_range(-0.01..0.01);
        let target = ((self.cfg.target_occupancy + jitter).clamp(0.0, 1.0)
            * f64::from(self.layout.open_beds))
        .round() as u32;
        if target <= self.occupied {
            return Vec::new();
        }
        let free: Vec<u32> = (0..self.layout.beds.len() as u32)
            .filter(|b| {
                self.layout.beds[*b as usize].open && self.bed_occupant[*b as usize].is_none()
            })
            .collect();
        let need = (target - self.occupied) as usize;
        let mut chosen: Vec<u32> = free.choose_multiple(&mut self.rng, need).copied().collect();
        chosen.sort_unstable();

        let mut plans = Vec::with_capacity(chosen.len());
        for bed in chosen {
            let ward = self.layout.ward_of(bed);
            let kind = self.layout.wards[ward as usize].kind;
            let admitted = now - elapsed_stay(&mut self.rng, kind);
            let patient = self.new_patient(kind.cohort(), today);
            let elective_share = match (elective_weight(kind) > 0.0, emergency_weight(kind) > 0.0) {
                (true, false) => 1.0,
                (true, true) => 0.3,
                _ => 0.0,
            };
            let mut enc = Encounter::new(0, patient, false, EncState::Inpatient { bed }, admitted);
            enc.admit_method = if self.rng.random_bool(elective_share) {
                elective_method(&mut self.rng)
            } else {
                emergency_method(&mut self.rng, kind)
            };
            enc.consultant = self.consultant_for_ward(ward);
            enc.tfc = tfc_of(kind);
            enc.moved = true;
            let e = self.alloc_encounter(enc);
            self.add_inpatient(e, bed);
            plans.push(Plan {
                e,
                admitted,
                first: None,
            });
        }
        // Spell numbers rise with admission time, as a PAS assigns them.
        plans.sort_by_key(|p| (p.admitted, p.e));
        for p in &plans {
            let visit = self.next_visit_number();
            self.encounters[p.e as usize].visit = visit;
        }
        self.plan_assessment_stays(&mut plans, now);

        let mut events: Vec<(DateTime<Utc>, bool, usize)> = Vec::with_capacity(plans.len() * 2);
        for (i, p) in plans.iter().enumerate() {
            events.push((p.admitted, false, i));
            if let Some(f) = p.first {
                events.push((f.moved_at, true, i));
            }
        }
        events.sort_unstable();
        events
            .into_iter()
            .map(|(at, is_transfer, i)| {
                let e = plans[i].e;
                let first = plans[i].first;
                let t = if is_transfer {
                    render::A02
                } else {
                    render::A01
                };
                self.emit(t, now, at, at, MessageKind::Valid, |s, w| {
                    let enc = &s.encounters[e as usize];
                    s.write_patient(w, enc);
                    let mut v = s.pv1_of(enc);
                    match (first, is_transfer) {
                        (Some(f), false) => {
                            v.loc = Loc::Bed(f.bed);
                            v.consultant = f.consultant;
                            v.tfc = f.tfc;
                        }
                        (Some(f), true) => v.prior = Some(Loc::Bed(f.bed)),
                        (None, _) => {}
                    }
                    s.write_pv1(w, &v);
                })
            })
            .collect()
    }

    /// Routes some medical and surgical patients through an assessment unit
    /// bed first. A bed can serve several such stays as long as they do not
    /// overlap each other or its current occupant's stay.
    fn plan_assessment_stays(&mut self, plans: &mut [Plan], now: DateTime<Utc>) {
        let mut busy: Vec<Vec<(DateTime<Utc>, DateTime<Utc>)>> =
            vec![Vec::new(); self.layout.beds.len()];
        for plan in plans.iter_mut() {
            let enc = self.encounters[plan.e as usize];
            let EncState::Inpatient { bed } = enc.state else {
                continue;
            };
            let unit = match self.layout.kind_of_bed(bed).division() {
                Division::Medicine => WardKind::AcuteMedicalUnit,
                Division::Surgery => WardKind::SurgicalAssessmentUnit,
                _ => continue,
            };
            let stay = now - plan.admitted;
            if stay < Duration::hours(12) || !self.rng.random_bool(VIA_ASSESSMENT_SHARE) {
                continue;
            }
            let max_minutes = (stay.num_minutes() - 60).min(48 * 60);
            let moved_at =
                plan.admitted + Duration::minutes(self.rng.random_range(120..=max_minutes));
            let units: Vec<u16> = (0..self.layout.wards.len() as u16)
                .filter(|w| self.layout.wards[*w as usize].kind == unit)
                .collect();
            let candidates: Vec<u32> = units
                .iter()
                .flat_map(|w| self.layout.wards[*w as usize].beds.clone())
                .filter(|b| self.layout.beds[*b as usize].open)
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let start = self.rng.random_range(0..candidates.len());
            let found = (0..candidates.len())
                .map(|k| candidates[(start + k) % candidates.len()])
                .find(|b| {
                    let later_occupant = self.bed_occupant[*b as usize]
                        .is_none_or(|o| self.encounters[o as usize].started_at > moved_at);
                    let clear = busy[*b as usize]
                        .iter()
                        .all(|(from, to)| *to < plan.admitted || moved_at < *from);
                    later_occupant && clear
                });
            let Some(first) = found else {
                continue;
            };
            busy[first as usize].push((plan.admitted, moved_at));
            let unit_ward = self.layout.ward_of(first);
            plan.first = Some(FirstBed {
                bed: first,
                consultant: self.consultant_for_ward(unit_ward),
                tfc: tfc_of(unit),
                moved_at,
            });
        }
    }
}
