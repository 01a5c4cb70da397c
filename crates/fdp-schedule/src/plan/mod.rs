//! The trust's own list: which patients on the patient tracking list (PTL)
//! to book onto which theatre sessions over the coming weeks, under the
//! national rules, solved by the same engine as the IHTC-2024 problem.
//!
//! A [`Plan`] is plain data a product builds from the instance's governed
//! tables: the patients waiting ([`Listed`]), the theatre sessions to come
//! ([`Session`]) with what is booked on them, leave ([`Leave`]), and the
//! bays of the elective wards ([`Bay`]). [`propose`] turns it into an
//! [`crate::ihtc::Problem`] (a session is a theatre open on one day, a
//! consultant a surgeon, a bay a room under the single-sex rule), searches
//! it, and reads the best schedule back as a [`Proposal`]: for every
//! patient, the session they are proposed for, or why not. [`baseline`]
//! is what a scheduler does by hand (by priority, then by weeks waited,
//! first fit), and [`Measures`] sets the two side by side.
//!
//! The hard rules:
//! - **clinical priority**: a patient whose priority's limit (from the
//!   decision to admit: P1a 24 hours, P1b 72 hours, P2 4 weeks, P3 3
//!   months) falls inside the horizon is booked by it, or is reported as
//!   not bookable in time; P4 may wait longer; P5 and P6 have chosen to
//!   defer and are not booked;
//! - **6-4-2**: a list inside [`LOCKED_DAYS`] is locked (nothing added,
//!   nothing moved); bookings already made stay where they are; a list
//!   whose consultant or anaesthetist is on leave, or has none named, is
//!   not booked;
//! - **pre-operative assessment**: a patient is booked only onto a list
//!   on a day their assessment (found fit) is still valid;
//! - **the list's minutes**: the cases' expected minutes, with a
//!   changeover of [`CHANGEOVER_MINUTES`] between cases, fit the session;
//! - **beds**: an inpatient needs a bed in a bay of the elective wards for
//!   their stay, and a bay holds one sex at a time.
//!
//! Nursing: the wards' registered nurses from the e-roster
//! ([`RosteredNurse`]) cover the bays of their own ward, shift by shift, as
//! the competition's nurses cover rooms; a nurse's load above
//! [`Shift::safe_load`] is priced, so admissions are spread where the
//! roster is thin. A shift inside the published roster with no registered
//! nurse takes no load without that price; past the last rostered day the
//! roster is not yet published and nursing is not weighed.
//!
//! What the search weighs, in order: a priority's limit kept; the more
//! urgent priorities booked first; a wait's 52 and 18-week breaches
//! avoided; then filling the lists' minutes and treating the longest
//! waiters soonest (each day of delay priced by weeks waited and by
//! priority).

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

mod baseline;
mod measure;
mod model;
#[cfg(test)]
mod tests;

pub use baseline::baseline;
pub use measure::Measures;
pub use model::{propose, replan, Disruption, PlanOptions, Replan};

/// A list this close (in days from the plan's first day) is locked.
pub const LOCKED_DAYS: i64 = 14;
/// A list this close should be built.
pub const BUILT_DAYS: i64 = 28;
/// Leave inside this many days is fixed: the lists it takes are released.
pub const FIXED_DAYS: i64 = 42;
/// Between two cases on a list.
pub const CHANGEOVER_MINUTES: i64 = 15;

/// Clinical priority, as the Federation of Surgical Specialty Associations
/// codes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    P1a,
    P1b,
    P2,
    P3,
    P4,
    /// Deferred by the patient's choice (COVID-19 concerns).
    P5,
    /// Deferred by the patient's choice (other reasons).
    P6,
}

impl Priority {
    /// Read `P1a`, `1a`, `P2`, `2`, any case; `None` for anything else.
    pub fn parse(text: &str) -> Option<Priority> {
        let t = text.trim().to_ascii_lowercase();
        let t = t.strip_prefix('p').unwrap_or(&t);
        Some(match t {
            "1a" => Priority::P1a,
            "1b" => Priority::P1b,
            "2" => Priority::P2,
            "3" => Priority::P3,
            "4" => Priority::P4,
            "5" => Priority::P5,
            "6" => Priority::P6,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1a => "P1a",
            Priority::P1b => "P1b",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
            Priority::P5 => "P5",
            Priority::P6 => "P6",
        }
    }

    /// The last day a patient decided for admission on `decided` should be
    /// treated by: none for P4 and the deferred.
    pub fn limit(self, decided: NaiveDate) -> Option<NaiveDate> {
        match self {
            Priority::P1a => Some(decided + Duration::days(1)),
            Priority::P1b => Some(decided + Duration::days(3)),
            Priority::P2 => Some(decided + Duration::days(28)),
            Priority::P3 => decided.checked_add_months(chrono::Months::new(3)),
            Priority::P4 | Priority::P5 | Priority::P6 => None,
        }
    }

    /// Deferred by the patient: not to be booked.
    pub fn is_deferred(self) -> bool {
        matches!(self, Priority::P5 | Priority::P6)
    }
}

/// A patient's sex, for single-sex bays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Sex {
    Female,
    Male,
}

