//! The theatre management system's session plan and case bookings, the
//! case times of the lists that have run, the pre-operative assessment of
//! each patient booked, and the consultants' leave that releases sessions.
//!
//! The plan starts [`HISTORY_DAYS`] before the extract day: those lists have
//! happened, so they carry their actual start and end, their cases' times
//! (`theatre_day`) and the cancellations made on the day.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use rand::Rng;

use super::pre_op::{PreOpReport, Readiness};
use super::sheet::{Encoding, Sheet};
use super::theatre_day::{self, Booked, CaseLine, CaseTimesReport, Outcome};
use super::{dmy, impossible_day, stamp, ExtractFile, ExtractSpec, FaultKind};
use crate::people::{
    random_name, Cohort, MrnAllocator, NhsNumberAllocator, NhsNumberRange, Person, Sex,
};
use crate::rng::{pick, SynthRng};
use crate::trust::{Consultant, Trust};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A morning and an afternoon list.
    Halves,
    /// One list all day (joint replacements).
    AllDay,
    /// The emergency (NCEPOD) theatre, open 08:00 to 20:00.
    Emergency,
}

/// Code, name, the specialty (treatment function) on each weekday, session
/// type, layout.
type TheatrePlan = (
    &'static str,
    &'static str,
    [&'static str; 5],
    &'static str,
    Layout,
);

const MAIN_THEATRES: &[TheatrePlan] = &[
    (
        "MT1",
        "Main Theatre 1",
        ["100", "100", "101", "100", "101"],
        "EL",
        Layout::Halves,
    ),
    (
        "MT2",
        "Main Theatre 2",
        ["101", "502", "100", "502", "100"],
        "EL",
        Layout::Halves,
    ),
    (
        "MT3",
        "Main Theatre 3",
        ["110", "110", "110", "110", "110"],
        "TR",
        Layout::Halves,
    ),
    (
        "MT4",
        "Main Theatre 4",
        ["502", "100", "110", "101", "502"],
        "EL",
        Layout::Halves,
    ),
    (
        "MT5",
        "Main Theatre 5",
        ["100", "110", "100", "110", "101"],
        "EL",
        Layout::Halves,
    ),
    (
        "EMG",
        "Emergency Theatre (NCEPOD)",
        ["100", "100", "100", "100", "100"],
        "EM",
        Layout::Emergency,
    ),
];

const ELECTIVE_THEATRES: &[TheatrePlan] = &[
    (
        "EO1",
        "Elective Orthopaedic Theatre 1",
        ["110", "110", "110", "110", "110"],
        "EL",
        Layout::AllDay,
    ),
    (
        "EO2",
        "Elective Orthopaedic Theatre 2",
        ["110", "110", "110", "110", "110"],
        "EL",
        Layout::Halves,
    ),
    (
        "DS1",
        "Day Surgery Theatre 1",
        ["100", "101", "502", "100", "101"],
        "DC",
        Layout::Halves,
    ),
    (
        "DS2",
        "Day Surgery Theatre 2",
        ["502", "100", "101", "502", "100"],
        "DC",
        Layout::Halves,
    ),
];

/// The minutes a list is booked to leave between cases.
const CHANGEOVER_ALLOWED: u32 = 15;

/// Days before the extract day whose lists have run.
pub const HISTORY_DAYS: i64 = 28;

/// A theatre of the trust.
pub(crate) struct Theatre {
    pub site: usize,
    pub code: &'static str,
    pub name: &'static str,
    weekdays: [&'static str; 5],
    session_type: &'static str,
    layout: Layout,
}

/// Main theatres on the main site; elective orthopaedic and day-surgery
/// theatres on the second site when there is one.
pub(crate) fn theatres(trust: &Trust) -> Vec<Theatre> {
    let elective_site = if trust.sites.len() > 1 { 1 } else { 0 };
    MAIN_THEATRES
        .iter()
        .map(|t| (0, t))
        .chain(ELECTIVE_THEATRES.iter().map(|t| (elective_site, t)))
        .map(
            |(site, &(code, name, weekdays, session_type, layout))| Theatre {
                site,
                code,
                name,
                weekdays,
                session_type,
                layout,
            },
        )
        .collect()
}

fn specialty_name(tfc: &str) -> &'static str {
    match tfc {
        "100" => "General Surgery",
        "101" => "Urology",
        "110" => "Trauma and Orthopaedics",
        "502" => "Gynaecology",
        _ => "Anaesthetics",
    }
}

/// Description, expected minutes, anaesthetist needed, post-operative bed
/// needed, critical care bed needed.
type Procedure = (&'static str, u32, bool, bool, bool);

fn procedures(tfc: &str) -> &'static [Procedure] {
    match tfc {
        "100" => &[
            ("Laparoscopic cholecystectomy", 90, true, true, false),
            ("Inguinal hernia repair", 60, true, false, false),
            ("Laparoscopic appendicectomy", 60, true, true, false),
            ("Excision of skin lesion", 30, false, false, false),
            ("Right hemicolectomy", 180, true, true, true),
            ("Haemorrhoidectomy", 45, true, false, false),
        ],
        "101" => &[
            ("Transurethral resection of prostate", 75, true, true, false),
            ("Flexible cystoscopy and biopsy", 30, false, false, false),
            ("Ureteroscopy and laser lithotripsy", 60, true, false, false),
            ("Circumcision", 40, true, false, false),
            (
                "Transurethral resection of bladder tumour",
                60,
                true,
                true,
                false,
            ),
        ],
        "110" => &[
            (
                "Primary total hip replacement – cemented",
                120,
                true,
                true,
                false,
            ),
            ("Primary total knee replacement", 120, true, true, false),
            ("Carpal tunnel release", 30, false, false, false),
            (
                "Arthroscopic subacromial decompression",
                75,
                true,
                false,
                false,
            ),
            (
                "Dynamic hip screw fixation of fractured neck of femur",
                90,
                true,
                true,
                true,
            ),
            ("Scarf osteotomy for hallux valgus", 75, true, false, false),
        ],
        _ => &[
            ("Hysteroscopy", 30, true, false, false),
            ("Total laparoscopic hysterectomy", 150, true, true, false),
            ("Laparoscopic ovarian cystectomy", 90, true, true, false),
            (
                "Large loop excision of transformation zone",
                30,
                false,
                false,
                false,
            ),
        ],
    }
}

const LEAVE_TYPES: &[(&str, &str)] = &[
    ("AL", "annual leave"),
    ("SL", "study leave"),
    ("PL", "professional leave"),
];

const STUDY: &[&str] = &[
    "Advanced laparoscopic skills course",
    "ATLS instructor",
    "Regional audit meeting",
];

const PROFESSIONAL: &[&str] = &["External examiner", "Royal College council", "GIRFT visit"];

struct Leave<'a> {
    id: String,
    who: &'a Consultant,
    kind: usize,
    from: NaiveDate,
    to: NaiveDate,
    status: &'static str,
    notes: &'static str,
}

