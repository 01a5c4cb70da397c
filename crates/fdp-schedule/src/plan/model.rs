//! A [`Plan`] as an IHTC-2024 [`Problem`], searched, and read back.
//!
//! A session open to new bookings is a theatre with minutes on its one
//! day; a consultant is a surgeon; a bay of the elective wards is a room
//! under the single-sex rule, and day cases go to the day unit, a room of
//! no beds that only they may use (they stay no night). A patient already
//! booked on a list stays on it: they are admitted on that day, in that
//! session, and take its minutes and a bed like anyone else. Nobody is
//! mandatory in the competition's sense: a priority limit is a price far
//! above everything else (and so kept wherever it can be), so that a
//! patient who cannot be treated in time is still booked as soon as may be
//! rather than left off.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{Duration, NaiveDate};

use super::{
    nursing_load, Leave, Placement, Plan, PlanError, PreOp, Proposal, Sex, Shift, Status,
    CHANGEOVER_MINUTES, LOCKED_DAYS,
};
use crate::ihtc::problem::{Ids, Person, ToAdmit};
use crate::ihtc::{price, search, Admission, Problem, Schedule, SearchOptions};

/// A day past a priority limit: above every other price, so that a limit
/// is broken only where it cannot be kept. (A limit booking by hand keeps
/// is kept as a rule: see [`propose`].)
const PAST_LIMIT: i64 = 100_000;
/// Leaving a patient already on a list off it: never, while the list runs.
const HELD: i64 = 10_000_000;
/// A wait passing 18 weeks before treatment.
const BREACH_18: i64 = 5_000;
/// A wait passing 52 weeks before treatment.
const BREACH_52: i64 = 20_000;
/// Each minute of a list left unfilled, against booking a case into it.
const FILL_PER_MINUTE: i64 = 20;
/// A day's delay for a patient past their limit already: as soon as may be.
const OVERDUE_PER_DAY: i64 = 500;

/// How much more a day's wait weighs, and what leaving a patient off the
/// lists costs beyond that, by clinical priority: the more urgent come
/// first, and within a priority the longest waiters.
fn urgency(p: super::Priority) -> (i64, i64) {
    use super::Priority::*;
    match p {
        P1a | P1b => (16, 200_000),
        P2 => (4, 50_000),
        P3 => (2, 10_000),
        P4 | P5 | P6 => (1, 0),
    }
}

/// Patients who could take each other's places exactly: consultant,
/// priority, procedure, minutes, nights, and sex where they need a bed.
type Exchangeable<'a> = (super::Priority, &'a str, &'a str, i64, u32, Option<Sex>);

/// How long to search.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub search: SearchOptions,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            search: SearchOptions {
                time_limit: std::time::Duration::from_secs(10),
                ..SearchOptions::default()
            },
        }
    }
}

/// A plan as the engine's problem, and the way back.
pub(super) struct Model {
    pub problem: Problem,
    /// Per patient to admit: the PTL entry (index into `plan.listed`).
    pub listed: Vec<usize>,
    /// Per theatre: the session (index into `plan.sessions`).
    pub session: Vec<usize>,
    /// PTL entries left out of the problem, and why.
    pub excluded: BTreeMap<usize, String>,
    /// Per patient to admit: already booked, so held to that session.
    pub pinned: Vec<bool>,
    /// The day unit's room index.
    pub day_unit: usize,
    /// Per patient to admit: their turn on the list (priority, then the
    /// clock's start, then their place on the PTL).
    pub turn: Vec<(super::Priority, NaiveDate, usize)>,
}

fn age_group(age: u32) -> usize {
    match age {
        0..=17 => 0,
        18..=64 => 1,
        _ => 2,
    }
}

/// Workload and skill a stay of `nights` needs, per shift (early, late,
/// night): more on the day of surgery (for a patient operated on the
/// first day) than in recovery. Any registered nurse has the skill.
fn nursing(nights: u32, operated_first_day: bool) -> (Vec<i64>, Vec<i64>) {
    let mut load = Vec::new();
    for d in 0..nights {
        load.extend([nursing_load(operated_first_day && d == 0); 3]);
    }
    let skill = vec![1; load.len()];
    (load, skill)
}