/// Where a patient stands with their pre-operative assessment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreOp {
    /// Found fit; valid up to and including the day.
    Fit { valid_until: NaiveDate },
    /// An assessment booked for the day, not yet attended.
    Booked { on: NaiveDate },
    /// Assessed; results awaited.
    AwaitingResults,
    /// Assessed and found unfit for now.
    Unfit,
    /// No assessment.
    None,
}

/// A patient on the PTL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    /// The waiting-list entry (`EalEntry.ealId`).
    pub id: String,
    pub priority: Priority,
    /// The consultant whose lists they may go on (as the sessions name
    /// them).
    pub consultant: String,
    pub specialty: String,
    /// The intended procedure (OPCS-4).
    pub procedure: String,
    /// Expected minutes in theatre.
    pub minutes: i64,
    /// Nights in a bed after the operation: 0 for a day case.
    pub nights: u32,
    pub sex: Sex,
    pub age: u32,
    /// The RTT clock's start.
    pub clock_start: NaiveDate,
    pub decided_to_admit: NaiveDate,
    pub pre_op: PreOp,
    /// The session they are already booked on, if any.
    pub booked_on: Option<String>,
}

impl Listed {
    /// Whole weeks waited on `day`.
    pub fn weeks_waited(&self, day: NaiveDate) -> i64 {
        (day - self.clock_start).num_days().max(0) / 7
    }

    /// The day the wait reaches `weeks` whole weeks.
    pub fn breach(&self, weeks: i64) -> NaiveDate {
        self.clock_start + Duration::days(7 * weeks)
    }

    pub fn priority_limit(&self) -> Option<NaiveDate> {
        self.priority.limit(self.decided_to_admit)
    }
}

/// A theatre session (list) to come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub theatre: String,
    pub date: NaiveDate,
    /// `AM`, `PM` or `ALL DAY`, as the plan names it.
    pub am_pm: String,
    pub specialty: String,
    pub consultant: Option<String>,
    pub anaesthetist: Option<String>,
    /// Planned minutes.
    pub minutes: i64,
    /// Cancelled or released in the plan itself.
    pub cancelled: bool,
    /// The expected minutes of each booking on it not cancelled.
    pub booked_minutes: Vec<i64>,
}

/// Leave: a person away from the first day to the last, both included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    pub person: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Leave {
    /// Whether it keeps `person` away on `day`.
    pub fn covers(&self, person: &str, day: NaiveDate) -> bool {
        self.person == person && self.from <= day && day <= self.to
    }
}

/// A bay of the elective wards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bay {
    pub id: String,
    /// The ward it is on: its nurses are the ward's ([`RosteredNurse`]).
    #[serde(default)]
    pub ward: String,
    pub beds: usize,
    /// Already in the bay on the plan's first day: sex, age and nights
    /// still to stay.
    pub occupied: Vec<(Sex, u32, u32)>,
}

/// A shift on a ward, as the e-roster's duties fall into them: a long day
/// is an early and a late.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shift {
    Early,
    Late,
    Night,
}

impl Shift {
    pub const ALL: [Shift; 3] = [Shift::Early, Shift::Late, Shift::Night];

    /// Its place in the day, as the engine numbers shifts.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Shift::Early => "early",
            Shift::Late => "late",
            Shift::Night => "night",
        }
    }

    /// The nursing load one registered nurse carries safely in the shift,
    /// in the units of [`nursing_load`]: eight patients by day, NICE's red
    /// flag for adult wards (safe staffing guideline SG1, 2014), and ten at
    /// night.
    pub fn safe_load(self) -> i64 {
        match self {
            Shift::Early | Shift::Late => 8 * nursing_load(false),
            Shift::Night => 10 * nursing_load(false),
        }
    }
}

/// The nursing one patient needs in one shift, in half-units of a patient
/// needing routine care: one back from theatre that day needs half as much
/// again (the Safer Nursing Care Tool's multipliers for acuity levels 0 and
/// 1a are 0.99 and 1.39).
pub fn nursing_load(operated_today: bool) -> i64 {
    if operated_today {
        3
    } else {
        2
    }
}

/// A registered nurse on the e-roster of one of the plan's wards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosteredNurse {
    /// The e-roster's staff number.
    pub id: String,
    /// The ward, as the bays name it ([`Bay::ward`]).
    pub ward: String,
    /// The shifts they work, by the day each starts.
    pub shifts: Vec<(NaiveDate, Shift)>,
}

