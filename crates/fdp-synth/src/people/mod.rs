//! Synthetic people: UK-style names, demographics, addresses, NHS numbers and
//! local hospital numbers.
//!
//! Nothing here describes a real person. Phone numbers come from Ofcom's
//! ranges reserved for fiction; NHS numbers are random but valid by modulus
//! 11 (or, on request, from the reserved 999 test range).

mod names;
mod nhs;
mod places;

use chrono::{Datelike, Duration, NaiveDate};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub(crate) use names::WARD_NAMES;
use names::{NameGroup, GROUPS};
pub use nhs::{invalid_nhs_number, random_nhs_number, NhsNumberAllocator, NhsNumberRange};
pub use places::{Address, Catchment, GpPractice, Town};

use crate::rng::{pick, pick_weighted_by};

/// Administrative sex as carried in PID-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    /// `F`
    Female,
    /// `M`
    Male,
    /// `U`: not known or not stated.
    Unknown,
}

impl Sex {
    /// The HL7 table 0001 code.
    pub fn code(self) -> &'static str {
        match self {
            Sex::Female => "F",
            Sex::Male => "M",
            Sex::Unknown => "U",
        }
    }
}

/// NHS Data Dictionary ethnic category codes (2001 census classification)
/// with their descriptions.
pub const ETHNIC_CATEGORIES: &[(char, &str)] = &[
    ('A', "White - British"),
    ('B', "White - Irish"),
    ('C', "White - Any other White background"),
    ('D', "Mixed - White and Black Caribbean"),
    ('E', "Mixed - White and Black African"),
    ('F', "Mixed - White and Asian"),
    ('G', "Mixed - Any other mixed background"),
    ('H', "Asian or Asian British - Indian"),
    ('J', "Asian or Asian British - Pakistani"),
    ('K', "Asian or Asian British - Bangladeshi"),
    ('L', "Asian or Asian British - Any other Asian background"),
    ('M', "Black or Black British - Caribbean"),
    ('N', "Black or Black British - African"),
    ('P', "Black or Black British - Any other Black background"),
    ('R', "Other Ethnic Groups - Chinese"),
    ('S', "Other Ethnic Groups - Any other ethnic group"),
    ('Z', "Not stated"),
];

/// The kind of population a person is drawn from, which shapes age and sex.
/// Hospital inpatients skew old; maternity is women of childbearing age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cohort {
    /// Children under 16.
    Paediatric,
    /// Women aged 16 to 45.
    Obstetric,
    /// Women of any adult age.
    Gynaecology,
    /// Adult acute inpatients (median age around 68).
    AdultAcute,
    /// People aged 70 and over.
    Elderly,
    /// Everyone who turns up at an emergency department.
    EmergencyAttendance,
    /// Outpatient clinic attenders.
    Outpatient,
    /// Working-age adults (staff).
    WorkingAge,
}

