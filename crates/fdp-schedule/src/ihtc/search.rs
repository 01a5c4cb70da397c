//! Improving a schedule by simulated annealing, every move priced
//! incrementally.
//!
//! The search keeps the hard rules it can keep as rules: a move that would
//! put a room over its beds or mix its genders, give a patient a room they
//! may not use, admit outside their window, or take a theatre or surgeon
//! past their minutes is not made. A mandatory patient left out is allowed,
//! at a price far above any soft cost, so that the search can pass through
//! a schedule missing one on its way to a schedule holding all.
//!
//! Every occupied room is always covered by a nurse rostered that shift on its ward
//! (an empty room may keep its nurse, at no cost, and is left out when
//! written), so moving a patient never leaves a room uncovered.
//!
//! A move is a short sequence of changes (admit, discharge, re-nurse),
//! each updating the state's counts and its eight costs in place and
//! recorded in a journal; a move the annealing rejects is undone from the
//! journal. The moves are: a room-shift's nurse changed or two rooms'
//! nurses swapped; a patient's day, room or theatre changed; a patient
//! left out admitted, or an optional one left out; two patients' rooms or
//! admissions swapped; and a patient admitted by ejecting those in the way.
//!
//! Independent runs on several threads, each from the same start with its
//! own random stream, return the best schedule any found.

use std::time::{Duration, Instant};

use super::evaluate::{price, Evaluation};
use super::problem::{Admission, Problem, Schedule};

/// How long and how wide to search.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub time_limit: Duration,
    /// Independent runs in parallel; the best is kept.
    pub threads: usize,
    /// Moves per run at most: the search ends at whichever limit comes
    /// first. With a move limit and a generous time limit a run is the same
    /// for the same seed.
    pub max_moves: Option<u64>,
    pub seed: u64,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            time_limit: Duration::from_secs(60),
            threads: 1,
            max_moves: None,
            seed: 1,
        }
    }
}

/// What a search found.
#[derive(Debug, Clone)]
pub struct SearchOutcome {
    pub schedule: Schedule,
    pub evaluation: Evaluation,
    /// Moves tried, over every run.
    pub moves: u64,
    /// Moves tried per second, over every run.
    pub moves_per_second: f64,
}

/// The price of each mandatory patient left out: far above any soft cost
/// a single patient can carry.
const LEFT_OUT: i64 = 1_000_000;
const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    day: usize,
    room: usize,
    theater: usize,
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Admitted(usize),
    Discharged(usize, Slot),
    Nursed(usize, u32),
}

/// A small, fast random stream (xoshiro256**), seeded by splitmix64.
#[derive(Clone)]
struct Random([u64; 4]);

impl Random {
    fn new(seed: u64) -> Random {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Random([next(), next(), next(), next()])
    }

