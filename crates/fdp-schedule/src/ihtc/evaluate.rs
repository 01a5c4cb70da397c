//! A schedule priced as the competition prices it: the violations of the
//! nine hard constraints and the eight soft costs, each raw and weighted.
//!
//! Everything counts only inside the horizon: a stay running past its last
//! day is cut there. People in a room are its occupants and the patients
//! admitted to it; a room holding anyone needs a nurse in every shift of
//! the day.

use std::fmt;

use super::problem::{Problem, Schedule};

/// The hard constraints, in the order the competition prints them.
pub const VIOLATIONS: [&str; 9] = [
    "RoomGenderMix",
    "PatientRoomCompatibility",
    "SurgeonOvertime",
    "OperatingTheaterOvertime",
    "MandatoryUnscheduledPatients",
    "AdmissionDay",
    "RoomCapacity",
    "NursePresence",
    "UncoveredRoom",
];

/// The soft costs, in the order the competition prints them (and of
/// [`super::Weights::in_order`]).
pub const COSTS: [&str; 8] = [
    "RoomAgeMix",
    "RoomSkillLevel",
    "ContinuityOfCare",
    "ExcessiveNurseWorkload",
    "OpenOperatingTheater",
    "SurgeonTransfer",
    "PatientDelay",
    "ElectiveUnscheduledPatients",
];

/// A schedule's price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    /// Each hard constraint's violations, in [`VIOLATIONS`] order: counts,
    /// or minutes for the overtime ones.
    pub violations: [i64; 9],
    /// Each soft cost unweighted, in [`COSTS`] order.
    pub costs: [i64; 8],
    pub weights: [i64; 8],
}

impl Evaluation {
    /// The sum of the violations, their units mixed as the competition
    /// mixes them.
    pub fn total_violations(&self) -> i64 {
        self.violations.iter().sum()
    }

    pub fn is_feasible(&self) -> bool {
        self.total_violations() == 0
    }

    /// Each soft cost times its weight.
    pub fn weighted(&self) -> [i64; 8] {
        let mut out = [0; 8];
        for (k, o) in out.iter_mut().enumerate() {
            *o = self.costs[k] * self.weights[k];
        }
        out
    }

    pub fn total_cost(&self) -> i64 {
        self.weighted().iter().sum()
    }
}

/// The competition validator's own layout, line for line.
impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "VIOLATIONS: ")?;
        for (name, v) in VIOLATIONS.iter().zip(self.violations) {
            writeln!(f, "{name:.<30}{v:.>5}")?;
        }
        writeln!(f, "Total violations = {}", self.total_violations())?;
        writeln!(f)?;
        writeln!(f, "COSTS (weight X cost): ")?;
        let weighted = self.weighted();
        for k in 0..COSTS.len() {
            writeln!(
                f,
                "{:.<30}{:.>10} ({:>3} X {:>3})",
                COSTS[k], weighted[k], self.weights[k], self.costs[k]
            )?;
        }
        writeln!(f, "Total cost = {}", self.total_cost())
    }
}

/// Price `schedule`.
pub fn price(problem: &Problem, schedule: &Schedule) -> Evaluation {
    let days = problem.days;
    let spd = problem.shifts_per_day();
    let mut v = [0i64; 9];
    let mut c = [0i64; 8];

    let present = schedule.presence(problem);
    let theaters = problem.theater_minutes.len();
    let surgeons = problem.surgeon_minutes.len();
    let mut theater_load = vec![vec![0i64; days]; theaters];
    let mut surgeon_load = vec![vec![0i64; days]; surgeons];
    let mut surgeon_theaters: Vec<Vec<Vec<usize>>> = vec![vec![Vec::new(); days]; surgeons];
    for (i, p) in problem.to_admit.iter().enumerate() {
        let Some(a) = schedule.admission[i] else {
            if p.mandatory {
                v[4] += 1;
            } else {
                c[7] += p.skip_cost;
            }
            continue;
        };
        if a.day < p.release_day as i64 || a.day > p.last_day as i64 {
            v[5] += 1;
        }
        c[6] += match &p.day_cost {
            None => (a.day - p.release_day as i64).max(0),
            Some(_) => usize::try_from(a.day).map_or(0, |d| p.delay(d)),
        };
        if p.incompatible[a.room] {
            v[1] += 1;
        }
        // A day outside the horizon has no room or theatre to count in.
        let Ok(day) = usize::try_from(a.day) else {
            continue;
        };
        if day >= days {
            continue;
        }
        theater_load[a.theater][day] += p.duration;
        surgeon_load[p.surgeon][day] += p.duration;
        if !surgeon_theaters[p.surgeon][day].contains(&a.theater) {
            surgeon_theaters[p.surgeon][day].push(a.theater);
        }
    }
    for (u, loads) in surgeon_load.iter().enumerate() {
        for (d, load) in loads.iter().enumerate() {
            v[2] += (load - problem.surgeon_minutes[u][d]).max(0);
            c[5] += (surgeon_theaters[u][d].len() as i64 - 1).max(0);
        }
    }
    for (t, loads) in theater_load.iter().enumerate() {
        for (d, load) in loads.iter().enumerate() {
            v[3] += (load - problem.theater_minutes[t][d]).max(0);
            c[4] += i64::from(*load > 0);
        }
    }

    // Rooms day by day, and the nurse of each shift.
    let mut nurses_of: Vec<Vec<usize>> = vec![Vec::new(); problem.people.len()];
    for (r, by_day) in present.iter().enumerate() {
        for (d, here) in by_day.iter().enumerate() {
            if here.is_empty() {
                continue;
            }
            let a = here
                .iter()
                .filter(|q| problem.people[q.person].gender_a)
                .count() as i64;
            v[0] += a.min(here.len() as i64 - a);
            v[6] += (here.len() as i64 - problem.room_capacity[r] as i64).max(0);
            let ages = here.iter().map(|q| problem.people[q.person].age_group);
            let (lo, hi) = ages.fold((usize::MAX, 0), |(lo, hi), g| (lo.min(g), hi.max(g)));
            c[0] += (hi - lo) as i64;
            for s in d * spd..(d + 1) * spd {
                let Some(n) = schedule.cover[r][s] else {
                    v[8] += 1;
                    continue;
                };
                for q in here {
                    let need = problem.people[q.person].skill[s - q.first_shift];
                    c[1] += (need - problem.nurse_skill[n]).max(0);
                    let seen = &mut nurses_of[q.person];
                    if !seen.contains(&n) {
                        seen.push(n);
                    }
                }
            }
        }
    }
    c[2] = nurses_of.iter().map(|n| n.len() as i64).sum();
    // A room given to a nurse in a shift the roster does not give them, or
    // on another ward.
    for (r, shifts) in schedule.cover.iter().enumerate() {
        for (s, nurse) in shifts.iter().enumerate() {
            if nurse.is_some_and(|n| !problem.may_cover(n, r, s)) {
                v[7] += 1;
            }
        }
    }

    // Each nurse's load in each rostered shift.
    for (n, loads) in problem.nurse_max_load.iter().enumerate() {
        for (s, max) in loads.iter().enumerate() {
            let Some(max) = max else { continue };
            let load: i64 = schedule.nurse_rooms[n][s]
                .iter()
                .flat_map(|&r| &present[r][s / spd])
                .map(|q| problem.people[q.person].workload[s - q.first_shift])
                .sum();
            c[3] += (load - max).max(0);
        }
    }
    Evaluation {
        violations: v,
        costs: c,
        weights: problem.weights,
    }
}
