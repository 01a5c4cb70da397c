//! What a scheduler does by hand, as the yardstick: patients by clinical
//! priority, then by weeks waited (longest first), each onto the earliest
//! list of their consultant's with the minutes and a bed, first fit.

use super::model::Model;
use super::{Plan, PlanError, Proposal};
use crate::ihtc::construct::Ward;
use crate::ihtc::{price, Admission, Schedule};

/// The baseline schedule for `plan`, read as a proposal.
pub fn baseline(plan: &Plan) -> Result<Proposal, PlanError> {
    let model = Model::new(plan)?;
    let schedule = model.baseline_schedule();
    let cost = price(&model.problem, &schedule).total_cost();
    Ok(model.read(plan, &schedule, cost))
}

impl Model {
    /// Everyone held on their list, then the baseline's first fit.
    pub(super) fn baseline_schedule(&self) -> Schedule {
        self.greedy(&self.held_only())
    }

    /// `start` with every patient it leaves out placed first fit, in
    /// priority order then longest wait first.
    pub(super) fn greedy(&self, start: &Schedule) -> Schedule {
        let p = &self.problem;
        let mut schedule = start.clone();
        let mut ward = Ward::new(p);
        for (a, adm) in start.admission.iter().enumerate() {
            if let Some(adm) = adm {
                ward.admit(p, a, *adm);
            }
        }
        let mut order: Vec<usize> = (0..p.to_admit.len())
            .filter(|&a| schedule.admission[a].is_none())
            .collect();
        order.sort_by_key(|&a| self.turn[a]);
        for a in order {
            let want = &p.to_admit[a];
            let placed = (want.release_day..=want.last_day.min(p.days - 1))
                .filter(|&day| ward.surgeon_free(p, a, day))
                .find_map(|day| {
                    want.theaters
                        .iter()
                        .filter(|&&t| ward.theater_free(p, a, t, day))
                        .find_map(|&theater| {
                            (0..p.room_capacity.len())
                                .find(|&room| {
                                    !want.incompatible[room]
                                        && ward.room_cost(p, p.occupants + a, room, day).is_some()
                                })
                                .map(|room| Admission {
                                    day: day as i64,
                                    room,
                                    theater,
                                })
                        })
                });
            if let Some(adm) = placed {
                ward.admit(p, a, adm);
                schedule.admission[a] = Some(adm);
            }
        }
        schedule
    }
}