/// The roster as the engine's nurses: per nurse, their skill, the most
/// load they carry in each shift of the horizon (where rostered), their
/// ward and their name.
struct Nursing {
    skill: Vec<i64>,
    max_load: Vec<Vec<Option<i64>>>,
    ward: Vec<usize>,
    names: Vec<String>,
}

/// What a stand-in for an unpublished roster carries: no limit.
const UNROSTERED_LOAD: i64 = 1 << 40;
/// The price of each unit of nursing load above a nurse's safe load in a
/// shift: above a list's minute, below a breach.
const OVERLOAD: i64 = 300;

/// Each registered nurse on their ward in the shifts they work, and for
/// every ward-shift with none, one who stands for the gap. Inside the
/// published roster the gap carries nothing safely (so any patient there
/// is load above the safe load); past it, the roster is not yet published
/// and the stand-in carries everything. No roster, no nurses.
fn nursing_cover(plan: &Plan, wards: &[&str]) -> Nursing {
    let days = plan.days();
    let shifts = days * Shift::ALL.len();
    let mut out = Nursing {
        skill: Vec::new(),
        max_load: Vec::new(),
        ward: Vec::new(),
        names: Vec::new(),
    };
    if plan.nurses.is_empty() {
        return out;
    }
    let ward_at: HashMap<&str, usize> = wards.iter().enumerate().map(|(w, &n)| (n, w)).collect();
    let mut covered = vec![false; wards.len() * shifts];
    for n in &plan.nurses {
        let Some(&w) = ward_at.get(n.ward.as_str()) else {
            continue;
        };
        let mut loads = vec![None; shifts];
        for &(day, shift) in &n.shifts {
            if let Some(d) = plan.day_of(day) {
                let s = d * Shift::ALL.len() + shift.index();
                loads[s] = Some(shift.safe_load());
                covered[w * shifts + s] = true;
            }
        }
        if loads.iter().all(Option::is_none) {
            continue;
        }
        out.skill.push(1);
        out.max_load.push(loads);
        out.ward.push(w);
        out.names.push(n.id.clone());
    }
    let until = plan.rostered_until();
    for (w, &ward) in wards.iter().enumerate() {
        let published = until.get(ward).copied();
        let (mut gap, mut unpublished) = (vec![None; shifts], vec![None; shifts]);
        for s in 0..shifts {
            if covered[w * shifts + s] {
                continue;
            }
            let day = plan.start + Duration::days((s / Shift::ALL.len()) as i64);
            if published.is_some_and(|last| day <= last) {
                gap[s] = Some(0);
            } else {
                unpublished[s] = Some(UNROSTERED_LOAD);
            }
        }
        for (loads, what) in [
            (gap, "no registered nurse rostered"),
            (unpublished, "roster not yet published"),
        ] {
            if loads.iter().any(Option::is_some) {
                out.skill.push(1);
                out.max_load.push(loads);
                out.ward.push(w);
                out.names.push(format!("{ward}: {what}"));
            }
        }
    }
    out
}

impl Model {
    pub fn new(plan: &Plan) -> Result<Model, PlanError> {
        Model::build(plan, &BTreeMap::new())
    }

