//! A trust's elective waiting list with known truth: pathways from
//! referral through outpatients to a decision to admit, the clock stops
//! and restarts on the way, validation contacts, and planted validation
//! problems of every kind the waiting-list products look for.
//!
//! Two files, as a PAS writes them:
//!
//! | file | one line per | written as |
//! |---|---|---|
//! | `waiting_list_<date>.csv` | entry on the elective admission list | UTF-8, `dd/mm/yyyy` |
//! | `rtt_activity_<date>.csv` | activity on a pathway, with its RTT status code | UTF-8, `dd/mm/yyyy` |
//!
//! Every entry is either valid (no rule should flag it) or carries exactly
//! one planted [`Problem`]; [`ElectiveList::truth`] says which. A valid
//! entry is built to pass every rule: its clock codes are consistent, it
//! was validated at 12, 26 and 52 weeks and within the last 12 weeks, the
//! patient answered the last contact, its latest clinically appropriate
//! date (where it has one) is still ahead, the patient is alive, the
//! service is consultant-led, and a patient with two entries has two
//! different procedures.

use std::fmt::Write as _;

use chrono::{Duration, NaiveDate};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::SynthError;
use crate::people::{random_name, NhsNumberAllocator, NhsNumberRange, Sex};
use crate::rng::{pick, rng_for, stream, SynthRng};
use crate::trust::{Consultant, Trust};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElectiveSpec {
    /// The day the list is extracted.
    pub as_at: NaiveDate,
    /// Entries on the list (planted duplicates included).
    pub pathways: usize,
    /// The share of entries carrying each kind of planted problem.
    pub problem_share: f64,
}

impl Default for ElectiveSpec {
    fn default() -> Self {
        ElectiveSpec {
            as_at: NaiveDate::from_ymd_opt(2026, 11, 30).expect("a date"),
            pathways: 2_000,
            problem_share: 0.01,
        }
    }
}

/// A planted reason an entry should not be on the list as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    /// Treated (a clock stop coded 30, a procedure) after the decision to
    /// admit, and still listed.
    AlreadyTreated,
    /// A second entry for the same patient and procedure.
    Duplicate,
    /// The patient has died.
    Deceased,
    /// Not validated within the last 12 weeks, or not since its 12, 26 or
    /// 52-week point.
    NotValidated,
    /// Past its latest clinically appropriate date.
    PastLatestClinicallyAppropriateDate,
    /// Three attempts to contact the patient since the last answer, none
    /// answered.
    NoContact,
    /// A clock code that contradicts the pathway: a 20 after a stop where
    /// an 11 belongs (listed from active monitoring without restarting
    /// the clock), or a 30 on a discharge without treatment where a 34
    /// belongs.
    WrongClockStatus,
    /// On an RTT clock under a service that is not consultant-led.
    NotConsultantLed,
}

impl Problem {
    /// Every kind, in a fixed order.
    pub const ALL: [Problem; 8] = [
        Problem::AlreadyTreated,
        Problem::Duplicate,
        Problem::Deceased,
        Problem::NotValidated,
        Problem::PastLatestClinicallyAppropriateDate,
        Problem::NoContact,
        Problem::WrongClockStatus,
        Problem::NotConsultantLed,
    ];

    /// The name of the validation rule that should find it.
    pub fn rule(self) -> &'static str {
        match self {
            Problem::AlreadyTreated => "already-treated",
            Problem::Duplicate => "duplicate-pathway",
            Problem::Deceased => "deceased",
            Problem::NotValidated => "not-validated",
            Problem::PastLatestClinicallyAppropriateDate => {
                "past-latest-clinically-appropriate-date"
            }
            Problem::NoContact => "no-contact",
            Problem::WrongClockStatus => "wrong-clock-status",
            Problem::NotConsultantLed => "not-consultant-led",
        }
    }
}