impl Cohort {
    /// Age bands `(from, to_exclusive, weight)`.
    fn age_bands(self) -> &'static [(u32, u32, f64)] {
        match self {
            Cohort::Paediatric => &[(0, 1, 25.0), (1, 5, 25.0), (5, 11, 20.0), (11, 16, 30.0)],
            Cohort::Obstetric => &[
                (16, 20, 5.0),
                (20, 25, 15.0),
                (25, 30, 28.0),
                (30, 35, 30.0),
                (35, 40, 17.0),
                (40, 46, 5.0),
            ],
            Cohort::Gynaecology => &[
                (16, 30, 20.0),
                (30, 50, 40.0),
                (50, 70, 25.0),
                (70, 90, 15.0),
            ],
            Cohort::AdultAcute => &[
                (16, 30, 7.0),
                (30, 45, 9.0),
                (45, 60, 15.0),
                (60, 75, 27.0),
                (75, 85, 26.0),
                (85, 101, 16.0),
            ],
            Cohort::Elderly => &[
                (70, 75, 10.0),
                (75, 85, 50.0),
                (85, 95, 35.0),
                (95, 103, 5.0),
            ],
            Cohort::EmergencyAttendance => &[
                (0, 16, 20.0),
                (16, 30, 18.0),
                (30, 45, 15.0),
                (45, 60, 14.0),
                (60, 75, 14.0),
                (75, 101, 19.0),
            ],
            Cohort::Outpatient => &[
                (0, 16, 8.0),
                (16, 45, 22.0),
                (45, 65, 28.0),
                (65, 80, 27.0),
                (80, 100, 15.0),
            ],
            Cohort::WorkingAge => &[(25, 35, 30.0), (35, 50, 40.0), (50, 66, 30.0)],
        }
    }

    fn sex<R: Rng + ?Sized>(self, rng: &mut R) -> Sex {
        match self {
            Cohort::Obstetric | Cohort::Gynaecology => Sex::Female,
            _ if rng.random_bool(0.002) => Sex::Unknown,
            // Women outlive men, so they are over-represented among the old.
            Cohort::Elderly => {
                if rng.random_bool(0.58) {
                    Sex::Female
                } else {
                    Sex::Male
                }
            }
            _ => {
                if rng.random_bool(0.51) {
                    Sex::Female
                } else {
                    Sex::Male
                }
            }
        }
    }
}

/// A synthetic person's demographics as a PAS would hold them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Ten-digit NHS number.
    pub nhs_number: String,
    /// Title (Mr, Mrs, Miss, Ms, Mx, Dr, Master...).
    pub title: String,
    /// First given name.
    pub given_name: String,
    /// Second given name, if any.
    pub middle_name: Option<String>,
    /// Family name in its usual case (e.g. `O'Brien`).
    pub family_name: String,
    /// Administrative sex.
    pub sex: Sex,
    /// Date of birth.
    pub date_of_birth: NaiveDate,
    /// Home address.
    pub address: Address,
    /// Contact number, when one was given.
    pub phone: Option<String>,
    /// Registered GP practice code (A12345 shape).
    pub gp_practice: String,
    /// NHS Data Dictionary ethnic category letter.
    pub ethnic_category: char,
}

/// A drawn name, before it is attached to a person.
pub(crate) struct Name {
    pub given: &'static str,
    pub middle: Option<&'static str>,
    pub family: &'static str,
    pub group: &'static NameGroup,
}

/// Draws a name for someone of the given sex and age.
pub(crate) fn random_name<R: Rng + ?Sized>(rng: &mut R, sex: Sex, age: u32) -> Name {
    let group = pick_weighted_by(rng, GROUPS, |g| g.weight);
    let female = match sex {
        Sex::Female => true,
        Sex::Male => false,
        Sex::Unknown => rng.random_bool(0.5),
    };
    let (list, older) = if female {
        (group.female, group.female_older)
    } else {
        (group.male, group.male_older)
    };
    let list = if age >= 60 && !older.is_empty() && rng.random_bool(0.8) {
        older
    } else {
        list
    };
    let given = *pick(rng, list);
    let middle = if rng.random_bool(0.35) {
        let m = *pick(rng, list);
        (m != given).then_some(m)
    } else {
        None
    };
    let family = if female && !group.female_surnames.is_empty() && rng.random_bool(0.3) {
        *pick(rng, group.female_surnames)
    } else {
        *pick(rng, group.surnames)
    };
    Name {
        given,
        middle,
        family,
        group,
    }
}