impl Leave<'_> {
    fn covers(&self, code: &str, d: NaiveDate) -> bool {
        self.status == "Approved" && self.who.code == code && self.from <= d && d <= self.to
    }
}

fn add_weekdays(mut d: NaiveDate, n: u32) -> NaiveDate {
    let mut left = n;
    while left > 0 {
        d += Duration::days(1);
        if d.weekday().num_days_from_monday() < 5 {
            left -= 1;
        }
    }
    d
}

fn next_weekday(mut d: NaiveDate) -> NaiveDate {
    while d.weekday().num_days_from_monday() >= 5 {
        d += Duration::days(1);
    }
    d
}

fn weekdays_between(from: NaiveDate, to: NaiveDate) -> i64 {
    from.iter_days()
        .take_while(|d| *d <= to)
        .filter(|d| d.weekday().num_days_from_monday() < 5)
        .count() as i64
}

fn consultant_name(c: &Consultant) -> String {
    format!("{} {} {}", c.title, c.given_name, c.family_name)
}

/// Where the rotation for a list starts: the theatre's job plan.
fn rotation(theatre: usize, weekday: u32, half: usize, n: usize) -> usize {
    (theatre * 3 + weekday as usize + half) % n
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Half {
    Am,
    Pm,
    All,
}

impl Half {
    fn code(self) -> &'static str {
        match self {
            Half::Am => "AM",
            Half::Pm => "PM",
            Half::All => "ALL",
        }
    }

    /// Start, end and planned minutes.
    fn times(self, layout: Layout) -> (&'static str, &'static str, u32) {
        match (self, layout) {
            (_, Layout::Emergency) => ("08:00", "20:00", 720),
            (Half::Am, _) => ("08:30", "12:30", 240),
            (Half::Pm, _) => ("13:30", "17:30", 240),
            // An hour for lunch is not list time.
            (Half::All, _) => ("08:30", "17:30", 480),
        }
    }

    fn covers(self) -> &'static [usize] {
        match self {
            Half::Am => &[0],
            Half::Pm => &[1],
            Half::All => &[0, 1],
        }
    }
}

