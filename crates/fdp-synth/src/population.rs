//! A synthetic ICB population built on the real structure of its areas,
//! with known truth planted for population-health products to find.
//!
//! The caller reads the reference data and passes it in ([`AreaInputs`]):
//! each LSOA's residents by sex and single year of age and by Census 2021
//! ethnic group, its IMD decile, its postcodes and where they are, and the
//! GP practices nearby. The population keeps those proportions at any
//! size (a million people from Trafford's 241,000 is Trafford four times
//! over, area by area), and each person is registered with one of the
//! three practices nearest their home.
//!
//! What is planted, and kept beside each person as [`Truth`]:
//! - **diabetes**, with the gradients the published prevalence model shows:
//!   rising with age, about 1.9 times as common in the most deprived decile
//!   as in the least, about 2.2 times in people of South Asian and 1.7
//!   times in people of Black ethnicity (Public Health England, Diabetes
//!   Prevalence Model, 2016; QOF prevalence about 7.5% of adults). Some are
//!   later coded as resolved, and some resolved are diagnosed again;
//! - **the eight care processes** for people with diabetes, each in the
//!   last 12 months with its own rate, and older ones outside the window;
//! - **flu eligibility and vaccination** for the 2026/27 season (65 and
//!   over on 31 March 2027, clinical risk groups from 6 months to 64, 2
//!   and 3 year olds on 31 August 2026, pregnancy), with uptake rates by
//!   group;
//! - **MMR** first and second doses for children;
//! - **uptake gaps** ([`PlantedGap`]): chosen groups (an ethnic group, a
//!   practice, a deprivation decile, an LSOA) whose uptake of a programme is
//!   multiplied down. Nothing else varies uptake, so a group with no gap
//!   planted differs from the area only by chance, and by the gaps of the
//!   people in it, which its truth says exactly ([`Truth`] carries each
//!   person's probability).
//!
//! Records are as a GP system holds them: diagnoses, observations and
//! vaccinations, each a SNOMED CT code from the value sets the caller
//! gives ([`Codes`]) on a date. Some people have no postcode, a postcode
//! not in the directory, or one written untidily; some are not registered;
//! some died before the reference date; some have no ethnicity recorded.

use std::collections::HashMap;

use chrono::{Datelike, Duration, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::SynthError;
use crate::people::Sex;

/// One LSOA as the reference data describes it.
#[derive(Debug, Clone)]
pub struct LsoaInput {
    /// The 2021 LSOA code.
    pub code: String,
    /// IMD decile (1 most deprived).
    pub imd_decile: u8,
    /// Residents by sex (0 female, 1 male) and single year of age 0 to 90
    /// (90 is 90 and over).
    pub residents: [[u32; 91]; 2],
    /// Residents by Census 2021 ethnic group, in [`AreaInputs::ethnic_groups`] order.
    pub ethnicity: Vec<u32>,
}

/// A postcode of the directory.
#[derive(Debug, Clone)]
pub struct PostcodeInput {
    /// As the directory writes it (`M15 4AB`).
    pub postcode: String,
    /// Index into [`AreaInputs::lsoas`].
    pub lsoa: usize,
    /// Latitude, longitude.
    pub at: (f64, f64),
}

/// A GP practice people may register with.
#[derive(Debug, Clone)]
pub struct PracticeInput {
    /// ODS code.
    pub code: String,
    /// Primary care network code, if it belongs to one.
    pub pcn: Option<String>,
    /// Latitude, longitude of its premises.
    pub at: (f64, f64),
}

/// The real structure a population is built on.
#[derive(Debug, Clone, Default)]
pub struct AreaInputs {
    /// The areas.
    pub lsoas: Vec<LsoaInput>,
    /// Every postcode of the areas.
    pub postcodes: Vec<PostcodeInput>,
    /// The practices.
    pub practices: Vec<PracticeInput>,
    /// Census 2021 ethnic groups, each with the NHS ethnic category code
    /// it is recorded as.
    pub ethnic_groups: Vec<(String, String)>,
}

/// The codes records are written with: the cohorts' own value sets.
#[derive(Debug, Clone, Default)]
pub struct Codes {
    /// Diabetes diagnosis (DM_COD).
    pub diabetes: Vec<String>,
    /// Diabetes resolved (DMRES_COD).
    pub diabetes_resolved: Vec<String>,
    /// The eight care processes, by name; the foot examination is named
    /// `"foot examination"`.
    pub care_processes: Vec<(String, Vec<String>)>,
    /// Clinical risk groups for flu other than diabetes.
    pub flu_risk: Vec<String>,
    /// Pregnancy.
    pub pregnancy: Vec<String>,
    /// Delivery or pregnancy ended.
    pub delivery: Vec<String>,
    /// Flu vaccination given.
    pub flu_vaccination: Vec<String>,
    /// MMR or MMRV given.
    pub mmr_vaccination: Vec<String>,
}

/// A programme whose uptake can have a gap planted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Programme {
    /// Flu vaccination this season, among the eligible.
    Flu,
    /// MMR first dose by the second birthday.
    Mmr1,
    /// A foot examination in the last 12 months, among people with diabetes.
    FootExamination,
}