fn random_title<R: Rng + ?Sized>(rng: &mut R, sex: Sex, age: u32) -> &'static str {
    let r: f64 = rng.random();
    match sex {
        Sex::Unknown => "Mx",
        Sex::Male if age < 16 => "Master",
        Sex::Female if age < 16 => "Miss",
        Sex::Male => match r {
            r if r < 0.015 => "Dr",
            r if r < 0.018 => "Rev",
            _ => "Mr",
        },
        Sex::Female => {
            // (Mrs, Miss, Ms) cut points; the remainder are Dr.
            let (mrs, miss, ms) = match age {
                0..25 => (0.15, 0.75, 0.99),
                25..70 => (0.50, 0.72, 0.98),
                _ => (0.75, 0.87, 0.97),
            };
            match r {
                r if r < mrs => "Mrs",
                r if r < miss => "Miss",
                r if r < ms => "Ms",
                _ => "Dr",
            }
        }
    }
}

/// Whole years between `dob` and `on`.
pub(crate) fn age_on(dob: NaiveDate, on: NaiveDate) -> u32 {
    let mut years = on.year() - dob.year();
    if (on.month(), on.day()) < (dob.month(), dob.day()) {
        years -= 1;
    }
    years.max(0) as u32
}

fn random_dob<R: Rng + ?Sized>(rng: &mut R, cohort: Cohort, today: NaiveDate) -> NaiveDate {
    let (from, to, _) = *pick_weighted_by(rng, cohort.age_bands(), |b| b.2);
    let age = rng.random_range(from..to);
    // Days into the year of age, staying strictly inside it.
    let days = i64::from(age) * 365 + i64::from(age / 4) + rng.random_range(1..364);
    let dob = today - Duration::days(days);
    // Leap-year drift can push the date into the next year of age.
    if age_on(dob, today) > age {
        dob + Duration::days(2)
    } else {
        dob
    }
}

impl Person {
    /// A new person from `cohort` living in `catchment`, aged as of `today`,
    /// carrying `nhs_number` (so the caller controls uniqueness).
    pub fn generate<R: Rng + ?Sized>(
        rng: &mut R,
        catchment: &Catchment,
        cohort: Cohort,
        today: NaiveDate,
        nhs_number: String,
    ) -> Person {
        let sex = cohort.sex(rng);
        let date_of_birth = random_dob(rng, cohort, today);
        let age = age_on(date_of_birth, today);
        let name = random_name(rng, sex, age);
        let ethnic_category = if rng.random_bool(0.04) {
            'Z'
        } else {
            pick_weighted_by(rng, name.group.ethnicity, |e| e.1).0
        };
        let address = catchment.random_address(rng);
        let phone = rng
            .random_bool(0.95)
            .then(|| catchment.random_phone(rng, &address));
        Person {
            nhs_number,
            title: random_title(rng, sex, age).to_string(),
            given_name: name.given.to_string(),
            middle_name: name.middle.map(str::to_string),
            family_name: name.family.to_string(),
            sex,
            date_of_birth,
            address,
            phone,
            gp_practice: catchment.random_gp_practice(rng),
            ethnic_category,
        }
    }

    /// Age in whole years on `date`.
    pub fn age_on(&self, date: NaiveDate) -> u32 {
        age_on(self.date_of_birth, date)
    }

    /// Moves house within the catchment; a move often means a new GP and a
    /// new landline.
    pub fn move_house<R: Rng + ?Sized>(&mut self, rng: &mut R, catchment: &Catchment) {
        self.address = catchment.random_address(rng);
        if rng.random_bool(0.5) {
            self.gp_practice = catchment.random_gp_practice(rng);
        }
        if rng.random_bool(0.3) {
            self.phone = Some(catchment.random_phone(rng, &self.address));
        }
    }

    /// Records a new contact number.
    pub fn change_phone<R: Rng + ?Sized>(&mut self, rng: &mut R, catchment: &Catchment) {
        self.phone = Some(catchment.random_phone(rng, &self.address));
    }

    /// Registers with a different GP practice.
    pub fn change_gp<R: Rng + ?Sized>(&mut self, rng: &mut R, catchment: &Catchment) {
        self.gp_practice = catchment.random_gp_practice(rng);
    }