    fn next(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in `0..n`; `n` must not be 0.
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A schedule with every count its costs need, kept current move by move.
#[derive(Clone)]
struct State<'a> {
    p: &'a Problem,
    days: usize,
    spd: usize,
    shifts: usize,
    theaters: usize,
    ages: usize,
    /// The distinct skills anyone needs, ascending (below 0 read as 0):
    /// the counts per room-shift are by position here, so their size
    /// follows how many skills there are, not how high the file's go.
    needs: Vec<i64>,
    /// Per person and shift of their stay: the position of their need in
    /// `needs`.
    need_at: Vec<Vec<u32>>,
    slot: Vec<Option<Slot>>,
    /// Per room-day (`room * days + day`).
    beds: Vec<u16>,
    gender_a: Vec<u16>,
    /// Per room-day and age group.
    age_count: Vec<u16>,
    present: Vec<Vec<u32>>,
    /// Per room-shift (`room * shifts + shift`).
    room_load: Vec<i64>,
    /// Per room-shift and skill level: people needing it.
    skill_count: Vec<u16>,
    cover: Vec<u32>,
    /// Per nurse-shift.
    nurse_load: Vec<i64>,
    /// Per theatre-day, surgeon-day, and surgeon-day-theatre.
    theater_load: Vec<i64>,
    surgeon_load: Vec<i64>,
    surgeon_in: Vec<u16>,
    surgeon_theaters: Vec<u16>,
    /// Per person: each nurse who has cared for them, and in how many shifts.
    nurses_of: Vec<Vec<(u32, u32)>>,
    costs: [i64; 8],
    left_out: i64,
    journal: Vec<Change>,
    /// Per patient: the rooms they may use.
    rooms_for: Vec<Vec<usize>>,
    /// Per ward-shift (`ward * shifts + shift`): the nurses rostered there.
    rostered: Vec<Vec<u32>>,
}

impl<'a> State<'a> {
    fn new(p: &'a Problem, start: &Schedule) -> State<'a> {
        let days = p.days;
        let spd = p.shifts_per_day();
        let shifts = p.shifts();
        let rooms = p.room_capacity.len();
        let theaters = p.theater_minutes.len();
        let surgeons = p.surgeon_minutes.len();
        let ages = p.people.iter().map(|q| q.age_group + 1).max().unwrap_or(1);
        let mut needs: Vec<i64> = p
            .people
            .iter()
            .flat_map(|q| q.skill.iter().map(|&k| k.max(0)))
            .collect();
        needs.sort_unstable();
        needs.dedup();
        let levels = needs.len().max(1);
        let need_at = p
            .people
            .iter()
            .map(|q| {
                q.skill
                    .iter()
                    .map(|&k| needs.binary_search(&k.max(0)).unwrap_or_default() as u32)
                    .collect()
            })
            .collect();
        let rostered: Vec<Vec<u32>> = (0..p.wards() * shifts)
            .map(|ws| {
                let (w, s) = (ws / shifts, ws % shifts);
                (0..p.nurse_skill.len())
                    .filter(|&n| p.nurse_max_load[n][s].is_some() && p.nurse_ward[n] == w)
                    .map(|n| n as u32)
                    .collect()
            })
            .collect();
        let mut state = State {
            p,
            days,
            spd,
            shifts,
            theaters,
            ages,
            needs,
            need_at,
            slot: vec![None; p.to_admit.len()],
            beds: vec![0; rooms * days],
            gender_a: vec![0; rooms * days],
            age_count: vec![0; rooms * days * ages],
            present: vec![Vec::new(); rooms * days],
            room_load: vec![0; rooms * shifts],
            skill_count: vec![0; rooms * shifts * levels],
            cover: vec![NONE; rooms * shifts],
            nurse_load: vec![0; p.nurse_skill.len() * shifts],
            theater_load: vec![0; theaters * days],
            surgeon_load: vec![0; surgeons * days],
            surgeon_in: vec![0; surgeons * days],
            surgeon_theaters: vec![0; surgeons * days * theaters],
            nurses_of: vec![Vec::new(); p.people.len()],
            costs: [0; 8],
            left_out: 0,
            journal: Vec::new(),
            rooms_for: p
                .to_admit
                .iter()
                .map(|a| (0..rooms).filter(|&r| !a.incompatible[r]).collect())
                .collect(),
            rostered,
        };
        // Nurses first, so that admitting prices them; a room the start
        // leaves uncovered gets the rostered nurse with least to carry.
        for r in 0..rooms {
            for s in 0..shifts {
                let given = start.cover[r][s]
                    .filter(|&n| p.may_cover(n, r, s))
                    .map(|n| n as u32);
                let n = given.or_else(|| {
                    state.rostered[p.room_ward[r] * shifts + s]
                        .iter()
                        .copied()
                        .min_by_key(|&n| state.nurse_load[n as usize * shifts + s])
                });
                if let Some(n) = n {
                    state.cover[r * shifts + s] = n;
                }
            }
        }
        for (o, &room) in p.occupant_room.iter().enumerate() {
            state.enter(o, room, 0);
        }
        for a in &p.to_admit {
            if a.mandatory {
                state.left_out += 1;
            } else {
                state.costs[7] += a.skip_cost;
            }
        }
        for (i, a) in start.admission.iter().enumerate() {
            let Some(a) = a else { continue };
            let Ok(day) = usize::try_from(a.day) else {
                continue;
            };
            let slot = Slot {
                day,
                room: a.room,
                theater: a.theater,
            };
            // A start breaking a hard rule is repaired by leaving that
            // patient out; the search may admit them again.
            let allowed = p.to_admit[i].theaters.binary_search(&slot.theater).is_ok();
            if allowed && state.fits(i, slot) {
                state.admit(i, slot);
            }
        }
        state.journal.clear();
        state
    }

    fn total(&self) -> i64 {
        let w = self.p.weights;
        (0..8).map(|k| self.costs[k] * w[k]).sum::<i64>() + LEFT_OUT * self.left_out
    }

    fn age_spread(&self, rd: usize) -> i64 {
        let counts = &self.age_count[rd * self.ages..(rd + 1) * self.ages];
        let lo = counts.iter().position(|&c| c > 0);
        let hi = counts.iter().rposition(|&c| c > 0);
        match (lo, hi) {
            (Some(lo), Some(hi)) => (hi - lo) as i64,
            _ => 0,
        }
    }

    fn shortfall(&self, rs: usize, nurse: u32) -> i64 {
        let skill = self.p.nurse_skill[nurse as usize];
        let levels = self.needs.len();
        let counts = &self.skill_count[rs * levels..(rs + 1) * levels];
        counts
            .iter()
            .zip(&self.needs)
            .map(|(&c, &need)| (need - skill).max(0) * i64::from(c))
            .sum()
    }

    fn load_nurse(&mut self, nurse: u32, s: usize, load: i64) {
        let max = self.p.nurse_max_load[nurse as usize][s].unwrap_or(0);
        let at = nurse as usize * self.shifts + s;
        let before = (self.nurse_load[at] - max).max(0);
        self.nurse_load[at] += load;
        self.costs[3] += (self.nurse_load[at] - max).max(0) - before;
    }

    fn meet(&mut self, person: usize, nurse: u32) {
        let seen = &mut self.nurses_of[person];
        match seen.iter_mut().find(|(n, _)| *n == nurse) {
            Some((_, c)) => *c += 1,
            None => {
                seen.push((nurse, 1));
                self.costs[2] += 1;
            }
        }
    }

    fn part(&mut self, person: usize, nurse: u32) {
        let seen = &mut self.nurses_of[person];
        if let Some(k) = seen.iter().position(|(n, _)| *n == nurse) {
            seen[k].1 -= 1;
            if seen[k].1 == 0 {
                seen.swap_remove(k);
                self.costs[2] -= 1;
            }
        }
    }

    /// `person` into `room` from `first` for their stay.
    fn enter(&mut self, person: usize, room: usize, first: usize) {
        self.stay(person, room, first, 1);
    }

    fn leave(&mut self, person: usize, room: usize, first: usize) {
        self.stay(person, room, first, -1);
    }

    fn stay(&mut self, person: usize, room: usize, first: usize, sign: i64) {
        let p = self.p;
        let who = &p.people[person];
        let last = (first + who.length_of_stay).min(self.days);
        for d in first..last {
            let rd = room * self.days + d;
            let before = self.age_spread(rd);
            let at = rd * self.ages + who.age_group;
            if sign > 0 {
                self.age_count[at] += 1;
                self.beds[rd] += 1;
                self.gender_a[rd] += u16::from(who.gender_a);
                self.present[rd].push(person as u32);
            } else {
                self.age_count[at] -= 1;
                self.beds[rd] -= 1;
                self.gender_a[rd] -= u16::from(who.gender_a);
                let k = self.present[rd].iter().position(|&q| q as usize == person);
                if let Some(k) = k {
                    self.present[rd].swap_remove(k);
                }
            }
            self.costs[0] += self.age_spread(rd) - before;
            for s in d * self.spd..(d + 1) * self.spd {
                let rel = s - first * self.spd;
                let rs = room * self.shifts + s;
                let level = self.need_at[person][rel] as usize;
                let need = self.needs[level];
                let load = who.workload[rel];
                self.room_load[rs] += sign * load;
                let c = &mut self.skill_count[rs * self.needs.len() + level];
                if sign > 0 {
                    *c += 1;
                } else {
                    *c -= 1;
                }
                let nurse = self.cover[rs];
                if nurse == NONE {
                    continue;
                }
                self.costs[1] += sign * (need - p.nurse_skill[nurse as usize]).max(0);
                self.load_nurse(nurse, s, sign * load);
                if sign > 0 {
                    self.meet(person, nurse);
                } else {
                    self.part(person, nurse);
                }
            }
        }
    }

    /// Whether patient `i` (not admitted) may be admitted at `slot`.
    fn fits(&self, i: usize, slot: Slot) -> bool {
        let p = self.p;
        let a = &p.to_admit[i];
        debug_assert!(self.slot[i].is_none(), "patient {i} is already admitted");
        if slot.day < a.release_day || slot.day > a.last_day || slot.day >= self.days {
            return false;
        }
        if a.incompatible[slot.room] {
            return false;
        }
        // Every move draws the theatre from the patient's own, but for an
        // exchange of admissions, which checks it itself.
        debug_assert!(
            a.theaters.binary_search(&slot.theater).is_ok(),
            "patient {i} may not be operated in theatre {}",
            slot.theater
        );
        let td = slot.theater * self.days + slot.day;
        if self.theater_load[td] + a.duration > p.theater_minutes[slot.theater][slot.day] {
            return false;
        }
        let ud = a.surgeon * self.days + slot.day;
        if self.surgeon_load[ud] + a.duration > p.surgeon_minutes[a.surgeon][slot.day] {
            return false;
        }
        let who = &p.people[p.occupants + i];
        let last = (slot.day + who.length_of_stay).min(self.days);
        (slot.day..last).all(|d| {
            let rd = slot.room * self.days + d;
            let beds = self.beds[rd];
            let same = if who.gender_a {
                self.gender_a[rd] == beds
            } else {
                self.gender_a[rd] == 0
            };
            usize::from(beds) < p.room_capacity[slot.room] && same
        })
    }

    fn admit(&mut self, i: usize, slot: Slot) {
        let p = self.p;
        let a = &p.to_admit[i];
        if a.mandatory {
            self.left_out -= 1;
        } else {
            self.costs[7] -= a.skip_cost;
        }
        self.costs[6] += a.delay(slot.day);
        let td = slot.theater * self.days + slot.day;
        self.costs[4] += i64::from(self.theater_load[td] == 0);
        self.theater_load[td] += a.duration;
        let ud = a.surgeon * self.days + slot.day;
        self.surgeon_load[ud] += a.duration;
        let ut = ud * self.theaters + slot.theater;
        if self.surgeon_theaters[ut] == 0 {
            self.surgeon_in[ud] += 1;
            self.costs[5] += i64::from(self.surgeon_in[ud] >= 2);
        }
        self.surgeon_theaters[ut] += 1;
        self.enter(p.occupants + i, slot.room, slot.day);
        self.slot[i] = Some(slot);
        self.journal.push(Change::Admitted(i));
    }

    fn discharge(&mut self, i: usize) {
        let p = self.p;
        let Some(slot) = self.slot[i] else { return };
        let a = &p.to_admit[i];
        if a.mandatory {
            self.left_out += 1;
        } else {
            self.costs[7] += a.skip_cost;
        }
        self.costs[6] -= a.delay(slot.day);
        let td = slot.theater * self.days + slot.day;
        self.theater_load[td] -= a.duration;
        self.costs[4] -= i64::from(self.theater_load[td] == 0);
        let ud = a.surgeon * self.days + slot.day;
        self.surgeon_load[ud] -= a.duration;
        let ut = ud * self.theaters + slot.theater;
        self.surgeon_theaters[ut] -= 1;
        if self.surgeon_theaters[ut] == 0 {
            self.costs[5] -= i64::from(self.surgeon_in[ud] >= 2);
            self.surgeon_in[ud] -= 1;
        }
        self.leave(p.occupants + i, slot.room, slot.day);
        self.slot[i] = None;
        self.journal.push(Change::Discharged(i, slot));
    }

    /// Room-shift `rs` covered by `nurse` (rostered that shift).
    fn nurse(&mut self, rs: usize, nurse: u32) {
        let old = self.cover[rs];
        if old == nurse {
            return;
        }
        let s = rs % self.shifts;
        let rd = (rs / self.shifts) * self.days + s / self.spd;
        let load = self.room_load[rs];
        let present = std::mem::take(&mut self.present[rd]);
        if old != NONE {
            self.costs[1] -= self.shortfall(rs, old);
            self.load_nurse(old, s, -load);
            for &q in &present {
                self.part(q as usize, old);
            }
        }
        self.costs[1] += self.shortfall(rs, nurse);
        self.load_nurse(nurse, s, load);
        for &q in &present {
            self.meet(q as usize, nurse);
        }
        self.present[rd] = present;
        self.cover[rs] = nurse;
        self.journal.push(Change::Nursed(rs, old));
    }

    /// Undo every change since the journal was last cleared.
    fn undo(&mut self) {
        while let Some(change) = self.journal.pop() {
            let mark = self.journal.len();
            match change {
                Change::Admitted(i) => self.discharge(i),
                Change::Discharged(i, slot) => self.admit(i, slot),
                Change::Nursed(rs, old) if old != NONE => self.nurse(rs, old),
                Change::Nursed(..) => {}
            }
            self.journal.truncate(mark);
        }
    }

    /// Patient `i` readmitted at `to`, or nothing changed (journalled
    /// either way: the caller undoes a failed move).
    fn readmit(&mut self, i: usize, to: Slot) -> bool {
        self.discharge(i);
        if self.fits(i, to) {
            self.admit(i, to);
            true
        } else {
            false
        }
    }

    /// A random day in the window, room the patient may use and theatre;
    /// none where there is no such room or no theatre at all.
    fn random_slot(&self, i: usize, rng: &mut Random) -> Option<Slot> {
        let a = &self.p.to_admit[i];
        let last = a.last_day.min(self.days - 1);
        let rooms = &self.rooms_for[i];
        if rooms.is_empty() || a.theaters.is_empty() {
            return None;
        }
        Some(Slot {
            day: a.release_day + rng.below(last.saturating_sub(a.release_day) + 1),
            room: rooms[rng.below(rooms.len())],
            theater: a.theaters[rng.below(a.theaters.len())],
        })
    }

    /// One move; false where it could not be made (the journal holds what
    /// was done and must be undone).
    fn try_move(&mut self, rng: &mut Random) -> bool {
        let n = self.slot.len();
        if n == 0 {
            return self.renurse(rng);
        }
        match rng.below(100) {
            0..=29 => self.renurse(rng),
            30..=39 => self.swap_nurses(rng),
            40..=74 => {
                let i = rng.below(n);
                match self.slot[i] {
                    None if self.p.to_admit[i].mandatory => match self.any_fit(i, rng) {
                        Some(to) => {
                            self.admit(i, to);
                            true
                        }
                        None => false,
                    },
                    None if rng.below(16) == 0 => match self.best_fit(i) {
                        Some(to) => {
                            self.admit(i, to);
                            true
                        }
                        None => false,
                    },
                    None => match self.random_slot(i, rng) {
                        Some(to) if self.fits(i, to) => {
                            self.admit(i, to);
                            true
                        }
                        _ => false,
                    },
                    Some(at) => {
                        // The patient has a room and a theatre, so there is
                        // a slot to draw.
                        let Some(any) = self.random_slot(i, rng) else {
                            return false;
                        };
                        let a = &self.p.to_admit[i];
                        let step = if rng.below(2) == 0 { 1 } else { usize::MAX };
                        let near = at.day.wrapping_add(step);
                        let near =
                            if (a.release_day..=a.last_day.min(self.days - 1)).contains(&near) {
                                near
                            } else {
                                any.day
                            };
                        let to = match rng.below(6) {
                            0 => Slot { day: any.day, ..at },
                            1 => Slot {
                                room: any.room,
                                ..at
                            },
                            2 => Slot {
                                theater: any.theater,
                                ..at
                            },
                            3 => Slot {
                                room: at.room,
                                ..any
                            },
                            4 => Slot { day: near, ..at },
                            _ => any,
                        };
                        // A new day takes the theatre the surgeon is in
                        // that day, or one open, where there is one.
                        let to = if to.day != at.day && to.theater == at.theater {
                            Slot {
                                theater: self
                                    .theater_for(i, to.day, rng.below(a.theaters.len()))
                                    .unwrap_or(to.theater),
                                ..to
                            }
                        } else {
                            to
                        };
                        to != at && self.readmit(i, to)
                    }
                }
            }
            75..=82 => {
                let i = rng.below(n);
                if self.slot[i].is_some() && !self.p.to_admit[i].mandatory {
                    self.discharge(i);
                    true
                } else {
                    false
                }
            }
            83..=94 => self.swap_patients(rng),
            _ => self.eject(rng),
        }
    }

    fn renurse(&mut self, rng: &mut Random) -> bool {
        // No rooms, nothing to cover.
        if self.cover.is_empty() {
            return false;
        }
        let rs = rng.below(self.cover.len());
        let s = rs % self.shifts;
        let r = rs / self.shifts;
        let rd = r * self.days + s / self.spd;
        let rostered = &self.rostered[self.p.room_ward[r] * self.shifts + s];
        if self.beds[rd] == 0 || rostered.is_empty() {
            return false;
        }
        let nurse = rostered[rng.below(rostered.len())];
        if nurse == self.cover[rs] {
            return false;
        }
        self.nurse(rs, nurse);
        true
    }

    fn swap_nurses(&mut self, rng: &mut Random) -> bool {
        if self.cover.is_empty() {
            return false;
        }
        let rooms = self.p.room_capacity.len();
        let s = rng.below(self.shifts);
        let (a, b) = (rng.below(rooms), rng.below(rooms));
        if self.p.room_ward[a] != self.p.room_ward[b] {
            return false;
        }
        let (ra, rb) = (a * self.shifts + s, b * self.shifts + s);
        let (na, nb) = (self.cover[ra], self.cover[rb]);
        if na == nb || na == NONE || nb == NONE {
            return false;
        }
        let d = s / self.spd;
        if self.beds[a * self.days + d] == 0 && self.beds[b * self.days + d] == 0 {
            return false;
        }
        self.nurse(ra, nb);
        self.nurse(rb, na);
        true
    }

    /// Two admitted patients exchange rooms, or (inside both windows)
    /// their whole admissions.
    fn swap_patients(&mut self, rng: &mut Random) -> bool {
        let n = self.slot.len();
        let (i, j) = (rng.below(n), rng.below(n));
        let (Some(si), Some(sj)) = (self.slot[i], self.slot[j]) else {
            return false;
        };
        if i == j {
            return false;
        }
        let (ti, tj) = if rng.below(2) == 0 {
            (
                Slot {
                    room: sj.room,
                    ..si
                },
                Slot {
                    room: si.room,
                    ..sj
                },
            )
        } else {
            (sj, si)
        };
        if ti == si {
            return false;
        }
        // Every theatre in the competition's problem; a few on a trust's.
        let allowed = |k: usize, t: usize| {
            let a = &self.p.to_admit[k];
            a.theaters.len() == self.theaters || a.theaters.binary_search(&t).is_ok()
        };
        if !allowed(i, ti.theater) || !allowed(j, tj.theater) {
            return false;
        }
        self.discharge(i);
        self.discharge(j);
        if !self.fits(i, ti) {
            return false;
        }
        self.admit(i, ti);
        if !self.fits(j, tj) {
            return false;
        }
        self.admit(j, tj);
        true
    }

    /// A patient left out admitted at a random slot, discharging whoever
    /// stands in the way there (occupants excepted), each then readmitted
    /// wherever they first fit, if anywhere.
    fn eject(&mut self, rng: &mut Random) -> bool {
        let n = self.slot.len();
        let p = self.p;
        // While a mandatory patient is out, half the time it is them.
        let missing = if self.left_out > 0 && rng.below(2) == 0 {
            let out: Vec<usize> = (0..n)
                .filter(|&i| self.slot[i].is_none() && p.to_admit[i].mandatory)
                .collect();
            (!out.is_empty()).then(|| out[rng.below(out.len())])
        } else {
            None
        };
        let Some(i) = missing.or_else(|| {
            (0..8)
                .map(|_| rng.below(n))
                .find(|&i| self.slot[i].is_none())
        }) else {
            return false;
        };
        let Some(to) = self.random_slot(i, rng) else {
            return false;
        };
        let a = &p.to_admit[i];
        // Whoever shares the theatre or the surgeon that day, or the room
        // during the stay, in random order until the patient fits.
        let who = &p.people[p.occupants + i];
        let last = (to.day + who.length_of_stay).min(self.days);
        let mut in_way: Vec<usize> = (0..n)
            .filter(|&j| {
                self.slot[j].is_some_and(|s| {
                    (s.day == to.day
                        && (s.theater == to.theater || p.to_admit[j].surgeon == a.surgeon))
                        || (s.room == to.room
                            && s.day < last
                            && s.day + p.people[p.occupants + j].length_of_stay > to.day)
                })
            })
            .collect();
        let mut ejected = Vec::new();
        while !self.fits(i, to) {
            if in_way.is_empty() {
                return false;
            }
            let j = in_way.swap_remove(rng.below(in_way.len()));
            self.discharge(j);
            ejected.push(j);
        }
        self.admit(i, to);
        ejected.sort_by_key(|&j| !p.to_admit[j].mandatory);
        for j in ejected {
            if let Some(to) = self.any_fit(j, rng) {
                self.admit(j, to);
            }
        }
        true
    }

    /// The cheapest slot for patient `i` (not admitted), trying every day
    /// and room with the theatre the surgeon already uses, else one open,
    /// else any with the minutes; priced by admitting and undoing.
    fn best_fit(&mut self, i: usize) -> Option<Slot> {
        let p = self.p;
        let a = &p.to_admit[i];
        let last = a.last_day.min(self.days - 1);
        let before = self.total();
        let mark = self.journal.len();
        let mut best: Option<(i64, Slot)> = None;
        for day in a.release_day..=last {
            let ud = a.surgeon * self.days + day;
            if self.surgeon_load[ud] + a.duration > p.surgeon_minutes[a.surgeon][day] {
                continue;
            }
            let Some(theater) = self.theater_for(i, day, 0) else {
                continue;
            };
            for k in 0..self.rooms_for[i].len() {
                let slot = Slot {
                    day,
                    room: self.rooms_for[i][k],
                    theater,
                };
                if !self.fits(i, slot) {
                    continue;
                }
                self.admit(i, slot);
                let cost = self.total() - before;
                self.discharge(i);
                self.journal.truncate(mark);
                if best.is_none_or(|(c, _)| cost < c) {
                    best = Some((cost, slot));
                }
            }
        }
        best.map(|(_, slot)| slot)
    }

    /// For patient `i` on `day`: a theatre the surgeon already operates
    /// in with the minutes, else an open one with them, else any with them;
    /// among equals the first from the patient's `first` theatre on.
    fn theater_for(&self, i: usize, day: usize, first: usize) -> Option<usize> {
        let a = &self.p.to_admit[i];
        let ud = a.surgeon * self.days + day;
        let n = a.theaters.len();
        (0..n)
            .map(|k| a.theaters[(first + k) % n])
            .filter(|&t| {
                self.theater_load[t * self.days + day] + a.duration
                    <= self.p.theater_minutes[t][day]
            })
            .min_by_key(|&t| {
                let used = self.surgeon_theaters[ud * self.theaters + t] > 0;
                let open = self.theater_load[t * self.days + day] > 0;
                u8::from(!used) * 2 + u8::from(!open)
            })
    }

    /// A slot where patient `i` (not admitted) fits, searching every day,
    /// room and theatre from a random start, if there is one.
    fn any_fit(&self, i: usize, rng: &mut Random) -> Option<Slot> {
        let a = &self.p.to_admit[i];
        let last = a.last_day.min(self.days - 1);
        if a.release_day > last || self.rooms_for[i].is_empty() || a.theaters.is_empty() {
            return None;
        }
        let days = last - a.release_day + 1;
        let rooms = &self.rooms_for[i];
        let theaters = &a.theaters;
        let (d0, r0, t0) = (
            rng.below(days),
            rng.below(rooms.len()),
            rng.below(theaters.len()),
        );
        for d in 0..days {
            let day = a.release_day + (d0 + d) % days;
            let ud = a.surgeon * self.days + day;
            if self.surgeon_load[ud] + a.duration > self.p.surgeon_minutes[a.surgeon][day] {
                continue;
            }
            let Some(theater) = (0..theaters.len())
                .map(|t| theaters[(t0 + t) % theaters.len()])
                .find(|&t| {
                    self.theater_load[t * self.days + day] + a.duration
                        <= self.p.theater_minutes[t][day]
                })
            else {
                continue;
            };
            for r in 0..rooms.len() {
                let slot = Slot {
                    day,
                    room: rooms[(r0 + r) % rooms.len()],
                    theater,
                };
                if self.fits(i, slot) {
                    return Some(slot);
                }
            }
        }
        None
    }

    /// What the schedule is: cheap to take, for keeping the best seen.
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            slot: self.slot.clone(),
            cover: self.cover.clone(),
            total: self.total(),
        }
    }
}

