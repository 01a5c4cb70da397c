//! A first schedule, built greedily without breaking a hard constraint
//! where that can be helped: the start any search improves on.
//!
//! Patients are placed one at a time, mandatory ones first by their last
//! admission day, then optional ones by their release. Each goes to the
//! cheapest (day, room, theatre) that keeps every room single-sex and
//! within its beds, and every theatre and surgeon within their minutes;
//! the price counted is the soft cost the placement adds (delay, a
//! theatre opened, a surgeon moving theatre, a room's ages spread). An
//! optional patient is placed only where that costs less than leaving them
//! out. Then, shift by shift, each occupied room is given the working
//! nurse who adds least: skill short of what its people need, load over
//! the nurse's maximum, and nurses new to its people.

use super::problem::{Admission, Problem, Schedule};

/// Who is in the rooms, and how full the theatres and surgeons are: what
/// a greedy placement (this one, and a trust's booking by hand) checks a
/// patient against.
pub(crate) struct Ward {
    beds_used: Vec<Vec<usize>>,
    /// Per room and day: the gender there (`true` for A), if anyone.
    gender: Vec<Vec<Option<bool>>>,
    /// Per room and day: the lowest and highest age group there.
    ages: Vec<Vec<Option<(usize, usize)>>>,
    theater_used: Vec<Vec<i64>>,
    surgeon_used: Vec<Vec<i64>>,
    /// Per surgeon and day: the theatres they operate in.
    surgeon_theaters: Vec<Vec<Vec<usize>>>,
}

impl Ward {
    pub(crate) fn new(problem: &Problem) -> Ward {
        let days = problem.days;
        let rooms = problem.room_capacity.len();
        let mut ward = Ward {
            beds_used: vec![vec![0; days]; rooms],
            gender: vec![vec![None; days]; rooms],
            ages: vec![vec![None; days]; rooms],
            theater_used: vec![vec![0; days]; problem.theater_minutes.len()],
            surgeon_used: vec![vec![0; days]; problem.surgeon_minutes.len()],
            surgeon_theaters: vec![vec![Vec::new(); days]; problem.surgeon_minutes.len()],
        };
        for (o, &room) in problem.occupant_room.iter().enumerate() {
            ward.occupy(problem, o, room, 0);
        }
        ward
    }

    /// Person `person` in `room` from `day` for their stay (cut at the
    /// horizon).
    fn occupy(&mut self, problem: &Problem, person: usize, room: usize, day: usize) {
        let who = &problem.people[person];
        for d in day..(day + who.length_of_stay).min(problem.days) {
            self.beds_used[room][d] += 1;
            self.gender[room][d] = Some(who.gender_a);
            let (lo, hi) = self.ages[room][d].unwrap_or((who.age_group, who.age_group));
            self.ages[room][d] = Some((lo.min(who.age_group), hi.max(who.age_group)));
        }
    }

    /// Whether `person` fits `room` from `day`, and if so the age spread
    /// the stay adds.
    pub(crate) fn room_cost(
        &self,
        problem: &Problem,
        person: usize,
        room: usize,
        day: usize,
    ) -> Option<i64> {
        let who = &problem.people[person];
        let mut spread = 0;
        for d in day..(day + who.length_of_stay).min(problem.days) {
            if self.beds_used[room][d] >= problem.room_capacity[room] {
                return None;
            }
            if self.gender[room][d].is_some_and(|g| g != who.gender_a) {
                return None;
            }
            if let Some((lo, hi)) = self.ages[room][d] {
                let (nlo, nhi) = (lo.min(who.age_group), hi.max(who.age_group));
                spread += (nhi - nlo) as i64 - (hi - lo) as i64;
            }
        }
        Some(spread)
    }

    /// Whether patient `i`'s surgeon has their operation's minutes left on
    /// `day`.
    pub(crate) fn surgeon_free(&self, problem: &Problem, i: usize, day: usize) -> bool {
        let p = &problem.to_admit[i];
        self.surgeon_used[p.surgeon][day] + p.duration <= problem.surgeon_minutes[p.surgeon][day]
    }

    /// Whether `theater` has patient `i`'s operation's minutes left on
    /// `day`.
    pub(crate) fn theater_free(
        &self,
        problem: &Problem,
        i: usize,
        theater: usize,
        day: usize,
    ) -> bool {
        self.theater_used[theater][day] + problem.to_admit[i].duration
            <= problem.theater_minutes[theater][day]
    }

    /// Patient `i` admitted at `a`: their bed for the stay, and their
    /// operation's minutes in the theatre and of the surgeon.
    pub(crate) fn admit(&mut self, problem: &Problem, i: usize, a: Admission) {
        let p = &problem.to_admit[i];
        let day = a.day as usize;
        self.occupy(problem, problem.occupants + i, a.room, day);
        self.theater_used[a.theater][day] += p.duration;
        self.surgeon_used[p.surgeon][day] += p.duration;
        if !self.surgeon_theaters[p.surgeon][day].contains(&a.theater) {
            self.surgeon_theaters[p.surgeon][day].push(a.theater);
        }
    }
}