/// Sessions, bookings and consultant leave: three files.
pub(crate) fn generate(trust: &Trust, spec: &ExtractSpec, rng: &mut SynthRng) -> Vec<ExtractFile> {
    // The trust's consultants are those its wards need; theatres need an
    // anaesthetics department as well, which the critical-care consultants
    // join.
    let mut codes: BTreeSet<String> = trust.consultants.iter().map(|c| c.code.clone()).collect();
    let department: Vec<Consultant> = (0..24)
        .map(|_| {
            let sex = if rng.random_bool(0.45) {
                Sex::Female
            } else {
                Sex::Male
            };
            let name = random_name(rng, sex, 45);
            let code = loop {
                let c = format!("C{}", rng.random_range(2_000_000..7_999_999));
                if codes.insert(c.clone()) {
                    break c;
                }
            };
            Consultant {
                code,
                title: "Dr".into(),
                given_name: name.given.into(),
                family_name: name.family.into(),
                treatment_function_code: "190".into(),
            }
        })
        .collect();
    let consultants: Vec<&Consultant> = trust.consultants.iter().chain(&department).collect();
    let mut by_tfc: BTreeMap<&str, Vec<&Consultant>> = BTreeMap::new();
    for &c in &consultants {
        by_tfc
            .entry(c.treatment_function_code.as_str())
            .or_default()
            .push(c);
    }
    let anaesthetists: Vec<&Consultant> = ["192", "190"]
        .iter()
        .flat_map(|t| by_tfc.get(t).into_iter().flatten().copied())
        .collect();
    let theatres = theatres(trust);
    let end = spec.start + Duration::days(i64::from(spec.days) - 1);

    // Leave first: it decides which sessions are released.
    let mut leave_id: u32 = rng.random_range(100_000..800_000);
    let mut leaves: Vec<Leave> = Vec::new();
    for &c in &consultants {
        let n = *pick(rng, &[0, 1, 1, 2]);
        let mut taken: Vec<(NaiveDate, NaiveDate)> = Vec::new();
        for _ in 0..n {
            let from = next_weekday(
                spec.start + Duration::days(rng.random_range(-14..i64::from(spec.days) + 42)),
            );
            let to = add_weekdays(from, rng.random_range(0..5));
            if taken.iter().any(|&(a, b)| from <= b && a <= to) {
                continue;
            }
            taken.push((from, to));
            let kind = *pick(rng, &[0, 0, 0, 0, 0, 0, 0, 1, 1, 2]);
            let status = match rng.random_range(0..20) {
                0 => "Declined",
                1 => "Cancelled",
                2 | 3 if from > spec.start => "Requested",
                _ => "Approved",
            };
            leave_id += rng.random_range(1..40);
            leaves.push(Leave {
                id: format!("LR{leave_id}"),
                who: c,
                kind,
                from,
                to,
                status,
                notes: match kind {
                    1 => STUDY[rng.random_range(0..STUDY.len())],
                    2 => PROFESSIONAL[rng.random_range(0..PROFESSIONAL.len())],
                    _ => "",
                },
            });
        }
    }
    // One approved week of annual leave for the consultant whose list comes
    // first on a weekday after the start, so that a released session always
    // exists.
    let anchor_day = spec
        .start
        .succ_opt()
        .expect("a date")
        .iter_days()
        .take_while(|d| *d <= end)
        .find(|d| d.weekday() == Weekday::Mon)
        .or_else(|| {
            spec.start
                .iter_days()
                .take_while(|d| *d <= end)
                .find(|d| d.weekday().num_days_from_monday() < 5)
        });
    if let Some(day) = anchor_day {
        let wd = day.weekday().num_days_from_monday();
        let tfc = theatres[0].weekdays[wd as usize];
        if let Some(list) = by_tfc.get(tfc) {
            let who = list[rotation(0, wd, 0, list.len())];
            let to = add_weekdays(day, 4 - wd.min(4));
            leaves.retain(|l| !(l.who.code == who.code && l.from <= to && day <= l.to));
            leave_id += 7;
            leaves.push(Leave {
                id: format!("LR{leave_id}"),
                who,
                kind: 0,
                from: day,
                to,
                status: "Approved",
                notes: "",
            });
        }
    }
    leaves.sort_by(|a, b| a.id.cmp(&b.id));
    let on_leave = |code: &str, d: NaiveDate| leaves.iter().find(|l| l.covers(code, d));

    let mut sessions = Sheet::new(',', false, Encoding::Utf8);
    sessions.header(&[
        "Session ID",
        "Site Code",
        "Site Name",
        "Theatre Code",
        "Theatre Name",
        "Session Date",
        "Day",
        "AM/PM",
        "Planned Start",
        "Planned End",
        "Planned Mins",
        "Specialty Code",
        "Specialty",
        "Session Type",
        "Consultant Code",
        "Consultant Name",
        "Anaesthetist Code",
        "Anaesthetist Name",
        "Anaes Req",
        "Consultant On Leave",
        "Status",
        "Booked Mins",
        "Unbooked Mins",
        "Comments",
        "Actual Start",
        "Actual End",
    ]);
    let mut bookings = Sheet::new(',', true, Encoding::Windows1252);
    bookings.header(&[
        "Booking Ref",
        "Session ID",
        "Session Date",
        "Pathway ID",
        "NHS Number",
        "Hospital Number",
        "Patient Name",
        "Procedure",
        "Priority",
        "Expected Duration (mins)",
        "List Order",
        "Anaesthetist Required",
        "Post-Op Bed",
        "Critical Care Bed",
        "Booked On",
        "Booking Status",
        "Cancellation Reason",
        "Cancellation Date",
        "Consultant Code",
        "Consultant Name",
        "Case ID",
    ]);
    let mut cases = CaseTimesReport::new(rng);
    let mut pre_op = PreOpReport::new(rng);

    let mut session_id: u32 = rng.random_range(4_100_000..4_800_000);
    let mut booking_ref: u32 = rng.random_range(1_000_000..6_000_000);
    let mut pathway: u64 = rng.random_range(100_000_000..500_000_000);
    let mut nhs = NhsNumberAllocator::new(rng, NhsNumberRange::Reserved999);
    let mut mrns = MrnAllocator::new(rng, &trust.mrn_prefix);
    let mut last_session: Vec<String> = Vec::new();
    let mut last_booking: Vec<String> = Vec::new();

    let first = spec.start - Duration::days(HISTORY_DAYS);
    for day in first.iter_days().take_while(|d| *d <= end) {
        let wd = day.weekday().num_days_from_monday();
        if wd >= 5 {
            continue;
        }
        // Who is already on a list in the morning (0) and afternoon (1).
        let mut busy: [BTreeSet<&str>; 2] = [BTreeSet::new(), BTreeSet::new()];
        for (ti, t) in theatres.iter().enumerate() {
            let halves: &[Half] = match t.layout {
                Layout::Halves => &[Half::Am, Half::Pm],
                Layout::AllDay | Layout::Emergency => &[Half::All],
            };
            for (hi, &half) in halves.iter().enumerate() {
                let tfc = t.weekdays[wd as usize];
                let Some(surgeons) = by_tfc.get(tfc) else {
                    continue;
                };
                let free = |c: &&Consultant, busy: &[BTreeSet<&str>; 2]| {
                    half.covers()
                        .iter()
                        .all(|&h| !busy[h].contains(c.code.as_str()))
                };
                let start_at = rotation(ti, wd, hi, surgeons.len());
                let consultant = (0..surgeons.len())
                    .map(|k| surgeons[(start_at + k) % surgeons.len()])
                    .find(|c| {
                        free(c, &busy)
                            && (t.layout != Layout::Emergency || on_leave(&c.code, day).is_none())
                    });
                let Some(consultant) = consultant else {
                    continue;
                };
                let anaesthetist = if anaesthetists.is_empty() {
                    None
                } else {
                    let a0 = (ti + wd as usize * 2 + hi) % anaesthetists.len();
                    (0..anaesthetists.len())
                        .map(|k| anaesthetists[(a0 + k) % anaesthetists.len()])
                        .find(|a| free(a, &busy) && on_leave(&a.code, day).is_none())
                };
                for &h in half.covers() {
                    busy[h].insert(consultant.code.as_str());
                    if let Some(a) = anaesthetist {
                        busy[h].insert(a.code.as_str());
                    }
                }
                let (from, to, planned) = half.times(t.layout);
                let mut comments: Vec<String> = Vec::new();
                let leave = on_leave(&consultant.code, day);
                let status = if let Some(l) = leave {
                    comments.push(format!("Consultant on {}", LEAVE_TYPES[l.kind].1));
                    comments.push("list released".into());
                    "REL"
                } else if t.layout != Layout::Emergency && rng.random_bool(0.03) {
                    comments.push(
                        (*pick(
                            rng,
                            &[
                                "Theatre ventilation maintenance",
                                "No anaesthetist available",
                                "Scrub staff shortage",
                            ],
                        ))
                        .to_string(),
                    );
                    "CANC"
                } else if day < spec.start {
                    "COMP"
                } else if day < spec.start + Duration::days(7) {
                    "CONF"
                } else {
                    "PROV"
                };
                if anaesthetist.is_none() {
                    comments.push("Anaesthetist to be confirmed".into());
                }
                session_id += 1;
                let sid = session_id.to_string();

                // The bookings, in list order, and (for a list that has run)
                // what became of each.
                let mut drafts: Vec<(Vec<String>, Option<Booked>)> = Vec::new();
                let has_run = status == "COMP";
                let (planned_from, planned_to) = (at_time(day, from), at_time(day, to));
                if matches!(status, "CONF" | "PROV" | "COMP") && t.layout != Layout::Emergency {
                    // Lists are built to the 6-4-2 timetable: nearly full
                    // inside two weeks, half built by four, a few cases
                    // further out.
                    let out = (day - spec.start).num_days();
                    let fill = if out < 14 {
                        0.75..1.0
                    } else if out < 28 {
                        0.45..0.8
                    } else {
                        0.1..0.45
                    };
                    let target = (f64::from(planned) * rng.random_range(fill)) as u32;
                    let mut order = 0;
                    let mut planned_minutes = 0;
                    let list = procedures(tfc);
                    while planned_minutes < target {
                        let p = *pick(rng, list);
                        // A list is booked with room for the changeovers
                        // between its cases.
                        if planned_minutes + p.1 + CHANGEOVER_ALLOWED * order > planned {
                            break;
                        }
                        let cancelled = rng.random_bool(0.06);
                        if !cancelled {
                            planned_minutes += p.1;
                            order += 1;
                        }
                        let cohort = match tfc {
                            "502" => Cohort::Gynaecology,
                            "110" if rng.random_bool(0.4) => Cohort::Elderly,
                            _ => Cohort::AdultAcute,
                        };
                        let person = Person::generate(
                            rng,
                            &trust.catchment,
                            cohort,
                            spec.start,
                            nhs.allocate(),
                        );
                        booking_ref += 1;
                        pathway += rng.random_range(1..500);
                        let booked_on = day - Duration::days(rng.random_range(3..60));
                        let status_text = if cancelled {
                            "Cancelled"
                        } else if has_run {
                            "Completed"
                        } else if day < spec.start + Duration::days(7) && rng.random_bool(0.7) {
                            "Confirmed"
                        } else {
                            "Booked"
                        };
                        let (reason, cancel_date) = if cancelled {
                            (
                                (*pick(
                                    rng,
                                    &[
                                        "Patient unwell",
                                        "Patient cancelled",
                                        "No post-operative bed",
                                        "Previous case overran",
                                    ],
                                ))
                                .to_string(),
                                dmy(booked_on + Duration::days(1)),
                            )
                        } else {
                            (String::new(), String::new())
                        };
                        let priority = *pick(rng, &["P2", "P2", "P3", "P3", "P3", "P4", "P4"]);
                        let n = &person.nhs_number;
                        let fields = vec![
                            format!("TB{booking_ref}"),
                            sid.clone(),
                            dmy(day),
                            format!("{}{pathway:09}", trust.ods_code),
                            format!("{} {} {}", &n[..3], &n[3..6], &n[6..]),
                            mrns.allocate(rng),
                            format!(
                                "{}, {}",
                                person.family_name.to_uppercase(),
                                person.given_name
                            ),
                            p.0.to_string(),
                            priority.to_string(),
                            p.1.to_string(),
                            if cancelled {
                                String::new()
                            } else {
                                order.to_string()
                            },
                            yn(p.2),
                            yn(p.3),
                            if p.4 { "Required" } else { "Not required" }.to_string(),
                            format!(
                                "{} {:02}:{:02}",
                                dmy(booked_on),
                                rng.random_range(8..18),
                                rng.random_range(0..60)
                            ),
                            status_text.to_string(),
                            reason,
                            cancel_date,
                            consultant.code.clone(),
                            consultant_name(consultant),
                            String::new(),
                        ];
                        let case = (!cancelled).then(|| Booked {
                            expected: p.1,
                            anaesthetic: anaesthetic_for(rng, tfc, p.2),
                        });
                        drafts.push((fields, case));
                    }
                }
                let mut list_day = None;
                if has_run {
                    let base = CaseLine {
                        session_id: &sid,
                        booking_ref: None,
                        theatre_code: t.code,
                        nhs_number: "",
                        procedure: "",
                        consultant_code: &consultant.code,
                        anaesthetist_code: anaesthetist.map(|a| a.code.as_str()).unwrap_or(""),
                        urgency: "Elective",
                    };
                    if t.layout == Layout::Emergency {
                        let day_cases = theatre_day::emergency_day(rng, planned_from, planned_to);
                        for (procedure, times) in &day_cases {
                            let n = nhs.allocate();
                            let nhs_number = format!("{} {} {}", &n[..3], &n[3..6], &n[6..]);
                            let line = CaseLine {
                                nhs_number: &nhs_number,
                                procedure,
                                urgency: "Emergency",
                                ..base
                            };
                            cases.record(&line, times);
                        }
                        list_day = day_cases
                            .first()
                            .zip(day_cases.last())
                            .map(|(a, b)| (a.1.into_theatre, b.1.out_of_theatre));
                    } else {
                        let booked_cases: Vec<Booked> = drafts
                            .iter_mut()
                            .filter_map(|(_, case)| case.take())
                            .collect();
                        let ran =
                            theatre_day::run_list(rng, planned_from, planned_to, &booked_cases);
                        let mut outcomes = ran.outcomes.into_iter();
                        for (fields, _) in drafts.iter_mut().filter(|(f, _)| f[15] != "Cancelled") {
                            match outcomes.next() {
                                Some(Outcome::Done(times)) => {
                                    let line = CaseLine {
                                        booking_ref: Some(&fields[0]),
                                        nhs_number: &fields[4],
                                        procedure: &fields[7],
                                        ..base
                                    };
                                    let id = cases.record(&line, &times);
                                    fields[20] = id;
                                }
                                Some(Outcome::Cancelled(reason)) => {
                                    fields[15] = "Cancelled".into();
                                    fields[16] = reason.into();
                                    fields[17] = dmy(day);
                                }
                                None => {}
                            }
                        }
                        list_day = ran.started.zip(ran.ended);
                    }
                }
                // Booked minutes are what is still booked: a case cancelled,
                // on the day or before, no longer counts.
                let mut booked = 0;
                let days_out = (day - spec.start).num_days();
                for (fields, _) in &drafts {
                    if fields[15] != "Cancelled" {
                        booked += fields[9].parse::<u32>().unwrap_or(0);
                    }
                    bookings.record(fields);
                    // Patients still booked, or cancelled only on the day,
                    // were sent for their pre-operative assessment.
                    if fields[15] != "Cancelled" || fields[17] == fields[2] {
                        let readiness = if fields[16] == theatre_day::NO_ASSESSMENT {
                            Readiness::None
                        } else {
                            Readiness::draw(rng, days_out)
                        };
                        pre_op.record(rng, &fields[0], &fields[4], day, spec.start, readiness);
                    }
                }
                if let Some((fields, _)) = drafts.pop() {
                    last_booking = fields;
                }
                let fields = vec![
                    sid,
                    trust.sites[t.site].code.clone(),
                    trust.sites[t.site].name.clone(),
                    t.code.to_string(),
                    t.name.to_string(),
                    dmy(day),
                    day.format("%A").to_string(),
                    half.code().to_string(),
                    from.to_string(),
                    to.to_string(),
                    planned.to_string(),
                    tfc.to_string(),
                    specialty_name(tfc).to_string(),
                    t.session_type.to_string(),
                    consultant.code.clone(),
                    consultant_name(consultant),
                    anaesthetist.map(|a| a.code.clone()).unwrap_or_default(),
                    anaesthetist.map(consultant_name).unwrap_or_default(),
                    "Y".into(),
                    yn(leave.is_some()),
                    status.to_string(),
                    booked.to_string(),
                    planned.saturating_sub(booked).to_string(),
                    comments.join("; "),
                    list_day
                        .map(|(a, _)| theatre_day::at(a))
                        .unwrap_or_default(),
                    list_day
                        .map(|(_, b)| theatre_day::at(b))
                        .unwrap_or_default(),
                ];
                sessions.record(&fields);
                last_session = fields;
            }
        }
    }

    // Faulty session lines: new sessions nothing is booked on.
    if !last_session.is_empty() {
        let mut f = last_session.clone();
        session_id += 1;
        f[0] = session_id.to_string();
        f[23] = "Overrun expected, extra case added".into();
        let line = sessions.join_unquoted(&f);
        sessions.fault(
            rng,
            line,
            FaultKind::FieldCount,
            "a comma inside Comments, unquoted",
        );
        let mut f = last_session.clone();
        session_id += 1;
        f[0] = session_id.to_string();
        let (d, m, y) = impossible_day(spec.start);
        f[5] = format!("{d:02}/{m:02}/{y}");
        let line = sessions.join(&f);
        sessions.fault(
            rng,
            line,
            FaultKind::ImpossibleDate,
            format!("Session Date {}", f[5]),
        );
        let mut f = last_session;
        session_id += 1;
        f[0] = session_id.to_string();
        f[20] = "HOLD".into();
        let line = sessions.join(&f);
        sessions.fault(rng, line, FaultKind::UnknownCode, "Status HOLD");
    }
    if !last_booking.is_empty() {
        let mut f = last_booking.clone();
        booking_ref += 1;
        f[0] = format!("TB{booking_ref}");
        let (d, m, y) = impossible_day(spec.start - Duration::days(60));
        f[14] = format!("{d:02}/{m:02}/{y} 10:12");
        let line = bookings.join(&f);
        bookings.fault(
            rng,
            line,
            FaultKind::ImpossibleDate,
            format!("Booked On {}", f[14]),
        );
        let mut f = last_booking.clone();
        booking_ref += 1;
        f[0] = format!("TB{booking_ref}");
        f[15] = "Provisional Hold".into();
        let line = bookings.join(&f);
        bookings.fault(
            rng,
            line,
            FaultKind::UnknownCode,
            "Booking Status Provisional Hold",
        );
        let mut f = last_booking;
        booking_ref += 1;
        f[0] = format!("TB{booking_ref}");
        f.truncate(11);
        let line = bookings.join(&f);
        bookings.truncated_tail(line, "the last line stops after List Order");
    }

    let mut leave = Sheet::new('\t', false, Encoding::Utf8);
    leave.header(&[
        "Request ID",
        "Staff ID",
        "Name",
        "Grade",
        "Leave Type",
        "Start",
        "End",
        "Hours",
        "Status",
        "Notes",
    ]);
    let leave_fields = |l: &Leave, id: &str| -> Vec<String> {
        vec![
            id.to_string(),
            l.who.code.clone(),
            consultant_name(l.who),
            "Consultant".into(),
            LEAVE_TYPES[l.kind].0.into(),
            format!("{} 08:00", l.from.format("%d-%b-%Y")),
            format!("{} 18:00", l.to.format("%d-%b-%Y")),
            (weekdays_between(l.from, l.to) * 8).to_string(),
            l.status.into(),
            l.notes.into(),
        ]
    };
    for l in &leaves {
        leave.record(&leave_fields(l, &l.id));
    }
    if let Some(l) = leaves.first() {
        let mut f = leave_fields(l, &format!("LR{}", leave_id + 1));
        f[9] = "Conference\tEdinburgh".into();
        let line = leave.join_unquoted(&f);
        leave.fault(rng, line, FaultKind::FieldCount, "a tab inside Notes");
        let mut f = leave_fields(l, &format!("LR{}", leave_id + 2));
        let (d, m, y) = impossible_day(spec.start + Duration::days(45));
        let month = NaiveDate::from_ymd_opt(y, m, 1)
            .expect("a month")
            .format("%b");
        f[5] = format!("{d:02}-{month}-{y} 08:00");
        let line = leave.join(&f);
        leave.fault(
            rng,
            line,
            FaultKind::ImpossibleDate,
            format!("Start {}", f[5]),
        );
        let mut f = leave_fields(l, &format!("LR{}", leave_id + 3));
        f[4] = "al".into();
        let line = leave.join(&f);
        leave.fault(
            rng,
            line,
            FaultKind::UnknownCode,
            "Leave Type al (typed in lower case)",
        );
    }

    let s = stamp(spec.start);
    vec![
        sessions.finish(format!("theatre_sessions_{s}.csv")),
        bookings.finish(format!("theatre_bookings_{s}.csv")),
        cases.finish(rng, format!("theatre_case_times_{s}.csv")),
        pre_op.finish(rng, spec.start, format!("pre_op_assessments_{s}.csv")),
        leave.finish(format!("medic_leave_{s}.txt")),
    ]
}

/// `time` (`HH:MM`) on `day`.
fn at_time(day: NaiveDate, time: &str) -> chrono::NaiveDateTime {
    let time = chrono::NaiveTime::parse_from_str(time, "%H:%M").expect("a list's planned time");
    day.and_time(time)
}

/// How a case is anaesthetised: locally where no anaesthetist is needed;
/// joints and prostates often under a spinal.
fn anaesthetic_for(rng: &mut SynthRng, tfc: &str, anaesthetist: bool) -> &'static str {
    if !anaesthetist {
        return "LA";
    }
    let regional = match tfc {
        "110" => 0.4,
        "101" => 0.3,
        _ => 0.05,
    };
    if rng.random_bool(regional) {
        "RA"
    } else {
        "GA"
    }
}

fn yn(b: bool) -> String {
    if b { "Y" } else { "N" }.to_string()
}