/// Who a gap is planted in.
#[derive(Debug, Clone, PartialEq)]
pub enum GapGroup {
    /// People recorded with this NHS ethnic category code.
    Ethnic(String),
    /// People registered with this practice (ODS code).
    Practice(String),
    /// People living in areas of this IMD decile.
    Decile(u8),
    /// People living in this LSOA.
    Lsoa(String),
}

/// A group whose uptake of a programme is multiplied by `factor`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantedGap {
    /// The programme.
    pub programme: Programme,
    /// The group.
    pub group: GapGroup,
    /// Below 1: how much of the usual uptake the group has.
    pub factor: f64,
}

/// How big, when and with what gaps.
#[derive(Debug, Clone)]
pub struct PopulationSpec {
    /// People to make (about: each area's count is rounded).
    pub people: u64,
    /// The date the records run to.
    pub reference_date: NaiveDate,
    /// The gaps planted.
    pub gaps: Vec<PlantedGap>,
    /// First person's number; ids run on from it, so several populations
    /// (one per member trust) do not collide.
    pub first_id: u64,
}

impl PopulationSpec {
    /// A population of `people` on `reference_date` with the default gaps
    /// for these areas: flu among people recorded Pakistani or Bangladeshi
    /// (0.6 of the usual), at the fourth practice (0.7) and in the
    /// most-deprived decile (0.85); MMR1 at the second practice (0.6); foot
    /// examinations at the third practice (0.55).
    pub fn with_default_gaps(inputs: &AreaInputs, people: u64, reference_date: NaiveDate) -> Self {
        let practice = |i: usize| {
            inputs
                .practices
                .get(i.min(inputs.practices.len().saturating_sub(1)))
                .map(|p| p.code.clone())
                .unwrap_or_default()
        };
        let gaps = vec![
            PlantedGap {
                programme: Programme::Flu,
                group: GapGroup::Ethnic("J".into()),
                factor: 0.6,
            },
            PlantedGap {
                programme: Programme::Flu,
                group: GapGroup::Ethnic("K".into()),
                factor: 0.6,
            },
            PlantedGap {
                programme: Programme::Flu,
                group: GapGroup::Practice(practice(3)),
                factor: 0.7,
            },
            PlantedGap {
                programme: Programme::Flu,
                group: GapGroup::Decile(1),
                factor: 0.85,
            },
            PlantedGap {
                programme: Programme::Mmr1,
                group: GapGroup::Practice(practice(1)),
                factor: 0.6,
            },
            PlantedGap {
                programme: Programme::FootExamination,
                group: GapGroup::Practice(practice(2)),
                factor: 0.55,
            },
        ];
        PopulationSpec {
            people,
            reference_date,
            gaps,
            first_id: 1,
        }
    }
}

/// What is true of a person, whatever their record says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Truth {
    /// Census ethnic group (index into [`AreaInputs::ethnic_groups`]).
    pub ethnic_group: usize,
    /// Diagnosed with diabetes on this date.
    pub diabetes_since: Option<NaiveDate>,
    /// The diagnosis coded resolved on this date (and not diagnosed since).
    pub diabetes_resolved: Option<NaiveDate>,
    /// On the QOF register on the reference date: diabetes not resolved,
    /// 17 or over, registered, alive.
    pub on_diabetes_register: bool,
    /// Chance of a foot examination in the last 12 months (register only).
    pub foot_examination_probability: f64,
    /// Had one.
    pub foot_examination: bool,
    /// In a clinical risk group for flu (diabetes included).
    pub flu_at_risk: bool,
    /// Pregnant on the reference date.
    pub pregnant: bool,
    /// Eligible for flu vaccination this season.
    pub flu_eligible: bool,
    /// Chance of flu vaccination by the reference date, if eligible.
    pub flu_probability: f64,
    /// Vaccinated on this date.
    pub flu_vaccinated: Option<NaiveDate>,
    /// Chance of MMR1 by the second birthday.
    pub mmr1_probability: f64,
    /// MMR1 given on this date.
    pub mmr1: Option<NaiveDate>,
    /// MMR2 given on this date.
    pub mmr2: Option<NaiveDate>,
}