    /// The plan's problem, with `held` patients (PTL index) held to the
    /// session (index) given, as if already booked there.
    pub fn build(plan: &Plan, held: &BTreeMap<usize, usize>) -> Result<Model, PlanError> {
        if plan.weeks == 0 {
            return Err(PlanError::NoWeeks);
        }
        if plan.weeks > 26 {
            return Err(PlanError::TooLong(plan.weeks));
        }
        let days = plan.days();
        let mut seen = std::collections::HashSet::new();
        for l in &plan.listed {
            if !seen.insert(l.id.as_str()) {
                return Err(PlanError::DuplicateEntry(l.id.clone()));
            }
            if l.minutes <= 0 || l.minutes > 24 * 60 {
                return Err(PlanError::Entry {
                    id: l.id.clone(),
                    what: format!("{} expected minutes in theatre: give 1 to 1440", l.minutes),
                });
            }
            if l.nights > 365 {
                return Err(PlanError::Entry {
                    id: l.id.clone(),
                    what: format!("a stay of {} nights: give 0 to 365", l.nights),
                });
            }
        }
        let mut seen = std::collections::HashSet::new();
        for s in &plan.sessions {
            if !seen.insert(s.id.as_str()) {
                return Err(PlanError::DuplicateSession(s.id.clone()));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for b in &plan.bays {
            if !seen.insert(b.id.as_str()) {
                return Err(PlanError::DuplicateBay(b.id.clone()));
            }
        }
        let session_at: HashMap<&str, usize> = plan
            .sessions
            .iter()
            .enumerate()
            .map(|(k, s)| (s.id.as_str(), k))
            .collect();

        // Each PTL entry already on a list in the horizon is held there.
        let mut held = held.clone();
        for (i, l) in plan.listed.iter().enumerate() {
            if let Some(&k) = l.booked_on.as_deref().and_then(|s| session_at.get(s)) {
                if plan.day_of(plan.sessions[k].date).is_some() {
                    held.entry(i).or_insert(k);
                }
            }
        }
        // Theatres: every session in the horizon not cancelled, open ones
        // taking new cases and held ones their own.
        // In the order lists run, so that a first fit is the earliest.
        let mut session: Vec<usize> = (0..plan.sessions.len())
            .filter(|&k| {
                let s = &plan.sessions[k];
                !s.cancelled
                    && plan.day_of(s.date).is_some()
                    && (plan.closed(s).is_none() || held.values().any(|&h| h == k))
            })
            .collect();
        session.sort_by(|&a, &b| {
            let (a, b) = (&plan.sessions[a], &plan.sessions[b]);
            (a.date, &a.am_pm, &a.theatre, &a.id).cmp(&(b.date, &b.am_pm, &b.theatre, &b.id))
        });
        let theater_of: HashMap<usize, usize> =
            session.iter().enumerate().map(|(t, &k)| (k, t)).collect();
        let mut theater_minutes = vec![vec![0i64; days]; session.len()];
        for (t, &k) in session.iter().enumerate() {
            let s = &plan.sessions[k];
            let d = plan.day_of(s.date).expect("in the horizon");
            theater_minutes[t][d] = plan.free_minutes(s);
        }
        // Surgeons: each consultant named on a list or by a patient.
        let mut surgeon_at: HashMap<String, usize> = HashMap::new();
        let surgeon_of = |name: &str, at: &mut HashMap<String, usize>| {
            let n = at.len();
            *at.entry(name.to_string()).or_insert(n)
        };
        for &k in &session {
            if let Some(c) = &plan.sessions[k].consultant {
                surgeon_of(c, &mut surgeon_at);
            }
        }
        for l in &plan.listed {
            surgeon_of(&l.consultant, &mut surgeon_at);
        }
        let mut surgeon_minutes = vec![vec![0i64; days]; surgeon_at.len()];
        for (t, &k) in session.iter().enumerate() {
            let s = &plan.sessions[k];
            // A held booking on a list with no consultant named counts
            // against the patient's own.
            let names = s.consultant.iter().cloned().chain(
                held.iter()
                    .filter(|&(_, &h)| h == k)
                    .map(|(&i, _)| plan.listed[i].consultant.clone()),
            );
            let mut counted = Vec::new();
            for name in names {
                let u = surgeon_at[&name];
                if !counted.contains(&u) {
                    counted.push(u);
                    let d = plan.day_of(s.date).expect("in the horizon");
                    surgeon_minutes[u][d] += theater_minutes[t][d];
                }
            }
        }

        // Rooms: the bays, then the day unit.
        let rooms = plan.bays.len() + 1;
        let day_unit = plan.bays.len();
        let mut room_capacity: Vec<usize> = plan.bays.iter().map(|b| b.beds).collect();
        room_capacity.push(0);
        // Wards, in the order the bays name them; the day unit is a ward of
        // its own that nobody stays the night on.
        let mut wards: Vec<&str> = Vec::new();
        for b in &plan.bays {
            if !wards.contains(&b.ward.as_str()) {
                wards.push(b.ward.as_str());
            }
        }
        let mut room_ward: Vec<usize> = plan
            .bays
            .iter()
            .map(|b| {
                wards
                    .iter()
                    .position(|w| *w == b.ward)
                    .expect("listed above")
            })
            .collect();
        room_ward.push(wards.len());
        let nurses = nursing_cover(plan, &wards);
        let mut people = Vec::new();
        let mut occupant_room = Vec::new();
        let mut occupant_ids = Vec::new();
        for (r, bay) in plan.bays.iter().enumerate() {
            for (n, &(sex, age, nights)) in bay.occupied.iter().enumerate() {
                let nights = nights.min(days as u32);
                let (workload, skill) = nursing(nights, false);
                people.push(Person {
                    gender_a: sex == Sex::Female,
                    age_group: age_group(age),
                    length_of_stay: nights as usize,
                    workload,
                    skill,
                });
                occupant_room.push(r);
                occupant_ids.push(format!("{}#{n}", bay.id));
            }
        }

        let end = plan.start + Duration::days(days as i64);
        let mut excluded = BTreeMap::new();
        let mut to_admit = Vec::new();
        let mut listed = Vec::new();
        let mut pinned = Vec::new();
        let mut turn = Vec::new();
        for (i, l) in plan.listed.iter().enumerate() {
            let u = surgeon_at[&l.consultant];
            let in_room = |r: usize| {
                if l.nights == 0 {
                    r != day_unit
                } else {
                    r == day_unit
                }
            };
            let incompatible: Vec<bool> = (0..rooms).map(in_room).collect();
            let (window, theaters) = if let Some(&k) = held.get(&i) {
                let d = plan
                    .day_of(plan.sessions[k].date)
                    .expect("held in the horizon");
                ((d, d), vec![theater_of[&k]])
            } else {
                if let Some(b) = &l.booked_on {
                    excluded.insert(i, format!("booked on {b}, outside the weeks planned"));
                    continue;
                }
                if l.priority.is_deferred() {
                    excluded.insert(
                        i,
                        format!(
                            "{}: treatment deferred at the patient's choice",
                            l.priority.as_str()
                        ),
                    );
                    continue;
                }
                let last = match l.pre_op {
                    PreOp::Fit { valid_until } if valid_until >= plan.start => {
                        plan.day_of(valid_until).unwrap_or(days - 1)
                    }
                    PreOp::Fit { valid_until } => {
                        excluded.insert(
                            i,
                            format!("not ready: pre-operative assessment lapsed on {valid_until}; reassess before booking"),
                        );
                        continue;
                    }
                    PreOp::Booked { on } => {
                        excluded.insert(
                            i,
                            format!("not ready: pre-operative assessment booked for {on}"),
                        );
                        continue;
                    }
                    PreOp::AwaitingResults => {
                        excluded.insert(
                            i,
                            "not ready: pre-operative assessment results awaited".into(),
                        );
                        continue;
                    }
                    PreOp::Unfit => {
                        excluded.insert(
                            i,
                            "not ready: found unfit at pre-operative assessment".into(),
                        );
                        continue;
                    }
                    PreOp::None => {
                        excluded.insert(i, "not ready: no pre-operative assessment".into());
                        continue;
                    }
                };
                if l.nights > 0 && plan.bays.is_empty() {
                    excluded.insert(
                        i,
                        "an inpatient, and no elective ward's bays are in the plan: name the wards whose bays take elective admissions".into(),
                    );
                    continue;
                }
                let theaters: Vec<usize> = session
                    .iter()
                    .enumerate()
                    .filter(|&(_, &k)| {
                        let s = &plan.sessions[k];
                        plan.closed(s).is_none()
                            && s.consultant.as_deref() == Some(l.consultant.as_str())
                    })
                    .map(|(t, _)| t)
                    .collect();
                if theaters.is_empty() {
                    excluded.insert(
                        i,
                        format!(
                            "{} has no list open to booking in the {} weeks planned",
                            l.consultant, plan.weeks
                        ),
                    );
                    continue;
                }
                // Lists inside the lock take nobody new.
                ((LOCKED_DAYS as usize, last), theaters)
            };
            let (release_day, last_day) = window;
            if release_day > last_day {
                excluded.insert(
                    i,
                    format!(
                        "not ready in time: the pre-operative assessment lapses before the first list open to booking ({})",
                        plan.start + Duration::days(LOCKED_DAYS)
                    ),
                );
                continue;
            }
            let (per_day, left_off) = urgency(l.priority);
            let price = |d: i64| -> i64 {
                let day = plan.start + Duration::days(d);
                let weeks = l.weeks_waited(plan.start);
                let mut c = d * (10 + weeks) * per_day;
                for (w, penalty) in [(18, BREACH_18), (52, BREACH_52)] {
                    let b = l.breach(w);
                    if b >= plan.start && b < end && day >= b {
                        c += penalty;
                    }
                }
                match l.priority_limit() {
                    Some(limit) if limit < plan.start => c += PAST_LIMIT + d * OVERDUE_PER_DAY,
                    Some(limit) if day > limit => c += PAST_LIMIT,
                    _ => {}
                }
                c
            };
            let day_cost: Vec<i64> = (0..days as i64).map(price).collect();
            let skip_cost = price(days as i64) + FILL_PER_MINUTE * l.minutes + left_off;
            let (workload, skill) = nursing(l.nights.min(days as u32), true);
            people.push(Person {
                gender_a: l.sex == Sex::Female,
                age_group: age_group(l.age),
                length_of_stay: (l.nights as usize).min(days),
                workload,
                skill,
            });
            pinned.push(held.contains_key(&i));
            to_admit.push(ToAdmit {
                mandatory: false,
                release_day,
                last_day,
                duration: l.minutes + CHANGEOVER_MINUTES,
                surgeon: u,
                incompatible,
                theaters,
                day_cost: Some(day_cost),
                skip_cost,
            });
            listed.push(i);
            turn.push((l.priority, l.clock_start, i));
        }
        // A patient held to a list is worth more there than anything else.
        for (a, &held) in to_admit.iter_mut().zip(&pinned) {
            if held {
                a.skip_cost += HELD;
            }
        }
        let mut room_ids: Vec<String> = plan.bays.iter().map(|b| b.id.clone()).collect();
        room_ids.push("day unit".into());
        let ids = Ids::new(
            listed.iter().map(|&i| plan.listed[i].id.clone()).collect(),
            room_ids,
            session
                .iter()
                .map(|&k| plan.sessions[k].id.clone())
                .collect(),
            nurses.names,
            occupant_ids,
        );
        let problem = Problem {
            days,
            shift_names: vec!["early".into(), "late".into(), "night".into()],
            // Age mix, skill, continuity, workload, theatres opened,
            // surgeons moving theatre, delay, unscheduled.
            weights: [1, 1, 1, OVERLOAD, 0, 0, 1, 1],
            people,
            occupants: occupant_room.len(),
            occupant_room,
            to_admit,
            surgeon_minutes,
            theater_minutes,
            room_capacity,
            nurse_skill: nurses.skill,
            nurse_max_load: nurses.max_load,
            room_ward,
            nurse_ward: nurses.ward,
            ids,
        };
        Ok(Model {
            problem,
            listed,
            session,
            excluded,
            pinned,
            day_unit,
            turn,
        })
    }

    /// The schedule with every held patient on their list, and nobody else.
    pub fn held_only(&self) -> Schedule {
        let mut schedule = Schedule::empty(&self.problem);
        for (a, (p, &held)) in self.problem.to_admit.iter().zip(&self.pinned).enumerate() {
            if held {
                schedule.admission[a] = Some(Admission {
                    day: p.release_day as i64,
                    room: self.first_room(a),
                    theater: p.theaters[0],
                });
            }
        }
        schedule
    }

    fn first_room(&self, a: usize) -> usize {
        let p = &self.problem.to_admit[a];
        (0..p.incompatible.len())
            .find(|&r| !p.incompatible[r])
            .unwrap_or(self.day_unit)
    }

    /// Read `schedule` back as a proposal, each patient with a reason.
    pub fn read(&self, plan: &Plan, schedule: &Schedule, cost: i64) -> Proposal {
        let mut at = vec![None; plan.listed.len()];
        for (a, &i) in self.listed.iter().enumerate() {
            at[i] = Some(a);
        }
        let mut used = vec![0i64; self.session.len()];
        for (b, adm) in schedule.admission.iter().enumerate() {
            if let Some(adm) = adm {
                used[adm.theater] += self.problem.to_admit[b].duration;
            }
        }
        let placements = plan
            .listed
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let Some(a) = at[i] else {
                    return Placement {
                        id: l.id.clone(),
                        session: None,
                        date: None,
                        bay: None,
                        status: Status::NotBooked,
                        reason: self.excluded.get(&i).cloned().unwrap_or_default(),
                    };
                };
                match schedule.admission[a] {
                    Some(adm) => {
                        let s = &plan.sessions[self.session[adm.theater]];
                        let bay =
                            (adm.room != self.day_unit).then(|| plan.bays[adm.room].id.clone());
                        Placement {
                            id: l.id.clone(),
                            session: Some(s.id.clone()),
                            date: Some(s.date),
                            bay,
                            status: if self.pinned[a] {
                                Status::AlreadyBooked
                            } else {
                                Status::Proposed
                            },
                            reason: booked_reason(plan, l, s.date, self.pinned[a]),
                        }
                    }
                    None => Placement {
                        id: l.id.clone(),
                        session: None,
                        date: None,
                        bay: None,
                        status: Status::NotBooked,
                        reason: self.unbooked_reason(plan, &used, a),
                    },
                }
            })
            .collect();
        Proposal { placements, cost }
    }