/// One activity on a pathway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// The day it happened.
    pub date: NaiveDate,
    /// Order within the day.
    pub sequence: u32,
    /// `referral`, `outpatient attendance`, `decision to admit`,
    /// `procedure`, `active monitoring`, `validation`.
    pub kind: &'static str,
    /// The RTT status code it was recorded with.
    pub code: &'static str,
    /// What came of it (`contacted`, `no response`, `treated`, ...).
    pub outcome: &'static str,
}

/// One entry on the elective admission list, with its pathway.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The PAS's pathway id, which the entry shares.
    pub pathway_id: String,
    /// The patient's NHS number.
    pub nhs_number: String,
    /// `SURNAME, Given`.
    pub patient_name: String,
    /// The service's treatment function code.
    pub treatment_function_code: &'static str,
    /// The service's name.
    pub specialty: &'static str,
    /// The responsible clinician's code (`C` and the GMC number for a
    /// consultant).
    pub consultant_code: String,
    /// The responsible clinician's name.
    pub consultant_name: String,
    /// The planned procedure: OPCS-4 code and description.
    pub procedure: (&'static str, &'static str),
    /// Clinical priority, P1a to P6.
    pub priority: &'static str,
    /// The clock start the PAS reports.
    pub clock_start: NaiveDate,
    /// The decision to admit: the day the entry was listed.
    pub decided_to_admit: NaiveDate,
    /// The date to come in (TCI), if booked.
    pub planned: Option<NaiveDate>,
    /// The latest date the clinician thought treatment appropriate.
    pub latest_clinically_appropriate: Option<NaiveDate>,
    /// When the patient died, if they have.
    pub date_of_death: Option<NaiveDate>,
    /// The RTT status the PAS reports.
    pub rtt_status: &'static str,
    /// The pathway's activities, in order.
    pub activities: Vec<Activity>,
    /// The problem planted in it; `None` for a valid entry.
    pub problem: Option<Problem>,
    /// The patient's sex, as the PAS holds it.
    pub sex: Sex,
    /// The patient's date of birth.
    pub date_of_birth: NaiveDate,
    /// Where the patient stands with their pre-operative assessment.
    pub pre_op: PreOpAssessment,
}

/// A listed patient's latest pre-operative assessment, as the PAS shows it
/// beside the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreOpAssessment {
    /// None booked or held.
    None,
    /// Booked for the day, not yet attended.
    Booked(NaiveDate),
    /// Attended on the day; bloods or an ECG awaited.
    AwaitingResults(NaiveDate),
    /// Attended on the day and found unfit for now.
    Unfit(NaiveDate),
    /// Attended on the first day and found fit, valid to the second.
    Fit(NaiveDate, NaiveDate),
}

/// Days an assessment found fit stays valid.
pub const PRE_OP_VALID_DAYS: i64 = 84;

/// The generated list.
#[derive(Debug, Clone, PartialEq)]
pub struct ElectiveList {
    /// The day the list was extracted.
    pub as_at: NaiveDate,
    /// The entries, in the order the PAS exports them.
    pub entries: Vec<Entry>,
}

/// A planned procedure: OPCS-4 code and description.
type PlannedProcedure = (&'static str, &'static str);

/// Consultant-led surgical services the list is drawn from (treatment
/// function code, name), with their planned procedures.
const SERVICES: &[(&str, &str, &[PlannedProcedure])] = &[
    (
        "110",
        "Trauma and Orthopaedics",
        &[
            (
                "W401",
                "Total prosthetic replacement of knee joint using cement",
            ),
            (
                "W371",
                "Total prosthetic replacement of hip joint using cement",
            ),
            ("T521", "Palmar fasciectomy"),
            ("A651", "Carpal tunnel release"),
        ],
    ),
    (
        "100",
        "General Surgery",
        &[
            ("J183", "Total cholecystectomy"),
            (
                "T201",
                "Primary repair of inguinal hernia using insert of prosthetic material",
            ),
            ("H511", "Haemorrhoidectomy"),
        ],
    ),
    (
        "101",
        "Urology",
        &[
            ("M653", "Endoscopic resection of prostate"),
            ("M421", "Endoscopic resection of lesion of bladder"),
            ("N303", "Circumcision"),
        ],
    ),
    (
        "502",
        "Gynaecology",
        &[
            ("Q074", "Total abdominal hysterectomy"),
            ("Q181", "Diagnostic endoscopic examination of uterus"),
        ],
    ),
];