/// A person as the GP record holds them, with the truth beside.
#[derive(Debug, Clone)]
pub struct Resident {
    /// Unique in the population; the record's id is [`Resident::person_id`].
    pub id: u64,
    /// Recorded sex.
    pub sex: Sex,
    /// Date of birth.
    pub date_of_birth: NaiveDate,
    /// Recorded NHS ethnic category code (`Z` not stated, `99` not known).
    pub ethnic_category_code: String,
    /// Index of the LSOA they live in.
    pub lsoa: usize,
    /// The postcode as recorded, if any.
    pub postcode: Option<String>,
    /// Index of the practice registered with, if registered.
    pub practice: Option<usize>,
    /// Date of death, if before the reference date.
    pub date_of_death: Option<NaiveDate>,
    /// What is true.
    pub truth: Truth,
}

impl Resident {
    /// The patient id their records carry.
    pub fn person_id(&self) -> String {
        format!("PH{:09}", self.id)
    }
}

/// Where a record belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A diagnosis on the problem list.
    Diagnosis,
    /// An observation or procedure recorded as one.
    Observation,
    /// A vaccination.
    Vaccination,
}

/// One coded record.
#[derive(Debug, Clone)]
pub struct Record {
    /// The resident's id.
    pub patient: u64,
    /// Which table.
    pub kind: RecordKind,
    /// SNOMED CT code.
    pub code: String,
    /// When.
    pub date: NaiveDate,
    /// For a vaccination, the dose number.
    pub dose: Option<u8>,
}

/// One LSOA's people and records.
#[derive(Debug, Clone, Default)]
pub struct AreaPopulation {
    /// The residents.
    pub residents: Vec<Resident>,
    /// Their records.
    pub records: Vec<Record>,
}

/// A population ready to generate, area by area.
#[derive(Debug, Clone)]
pub struct Population {
    inputs: AreaInputs,
    spec: PopulationSpec,
    codes: Codes,
    seed: u64,
    scale: f64,
    /// First id of each area's residents (an upper bound on its count).
    first_ids: Vec<u64>,
    postcodes_of: Vec<Vec<usize>>,
    /// Per LSOA: the three nearest practices.
    nearest: Vec<Vec<usize>>,
    /// Gap factors by programme.
    gaps: HashMap<Programme, Vec<PlantedGap>>,
}

