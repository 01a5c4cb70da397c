//! What happened on a list that has run, as the theatre management
//! system's case-times report records it: when the list started (late more
//! often than not), each case's times from into theatre to out, the cases
//! cancelled on the day (a list that ran out of time among them), and when
//! the last case left theatre, past the planned end where the list
//! overran.

use chrono::{Duration, NaiveDateTime};
use rand::Rng;

use super::sheet::{Encoding, Sheet};
use super::{dmy, impossible_day, ExtractFile, FaultKind};
use crate::rng::pick;

/// A case on a list, in list order, as the list runs it.
pub(super) struct Booked {
    /// The minutes the booking expects.
    pub expected: u32,
    /// GA, RA, LA or SED: how the case is anaesthetised.
    pub anaesthetic: &'static str,
}

/// What became of a case booked on a list that ran.
pub(super) enum Outcome {
    Done(CaseTimes),
    /// Cancelled on the day, with the reason.
    Cancelled(&'static str),
}

/// One case's times in theatre.
pub(super) struct CaseTimes {
    pub into_theatre: NaiveDateTime,
    pub knife_to_skin: NaiveDateTime,
    pub closure: NaiveDateTime,
    pub out_of_theatre: NaiveDateTime,
    pub anaesthetic: &'static str,
}

impl CaseTimes {
    fn theatre_minutes(&self) -> i64 {
        (self.out_of_theatre - self.into_theatre).num_minutes()
    }

    fn knife_to_close_minutes(&self) -> i64 {
        (self.closure - self.knife_to_skin).num_minutes()
    }
}

/// A list's day: when its first case went in and its last came out (none
/// where no case ran), and what became of each case booked.
pub(super) struct ListDay {
    pub started: Option<NaiveDateTime>,
    pub ended: Option<NaiveDateTime>,
    pub outcomes: Vec<Outcome>,
}

/// How far past its planned end a list may be expected to run before the
/// case that would take it further is cancelled.
const OVERRUN_ALLOWED_MINUTES: i64 = 30;

/// Why a patient is cancelled on the day, other than the list running out
/// of time.
const ON_THE_DAY: &[&str] = &[
    "Patient did not attend",
    "Patient unfit for surgery",
    NO_ASSESSMENT,
    "Patient not starved",
];

/// The reason a case is cancelled on the day for want of a valid
/// pre-operative assessment.
pub(super) const NO_ASSESSMENT: &str = "No pre-operative assessment";

/// The reason a case is cancelled because the cases before it overran.
pub(super) const LIST_OVERRAN: &str = "Previous case overran";

/// Run a list planned from `start` to `end` with `cases` booked on it.
pub(super) fn run_list(
    rng: &mut impl Rng,
    start: NaiveDateTime,
    end: NaiveDateTime,
    cases: &[Booked],
) -> ListDay {
    // Late starts are the commonest loss of list time: the first patient not
    // yet checked, consented or marked.
    let late = if rng.random_bool(0.45) {
        rng.random_range(10..=50)
    } else {
        rng.random_range(-5..=5)
    };
    let first_in = start + Duration::minutes(late);
    let mut clock = first_in;
    let mut ran = false;
    let mut out_of_time = false;
    let mut outcomes = Vec::with_capacity(cases.len());
    for c in cases {
        if out_of_time {
            outcomes.push(Outcome::Cancelled(LIST_OVERRAN));
            continue;
        }
        if rng.random_bool(0.04) {
            let reason = *pick(rng, ON_THE_DAY);
            outcomes.push(Outcome::Cancelled(reason));
            continue;
        }
        let into = if ran {
            clock + Duration::minutes(rng.random_range(5..=20))
        } else {
            clock
        };
        let expected_out = into + Duration::minutes(i64::from(c.expected));
        if expected_out > end + Duration::minutes(OVERRUN_ALLOWED_MINUTES) {
            out_of_time = true;
            outcomes.push(Outcome::Cancelled(LIST_OVERRAN));
            continue;
        }
        // Cases run shorter or (more often, and further) longer than booked.
        let factor: f64 = rng.random_range(0.75..1.35);
        let minutes = ((f64::from(c.expected) * factor).round() as i64).max(10);
        let times = case_times(rng, into, minutes, c.anaesthetic);
        clock = times.out_of_theatre;
        ran = true;
        outcomes.push(Outcome::Done(times));
    }
    ListDay {
        started: ran.then_some(first_in),
        ended: ran.then_some(clock),
        outcomes,
    }
}

/// Emergency operations, with their usual minutes in theatre.
const EMERGENCY: &[(&str, u32)] = &[
    ("Emergency laparotomy", 150),
    ("Laparoscopic appendicectomy", 60),
    ("Incision and drainage of abscess", 30),
    ("Manipulation under anaesthesia of fracture", 30),
    ("Evacuation of retained products of conception", 30),
    ("Washout and debridement of wound", 60),
];

/// The cases of a day in the emergency (NCEPOD) theatre, open from
/// `start` to `end`: they come as they come, with idle time between, and
/// the last may run on past the end.
pub(super) fn emergency_day(
    rng: &mut impl Rng,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> Vec<(&'static str, CaseTimes)> {
    let mut clock = start;
    let mut cases = Vec::new();
    loop {
        clock += Duration::minutes(rng.random_range(15..=120));
        if clock + Duration::minutes(45) > end {
            return cases;
        }
        let &(name, expected) = pick(rng, EMERGENCY);
        let factor: f64 = rng.random_range(0.8..1.5);
        let minutes = (f64::from(expected) * factor).round() as i64;
        let times = case_times(rng, clock, minutes, "GA");
        clock = times.out_of_theatre;
        cases.push((name, times));
    }
}

/// A case into theatre at `into` for `minutes`: anaesthesia before the
/// knife, transfer out after closure.
fn case_times(
    rng: &mut impl Rng,
    into: NaiveDateTime,
    minutes: i64,
    anaesthetic: &'static str,
) -> CaseTimes {
    let mut before = match anaesthetic {
        "GA" | "RA" => rng.random_range(12..=25),
        _ => rng.random_range(3..=8),
    };
    let mut after = rng.random_range(5..=12);
    if before + after >= minutes {
        before = minutes / 4;
        after = minutes / 6;
    }
    let out = into + Duration::minutes(minutes);
    CaseTimes {
        into_theatre: into,
        knife_to_skin: into + Duration::minutes(before),
        closure: out - Duration::minutes(after),
        out_of_theatre: out,
        anaesthetic,
    }
}

/// The case-times report: one line per case operated on.
pub(super) struct CaseTimesReport {
    sheet: Sheet,
    next_case: u32,
    last: Vec<String>,
}

/// One case as the report's line gives it, before its times.
#[derive(Clone, Copy)]
pub(super) struct CaseLine<'a> {
    pub session_id: &'a str,
    /// None for an emergency case, which has no booking.
    pub booking_ref: Option<&'a str>,
    pub theatre_code: &'a str,
    pub nhs_number: &'a str,
    pub procedure: &'a str,
    pub consultant_code: &'a str,
    pub anaesthetist_code: &'a str,
    pub urgency: &'static str,
}

/// `dd/mm/yyyy HH:MM`, as the theatre system writes its times.
pub(super) fn at(t: NaiveDateTime) -> String {
    t.format("%d/%m/%Y %H:%M").to_string()
}

impl CaseTimesReport {
    pub(super) fn new(rng: &mut impl Rng) -> CaseTimesReport {
        let mut sheet = Sheet::new(',', false, Encoding::Utf8);
        sheet.header(&[
            "Case ID",
            "Session ID",
            "Booking Ref",
            "Theatre Code",
            "Case Date",
            "NHS Number",
            "Procedure",
            "Urgency",
            "Anaesthetic",
            "Into Theatre",
            "Knife To Skin",
            "Closure",
            "Out Of Theatre",
            "Theatre Mins",
            "Knife To Close Mins",
            "Consultant Code",
            "Anaesthetist Code",
        ]);
        CaseTimesReport {
            sheet,
            next_case: rng.random_range(200_000..700_000),
            last: Vec::new(),
        }
    }

