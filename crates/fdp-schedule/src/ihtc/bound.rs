//! A lower bound on the cost of any feasible schedule: how far from the
//! best possible a schedule may be.
//!
//! The bound relaxes the problem into pieces that can each be solved
//! exactly, and adds their optima: no schedule can cost less in any piece,
//! so none can cost less than the sum. The pieces:
//!
//! - **Each patient alone** (delay, unscheduled, continuity of care and
//!   skill): a patient is either left out (optional ones only, at their
//!   weight) or admitted on some day of their window, where they wait the
//!   days since release, need at least as many nurses as it takes to cover
//!   every shift of their stay from the rosters (each nurse covering at
//!   most the shifts they work), and fall short of the most skilled nurse
//!   on duty each shift. The cheapest choice is taken. Occupants are
//!   priced the same way on their fixed stay.
//! - **Theatres**: over every span of days, the mandatory patients whose
//!   window lies inside it need theatre minutes that only the theatre-days
//!   inside it give; the fewest such theatre-days that hold those minutes
//!   must open. The largest count over the spans is taken.
//! - **Age mix**: the occupants' own spread of ages, room by room, day by
//!   day, which admissions can only widen.
//! - **Workload**: in each shift, the occupants' workload beyond what all
//!   the nurses on duty may carry.
//!
//! Surgeon transfers are bounded by nothing. The bound is weak where the
//! pieces interact most (who shares a room with whom, which nurse sees
//! which patient), and it says so only by its distance from the schedule
//! found: it is a floor, not an estimate.

use super::problem::Problem;

/// A lower bound, by cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// Each soft cost's share of the bound, weighted, in
    /// [`super::COSTS`] order.
    pub weighted: [i64; 8],
}

impl Bound {
    pub fn total(&self) -> i64 {
        self.weighted.iter().sum()
    }
}

/// The fewest nurses who can cover every shift in `shifts` between them,
/// each covering only the shifts they are rostered.
fn nurses_needed(problem: &Problem, shifts: std::ops::Range<usize>) -> i64 {
    let need = shifts.len();
    if need == 0 {
        return 0;
    }
    let mut reach: Vec<usize> = problem
        .nurse_max_load
        .iter()
        .map(|roster| {
            roster[shifts.clone()]
                .iter()
                .filter(|m| m.is_some())
                .count()
        })
        .filter(|&k| k > 0)
        .collect();
    reach.sort_unstable_by(|a, b| b.cmp(a));
    let mut covered = 0;
    for (k, r) in reach.iter().enumerate() {
        covered += r;
        if covered >= need {
            return k as i64 + 1;
        }
    }
    // Some shift nobody works: the schedule cannot be covered at all;
    // every nurse there is counts.
    reach.len() as i64
}

/// The optional patients' least cost (skill, nurses and delay folded into
/// the delay share, unscheduled apart) when no more of them may be admitted
/// than the surgeons' minutes, or the theatres' minutes, allow; the larger
/// of the two.
fn forced_out(problem: &Problem, optional: &[(usize, Option<i64>)]) -> [i64; 8] {
    let w7 = problem.weights[7];
    let minutes_left = |cap: i64, of: &dyn Fn(usize) -> bool| -> i64 {
        cap - problem
            .to_admit
            .iter()
            .enumerate()
            .filter(|&(i, p)| p.mandatory && of(i))
            .map(|(_, p)| p.duration)
            .sum::<i64>()
    };
    // Within one group: at most `room` minutes of operations; the least
    // cost of the group's patients.
    let group = |members: Vec<(usize, Option<i64>)>, room: i64| -> (i64, i64) {
        let mut durations: Vec<i64> = members
            .iter()
            .map(|&(i, _)| problem.to_admit[i].duration)
            .collect();
        durations.sort_unstable();
        let mut fit = 0usize;
        let mut used = 0;
        for d in durations {
            if used + d > room {
                break;
            }
            used += d;
            fit += 1;
        }
        let must_leave = members.len().saturating_sub(fit);
        // Leaving a patient out costs their weighted skip price in place
        // of their admission.
        let skip = |i: usize| w7 * problem.to_admit[i].skip_cost;
        let mut extra: Vec<(i64, i64)> = members
            .iter()
            .map(|&(i, a)| (a.map_or(0, |a| skip(i) - a), skip(i)))
            .collect();
        extra.sort_unstable();
        let admitted: i64 = members.iter().map(|&(i, a)| a.unwrap_or(skip(i))).sum();
        let leaving = || {
            extra
                .iter()
                .enumerate()
                .filter(|&(k, &(e, _))| k < must_leave || e < 0)
                .map(|(_, &e)| e)
        };
        let out: i64 = leaving().map(|(e, _)| e).sum();
        let skipped: i64 = leaving().map(|(_, s)| s).sum();
        (admitted + out - skipped, skipped)
    };
    let mut by_surgeon = (0i64, 0i64);
    for (u, minutes) in problem.surgeon_minutes.iter().enumerate() {
        let members: Vec<_> = optional
            .iter()
            .copied()
            .filter(|&(i, _)| problem.to_admit[i].surgeon == u)
            .collect();
        let room = minutes_left(minutes.iter().sum(), &|i| problem.to_admit[i].surgeon == u);
        let (admitted, out) = group(members, room);
        by_surgeon = (by_surgeon.0 + admitted, by_surgeon.1 + out);
    }
    let all_theaters: i64 = problem.theater_minutes.iter().flatten().sum();
    let by_theater = group(optional.to_vec(), minutes_left(all_theaters, &|_| true));
    let (admitted, out) = if by_theater.0 + by_theater.1 > by_surgeon.0 + by_surgeon.1 {
        by_theater
    } else {
        by_surgeon
    };
    let mut parts = [0i64; 8];
    parts[6] = admitted;
    parts[7] = out;
    parts
}