/// The minutes a planned procedure usually takes in theatre, from the
/// patient entering to leaving: what a list is booked by. None for what is
/// not done in theatre.
pub fn expected_theatre_minutes(opcs: &str) -> Option<u32> {
    Some(match opcs {
        "W401" => 120,
        "W371" => 110,
        "T521" => 75,
        "A651" => 30,
        "J183" => 90,
        "T201" => 60,
        "H511" => 40,
        "M653" => 75,
        "M421" => 45,
        "N303" => 35,
        "Q074" => 120,
        "Q181" => 25,
        "S702" => 20,
        _ => return None,
    })
}

/// Each patient's sex and date of birth (the same on all their entries),
/// and each entry's pre-operative assessment: about half assessed fit and
/// still valid, the rest booked for one, awaiting results, unfit, lapsed
/// or not yet sent. Drawn from a stream of their own, after the list, so
/// that the list itself is the same for the same seed as it always was.
fn readiness(entries: &mut [Entry], seed: u64, as_at: NaiveDate) {
    let mut rng = rng_for(seed, stream::ELECTIVE_READINESS);
    let mut people: std::collections::HashMap<String, (Sex, NaiveDate)> =
        std::collections::HashMap::new();
    for e in entries.iter_mut() {
        let (sex, born) = *people.entry(e.nhs_number.clone()).or_insert_with(|| {
            let sex = if e.treatment_function_code == "502" || rng.random_bool(0.5) {
                Sex::Female
            } else {
                Sex::Male
            };
            let age = rng.random_range(18..90);
            let born = as_at - Duration::days(age * 365 + rng.random_range(0..365));
            (sex, born)
        });
        e.sex = sex;
        e.date_of_birth = born;
        let x: f64 = rng.random();
        let ago = |rng: &mut SynthRng, lo: i64, hi: i64| {
            as_at - Duration::days(rng.random_range(lo..=hi))
        };
        e.pre_op = if x < 0.50 {
            let seen = ago(&mut rng, 0, 70);
            PreOpAssessment::Fit(seen, seen + Duration::days(PRE_OP_VALID_DAYS))
        } else if x < 0.55 {
            // Lapsed: seen too long ago.
            let seen = ago(&mut rng, 90, 200);
            PreOpAssessment::Fit(seen, seen + Duration::days(PRE_OP_VALID_DAYS))
        } else if x < 0.68 {
            PreOpAssessment::Booked(as_at + Duration::days(rng.random_range(1..=28)))
        } else if x < 0.73 {
            PreOpAssessment::AwaitingResults(ago(&mut rng, 1, 10))
        } else if x < 0.76 {
            PreOpAssessment::Unfit(ago(&mut rng, 1, 30))
        } else {
            PreOpAssessment::None
        };
    }
}

/// Services that are not consultant-led (allied health professions), for
/// the planted [`Problem::NotConsultantLed`].
const NOT_CONSULTANT_LED: &[(&str, &str, (&str, &str))] = &[
    ("650", "Physiotherapy", ("X999", "Physiotherapy programme")),
    ("653", "Podiatry", ("S702", "Avulsion of nail")),
];

/// The days in a 12-week validation cycle, and the grace after a
/// validation point before it is overdue.
const CYCLE: i64 = 84;
const GRACE: i64 = 14;