/// A schedule as the search holds it.
#[derive(Clone)]
struct Snapshot {
    slot: Vec<Option<Slot>>,
    cover: Vec<u32>,
    total: i64,
}

impl Snapshot {
    /// As a schedule, each nurse covering only the rooms with someone in.
    fn schedule(&self, p: &Problem) -> Schedule {
        let mut schedule = Schedule::empty(p);
        for (i, slot) in self.slot.iter().enumerate() {
            schedule.admission[i] = slot.map(|s| Admission {
                day: s.day as i64,
                room: s.room,
                theater: s.theater,
            });
        }
        let shifts = p.shifts();
        let spd = p.shifts_per_day();
        let present = schedule.presence(p);
        for (r, by_day) in present.iter().enumerate() {
            for s in 0..shifts {
                let nurse = self.cover[r * shifts + s];
                if nurse == NONE || by_day[s / spd].is_empty() {
                    continue;
                }
                schedule.cover[r][s] = Some(nurse as usize);
                schedule.nurse_rooms[nurse as usize][s].push(r);
            }
        }
        schedule
    }
}

/// The temperature the annealing starts from: four times the mean rise of
/// the moves that raise the cost, sampled from the start (a rise that
/// leaves out a mandatory patient does not count). Four, against one, three
/// and ten, gave the lowest costs on the competition's public instances.
fn starting_temperature(state: &mut State, rng: &mut Random) -> f64 {
    let mut rises = Vec::new();
    for _ in 0..2_000 {
        let before = state.total();
        if state.try_move(rng) {
            let delta = state.total() - before;
            if delta > 0 && delta < LEFT_OUT / 2 {
                rises.push(delta as f64);
            }
        }
        state.undo();
    }
    if rises.is_empty() {
        return 1.0;
    }
    (4.0 * rises.iter().sum::<f64>() / rises.len() as f64).max(1.0)
}