/// Build a first schedule for `problem`.
pub fn construct(problem: &Problem) -> Schedule {
    let mut schedule = Schedule::empty(problem);
    let mut ward = Ward::new(problem);
    let w = problem.weights;
    let mut order: Vec<usize> = (0..problem.to_admit.len()).collect();
    order.sort_by_key(|&i| {
        let p = &problem.to_admit[i];
        (!p.mandatory, p.last_day, p.release_day, i)
    });
    for i in order {
        let p = &problem.to_admit[i];
        let person = problem.occupants + i;
        let mut best: Option<(i64, Admission)> = None;
        let last = p.last_day.min(problem.days - 1);
        for day in p.release_day..=last {
            if !ward.surgeon_free(problem, i, day) {
                continue;
            }
            // The cheapest theatre with the minutes: one already open, and
            // one the surgeon is already in, cost nothing more.
            let theater = p
                .theaters
                .iter()
                .copied()
                .filter(|&t| ward.theater_free(problem, i, t, day))
                .map(|t| {
                    let opens = i64::from(ward.theater_used[t][day] == 0) * w[4];
                    let theaters = &ward.surgeon_theaters[p.surgeon][day];
                    let moves = i64::from(!theaters.is_empty() && !theaters.contains(&t)) * w[5];
                    (opens + moves, t)
                })
                .min();
            let Some((theater_cost, theater)) = theater else {
                continue;
            };
            let delay = p.delay(day) * w[6];
            for room in 0..problem.room_capacity.len() {
                if p.incompatible[room] {
                    continue;
                }
                let Some(spread) = ward.room_cost(problem, person, room, day) else {
                    continue;
                };
                let cost = delay + theater_cost + spread * w[0];
                if best.is_none_or(|(c, _)| cost < c) {
                    best = Some((
                        cost,
                        Admission {
                            day: day as i64,
                            room,
                            theater,
                        },
                    ));
                }
            }
        }
        let Some((cost, a)) = best else { continue };
        if !p.mandatory && cost >= w[7] {
            continue;
        }
        ward.admit(problem, i, a);
        schedule.admission[i] = Some(a);
    }
    assign_nurses(problem, &mut schedule);
    schedule
}

/// Cover every occupied room in every shift with the working nurse who
/// adds least to the cost.
fn assign_nurses(problem: &Problem, schedule: &mut Schedule) {
    let spd = problem.shifts_per_day();
    let w = problem.weights;
    let rooms = problem.room_capacity.len();
    let present = schedule.presence(problem);
    let mut seen: Vec<Vec<usize>> = vec![Vec::new(); problem.people.len()];
    for s in 0..problem.shifts() {
        let d = s / spd;
        let working: Vec<usize> = (0..problem.nurse_skill.len())
            .filter(|&n| problem.nurse_max_load[n][s].is_some())
            .collect();
        let mut load = vec![0i64; problem.nurse_skill.len()];
        // The rooms needing most skill first, so the best nurses go there.
        let mut occupied: Vec<usize> = (0..rooms).filter(|&r| !present[r][d].is_empty()).collect();
        let need = |r: usize| -> i64 {
            present[r][d]
                .iter()
                .map(|q| problem.people[q.person].skill[s - q.first_shift])
                .sum()
        };
        occupied.sort_by_key(|&r| std::cmp::Reverse(need(r)));
        for r in occupied {
            let here = &present[r][d];
            let room_load: i64 = here
                .iter()
                .map(|q| problem.people[q.person].workload[s - q.first_shift])
                .sum();
            let best = working
                .iter()
                .filter(|&&n| problem.nurse_ward[n] == problem.room_ward[r])
                .map(|&n| {
                    let short: i64 = here
                        .iter()
                        .map(|q| {
                            (problem.people[q.person].skill[s - q.first_shift]
                                - problem.nurse_skill[n])
                                .max(0)
                        })
                        .sum();
                    let max = problem.nurse_max_load[n][s].unwrap_or(0);
                    let over = (load[n] + room_load - max).max(0) - (load[n] - max).max(0);
                    let new_to =
                        here.iter().filter(|q| !seen[q.person].contains(&n)).count() as i64;
                    (short * w[1] + over * w[3] + new_to * w[2], n)
                })
                .min();
            let Some((_, n)) = best else { continue };
            load[n] += room_load;
            schedule.cover[r][s] = Some(n);
            schedule.nurse_rooms[n][s].push(r);
            for q in here {
                if !seen[q.person].contains(&n) {
                    seen[q.person].push(n);
                }
            }
        }
    }
}