    /// Why patient `a` (in the problem, not admitted) was left off, with
    /// `used` each list's minutes the schedule fills.
    fn unbooked_reason(&self, plan: &Plan, used: &[i64], a: usize) -> String {
        let p = &self.problem.to_admit[a];
        let l = &plan.listed[self.listed[a]];
        let first = plan.start + Duration::days(p.release_day as i64);
        let last = plan.start + Duration::days(p.last_day as i64);
        let with_time = p
            .theaters
            .iter()
            .filter(|&&t| {
                let d = plan
                    .day_of(plan.sessions[self.session[t]].date)
                    .unwrap_or(0);
                (p.release_day..=p.last_day).contains(&d)
                    && used[t] + p.duration <= self.problem.theater_minutes[t][d]
            })
            .count();
        if with_time == 0 {
            format!(
                "{}'s lists from {first} to {last} are full (no {} minutes free) with patients of higher priority or longer waits",
                l.consultant, l.minutes
            )
        } else {
            format!(
                "{}'s lists with {} minutes free from {first} to {last} have no {} bed for {} nights",
                l.consultant,
                l.minutes,
                match l.sex {
                    Sex::Female => "female",
                    Sex::Male => "male",
                },
                l.nights
            )
        }
    }
}

fn booked_reason(plan: &Plan, l: &super::Listed, date: NaiveDate, held: bool) -> String {
    let weeks = l.weeks_waited(date);
    let mut why = format!("{}, {} weeks waited on the day", l.priority.as_str(), weeks);
    match l.priority_limit() {
        Some(limit) if date <= limit => why.push_str(&format!(", within the limit of {limit}")),
        Some(limit) => why.push_str(&format!(
            ", past the limit of {limit}: no earlier list of {} had the time",
            l.consultant
        )),
        None => {}
    }
    let b18 = l.breach(18);
    if b18 > date {
        if b18 < plan.start + Duration::days(plan.days() as i64) {
            why.push_str(&format!(", before the 18-week breach on {b18}"));
        }
    } else {
        why.push_str(&format!(", 18 weeks breached on {b18}"));
    }
    if held {
        format!("already booked: {why}")
    } else {
        why
    }
}