/// Where the start leaves mandatory patients out: every optional patient
/// discharged, to make room, and then any move taken that leaves no more
/// mandatory patients out, whatever it does to the soft costs, until all
/// are in or the time (or move) share is spent. The optional patients come
/// back as the annealing proper admits them.
fn admit_the_mandatory(
    state: &mut State,
    rng: &mut Random,
    began: &Instant,
    seconds: f64,
    max_moves: u64,
) -> u64 {
    let mut moves = 0u64;
    let mut cleared = false;
    while state.left_out > 0 && moves < max_moves {
        if moves.is_multiple_of(512) {
            let spent = began.elapsed().as_secs_f64();
            if spent >= seconds {
                break;
            }
            if !cleared && (spent >= seconds / 4.0 || moves >= max_moves / 4) {
                for i in 0..state.slot.len() {
                    if !state.p.to_admit[i].mandatory {
                        state.discharge(i);
                    }
                }
                state.journal.clear();
                cleared = true;
            }
        }
        moves += 1;
        let before = state.left_out;
        if state.try_move(rng) && state.left_out <= before {
            state.journal.clear();
        } else {
            state.undo();
        }
    }
    // The optional patients back, each where they cost least, while that
    // is less than leaving them out.
    let mut optional: Vec<usize> = (0..state.slot.len())
        .filter(|&i| !state.p.to_admit[i].mandatory && state.slot[i].is_none())
        .collect();
    optional.sort_by_key(|&i| state.p.to_admit[i].release_day);
    for i in optional {
        let before = state.total();
        if let Some(slot) = state.best_fit(i) {
            state.admit(i, slot);
            if state.total() >= before {
                state.undo();
            }
        }
        state.journal.clear();
    }
    moves
}