impl Population {
    /// Check the inputs and plan the areas.
    pub fn new(
        seed: u64,
        inputs: AreaInputs,
        codes: Codes,
        spec: PopulationSpec,
    ) -> Result<Population, SynthError> {
        let bad = |what: String| SynthError::Input(what);
        if inputs.lsoas.is_empty() {
            return Err(bad("no LSOAs to build a population on".into()));
        }
        if inputs.practices.is_empty() {
            return Err(bad("no practices to register people with".into()));
        }
        for (name, list) in [
            ("diabetes", &codes.diabetes),
            ("diabetes resolved", &codes.diabetes_resolved),
            ("flu vaccination", &codes.flu_vaccination),
            ("MMR", &codes.mmr_vaccination),
            ("flu risk groups", &codes.flu_risk),
            ("pregnancy", &codes.pregnancy),
            ("delivery", &codes.delivery),
        ] {
            if list.is_empty() {
                return Err(bad(format!("no {name} codes")));
            }
        }
        if !codes
            .care_processes
            .iter()
            .any(|(n, c)| n == "foot examination" && !c.is_empty())
        {
            return Err(bad(
                "no foot examination codes among the care processes".into()
            ));
        }
        for l in &inputs.lsoas {
            if l.ethnicity.len() != inputs.ethnic_groups.len() {
                return Err(bad(format!(
                    "LSOA {} has {} ethnic group counts for {} groups",
                    l.code,
                    l.ethnicity.len(),
                    inputs.ethnic_groups.len()
                )));
            }
        }
        let total: u64 = inputs
            .lsoas
            .iter()
            .map(|l| l.residents.iter().flatten().map(|&n| n as u64).sum::<u64>())
            .sum();
        if total == 0 {
            return Err(bad("the LSOAs have no residents".into()));
        }
        let scale = spec.people as f64 / total as f64;
        let mut first_ids = Vec::with_capacity(inputs.lsoas.len());
        let mut next = spec.first_id;
        for l in &inputs.lsoas {
            first_ids.push(next);
            let n: u64 = l.residents.iter().flatten().map(|&n| n as u64).sum();
            // Room for every bin rounding up.
            next += (n as f64 * scale).ceil() as u64 + 182;
        }
        let mut postcodes_of = vec![Vec::new(); inputs.lsoas.len()];
        for (i, p) in inputs.postcodes.iter().enumerate() {
            if let Some(v) = postcodes_of.get_mut(p.lsoa) {
                v.push(i);
            }
        }
        let nearest = postcodes_of
            .iter()
            .map(|pcs| {
                let at = centroid(pcs.iter().map(|&i| inputs.postcodes[i].at));
                let mut by: Vec<(f64, usize)> = inputs
                    .practices
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (distance2(at, p.at), i))
                    .collect();
                by.sort_by(|a, b| a.0.total_cmp(&b.0));
                by.into_iter().take(3).map(|(_, i)| i).collect()
            })
            .collect();
        let mut gaps: HashMap<Programme, Vec<PlantedGap>> = HashMap::new();
        for g in &spec.gaps {
            gaps.entry(g.programme).or_default().push(g.clone());
        }
        Ok(Population {
            inputs,
            spec,
            codes,
            seed,
            scale,
            first_ids,
            postcodes_of,
            nearest,
            gaps,
        })
    }

    /// The areas, in the order [`Population::area`] takes.
    pub fn areas(&self) -> usize {
        self.inputs.lsoas.len()
    }

    /// The inputs the population was built on.
    pub fn inputs(&self) -> &AreaInputs {
        &self.inputs
    }

    /// The specification.
    pub fn spec(&self) -> &PopulationSpec {
        &self.spec
    }

    /// Generate area `i`'s residents and records. Each area has its own
    /// random stream, so areas can be generated in any order, or in
    /// parallel, with the same result.
    pub fn area(&self, i: usize) -> AreaPopulation {
        let lsoa = &self.inputs.lsoas[i];
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut out = AreaPopulation::default();
        let mut id = self.first_ids[i];
        let eth_total: u32 = lsoa.ethnicity.iter().sum();
        for (sex_index, by_age) in lsoa.residents.iter().enumerate() {
            for (age, &n) in by_age.iter().enumerate() {
                let want = n as f64 * self.scale;
                let count = want.floor() as u64 + u64::from(rng.random::<f64>() < want.fract());
                for _ in 0..count {
                    let age_years = if age == 90 {
                        90 + rng.random_range(0..10)
                    } else {
                        age as u32
                    };
                    let r = self.person(
                        &mut rng,
                        id,
                        i,
                        lsoa,
                        sex_index,
                        age_years,
                        eth_total,
                        &mut out.records,
                    );
                    out.residents.push(r);
                    id += 1;
                }
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn person(
        &self,
        rng: &mut ChaCha8Rng,
        id: u64,
        area: usize,
        lsoa: &LsoaInput,
        sex_index: usize,
        age: u32,
        eth_total: u32,
        records: &mut Vec<Record>,
    ) -> Resident {
        let day = self.spec.reference_date;
        let sex = if sex_index == 0 {
            Sex::Female
        } else {
            Sex::Male
        };
        let date_of_birth = birth_date(rng, day, age);
        let ethnic_group = if eth_total == 0 {
            0
        } else {
            let mut k = rng.random_range(0..eth_total);
            lsoa.ethnicity
                .iter()
                .position(|&c| {
                    if k < c {
                        true
                    } else {
                        k -= c;
                        false
                    }
                })
                .unwrap_or(0)
        };
        let true_code = self
            .inputs
            .ethnic_groups
            .get(ethnic_group)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| "S".into());
        let u: f64 = rng.random();
        let ethnic_category_code = if u < 0.03 {
            "Z".to_string()
        } else if u < 0.07 {
            "99".to_string()
        } else {
            true_code.clone()
        };
        let postcodes = &self.postcodes_of[area];
        let u: f64 = rng.random();
        let postcode = if postcodes.is_empty() || u < 0.015 {
            None
        } else if u < 0.022 {
            // Mistyped or from outside the directory.
            Some(format!(
                "M9{} {}ZZ",
                rng.random_range(0..10),
                rng.random_range(0..10)
            ))
        } else {
            let p =
                &self.inputs.postcodes[postcodes[rng.random_range(0..postcodes.len())]].postcode;
            Some(if u < 0.05 {
                p.replace(' ', "").to_lowercase()
            } else {
                p.clone()
            })
        };
        let near = &self.nearest[area];
        let u: f64 = rng.random();
        let practice = if u < 0.015 || near.is_empty() {
            None
        } else {
            let w: f64 = rng.random();
            let k = if w < 0.6 {
                0
            } else if w < 0.9 {
                1
            } else {
                2
            };
            Some(near[k.min(near.len() - 1)])
        };
        let date_of_death = (rng.random::<f64>() < death_rate(age))
            .then(|| day - Duration::days(rng.random_range(1..365)));
        let mut r = Resident {
            id,
            sex,
            date_of_birth,
            ethnic_category_code,
            lsoa: area,
            postcode,
            practice,
            date_of_death,
            truth: Truth {
                ethnic_group,
                ..Truth::default()
            },
        };
        self.clinical(rng, &mut r, lsoa, &true_code, age, records);
        r
    }

    /// The product of the gap factors of the groups `r` is in.
    fn gap(&self, programme: Programme, r: &Resident, lsoa: &LsoaInput) -> f64 {
        let Some(gaps) = self.gaps.get(&programme) else {
            return 1.0;
        };
        let practice = r.practice.map(|p| self.inputs.practices[p].code.as_str());
        gaps.iter()
            .filter(|g| match &g.group {
                GapGroup::Ethnic(c) => r.ethnic_category_code == *c,
                GapGroup::Practice(p) => practice == Some(p.as_str()),
                GapGroup::Decile(d) => lsoa.imd_decile == *d,
                GapGroup::Lsoa(l) => lsoa.code == *l,
            })
            .map(|g| g.factor)
            .product()
    }

    fn clinical(
        &self,
        rng: &mut ChaCha8Rng,
        r: &mut Resident,
        lsoa: &LsoaInput,
        true_code: &str,
        age: u32,
        records: &mut Vec<Record>,
    ) {
        let day = self.spec.reference_date;
        let codes = &self.codes;
        let id = r.id;
        let mut add = |rng: &mut ChaCha8Rng, kind, list: &[String], date: NaiveDate, dose| {
            records.push(Record {
                patient: id,
                kind,
                code: list[rng.random_range(0..list.len())].clone(),
                date,
                dose,
            });
        };
        let alive = r.date_of_death.is_none();
        let registered = r.practice.is_some();

        // Diabetes.
        let p = diabetes_rate(age) * deprivation_factor(lsoa.imd_decile) * ethnic_factor(true_code);
        if age >= 1 && rng.random::<f64>() < p {
            let years_back = rng.random_range(0.1..(age.saturating_sub(10).clamp(1, 25) as f64));
            let since = day - Duration::days((years_back * 365.25) as i64);
            let since = since.max(r.date_of_birth + Duration::days(365));
            add(rng, RecordKind::Diagnosis, &codes.diabetes, since, None);
            r.truth.diabetes_since = Some(since);
            let u: f64 = rng.random();
            if u < 0.03 && since < day - Duration::days(60) {
                // Resolved since: off the register.
                let resolved =
                    since + Duration::days(rng.random_range(30..=(day - since).num_days().max(31)));
                let resolved = resolved.min(day);
                add(
                    rng,
                    RecordKind::Observation,
                    &codes.diabetes_resolved,
                    resolved,
                    None,
                );
                r.truth.diabetes_resolved = Some(resolved);
            } else if u < 0.04 && since > r.date_of_birth + Duration::days(3 * 365) {
                // Resolved once before, and diagnosed again: on the register.
                let earlier = since - Duration::days(rng.random_range(200..700));
                add(
                    rng,
                    RecordKind::Observation,
                    &codes.diabetes_resolved,
                    earlier,
                    None,
                );
            }
            r.truth.on_diabetes_register = r.truth.diabetes_resolved.is_none()
                && age_on(r.date_of_birth, day) >= 17
                && registered
                && alive;
            if r.truth.on_diabetes_register {
                let foot = 0.72 * self.gap(Programme::FootExamination, r, lsoa);
                r.truth.foot_examination_probability = foot;
                for (name, list) in &codes.care_processes {
                    if list.is_empty() {
                        continue;
                    }
                    let p = if name == "foot examination" {
                        foot
                    } else {
                        care_process_rate(name)
                    };
                    if rng.random::<f64>() < p {
                        let d = day - Duration::days(rng.random_range(0..365));
                        add(rng, RecordKind::Observation, list, d, None);
                        if name == "foot examination" {
                            r.truth.foot_examination = true;
                        }
                    }
                    // An older one, outside the 12 months.
                    if rng.random::<f64>() < 0.5 {
                        let d = day - Duration::days(rng.random_range(366..900));
                        add(rng, RecordKind::Observation, list, d, None);
                    }
                }
            }
        }

        // Flu, 2026/27: the season's dates follow the reference date's.
        let season_end = NaiveDate::from_ymd_opt(
            if day.month() >= 9 {
                day.year() + 1
            } else {
                day.year()
            },
            3,
            31,
        )
        .expect("31 March exists");
        let august =
            NaiveDate::from_ymd_opt(season_end.year() - 1, 8, 31).expect("31 August exists");
        let months = months_between(r.date_of_birth, day);
        let age_march = age_on(r.date_of_birth, season_end);
        let age_august = age_on(r.date_of_birth, august);
        let other_risk = months >= 6 && age_march < 65 && rng.random::<f64>() < risk_rate(age);
        if other_risk {
            let d = day - Duration::days(rng.random_range(30..3000));
            add(
                rng,
                RecordKind::Diagnosis,
                &codes.flu_risk,
                d.max(r.date_of_birth),
                None,
            );
        }
        r.truth.flu_at_risk = months >= 6
            && age_march < 65
            && (other_risk
                || r.truth
                    .diabetes_since
                    .is_some_and(|_| r.truth.diabetes_resolved.is_none()));
        if r.sex == Sex::Female && (16..45).contains(&age) {
            let u: f64 = rng.random();
            if u < 0.025 {
                let d = day - Duration::days(rng.random_range(14..240));
                add(rng, RecordKind::Observation, &codes.pregnancy, d, None);
                r.truth.pregnant = true;
            } else if u < 0.035 {
                let d = day - Duration::days(rng.random_range(200..400));
                add(rng, RecordKind::Observation, &codes.pregnancy, d, None);
                let delivered = d + Duration::days(rng.random_range(180..270));
                add(
                    rng,
                    RecordKind::Observation,
                    &codes.delivery,
                    delivered.min(day),
                    None,
                );
            }
        }
        let (base, opens) = if age_march >= 65 {
            (0.72, 10)
        } else if (2..4).contains(&age_august) {
            (0.45, 9)
        } else if r.truth.flu_at_risk {
            (0.42, if age_march < 18 { 9 } else { 10 })
        } else if r.truth.pregnant {
            (0.38, 9)
        } else {
            (0.0, 10)
        };
        r.truth.flu_eligible = base > 0.0 && registered && alive;
        if r.truth.flu_eligible {
            let p = (base * self.gap(Programme::Flu, r, lsoa)).min(0.98);
            r.truth.flu_probability = p;
            let open =
                NaiveDate::from_ymd_opt(season_end.year() - 1, opens, 1).expect("a month start");
            if day > open && rng.random::<f64>() < p {
                let d = open + Duration::days(rng.random_range(0..(day - open).num_days().max(1)));
                add(
                    rng,
                    RecordKind::Vaccination,
                    &codes.flu_vaccination,
                    d,
                    Some(1),
                );
                r.truth.flu_vaccinated = Some(d);
            }
        }

        // MMR: the first dose about 12 months, the second about 3 years 4 months.
        if months >= 12 && age < 19 {
            let p = (0.91 * self.gap(Programme::Mmr1, r, lsoa)).min(0.98);
            r.truth.mmr1_probability = p;
            if rng.random::<f64>() < p {
                // Most by 13 months, some late, a few after the second birthday.
                let late = if rng.random::<f64>() < 0.03 {
                    rng.random_range(365..700)
                } else {
                    rng.random_range(0..300)
                };
                let d = add_months(r.date_of_birth, 12) + Duration::days(late);
                if d <= day {
                    add(
                        rng,
                        RecordKind::Vaccination,
                        &codes.mmr_vaccination,
                        d,
                        Some(1),
                    );
                    r.truth.mmr1 = Some(d);
                    if rng.random::<f64>() < 0.93 {
                        let d2 = (add_months(r.date_of_birth, 40)
                            + Duration::days(rng.random_range(0..300)))
                        .max(d + Duration::days(30));
                        if d2 <= day {
                            add(
                                rng,
                                RecordKind::Vaccination,
                                &codes.mmr_vaccination,
                                d2,
                                Some(2),
                            );
                            r.truth.mmr2 = Some(d2);
                        }
                    }
                }
            }
        }
    }
}

fn centroid(points: impl Iterator<Item = (f64, f64)>) -> (f64, f64) {
    let (mut a, mut b, mut n) = (0.0, 0.0, 0.0);
    for (x, y) in points {
        a += x;
        b += y;
        n += 1.0;
    }
    if n == 0.0 {
        (0.0, 0.0)
    } else {
        (a / n, b / n)
    }
}

fn distance2(a: (f64, f64), b: (f64, f64)) -> f64 {
    // Longitude shrinks with latitude; near 53.5°N a degree east is 0.6 of one north.
    let dy = a.0 - b.0;
    let dx = (a.1 - b.1) * 0.6;
    dx * dx + dy * dy
}

fn birth_date(rng: &mut ChaCha8Rng, day: NaiveDate, age: u32) -> NaiveDate {
    let birthday = add_months(day, -(age as i32) * 12);
    birthday - Duration::days(rng.random_range(0..365))
}

/// `d` moved by `months`, a day that does not exist becoming the month's last.
fn add_months(d: NaiveDate, months: i32) -> NaiveDate {
    if months >= 0 {
        d.checked_add_months(chrono::Months::new(months as u32))
    } else {
        d.checked_sub_months(chrono::Months::new((-months) as u32))
    }
    .unwrap_or(d)
}

/// Age in whole years on `on`.
pub fn age_on(born: NaiveDate, on: NaiveDate) -> u32 {
    let mut years = on.year() - born.year();
    if (on.month(), on.day()) < (born.month(), born.day()) {
        years -= 1;
    }
    years.max(0) as u32
}

fn months_between(born: NaiveDate, on: NaiveDate) -> u32 {
    let mut m = (on.year() - born.year()) * 12 + on.month() as i32 - born.month() as i32;
    if on.day() < born.day() {
        m -= 1;
    }
    m.max(0) as u32
}

fn death_rate(age: u32) -> f64 {
    match age {
        0..=49 => 0.001,
        50..=69 => 0.006,
        70..=79 => 0.025,
        80..=89 => 0.07,
        _ => 0.18,
    }
}

fn diabetes_rate(age: u32) -> f64 {
    match age {
        0..=16 => 0.002,
        17..=39 => 0.015,
        40..=49 => 0.045,
        50..=59 => 0.09,
        60..=69 => 0.14,
        70..=79 => 0.19,
        _ => 0.18,
    }
}

/// From 1.45 in the most deprived decile to 0.75 in the least.
fn deprivation_factor(decile: u8) -> f64 {
    1.45 - (decile.clamp(1, 10) as f64 - 1.0) * (0.70 / 9.0)
}

fn ethnic_factor(code: &str) -> f64 {
    match code {
        "H" | "J" | "K" | "L" => 2.2,
        "M" | "N" | "P" => 1.7,
        "D" | "E" | "F" | "G" => 1.2,
        "R" => 1.1,
        "S" => 1.3,
        _ => 1.0,
    }
}

fn care_process_rate(name: &str) -> f64 {
    match name {
        "HbA1c" | "blood pressure" => 0.93,
        "serum creatinine" | "cholesterol" => 0.9,
        "BMI" | "smoking status" => 0.85,
        "urine albumin" => 0.65,
        _ => 0.8,
    }
}

/// Clinical risk groups for flu besides diabetes, by age.
fn risk_rate(age: u32) -> f64 {
    match age {
        0..=17 => 0.04,
        18..=49 => 0.09,
        _ => 0.18,
    }
}