/// Propose a schedule for `plan`: the baseline improved by the search.
/// Every priority limit booking by hand keeps becomes a rule the search
/// keeps too: the patient must be booked, by their limit.
pub fn propose(plan: &Plan, options: &PlanOptions) -> Result<Proposal, PlanError> {
    let mut model = Model::new(plan)?;
    let start = model.baseline_schedule();
    for (a, adm) in start.admission.iter().enumerate() {
        let l = &plan.listed[model.listed[a]];
        let (Some(adm), Some(limit)) = (adm, l.priority_limit()) else {
            continue;
        };
        if model.pinned[a] {
            continue;
        }
        if let Some(last) = plan.day_of(limit).filter(|&d| adm.day as usize <= d) {
            let p = &mut model.problem.to_admit[a];
            p.mandatory = true;
            p.last_day = p.last_day.min(last);
        }
    }
    Ok(model.solve(plan, &start, options))
}

impl Model {
    fn solve(&self, plan: &Plan, start: &Schedule, options: &PlanOptions) -> Proposal {
        let mut schedule = search(&self.problem, start, &options.search).schedule;
        self.in_turn(plan, &mut schedule);
        let cost = price(&self.problem, &schedule).total_cost();
        self.read(plan, &schedule, cost)
    }

    /// Put the search's bookings in turn: among patients who could take
    /// each other's places exactly (the same consultant, priority,
    /// procedure, minutes, nights and, for a bed, sex), a longer waiter
    /// takes the earlier place, or the place of a shorter waiter left
    /// waiting, wherever their window allows and it breaches no wait or
    /// limit more than before. The lists' minutes and beds are the same
    /// after each exchange, so only the order changes.
    fn in_turn(&self, plan: &Plan, schedule: &mut Schedule) {
        let end = plan.start + Duration::days(plan.days() as i64);
        let day_of = |d: usize| plan.start + Duration::days(d as i64);
        // What a patient at `day` (or left waiting) breaches in the weeks
        // planned: a priority's limit, and an 18 or 52-week wait.
        let penalties = |a: usize, day: Option<usize>| -> (usize, usize) {
            let l = &plan.listed[self.listed[a]];
            let on = day.map(day_of);
            let mut waits = 0;
            for w in [18, 52] {
                let b = l.breach(w);
                waits += usize::from(b >= plan.start && b < end && on.is_none_or(|d| d >= b));
            }
            let limit = l
                .priority_limit()
                .filter(|d| *d < end)
                .is_some_and(|limit| on.is_none_or(|d| d > limit));
            (usize::from(limit), waits)
        };
        let mut groups: BTreeMap<Exchangeable, Vec<usize>> = BTreeMap::new();
        for (a, &i) in self.listed.iter().enumerate() {
            if self.pinned[a] {
                continue;
            }
            let l = &plan.listed[i];
            let sex = (l.nights > 0).then_some(l.sex);
            groups
                .entry((
                    l.priority,
                    &l.procedure,
                    &l.consultant,
                    l.minutes,
                    l.nights,
                    sex,
                ))
                .or_default()
                .push(a);
        }
        for mut members in groups.into_values() {
            if members.len() < 2 {
                continue;
            }
            // Longest waiter first.
            members.sort_by_key(|&a| self.turn[a]);
            let fits = |a: usize, adm: &Admission| {
                let p = &self.problem.to_admit[a];
                let d = adm.day as usize;
                (p.release_day..=p.last_day).contains(&d)
                    && p.theaters.binary_search(&adm.theater).is_ok()
            };
            // Each exchange puts a longer waiter earlier: it ends.
            let mut changed = true;
            while changed {
                changed = false;
                for x in 0..members.len() {
                    for y in x + 1..members.len() {
                        let (b, a) = (members[x], members[y]);
                        let Some(at_a) = schedule.admission[a] else {
                            continue;
                        };
                        let at_b = schedule.admission[b];
                        if at_b.is_some_and(|at_b| at_b.day <= at_a.day) || !fits(b, &at_a) {
                            continue;
                        }
                        if at_b.is_some_and(|at_b| !fits(a, &at_b)) {
                            continue;
                        }
                        let day = |adm: Option<Admission>| adm.map(|x| x.day as usize);
                        let sum = |x: (usize, usize), y: (usize, usize)| (x.0 + y.0, x.1 + y.1);
                        let before = sum(penalties(a, day(Some(at_a))), penalties(b, day(at_b)));
                        let after = sum(penalties(b, day(Some(at_a))), penalties(a, day(at_b)));
                        if after.0 > before.0 || after.1 > before.1 {
                            continue;
                        }
                        // A patient the rules hold to a window stays in it.
                        if at_b.is_none() && self.problem.to_admit[a].mandatory {
                            continue;
                        }
                        schedule.admission[b] = Some(at_a);
                        schedule.admission[a] = at_b;
                        changed = true;
                    }
                }
            }
        }
    }
}