impl ElectiveList {
    /// Generate the list for `trust` from `seed`.
    pub fn generate(
        trust: &Trust,
        seed: u64,
        spec: &ElectiveSpec,
    ) -> Result<ElectiveList, SynthError> {
        if spec.pathways == 0 || spec.pathways > 5_000_000 {
            return Err(SynthError::InvalidExtractSpec(
                "pathways must be 1 to 5,000,000".into(),
            ));
        }
        if !(0.0..=0.1).contains(&spec.problem_share) {
            return Err(SynthError::InvalidExtractSpec(
                "problem_share must be 0 to 0.1 (of each of 8 kinds)".into(),
            ));
        }
        let mut rng = rng_for(seed, stream::ELECTIVE);
        // The reserved 999 range holds about 900,000 numbers: enough unless
        // the list is very long.
        let range = if spec.pathways > 700_000 {
            NhsNumberRange::Issued
        } else {
            NhsNumberRange::Reserved999
        };
        let mut numbers = NhsNumberAllocator::new(&mut rng, range);
        let consultants: Vec<Vec<&Consultant>> = SERVICES
            .iter()
            .map(|(tfc, _, _)| {
                trust
                    .consultants
                    .iter()
                    .filter(|c| c.treatment_function_code == *tfc)
                    .collect()
            })
            .collect();
        let mut g = Generator {
            rng: &mut rng,
            as_at: spec.as_at,
            ods: &trust.ods_code,
            consultants,
            next_pathway: 0,
        };
        let mut entries: Vec<Entry> = Vec::with_capacity(spec.pathways);
        while entries.len() < spec.pathways {
            let roll: f64 = g.rng.random();
            let kind = (roll / spec.problem_share.max(f64::MIN_POSITIVE)) as usize;
            let problem = Problem::ALL.get(kind).copied();
            let person = (numbers.allocate(), g.name());
            let mut entry = g.valid(&person, None);
            match problem {
                Some(Problem::Duplicate) if entries.len() + 2 <= spec.pathways => {
                    let copy = g.duplicate(&entry);
                    entries.push(entry);
                    entries.push(copy);
                    continue;
                }
                Some(Problem::Duplicate) | None => {}
                Some(p) => g.plant(&mut entry, p),
            }
            // A patient now and then has a second, different, procedure
            // waiting.
            let second = problem.is_none() && g.rng.random_bool(0.06);
            entries.push(entry);
            if second && entries.len() < spec.pathways {
                let first = &entries[entries.len() - 1];
                let other = g.valid(&person, Some(first.procedure.0));
                entries.push(other);
            }
        }
        readiness(&mut entries, seed, spec.as_at);
        Ok(ElectiveList {
            as_at: spec.as_at,
            entries,
        })
    }

