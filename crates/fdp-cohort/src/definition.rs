//! A cohort definition as a reviewable file.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::CohortError;

/// A cohort: who is in it on a reference date.
///
/// ```toml
/// name = "qof-diabetes-register"
/// title = "QOF diabetes register (DM017)"
/// sources = ["NHS England, QOF business rules v49.0 (2024/25), Diabetes, DM_REG"]
/// reference_date = "2027-03-31"
///
/// [value_sets.DM_COD]
/// title = "Diabetes mellitus codes"
/// source = "PCD refset 999004691000230108"
/// codes = ["44054006", "46635009"]
///
/// [value_sets.DMRES_COD]
/// title = "Diabetes resolved codes"
/// codes = ["315051004"]
///
/// [[include]]
/// name = "diabetes diagnosed, not resolved since"
/// latest = "DM_COD"
/// not_followed_by = "DMRES_COD"
///
/// [[include]]
/// name = "aged 17 or over"
/// age = { at_least = "17 years" }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cohort {
    /// A short, stable name (`qof-diabetes-register`).
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Where each rule comes from: the published specification, its
    /// version and date. A reviewer checks the definition against these.
    #[serde(default)]
    pub sources: Vec<String>,
    /// The date the cohort is taken on, where the definition fixes one
    /// (the end of a QOF year); otherwise the caller gives it.
    pub reference_date: Option<NaiveDate>,
    #[serde(default)]
    pub population: Population,
    #[serde(default)]
    pub value_sets: BTreeMap<String, ValueSet>,
    /// Every one must hold.
    #[serde(default)]
    pub include: Vec<Criterion>,
    /// None may hold.
    #[serde(default)]
    pub exclude: Vec<Criterion>,
    /// Measured among the members (`[[outcome]]`): each is answered yes or
    /// no for every member, as the numerator of an uptake whose denominator
    /// is the cohort ("vaccinated this season", "MMR1 by 24 months").
    #[serde(default, rename = "outcome")]
    pub outcomes: Vec<Criterion>,
}

/// Who a cohort is drawn from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Population {
    /// Patients registered with a GP practice and alive on the reference date.
    #[default]
    Registered,
    /// Every patient alive on the reference date.
    Everyone,
}

/// A named list of codes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ValueSet {
    pub title: String,
    /// The published list and release it was taken from (a SNOMED CT
    /// refset and its date, a dm+d VTM), so a reviewer can check it.
    pub source: Option<String>,
    pub codes: Vec<String>,
}

/// One rule a patient meets or not. Exactly one of `event`, `latest`,
/// `age`, `sex`, `any_of` and `all_of`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    /// What the rule is, in the words of its source.
    pub name: Option<String>,
    /// Has a record coded from this value set.
    pub event: Option<String>,
    /// With `event`: at least this many, on different days (default 1).
    pub min_count: Option<u32>,
    /// The latest record coded from this value set exists...
    pub latest: Option<String>,
    /// ...and no record coded from this one is on or after it.
    pub not_followed_by: Option<String>,
    /// With `event` or `latest`: only records in this span before the
    /// reference date ("12 months": after the date 12 months before it,
    /// up to and including it).
    pub within: Option<Span>,
    /// With `event` or `latest`: only records on or after this date (the
    /// start of a vaccination season).
    pub on_or_after: Option<NaiveDate>,
    /// With `event`: only records made by the time the patient reached
    /// this age ("24 months": on or before their second birthday).
    pub by_age: Option<Span>,
    /// Age on the reference date (or on `on`).
    pub age: Option<AgeRule>,
    /// Sex as recorded (`female`, `male`, ...).
    pub sex: Option<Vec<String>>,
    /// At least one of these holds.
    pub any_of: Option<Vec<Criterion>>,
    /// All of these hold.
    pub all_of: Option<Vec<Criterion>>,
}

