//! A proposal measured against its plan, the same way whoever made it:
//! the lists' booked utilisation, patients treated, breaches, patients
//! past their priority's limit, patients treated out of turn, the ward
//! shifts whose patients need more nursing than the roster gives, and
//! every hard rule checked again.

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, NaiveDate};
use serde::Serialize;

use super::{nursing_load, Plan, PreOp, Proposal, Sex, Shift, Status, CHANGEOVER_MINUTES};

/// What a proposal achieves over the weeks planned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measures {
    /// Lists that run in the weeks planned (not cancelled, nor lost to
    /// leave or a missing anaesthetist).
    pub sessions: usize,
    pub available_minutes: i64,
    /// Minutes booked on those lists: the PTL's patients placed, and
    /// bookings of patients not on it.
    pub booked_minutes: i64,
    /// Booked minutes over available minutes.
    pub utilisation: f64,
    /// PTL patients on a list in the weeks planned.
    pub treated: usize,
    /// Of them, booked by this proposal.
    pub proposed: usize,
    /// Patients whose wait passes 18 weeks inside the weeks planned before
    /// their treatment (or with none).
    pub breaches_18: usize,
    /// The same at 52 weeks.
    pub breaches_52: usize,
    /// Patients whose priority's limit falls before the end of the weeks
    /// planned and who are not treated by it.
    pub past_priority_limit: usize,
    /// Patients proposed for a day while a longer waiter of the same
    /// priority and procedure, on the same consultant's list and ready by
    /// then, is left off or booked later.
    pub out_of_turn: usize,
    /// Whether the e-roster was read: without it the two counts below are
    /// not measured.
    pub nursing_checked: bool,
    /// Ward shifts, inside the published roster, whose patients need more
    /// nursing than the registered nurses rostered carry safely
    /// ([`Shift::safe_load`] each).
    pub understaffed_shifts: usize,
    /// Ward shifts with patients past the last day the ward's roster is
    /// published: their nursing is not yet known.
    pub unrostered_shifts: usize,
    /// Each proposal breaking a hard rule, in words: none, unless the
    /// proposal is wrong.
    pub rule_breaks: Vec<String>,
}