    /// Record `line` with `times`; the case's id.
    pub(super) fn record(&mut self, line: &CaseLine, times: &CaseTimes) -> String {
        self.next_case += 1;
        let id = format!("TC{}", self.next_case);
        let fields = vec![
            id.clone(),
            line.session_id.to_string(),
            line.booking_ref.unwrap_or_default().to_string(),
            line.theatre_code.to_string(),
            dmy(times.into_theatre.date()),
            line.nhs_number.to_string(),
            line.procedure.to_string(),
            line.urgency.to_string(),
            times.anaesthetic.to_string(),
            at(times.into_theatre),
            at(times.knife_to_skin),
            at(times.closure),
            at(times.out_of_theatre),
            times.theatre_minutes().to_string(),
            times.knife_to_close_minutes().to_string(),
            line.consultant_code.to_string(),
            line.anaesthetist_code.to_string(),
        ];
        self.sheet.record(&fields);
        self.last = fields;
        id
    }

    /// The report with its faulty lines, as `name`.
    pub(super) fn finish(mut self, rng: &mut impl Rng, name: String) -> ExtractFile {
        if !self.last.is_empty() {
            let mut f = self.last.clone();
            self.next_case += 1;
            f[0] = format!("TC{}", self.next_case);
            f[6] = "Excision of skin lesion, left forearm".into();
            let line = self.sheet.join_unquoted(&f);
            self.sheet.fault(
                rng,
                line,
                FaultKind::FieldCount,
                "a comma inside Procedure, unquoted",
            );
            let mut f = self.last.clone();
            self.next_case += 1;
            f[0] = format!("TC{}", self.next_case);
            let (d, m, y) = impossible_day(
                chrono::NaiveDate::parse_from_str(&f[4], "%d/%m/%Y").unwrap_or_default(),
            );
            f[4] = format!("{d:02}/{m:02}/{y}");
            let line = self.sheet.join(&f);
            self.sheet.fault(
                rng,
                line,
                FaultKind::ImpossibleDate,
                format!("Case Date {}", f[4]),
            );
            let mut f = self.last.clone();
            self.next_case += 1;
            f[0] = format!("TC{}", self.next_case);
            f[8] = "GA/RA".into();
            let line = self.sheet.join(&f);
            self.sheet
                .fault(rng, line, FaultKind::UnknownCode, "Anaesthetic GA/RA");
        }
        self.sheet.finish(name)
    }
}