/// Everything a plan is made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The plan's first day (lists from this day on).
    pub start: NaiveDate,
    /// Weeks planned.
    pub weeks: u32,
    pub listed: Vec<Listed>,
    pub sessions: Vec<Session>,
    pub leave: Vec<Leave>,
    pub bays: Vec<Bay>,
    /// The wards' registered nurses from the e-roster. With none, the
    /// nursing on the wards is not weighed (and the measures say so).
    #[serde(default)]
    pub nurses: Vec<RosteredNurse>,
}

impl Plan {
    pub fn days(&self) -> usize {
        self.weeks as usize * 7
    }

    /// The plan's day `day` falls on, if inside the horizon.
    pub fn day_of(&self, day: NaiveDate) -> Option<usize> {
        let d = (day - self.start).num_days();
        (0..self.days() as i64).contains(&d).then_some(d as usize)
    }

    /// Per ward the bays are on: the last day its roster gives anyone a
    /// shift. Past it, the roster is taken as not yet published.
    pub fn rostered_until(&self) -> BTreeMap<&str, NaiveDate> {
        let mut until: BTreeMap<&str, NaiveDate> = BTreeMap::new();
        for n in &self.nurses {
            for &(day, _) in &n.shifts {
                let last = until.entry(n.ward.as_str()).or_insert(day);
                *last = (*last).max(day);
            }
        }
        until
    }

    pub fn on_leave(&self, person: &str, day: NaiveDate) -> bool {
        self.leave.iter().any(|l| l.covers(person, day))
    }

    /// Why a session takes no new booking, or `None` where it may: lost,
    /// or locked.
    pub fn closed(&self, s: &Session) -> Option<String> {
        self.lost(s).or_else(|| {
            ((s.date - self.start).num_days() < LOCKED_DAYS)
                .then(|| "locked (inside two weeks)".into())
        })
    }

    /// Why a session does not run, or `None` where it does: cancelled,
    /// or its consultant or anaesthetist not named or on leave.
    pub fn lost(&self, s: &Session) -> Option<String> {
        if s.cancelled {
            return Some("cancelled".into());
        }
        let Some(consultant) = &s.consultant else {
            return Some("no consultant named".into());
        };
        if self.on_leave(consultant, s.date) {
            return Some(format!("released: {consultant} on leave"));
        }
        let Some(anaesthetist) = &s.anaesthetist else {
            return Some("no anaesthetist named".into());
        };
        if self.on_leave(anaesthetist, s.date) {
            return Some(format!("anaesthetist {anaesthetist} on leave"));
        }
        None
    }

    /// Minutes a session has left for new cases (each new case costing
    /// its own minutes and a changeover).
    pub fn free_minutes(&self, s: &Session) -> i64 {
        let booked: i64 = s
            .booked_minutes
            .iter()
            .map(|m| m + CHANGEOVER_MINUTES)
            .sum();
        (s.minutes + CHANGEOVER_MINUTES - booked).max(0)
    }
}

/// Where a patient stands in a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Booked onto a list by this proposal.
    Proposed,
    /// On a list already, and left there.
    AlreadyBooked,
    /// Not on a list in the weeks planned.
    NotBooked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Proposed => "proposed",
            Status::AlreadyBooked => "already booked",
            Status::NotBooked => "not booked",
        }
    }
}

/// Where the plan puts one patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The waiting-list entry.
    pub id: String,
    /// The session proposed (or already booked), if any.
    pub session: Option<String>,
    pub date: Option<NaiveDate>,
    /// The bay for an inpatient's stay.
    pub bay: Option<String>,
    pub status: Status,
    /// Why, in words for the planner.
    pub reason: String,
}

/// A proposed schedule: one placement per patient on the PTL, in the
/// PTL's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub placements: Vec<Placement>,
    /// The search's own price of the schedule (lower is better).
    pub cost: i64,
}

impl Proposal {
    /// Each patient proposed or booked, with their session.
    pub fn sessions(&self) -> BTreeMap<&str, &str> {
        self.placements
            .iter()
            .filter_map(|p| Some((p.id.as_str(), p.session.as_deref()?)))
            .collect()
    }

    /// The patients booked in `before` who are on another list here, or
    /// on none: the bookings this proposal moves.
    pub fn moved(&self, before: &Proposal) -> Vec<String> {
        let now = self.sessions();
        before
            .sessions()
            .into_iter()
            .filter(|(id, s)| now.get(id) != Some(s))
            .map(|(id, _)| id.to_string())
            .collect()
    }
}

/// What is wrong with a plan's data, by name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the plan covers no weeks: give weeks from 1 up")]
    NoWeeks,
    #[error("a plan of {0} weeks is longer than the 6-4-2 timetable runs to (at most 26)")]
    TooLong(u32),
    #[error("waiting-list entry {0} appears twice")]
    DuplicateEntry(String),
    #[error("session {0} appears twice")]
    DuplicateSession(String),
    #[error("bay {0} appears twice")]
    DuplicateBay(String),
    #[error("waiting-list entry {id}: {what}")]
    Entry { id: String, what: String },
}