    /// Takes a new family name, as on marriage; returns false (and changes
    /// nothing) for children.
    pub fn change_family_name<R: Rng + ?Sized>(&mut self, rng: &mut R, today: NaiveDate) -> bool {
        let age = self.age_on(today);
        if age < 16 {
            return false;
        }
        let male = self.sex == Sex::Male;
        let name = random_name(rng, if male { Sex::Female } else { Sex::Male }, age);
        self.family_name = name.family.to_string();
        if self.sex == Sex::Female && self.title != "Dr" {
            self.title = "Mrs".to_string();
        }
        true
    }
}

/// Hands out local hospital numbers (MRNs): a trust prefix and seven or more
/// digits, increasing as a PAS would assign them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MrnAllocator {
    prefix: String,
    next: u64,
}

impl MrnAllocator {
    /// A new allocator; the starting number is drawn so that different
    /// trusts do not share numbers by accident.
    pub fn new<R: Rng + ?Sized>(rng: &mut R, prefix: &str) -> Self {
        MrnAllocator {
            prefix: prefix.to_string(),
            next: rng.random_range(1_000_000..2_000_000),
        }
    }

    /// The next MRN. Gaps mimic numbers consumed by registrations that were
    /// later abandoned.
    pub fn allocate<R: Rng + ?Sized>(&mut self, rng: &mut R) -> String {
        let n = self.next;
        self.next += rng.random_range(1..4);
        format!("{}{n:07}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_for;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, 14).unwrap()
    }

    #[test]
    fn cohorts_respect_age_and_sex() {
        let mut rng = rng_for(5, 0);
        let c = Catchment::generate(&mut rng, 30);
        for _ in 0..5000 {
            let p = Person::generate(&mut rng, &c, Cohort::Paediatric, today(), "x".into());
            assert!(p.age_on(today()) < 16);
            let p = Person::generate(&mut rng, &c, Cohort::Obstetric, today(), "x".into());
            let a = p.age_on(today());
            assert!((16..46).contains(&a), "{a}");
            assert_eq!(p.sex, Sex::Female);
            let p = Person::generate(&mut rng, &c, Cohort::Elderly, today(), "x".into());
            assert!(p.age_on(today()) >= 70);
        }
    }

    #[test]
    fn demographics_are_well_formed() {
        let mut rng = rng_for(6, 0);
        let c = Catchment::generate(&mut rng, 30);
        let mut ages = Vec::new();
        for _ in 0..5000 {
            let p = Person::generate(&mut rng, &c, Cohort::AdultAcute, today(), "x".into());
            ages.push(p.age_on(today()));
            let pc = &p.address.postcode;
            let (outward, inward) = pc.split_once(' ').expect("space in postcode");
            assert!((2..=4).contains(&outward.len()), "{pc}");
            assert!(outward.as_bytes()[0].is_ascii_uppercase());
            assert_eq!(inward.len(), 3);
            assert!(inward.as_bytes()[0].is_ascii_digit());
            let gp = p.gp_practice.as_bytes();
            assert!(gp.len() == 6 && gp[0].is_ascii_uppercase());
            assert!(gp[1..].iter().all(u8::is_ascii_digit));
            assert!(ETHNIC_CATEGORIES.iter().any(|e| e.0 == p.ethnic_category));
            if let Some(ph) = &p.phone {
                assert_eq!(ph.len(), 11);
                assert!(ph.starts_with('0'));
            }
            for s in [&p.given_name, &p.family_name, &p.address.line1] {
                assert!(!s.contains(['|', '^', '~', '\\', '&']));
            }
        }
        ages.sort_unstable();
        let median = ages[ages.len() / 2];
        assert!((60..=75).contains(&median), "median adult age {median}");
    }

    #[test]
    fn mrns_increase() {
        let mut rng = rng_for(1, 0);
        let mut a = MrnAllocator::new(&mut rng, "H");
        let x = a.allocate(&mut rng);
        let y = a.allocate(&mut rng);
        assert!(x < y && x.starts_with('H') && x.len() == 8);
    }
}