    /// Each entry with a planted problem, and the problem.
    pub fn truth(&self) -> impl Iterator<Item = (&str, Problem)> + '_ {
        self.entries
            .iter()
            .filter_map(|e| e.problem.map(|p| (e.pathway_id.as_str(), p)))
    }

    /// The list as the PAS exports it.
    pub fn waiting_list_csv(&self) -> String {
        let mut out = String::with_capacity(self.entries.len() * 260);
        out.push_str("Pathway ID,NHS Number,Patient Name,Specialty,Treatment Function,Consultant Code,Consultant Name,Priority,Referral Received,RTT Clock Start,Decision To Admit,Planned Procedure,Procedure Description,Intended Management,TCI Date,RTT Status,Latest Clinically Appropriate Date,Deceased,Date Of Death,Expected Theatre Mins,Sex,Date Of Birth,POA Status,POA Date,POA Outcome,POA Valid Until\n");
        let d = |d: Option<NaiveDate>| {
            d.map(|d| d.format("%d/%m/%Y").to_string())
                .unwrap_or_default()
        };
        for e in &self.entries {
            let referral = e.activities.iter().find(|a| a.code == "10").map(|a| a.date);
            let _ = writeln!(
                out,
                "{},{},\"{}\",{},{},{},\"{}\",{},{},{},{},{},\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{}",
                e.pathway_id,
                e.nhs_number,
                e.patient_name,
                e.specialty,
                e.treatment_function_code,
                e.consultant_code,
                e.consultant_name,
                e.priority,
                d(referral),
                d(Some(e.clock_start)),
                d(Some(e.decided_to_admit)),
                e.procedure.0,
                e.procedure.1,
                // Inpatient (1) or day case (2).
                if e.procedure.0.starts_with('W') || e.procedure.0.starts_with('Q') {
                    1
                } else {
                    2
                },
                d(e.planned),
                e.rtt_status,
                d(e.latest_clinically_appropriate),
                if e.date_of_death.is_some() { "Y" } else { "N" },
                d(e.date_of_death),
                expected_theatre_minutes(e.procedure.0)
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                match e.sex {
                    Sex::Female => "F",
                    Sex::Male => "M",
                    Sex::Unknown => "U",
                },
                d(Some(e.date_of_birth)),
                match e.pre_op {
                    PreOpAssessment::None => "",
                    PreOpAssessment::Booked(_) => "Booked",
                    _ => "Attended",
                },
                match e.pre_op {
                    PreOpAssessment::None => String::new(),
                    PreOpAssessment::Booked(on)
                    | PreOpAssessment::AwaitingResults(on)
                    | PreOpAssessment::Unfit(on)
                    | PreOpAssessment::Fit(on, _) => format!("{} 09:00", on.format("%d/%m/%Y")),
                },
                match e.pre_op {
                    PreOpAssessment::Fit(..) => "Fit",
                    PreOpAssessment::Unfit(_) => "Unfit",
                    PreOpAssessment::AwaitingResults(_) => "Awaiting Results",
                    _ => "",
                },
                match e.pre_op {
                    PreOpAssessment::Fit(_, until) => d(Some(until)),
                    _ => String::new(),
                },
            );
        }
        out
    }

    /// Every activity on every listed pathway, as the PAS's RTT activity
    /// report exports them.
    pub fn rtt_activity_csv(&self) -> String {
        let mut out = String::with_capacity(self.entries.len() * 6 * 90);
        out.push_str("Activity ID,Pathway ID,NHS Number,Activity Date,Sequence,Activity,RTT Status,Outcome\n");
        for e in &self.entries {
            for (i, a) in e.activities.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{}-{},{},{},{},{},{},{},{}",
                    e.pathway_id,
                    i + 1,
                    e.pathway_id,
                    e.nhs_number,
                    a.date.format("%d/%m/%Y"),
                    a.sequence,
                    a.kind,
                    a.code,
                    a.outcome
                );
            }
        }
        out
    }
}

struct Generator<'a> {
    rng: &'a mut SynthRng,
    as_at: NaiveDate,
    ods: &'a str,
    consultants: Vec<Vec<&'a Consultant>>,
    next_pathway: u64,
}

/// A patient: NHS number and `SURNAME, Given`.
type Person = (String, String);