impl Measures {
    pub fn of(plan: &Plan, proposal: &Proposal) -> Measures {
        let end = plan.start + Duration::days(plan.days() as i64);
        let in_horizon = |d: NaiveDate| d >= plan.start && d < end;
        let session_at: HashMap<&str, usize> = plan
            .sessions
            .iter()
            .enumerate()
            .map(|(k, s)| (s.id.as_str(), k))
            .collect();
        let runs = |k: usize| {
            let s = &plan.sessions[k];
            in_horizon(s.date) && plan.lost(s).is_none()
        };
        let mut rule_breaks = Vec::new();
        let mut placed_minutes = vec![0i64; plan.sessions.len()];
        let mut on: Vec<Option<NaiveDate>> = vec![None; plan.listed.len()];
        // Per bay and day: beds taken, and how many by women.
        let bay_at: HashMap<&str, usize> = plan
            .bays
            .iter()
            .enumerate()
            .map(|(r, b)| (b.id.as_str(), r))
            .collect();
        let days = plan.days();
        let mut beds = vec![vec![(0usize, 0usize); days]; plan.bays.len()];
        // Per bay and day: the nursing its patients need in each shift.
        let mut nursing = vec![vec![0i64; days]; plan.bays.len()];
        for (r, bay) in plan.bays.iter().enumerate() {
            for &(sex, _, nights) in &bay.occupied {
                for (taken, need) in beds[r]
                    .iter_mut()
                    .zip(&mut nursing[r])
                    .take(nights as usize)
                {
                    taken.0 += 1;
                    taken.1 += usize::from(sex == Sex::Female);
                    *need += nursing_load(false);
                }
            }
        }
        let mut proposed = 0;
        for (i, (l, p)) in plan.listed.iter().zip(&proposal.placements).enumerate() {
            if l.id != p.id {
                rule_breaks.push(format!(
                    "the proposal's placement {} stands where the PTL has {}",
                    p.id, l.id
                ));
                continue;
            }
            let Some(sid) = &p.session else { continue };
            let Some(&k) = session_at.get(sid.as_str()) else {
                rule_breaks.push(format!("{}: session {sid} is not in the plan", l.id));
                continue;
            };
            let s = &plan.sessions[k];
            if !in_horizon(s.date) {
                continue;
            }
            on[i] = Some(s.date);
            placed_minutes[k] += l.minutes + CHANGEOVER_MINUTES;
            if p.status == Status::Proposed {
                proposed += 1;
                if let Some(why) = plan.closed(s) {
                    rule_breaks.push(format!("{}: proposed for {sid}, which is {why}", l.id));
                }
                if s.consultant.as_deref() != Some(l.consultant.as_str()) {
                    rule_breaks.push(format!(
                        "{}: proposed for {sid}, a list not of {}",
                        l.id, l.consultant
                    ));
                }
                match l.pre_op {
                    PreOp::Fit { valid_until } if valid_until >= s.date => {}
                    _ => rule_breaks.push(format!(
                        "{}: proposed for {sid} on {} without a pre-operative assessment valid that day",
                        l.id, s.date
                    )),
                }
                if l.priority.is_deferred() {
                    rule_breaks.push(format!(
                        "{}: proposed though deferred at the patient's choice",
                        l.id
                    ));
                }
            }
            if l.nights > 0 {
                let Some(&r) = p.bay.as_deref().and_then(|b| bay_at.get(b)) else {
                    rule_breaks.push(format!("{}: an inpatient with no bay", l.id));
                    continue;
                };
                let first = (s.date - plan.start).num_days() as usize;
                for (d, (taken, need)) in beds[r]
                    .iter_mut()
                    .zip(&mut nursing[r])
                    .enumerate()
                    .skip(first)
                    .take(l.nights as usize)
                {
                    taken.0 += 1;
                    taken.1 += usize::from(l.sex == Sex::Female);
                    *need += nursing_load(d == first);
                }
            }
        }
        for (k, s) in plan.sessions.iter().enumerate() {
            if placed_minutes[k] > plan.free_minutes(s) && placed_minutes[k] > 0 {
                rule_breaks.push(format!(
                    "{}: {} minutes booked with changeovers where {} are free",
                    s.id,
                    placed_minutes[k],
                    plan.free_minutes(s)
                ));
            }
        }
        for (r, bay) in plan.bays.iter().enumerate() {
            for (d, &(n, women)) in beds[r].iter().enumerate() {
                let day = plan.start + Duration::days(d as i64);
                if n > bay.beds {
                    rule_breaks.push(format!(
                        "{}: {n} patients in {} beds on {day}",
                        bay.id, bay.beds
                    ));
                }
                if women > 0 && women < n {
                    rule_breaks.push(format!("{}: women and men together on {day}", bay.id));
                }
            }
        }

        let (understaffed_shifts, unrostered_shifts) = staffing(plan, &nursing);

        let (mut sessions, mut available, mut booked) = (0, 0, 0);
        for (k, s) in plan.sessions.iter().enumerate() {
            if !runs(k) {
                continue;
            }
            sessions += 1;
            available += s.minutes;
            let listed_minutes = placed_minutes[k]
                - CHANGEOVER_MINUTES
                    * plan
                        .listed
                        .iter()
                        .zip(&proposal.placements)
                        .filter(|(_, p)| p.session.as_deref() == Some(s.id.as_str()))
                        .count() as i64;
            booked += s.booked_minutes.iter().sum::<i64>() + listed_minutes;
        }

        let mut treated = 0;
        let (mut b18, mut b52, mut past) = (0, 0, 0);
        for (l, date) in plan.listed.iter().zip(&on) {
            treated += usize::from(date.is_some());
            for (weeks, count) in [(18, &mut b18), (52, &mut b52)] {
                let b = l.breach(weeks);
                if in_horizon(b) && date.is_none_or(|d| d >= b) {
                    *count += 1;
                }
            }
            if !l.priority.is_deferred() {
                if let Some(limit) = l.priority_limit() {
                    if limit < end && date.is_none_or(|d| d > limit) {
                        past += 1;
                    }
                }
            }
        }

        // Longest waiter first within each priority and procedure, on each
        // consultant's lists.
        let mut groups: BTreeMap<(super::Priority, &str, &str), Vec<usize>> = BTreeMap::new();
        for (i, l) in plan.listed.iter().enumerate() {
            groups
                .entry((l.priority, l.procedure.as_str(), l.consultant.as_str()))
                .or_default()
                .push(i);
        }
        let mut out_of_turn = 0;
        for members in groups.values() {
            for &a in members {
                let (la, pa) = (&plan.listed[a], &proposal.placements[a]);
                let Some(day) = on[a].filter(|_| pa.status == Status::Proposed) else {
                    continue;
                };
                let passed_over = members.iter().any(|&b| {
                    let lb = &plan.listed[b];
                    lb.clock_start < la.clock_start
                        && !lb.priority.is_deferred()
                        && on[b].is_none_or(|d| d > day)
                        && matches!(lb.pre_op, PreOp::Fit { valid_until } if valid_until >= day)
                        && lb.booked_on.is_none()
                });
                out_of_turn += usize::from(passed_over);
            }
        }

        Measures {
            sessions,
            available_minutes: available,
            booked_minutes: booked,
            utilisation: if available > 0 {
                booked as f64 / available as f64
            } else {
                0.0
            },
            treated,
            proposed,
            breaches_18: b18,
            breaches_52: b52,
            past_priority_limit: past,
            out_of_turn,
            nursing_checked: !plan.nurses.is_empty(),
            understaffed_shifts,
            unrostered_shifts,
            rule_breaks,
        }
    }
}

/// Ward shifts whose patients need more nursing than the registered nurses
/// rostered carry safely, and ward shifts with patients past the published
/// roster, from each bay's need per day (`nursing[bay][day]`, the same in
/// each shift of the day). Nothing is counted without a roster.
fn staffing(plan: &Plan, nursing: &[Vec<i64>]) -> (usize, usize) {
    if plan.nurses.is_empty() {
        return (0, 0);
    }
    let until = plan.rostered_until();
    let mut need: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (bay, by_day) in plan.bays.iter().zip(nursing) {
        let ward = need
            .entry(bay.ward.as_str())
            .or_insert_with(|| vec![0; plan.days()]);
        for (w, n) in ward.iter_mut().zip(by_day) {
            *w += n;
        }
    }
    let mut on_shift: HashMap<(&str, NaiveDate, Shift), i64> = HashMap::new();
    for n in &plan.nurses {
        for &(day, shift) in &n.shifts {
            *on_shift.entry((n.ward.as_str(), day, shift)).or_default() += 1;
        }
    }
    let (mut under, mut unrostered) = (0, 0);
    for (ward, by_day) in &need {
        for (d, &load) in by_day.iter().enumerate() {
            if load == 0 {
                continue;
            }
            let day = plan.start + Duration::days(d as i64);
            if until.get(ward).is_none_or(|&last| day > last) {
                unrostered += Shift::ALL.len();
                continue;
            }
            for shift in Shift::ALL {
                let nurses = on_shift.get(&(*ward, day, shift)).copied().unwrap_or(0);
                under += usize::from(load > nurses * shift.safe_load());
            }
        }
    }
    (under, unrostered)
}
