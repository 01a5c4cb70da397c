//! What a scheduler does by hand, as the yardstick: patients by clinical
//! priority, then by weeks waited (longest first), each onto the earliest
//! list of their consultant's with the minutes and a bed, first fit.

use super::model::Model;
use super::{Plan, PlanError, Proposal};
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
        let days = p.days;
        let mut schedule = start.clone();
        let mut theater = vec![vec![0i64; days]; p.theater_minutes.len()];
        let mut surgeon = vec![vec![0i64; days]; p.surgeon_minutes.len()];
        // Per room and day: people, and of them women.
        let mut beds = vec![vec![0usize; days]; p.room_capacity.len()];
        let mut women = vec![vec![0usize; days]; p.room_capacity.len()];
        let enter = |beds: &mut Vec<Vec<usize>>,
                     women: &mut Vec<Vec<usize>>,
                     person: usize,
                     room: usize,
                     day: usize| {
            let who = &p.people[person];
            for d in day..(day + who.length_of_stay).min(days) {
                beds[room][d] += 1;
                women[room][d] += usize::from(who.gender_a);
            }
        };
        for (o, &room) in p.occupant_room.iter().enumerate() {
            enter(&mut beds, &mut women, o, room, 0);
        }
        for (a, adm) in start.admission.iter().enumerate() {
            if let Some(adm) = adm {
                let day = adm.day as usize;
                theater[adm.theater][day] += p.to_admit[a].duration;
                surgeon[p.to_admit[a].surgeon][day] += p.to_admit[a].duration;
                enter(&mut beds, &mut women, p.occupants + a, adm.room, day);
            }
        }
        let mut order: Vec<usize> = (0..p.to_admit.len())
            .filter(|&a| schedule.admission[a].is_none())
            .collect();
        order.sort_by_key(|&a| self.turn[a]);
        for a in order {
            let want = &p.to_admit[a];
            let who = &p.people[p.occupants + a];
            let mut placed = None;
            'days: for day in want.release_day..=want.last_day.min(days - 1) {
                if surgeon[want.surgeon][day] + want.duration > p.surgeon_minutes[want.surgeon][day]
                {
                    continue;
                }
                for &t in &want.theaters {
                    if theater[t][day] + want.duration > p.theater_minutes[t][day] {
                        continue;
                    }
                    for room in 0..p.room_capacity.len() {
                        if want.incompatible[room] {
                            continue;
                        }
                        let fits = (day..(day + who.length_of_stay).min(days)).all(|d| {
                            let same = if who.gender_a {
                                women[room][d] == beds[room][d]
                            } else {
                                women[room][d] == 0
                            };
                            beds[room][d] < p.room_capacity[room] && same
                        });
                        if fits {
                            placed = Some(Admission {
                                day: day as i64,
                                room,
                                theater: t,
                            });
                            break 'days;
                        }
                    }
                }
            }
            if let Some(adm) = placed {
                let day = adm.day as usize;
                theater[adm.theater][day] += want.duration;
                surgeon[want.surgeon][day] += want.duration;
                enter(&mut beds, &mut women, p.occupants + a, adm.room, day);
                schedule.admission[a] = Some(adm);
            }
        }
        schedule
    }
}