/// A re-plan: the new proposal and what it changed.
#[derive(Debug, Clone)]
pub struct Replan {
    pub proposal: Proposal,
    /// Patients whose session changed, or who lost or gained one.
    pub moved: Vec<String>,
    pub seconds: f64,
}

/// What arrives that takes lists away: leave (a consultant's or an
/// anaesthetist's), and lists cancelled.
#[derive(Debug, Clone, Default)]
pub struct Disruption {
    pub leave: Vec<Leave>,
    /// Sessions cancelled, by id.
    pub cancelled: Vec<String>,
}

impl Disruption {
    /// Whether list `s` is taken away.
    fn takes(&self, s: &super::Session) -> bool {
        self.cancelled.contains(&s.id) || lost(&self.leave, s)
    }
}

/// Re-plan from `current` after `disruption` arrives: every booking on a
/// list it takes away is moved, each to the list that costs least, and
/// nobody else is (patients left off before may be booked into the time
/// freed, or left).
pub fn replan(
    plan: &Plan,
    current: &Proposal,
    disruption: &Disruption,
    options: &PlanOptions,
) -> Result<Replan, PlanError> {
    let began = Instant::now();
    let mut plan = plan.clone();
    plan.leave.extend(disruption.leave.iter().cloned());
    for s in plan.sessions.iter_mut() {
        if disruption.cancelled.contains(&s.id) {
            s.cancelled = true;
        }
    }
    let session_at: HashMap<&str, usize> = plan
        .sessions
        .iter()
        .enumerate()
        .map(|(k, s)| (s.id.as_str(), k))
        .collect();
    // Hold everyone whose list still runs where they are.
    let mut held = BTreeMap::new();
    for (i, (l, p)) in plan.listed.iter().zip(&current.placements).enumerate() {
        debug_assert_eq!(l.id, p.id);
        let Some(&k) = p.session.as_deref().and_then(|s| session_at.get(s)) else {
            continue;
        };
        if !disruption.takes(&plan.sessions[k]) {
            held.insert(i, k);
        }
    }
    // Bookings already made stay held by `booked_on`; a lost list frees
    // them to move.
    for l in plan.listed.iter_mut() {
        if let Some(&k) = l.booked_on.as_deref().and_then(|s| session_at.get(s)) {
            if disruption.takes(&plan.sessions[k]) {
                l.booked_on = None;
            }
        }
    }
    let model = Model::build(&plan, &held)?;
    let start = model.greedy(&model.held_only());
    let proposal = model.solve(&plan, &start, options);
    let moved = proposal.moved(current);
    Ok(Replan {
        proposal,
        moved,
        seconds: began.elapsed().as_secs_f64(),
    })
}

/// Whether `leave` takes list `s` away: its consultant or anaesthetist
/// away that day.
fn lost(leave: &[Leave], s: &super::Session) -> bool {
    s.consultant
        .iter()
        .chain(&s.anaesthetist)
        .any(|who| leave.iter().any(|v| v.covers(who, s.date)))
}
