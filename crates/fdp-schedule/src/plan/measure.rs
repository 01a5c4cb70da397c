//! A proposal measured against its plan, the same way whoever made it:
//! the lists' booked utilisation, patients treated, breaches, patients
//! past their priority's limit, patients treated out of turn, and every
//! hard rule checked again.

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, NaiveDate};
use serde::Serialize;

use super::{Plan, PreOp, Proposal, Sex, Status, CHANGEOVER_MINUTES};

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
        for (r, bay) in plan.bays.iter().enumerate() {
            for &(sex, _, nights) in &bay.occupied {
                for taken in beds[r].iter_mut().take(nights as usize) {
                    taken.0 += 1;
                    taken.1 += usize::from(sex == Sex::Female);
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
                for taken in beds[r].iter_mut().skip(first).take(l.nights as usize) {
                    taken.0 += 1;
                    taken.1 += usize::from(l.sex == Sex::Female);
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
            rule_breaks,
        }
    }
}