/// An age band on a date.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgeRule {
    /// Aged at least this on the date.
    pub at_least: Option<Span>,
    /// Younger than this on the date.
    pub under: Option<Span>,
    /// The date age is taken on, where it is not the reference date
    /// (flu: children aged 2 or 3 on 31 August).
    pub on: Option<NaiveDate>,
}

/// A span of calendar time: days, months or years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Days(u32),
    Months(u32),
}

impl Span {
    /// `date` moved back by the span; a month-end that does not exist
    /// becomes the last day of the month (a birthday on 29 February is
    /// reached on 1 March in a common year, as in English law).
    pub fn before(self, date: NaiveDate) -> Option<NaiveDate> {
        match self {
            Span::Days(d) => date.checked_sub_days(chrono::Days::new(d.into())),
            Span::Months(m) => date.checked_sub_months(chrono::Months::new(m)),
        }
    }

    /// As SQL interval text.
    pub fn interval(self) -> String {
        match self {
            Span::Days(d) => format!("{d} days"),
            Span::Months(m) => format!("{m} months"),
        }
    }
}

impl std::str::FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("{s:?} is not a span of time: write a whole number and a unit, like \"12 months\", \"5 years\" or \"28 days\"")
        };
        let mut parts = s.split_whitespace();
        let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let n: u32 = n.parse().map_err(|_| bad())?;
        match unit.trim_end_matches('s') {
            "day" => Ok(Span::Days(n)),
            "week" => Ok(Span::Days(n.checked_mul(7).ok_or_else(bad)?)),
            "month" => Ok(Span::Months(n)),
            "year" => Ok(Span::Months(n.checked_mul(12).ok_or_else(bad)?)),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Span::Days(d) if d % 7 == 0 && d > 0 => write!(f, "{} weeks", d / 7),
            Span::Days(d) => write!(f, "{d} days"),
            Span::Months(m) if m % 12 == 0 && m > 0 => write!(f, "{} years", m / 12),
            Span::Months(m) => write!(f, "{m} months"),
        }
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Cohort {
    /// Read and check a definition.
    pub fn from_toml(text: &str) -> Result<Cohort, CohortError> {
        let cohort: Cohort =
            toml::from_str(text).map_err(|e| CohortError::Syntax(e.to_string()))?;
        cohort.check()?;
        Ok(cohort)
    }

    /// Every problem with the definition, named by where it is.
    pub fn check(&self) -> Result<(), CohortError> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() {
            problems.push("name is empty".to_string());
        }
        for (name, vs) in &self.value_sets {
            if vs.codes.is_empty() {
                problems.push(format!("value set {name} has no codes"));
            }
            let mut seen = BTreeSet::new();
            for c in &vs.codes {
                if c.trim().is_empty() || c.contains('\'') {
                    problems.push(format!("value set {name}: {c:?} is not a code"));
                } else if !seen.insert(c) {
                    problems.push(format!("value set {name}: {c} is listed twice"));
                }
            }
        }
        if self.include.is_empty() {
            problems.push(
                "the cohort has no [[include]] rule, so it would be the whole population"
                    .to_string(),
            );
        }
        for (i, c) in self.include.iter().enumerate() {
            c.check(&format!("include {}", i + 1), self, &mut problems);
        }
        for (i, c) in self.exclude.iter().enumerate() {
            c.check(&format!("exclude {}", i + 1), self, &mut problems);
        }
        let mut outcome_names = BTreeSet::new();
        for (i, c) in self.outcomes.iter().enumerate() {
            let at = format!("outcome {}", i + 1);
            match &c.name {
                None => problems.push(format!(
                    "{at}: an outcome needs a name, which labels its column"
                )),
                Some(n) if !outcome_names.insert(n.clone()) => {
                    problems.push(format!("{at}: the name {n:?} is used twice"))
                }
                Some(_) => {}
            }
            c.check(&at, self, &mut problems);
        }
        let used = self.value_sets_used();
        for name in self.value_sets.keys() {
            if !used.contains(name.as_str()) {
                problems.push(format!("value set {name} is declared but no rule uses it"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(CohortError::Invalid {
                cohort: self.name.clone(),
                problems,
            })
        }
    }

    /// The value sets the rules name.
    pub fn value_sets_used(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        for c in self
            .include
            .iter()
            .chain(&self.exclude)
            .chain(&self.outcomes)
        {
            c.value_sets(&mut out);
        }
        out
    }
}

impl Criterion {
    /// What the criterion is, for messages: its name, or its kind.
    pub fn label(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        if let Some(v) = &self.event {
            return format!("has {v}");
        }
        if let Some(v) = &self.latest {
            return format!("latest {v}");
        }
        if self.age.is_some() {
            return "age".into();
        }
        if self.sex.is_some() {
            return "sex".into();
        }
        if self.any_of.is_some() {
            return "any of".into();
        }
        "all of".into()
    }

    fn value_sets<'a>(&'a self, out: &mut BTreeSet<&'a str>) {
        for v in [&self.event, &self.latest, &self.not_followed_by]
            .into_iter()
            .flatten()
        {
            out.insert(v.as_str());
        }
        for c in self.any_of.iter().chain(&self.all_of).flatten() {
            c.value_sets(out);
        }
    }

    fn check(&self, at: &str, cohort: &Cohort, problems: &mut Vec<String>) {
        let at = format!("{at} ({})", self.label());
        let kinds = [
            self.event.is_some(),
            self.latest.is_some(),
            self.age.is_some(),
            self.sex.is_some(),
            self.any_of.is_some(),
            self.all_of.is_some(),
        ]
        .iter()
        .filter(|k| **k)
        .count();
        if kinds != 1 {
            problems.push(format!(
                "{at}: give exactly one of event, latest, age, sex, any_of, all_of ({kinds} given)"
            ));
            return;
        }
        let known = |v: &String, problems: &mut Vec<String>| {
            if !cohort.value_sets.contains_key(v) {
                problems.push(format!(
                    "{at}: no value set {v} (declared: {})",
                    cohort
                        .value_sets
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        };
        for v in [&self.event, &self.latest, &self.not_followed_by]
            .into_iter()
            .flatten()
        {
            known(v, problems);
        }
        if self.not_followed_by.is_some() && self.latest.is_none() {
            problems.push(format!("{at}: not_followed_by goes with latest"));
        }
        if self.event.is_none() && (self.min_count.is_some() || self.by_age.is_some()) {
            problems.push(format!("{at}: min_count and by_age go with event"));
        }
        if (self.within.is_some() || self.on_or_after.is_some())
            && self.event.is_none()
            && self.latest.is_none()
        {
            problems.push(format!(
                "{at}: within and on_or_after go with event or latest"
            ));
        }
        if self.min_count == Some(0) {
            problems.push(format!(
                "{at}: min_count = 0 always holds; to require none, put the rule under [[exclude]]"
            ));
        }
        if let Some(a) = &self.age {
            if a.at_least.is_none() && a.under.is_none() {
                problems.push(format!("{at}: age needs at_least, under or both"));
            }
            if let (Some(lo), Some(hi)) = (a.at_least, a.under) {
                if months(lo) >= months(hi)
                    && matches!((lo, hi), (Span::Months(_), Span::Months(_)))
                {
                    problems.push(format!("{at}: no one is at least {lo} and under {hi}"));
                }
            }
        }
        if let Some(s) = &self.sex {
            if s.is_empty() {
                problems.push(format!("{at}: sex lists no value"));
            }
        }
        for (i, c) in self.any_of.iter().chain(&self.all_of).flatten().enumerate() {
            c.check(&format!("{at}, part {}", i + 1), cohort, problems);
        }
        if matches!(&self.any_of, Some(v) if v.is_empty())
            || matches!(&self.all_of, Some(v) if v.is_empty())
        {
            problems.push(format!("{at}: an empty list of rules"));
        }
    }
}

fn months(s: Span) -> u32 {
    match s {
        Span::Days(d) => d / 31,
        Span::Months(m) => m,
    }
}