fn anneal(
    problem: &Problem,
    start: &Schedule,
    options: &SearchOptions,
    seed: u64,
) -> (Snapshot, u64) {
    let began = Instant::now();
    let mut rng = Random::new(seed);
    let mut state = State::new(problem, start);
    let limit = options.time_limit.as_secs_f64().max(1e-3);
    let max_moves = options.max_moves.unwrap_or(u64::MAX);
    let mut moves = 0u64;
    if state.left_out > 0 {
        moves += admit_the_mandatory(&mut state, &mut rng, &began, limit * 0.3, max_moves / 3);
    }
    let hot = starting_temperature(&mut state, &mut rng);
    let cold: f64 = 0.3;
    let mut best = state.snapshot();
    let mut current = state.total();
    let mut temperature = hot;
    loop {
        if moves.is_multiple_of(512) {
            let by_time = began.elapsed().as_secs_f64() / limit;
            let by_moves = moves as f64 / max_moves as f64;
            let done = by_time.max(by_moves);
            if done >= 1.0 {
                break;
            }
            temperature = hot * (cold / hot).powf(done);
        }
        moves += 1;
        if !state.try_move(&mut rng) {
            state.undo();
            continue;
        }
        let after = state.total();
        let delta = after - current;
        if delta <= 0 || rng.unit() < (-(delta as f64) / temperature).exp() {
            state.journal.clear();
            current = after;
            if current < best.total {
                best = state.snapshot();
            }
        } else {
            state.undo();
        }
    }
    (best, moves)
}

/// Improve `start` for `problem` within `options`' limits.
pub fn search(problem: &Problem, start: &Schedule, options: &SearchOptions) -> SearchOutcome {
    let began = Instant::now();
    let threads = options.threads.max(1);
    let runs: Vec<(Snapshot, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let seed = options
                    .seed
                    .wrapping_add((k as u64).wrapping_mul(0x9E37_79B9));
                scope.spawn(move || anneal(problem, start, options, seed))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a search thread panicked"))
            .collect()
    });
    let moves = runs.iter().map(|r| r.1).sum();
    let (best, _) = runs
        .into_iter()
        .min_by_key(|r| r.0.total)
        .expect("at least one run");
    let schedule = best.schedule(problem);
    let evaluation = price(problem, &schedule);
    // The costs kept move by move are the costs priced afresh.
    debug_assert_eq!(
        best.total,
        evaluation.total_cost() + LEFT_OUT * evaluation.violations[4],
        "the search's running costs drifted from the schedule's price: {evaluation}"
    );
    SearchOutcome {
        schedule,
        evaluation,
        moves,
        moves_per_second: moves as f64 / began.elapsed().as_secs_f64().max(1e-9),
    }
}