impl Generator<'_> {
    fn name(&mut self) -> String {
        let sex = if self.rng.random_bool(0.5) {
            Sex::Female
        } else {
            Sex::Male
        };
        let age = self.rng.random_range(18..90);
        let n = random_name(self.rng, sex, age);
        format!("{}, {}", n.family.to_uppercase(), n.given)
    }

    fn pathway_id(&mut self) -> String {
        self.next_pathway += 1;
        format!("{}-RTT-{:08}", self.ods, self.next_pathway)
    }

    fn days(&mut self, lo: i64, hi: i64) -> Duration {
        Duration::days(self.rng.random_range(lo..=hi.max(lo)))
    }

    /// Days waited: most under 18 weeks, a long tail to two years.
    fn wait(&mut self) -> i64 {
        let r: f64 = self.rng.random();
        let (lo, hi) = if r < 0.55 {
            (14, 125)
        } else if r < 0.85 {
            (126, 363)
        } else if r < 0.95 {
            (364, 454)
        } else if r < 0.99 {
            (455, 545)
        } else {
            (546, 770)
        };
        self.rng.random_range(lo..=hi)
    }

    /// A valid entry for `person`, with a procedure other than `not`.
    fn valid(&mut self, person: &Person, not: Option<&str>) -> Entry {
        let service = loop {
            let s = self.rng.random_range(0..SERVICES.len());
            if not.is_none_or(|n| SERVICES[s].2.iter().all(|p| p.0 != n)) {
                break s;
            }
        };
        let (tfc, specialty, procedures) = SERVICES[service];
        let (consultant_code, consultant_name) = if self.consultants[service].is_empty() {
            (
                "C0000000".to_string(),
                "Consultant not recorded".to_string(),
            )
        } else {
            let i = self.rng.random_range(0..self.consultants[service].len());
            let c = self.consultants[service][i];
            (
                c.code.clone(),
                format!("{} {} {}", c.title, c.given_name, c.family_name),
            )
        };
        let procedure = *pick(self.rng, procedures);
        let priority = *pick(
            self.rng,
            &[
                "P2", "P3", "P3", "P3", "P4", "P4", "P4", "P4", "P4", "P5", "P6",
            ],
        );
        let wait = self.wait();
        let start = self.as_at - Duration::days(wait);
        let mut activities = Vec::new();
        // Some pathways went through active monitoring first: the clock
        // stopped (32) and restarted (11) when treatment was decided.
        if self.rng.random_bool(0.06) {
            let referral = start - self.days(60, 240);
            let seen = referral + self.days(14, 40);
            activities.push(act(referral, "referral", "10", "received"));
            activities.push(act(
                seen,
                "outpatient attendance",
                "32",
                "active monitoring",
            ));
            activities.push(act(
                start,
                "outpatient attendance",
                "11",
                "decision to treat",
            ));
        } else {
            activities.push(act(start, "referral", "10", "received"));
            if wait > 20 {
                let seen = start + self.days(7, (wait - 7).min(70));
                activities.push(act(seen, "outpatient attendance", "20", "seen"));
            }
        }
        let last = activities.last().map(|a| a.date).unwrap_or(start);
        let decided = if last >= self.as_at {
            self.as_at
        } else {
            last + self.days(0, ((self.as_at - last).num_days() / 2).min(56))
        };
        let mut dta = act(decided, "decision to admit", "20", "added to the list");
        if decided == last {
            dta.sequence = 1;
        }
        activities.push(dta);
        // Validation: at the 12, 26 and 52-week points and then at least
        // every 12 weeks, each within its grace.
        let mut when = start + Duration::days(CYCLE) + self.days(0, GRACE - 1);
        let milestones = [182, 364].map(|d| start + Duration::days(d));
        while when <= self.as_at {
            activities.push(act(when, "validation", "20", "contacted"));
            let next = when + self.days(56, CYCLE);
            // A 26 or 52-week point due before the next call is met on or
            // just after it, and never more than a cycle after the last.
            when = match milestones.iter().find(|m| **m > when && **m <= next) {
                Some(m) => (*m + self.days(0, GRACE - 1)).min(when + Duration::days(CYCLE)),
                None => next,
            };
        }
        // Now and then a call went unanswered before one was.
        if self.rng.random_bool(0.1) {
            if let Some(i) = activities.iter().rposition(|a| a.kind == "validation") {
                let d = activities[i].date - Duration::days(2);
                activities.insert(i, act(d, "validation", "20", "no response"));
            }
        }
        activities.sort_by_key(|a| (a.date, a.sequence));
        let planned = self
            .rng
            .random_bool(0.3)
            .then(|| self.as_at + self.days(3, 42));
        let latest_clinically_appropriate = self
            .rng
            .random_bool(0.4)
            .then(|| self.as_at + self.days(7, 180));
        let rtt_status = activities.last().map(|a| a.code).unwrap_or("20");
        Entry {
            pathway_id: self.pathway_id(),
            nhs_number: person.0.clone(),
            patient_name: person.1.clone(),
            treatment_function_code: tfc,
            specialty,
            consultant_code,
            consultant_name,
            procedure,
            priority,
            clock_start: start,
            decided_to_admit: decided,
            planned,
            latest_clinically_appropriate,
            date_of_death: None,
            rtt_status,
            activities,
            problem: None,
            // Drawn for the whole list once it is made (see `readiness`).
            sex: Sex::Unknown,
            date_of_birth: self.as_at,
            pre_op: PreOpAssessment::None,
        }
    }

    /// A second entry for `of`'s patient and procedure, listed later.
    fn duplicate(&mut self, of: &Entry) -> Entry {
        let person = (of.nhs_number.clone(), of.patient_name.clone());
        let mut copy = loop {
            let e = self.valid(&person, None);
            // Listed the same day or later (the later of a pair, or the
            // one created second, is the duplicate).
            if e.decided_to_admit >= of.decided_to_admit {
                break e;
            }
        };
        copy.procedure = of.procedure;
        copy.treatment_function_code = of.treatment_function_code;
        copy.specialty = of.specialty;
        copy.consultant_code = of.consultant_code.clone();
        copy.consultant_name = of.consultant_name.clone();
        copy.problem = Some(Problem::Duplicate);
        copy
    }

    /// Make a valid `entry` carry `problem`.
    fn plant(&mut self, e: &mut Entry, problem: Problem) {
        let as_at = self.as_at;
        e.problem = Some(problem);
        match problem {
            Problem::AlreadyTreated => {
                let when = e.decided_to_admit + self.days(1, 30).min(as_at - e.decided_to_admit);
                let treated = if when > e.decided_to_admit {
                    when
                } else {
                    as_at
                };
                let mut a = act(treated, "procedure", "30", "treated");
                a.sequence = 5;
                e.activities.push(a);
                // The list was not told: the PAS still says waiting.
                e.planned = None;
            }
            Problem::Deceased => {
                e.date_of_death = Some(as_at - self.days(1, 90));
            }
            Problem::NotValidated => {
                // Long enough to need validating; nothing since a point
                // well over 12 weeks ago.
                let wait = self.rng.random_range(140..=500);
                self.restart(e, as_at - Duration::days(wait));
                // Either never validated, or not for well over a cycle.
                let cutoff = if self.rng.random_bool(0.5) {
                    e.clock_start
                } else {
                    as_at - Duration::days(CYCLE + GRACE + 7)
                };
                e.activities
                    .retain(|a| a.kind != "validation" || a.date < cutoff);
            }
            Problem::PastLatestClinicallyAppropriateDate => {
                e.latest_clinically_appropriate = Some(as_at - self.days(1, 60));
            }
            Problem::NoContact => {
                // Three unanswered attempts since the last answer, in the
                // last few weeks (the entry is otherwise in date).
                let from = as_at - self.days(10, 30);
                e.activities
                    .retain(|a| a.kind != "validation" || a.date < from);
                for k in 0..3 {
                    e.activities.push(act(
                        from + Duration::days(3 * k),
                        "validation",
                        "20",
                        "no response",
                    ));
                }
                e.activities.sort_by_key(|a| (a.date, a.sequence));
            }
            Problem::WrongClockStatus => {
                if self.rng.random_bool(0.5) {
                    // Listed from active monitoring with a 20, not an 11:
                    // the clock was never restarted.
                    let referral = e.clock_start - self.days(60, 200);
                    let monitored = referral + self.days(14, 40);
                    e.activities
                        .retain(|a| a.kind != "referral" && a.code != "11" && a.code != "32");
                    e.activities
                        .push(act(referral, "referral", "10", "received"));
                    e.activities.push(act(
                        monitored,
                        "outpatient attendance",
                        "32",
                        "active monitoring",
                    ));
                    e.activities.push(act(
                        e.clock_start,
                        "outpatient attendance",
                        "20",
                        "decision to treat",
                    ));
                    e.clock_start = referral;
                } else {
                    // Discharged from clinic without treatment, coded as
                    // treated.
                    let when =
                        e.decided_to_admit + self.days(1, 20).min(as_at - e.decided_to_admit);
                    let mut a = act(
                        when.max(e.decided_to_admit),
                        "outpatient attendance",
                        "30",
                        "discharged without treatment",
                    );
                    a.sequence = 5;
                    e.activities.push(a);
                }
                e.activities.sort_by_key(|a| (a.date, a.sequence));
            }
            Problem::NotConsultantLed => {
                let (tfc, specialty, procedure) = *pick(self.rng, NOT_CONSULTANT_LED);
                e.treatment_function_code = tfc;
                e.specialty = specialty;
                e.procedure = procedure;
                let name = self.name();
                e.consultant_code = format!("AHP{:05}", self.rng.random_range(0..100_000));
                e.consultant_name = format!("{name} (extended scope practitioner)");
            }
            Problem::Duplicate => {}
        }
    }

    /// Rebuild `e`'s pathway as a valid one starting on `start`.
    fn restart(&mut self, e: &mut Entry, start: NaiveDate) {
        let person = (e.nhs_number.clone(), e.patient_name.clone());
        let mut fresh = loop {
            let f = self.valid(&person, None);
            if f.activities.first().map(|a| a.code) == Some("10") {
                break f;
            }
        };
        let shift = start - fresh.clock_start;
        for a in &mut fresh.activities {
            a.date += shift;
        }
        // Keep everything on or before the day of the extract.
        fresh.activities.retain(|a| a.date <= self.as_at);
        fresh.decided_to_admit = (fresh.decided_to_admit + shift).min(self.as_at);
        e.activities = fresh.activities;
        e.clock_start = start;
        e.decided_to_admit = fresh.decided_to_admit;
        self.next_pathway -= 1;
    }
}