/// Lower bound on `problem`'s cost.
pub fn lower_bound(problem: &Problem) -> Bound {
    let w = problem.weights;
    let days = problem.days;
    let spd = problem.shifts_per_day();
    let shifts = problem.shifts();
    let best_skill: Vec<i64> = (0..shifts)
        .map(|s| {
            (0..problem.nurse_skill.len())
                .filter(|&n| problem.nurse_max_load[n][s].is_some())
                .map(|n| problem.nurse_skill[n])
                .max()
                .unwrap_or(0)
        })
        .collect();
    // A person's skill shortfall and nurses from `first` (weighted, and
    // each part apart).
    let stay_costs = |person: usize, first: usize| -> (i64, i64) {
        let who = &problem.people[person];
        let last = (first + who.length_of_stay).min(days);
        let range = first * spd..last * spd;
        let short: i64 = range
            .clone()
            .map(|s| (who.skill[s - first * spd] - best_skill[s]).max(0))
            .sum();
        (short * w[1], nurses_needed(problem, range) * w[2])
    };

    let mut weighted = [0i64; 8];
    for o in 0..problem.occupants {
        let (short, nurses) = stay_costs(o, 0);
        weighted[1] += short;
        weighted[2] += nurses;
    }
    // Each optional patient's cheapest admission (or none possible), and
    // the cheaper of that and leaving them out.
    let mut optional: Vec<(usize, Option<i64>)> = Vec::new();
    let mut optional_parts = [0i64; 8];
    for (i, p) in problem.to_admit.iter().enumerate() {
        let last = p.last_day.min(days.saturating_sub(1));
        let admitted = (p.release_day..=last)
            .filter(|&d| {
                problem.surgeon_minutes[p.surgeon][d] >= p.duration
                    && p.theaters
                        .iter()
                        .any(|&t| problem.theater_minutes[t][d] >= p.duration)
            })
            .map(|d| {
                let (short, nurses) = stay_costs(problem.occupants + i, d);
                let delay = p.delay(d) * w[6];
                (short + nurses + delay, [short, nurses, delay])
            })
            .min_by_key(|c| c.0);
        if !p.mandatory {
            optional.push((i, admitted.map(|a| a.0)));
        }
        match admitted {
            Some((total, parts)) if p.mandatory || total < w[7] * p.skip_cost => {
                for (k, part) in [1, 2, 6].into_iter().zip(parts) {
                    weighted[k] += part;
                    if !p.mandatory {
                        optional_parts[k] += part;
                    }
                }
            }
            // A mandatory patient with no day that could take them: the
            // schedule is infeasible whatever it does; nothing to add.
            _ if p.mandatory => {}
            _ => {
                weighted[7] += w[7] * p.skip_cost;
                optional_parts[7] += w[7] * p.skip_cost;
            }
        }
    }
    // The optional patients again, now held to the minutes there are: a
    // surgeon (or the theatres together) can operate on no more of them
    // than their shortest operations fit into the minutes the mandatory
    // patients leave. Those forced out are the ones cheapest to leave out.
    let forced = forced_out(problem, &optional);
    if forced.iter().sum::<i64>() > optional_parts.iter().sum::<i64>() {
        for k in [1, 2, 6, 7] {
            weighted[k] += forced[k] - optional_parts[k];
        }
    }

    // Theatres that must open, over the span that needs most.
    let mut most = 0;
    for a in 0..days {
        for b in a..days {
            let minutes: i64 = problem
                .to_admit
                .iter()
                .filter(|p| p.mandatory && p.release_day >= a && p.last_day <= b)
                .map(|p| p.duration)
                .sum();
            if minutes == 0 {
                continue;
            }
            let mut open: Vec<i64> = problem
                .theater_minutes
                .iter()
                .flat_map(|t| t[a..=b].iter().copied())
                .filter(|&m| m > 0)
                .collect();
            open.sort_unstable_by(|x, y| y.cmp(x));
            let mut held = 0;
            let mut count = 0;
            for m in open {
                if held >= minutes {
                    break;
                }
                held += m;
                count += 1;
            }
            most = most.max(count);
        }
    }
    weighted[4] = most * w[4];

    // The occupants' own age spread, and their workload past the roster.
    let mut spread = 0i64;
    let mut load = vec![0i64; shifts];
    for r in 0..problem.room_capacity.len() {
        for d in 0..days {
            let ages = (0..problem.occupants)
                .filter(|&o| problem.occupant_room[o] == r && d < problem.people[o].length_of_stay)
                .map(|o| problem.people[o].age_group);
            let (lo, hi) = ages.fold((usize::MAX, 0), |(lo, hi), g| (lo.min(g), hi.max(g)));
            if lo != usize::MAX {
                spread += (hi - lo) as i64;
            }
        }
    }
    for o in 0..problem.occupants {
        let who = &problem.people[o];
        for (s, l) in load
            .iter_mut()
            .enumerate()
            .take((who.length_of_stay * spd).min(shifts))
        {
            *l += who.workload[s];
        }
    }
    weighted[0] = spread * w[0];
    let excess: i64 = (0..shifts)
        .map(|s| {
            let carried: i64 = problem
                .nurse_max_load
                .iter()
                .filter_map(|roster| roster[s])
                .sum();
            (load[s] - carried).max(0)
        })
        .sum();
    weighted[3] = excess * w[3];
    Bound { weighted }
}