fn act(date: NaiveDate, kind: &'static str, code: &'static str, outcome: &'static str) -> Activity {
    Activity {
        date,
        sequence: 0,
        kind,
        code,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrustSpec;
    use std::collections::BTreeMap;

    fn list(pathways: usize) -> ElectiveList {
        let trust = Trust::generate(7, TrustSpec::default()).unwrap();
        ElectiveList::generate(
            &trust,
            11,
            &ElectiveSpec {
                pathways,
                ..ElectiveSpec::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_list() {
        assert_eq!(list(500), list(500));
    }

    #[test]
    fn every_kind_of_problem_is_planted_at_about_its_share() {
        let l = list(20_000);
        assert_eq!(l.entries.len(), 20_000);
        let mut counts: BTreeMap<Problem, usize> = BTreeMap::new();
        for (_, p) in l.truth() {
            *counts.entry(p).or_default() += 1;
        }
        for p in Problem::ALL {
            let n = counts.get(&p).copied().unwrap_or(0);
            assert!((120..=280).contains(&n), "{p:?}: {n}");
        }
    }

    #[test]
    fn valid_entries_keep_the_rules_they_are_built_to_keep() {
        let l = list(5_000);
        for e in l.entries.iter().filter(|e| e.problem.is_none()) {
            let id = &e.pathway_id;
            assert!(e.activities.iter().all(|a| a.date <= l.as_at), "{id}");
            assert!(
                e.decided_to_admit <= l.as_at && e.decided_to_admit >= e.clock_start,
                "{id}"
            );
            // No stop after the clock start.
            assert!(
                e.activities
                    .iter()
                    .filter(|a| a.date >= e.clock_start)
                    .all(|a| !a.code.starts_with('3')),
                "{id}: {:?}",
                e.activities
            );
            // Validated within the last cycle once it has needed it.
            let waited = (l.as_at - e.clock_start).num_days();
            if waited >= CYCLE + GRACE {
                let last = e
                    .activities
                    .iter()
                    .filter(|a| a.outcome == "contacted")
                    .map(|a| a.date)
                    .max()
                    .unwrap_or_else(|| panic!("{id} never validated"));
                assert!(
                    (l.as_at - last).num_days() <= CYCLE,
                    "{id}: last validated {last}"
                );
            }
            assert!(
                e.latest_clinically_appropriate.is_none_or(|d| d > l.as_at),
                "{id}"
            );
            assert!(e.date_of_death.is_none());
        }
    }

    #[test]
    fn the_files_have_a_line_for_every_entry_and_activity() {
        let l = list(300);
        let wl = l.waiting_list_csv();
        assert_eq!(wl.lines().count(), 301);
        let acts: usize = l.entries.iter().map(|e| e.activities.len()).sum();
        assert_eq!(l.rtt_activity_csv().lines().count(), acts + 1);
        assert!(wl.lines().nth(1).unwrap().starts_with("RXX-RTT-"));
    }
}
