//! A cohort compiled to one SQL query.
//!
//! The query reads the coded records once: they are joined to the value
//! sets' codes and folded into one row per patient, a column per rule
//! (the latest date of a code, or how many days it was recorded on), and
//! the people are then kept or not by predicates over those columns. One
//! pass however many rules, which is what keeps a cohort of ten million
//! patients quick. The SQL is plain (common table expressions, `VALUES`,
//! `CASE`, `max`, `count(DISTINCT ...)`, date literals and intervals), so
//! the same text runs in DataFusion behind governance and in DuckDB beside
//! it.

use chrono::NaiveDate;

use crate::definition::{Cohort, Criterion, Population, Span};
use crate::CohortError;

/// Where the people and their coded records come from: SQL the caller
/// writes over the tables its session has.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// One row per patient: `patient_id`, `date_of_birth` (a date), `sex`,
    /// `registered_gp` (null when not registered) and `date_of_death`, and
    /// any other column the caller wants carried to the members.
    pub people: String,
    /// Coded records: `patient_id`, `code`, `event_date` (a date).
    pub events: String,
}

/// The date a cohort is taken on: a day, or a parameter of the query
/// (`:as_at`) that a date is written into when it is asked, so that one
/// approved federated question serves every date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceDate {
    On(NaiveDate),
    /// A parameter's name, without the colon.
    Parameter(String),
}

impl ReferenceDate {
    /// The date as SQL.
    pub fn sql(&self) -> String {
        match self {
            ReferenceDate::On(d) => date(*d),
            ReferenceDate::Parameter(name) => format!("CAST(:{name} AS DATE)"),
        }
    }

    /// The date `span` before it as SQL, or `None` where there is no such
    /// day. Months back from a month's end that the earlier month lacks
    /// land on its last day, in SQL as in [`Span::before`].
    pub fn back_sql(&self, span: Span) -> Option<String> {
        match self {
            ReferenceDate::On(d) => span.before(*d).map(date),
            ReferenceDate::Parameter(_) => {
                Some(format!("({} - INTERVAL '{}')", self.sql(), span.interval()))
            }
        }
    }
}

impl std::fmt::Display for ReferenceDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReferenceDate::On(d) => write!(f, "{d}"),
            ReferenceDate::Parameter(name) => write!(f, ":{name}"),
        }
    }
}

/// A cohort ready to run.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Gives one row per member: every column of [`Inputs::people`]
    /// (`patient_id` first), so that what is known of each member need not
    /// be read again, then a boolean column per outcome (`outcome_1`, ...)
    /// in the order of [`Compiled::outcomes`].
    pub sql: String,
    pub reference_date: ReferenceDate,
    /// The outcomes' names.
    pub outcomes: Vec<String>,
}

/// Compile `cohort` on `reference_date` (or the definition's own).
pub fn compile(
    cohort: &Cohort,
    reference_date: Option<NaiveDate>,
    inputs: &Inputs,
) -> Result<Compiled, CohortError> {
    let day = reference_date
        .or(cohort.reference_date)
        .ok_or_else(|| CohortError::NoReferenceDate(cohort.name.clone()))?;
    compile_at(cohort, &ReferenceDate::On(day), inputs)
}

/// Compile `cohort` on a day or on a date parameter.
pub fn compile_at(
    cohort: &Cohort,
    day: &ReferenceDate,
    inputs: &Inputs,
) -> Result<Compiled, CohortError> {
    cohort.check()?;
    let mut b = Builder {
        cohort,
        day,
        aggregates: Vec::new(),
        needs_birth: false,
    };
    let mut keep = Vec::new();
    for c in &cohort.include {
        keep.push(b.predicate(c)?);
    }
    for c in &cohort.exclude {
        keep.push(format!("NOT {}", b.predicate(c)?));
    }
    let mut measured = String::new();
    for (i, c) in cohort.outcomes.iter().enumerate() {
        measured.push_str(&format!(", {} AS outcome_{}", b.predicate(c)?, i + 1));
    }
    let population = match cohort.population {
        Population::Registered => "p.registered_gp IS NOT NULL AND ",
        Population::Everyone => "",
    };
    let values: Vec<String> = cohort
        .value_sets
        .iter()
        .filter(|(name, _)| cohort.value_sets_used().contains(name.as_str()))
        .flat_map(|(name, vs)| {
            vs.codes
                .iter()
                .map(move |code| format!("({}, {})", quote(name), quote(code.trim())))
        })
        .collect();
    let ref_lit = day.sql();
    let mut sql = format!(
        "WITH people AS (\n  SELECT p.*\n  FROM ({people}) p\n  WHERE {population}(p.date_of_death IS NULL OR p.date_of_death > {ref_lit})\n)",
        people = inputs.people,
    );
    if b.aggregates.is_empty() {
        sql.push_str(&format!(
            "\nSELECT people.*{measured} FROM people WHERE {}",
            keep.join("\n  AND ")
        ));
    } else {
        let birth_join = if b.needs_birth {
            "\n  JOIN people ON people.patient_id = e.patient_id"
        } else {
            ""
        };
        sql.push_str(&format!(
            ",\nvalue_set AS (\n  SELECT * FROM (VALUES {values}) AS v(value_set, code)\n),\
             \nrecorded AS (\n  SELECT e.patient_id, value_set.value_set, e.event_date{birth}\n  FROM ({events}) e\n  JOIN value_set ON value_set.code = e.code{birth_join}\n  WHERE e.event_date <= {ref_lit}\n),\
             \nfolded AS (\n  SELECT patient_id,\n    {aggs}\n  FROM recorded\n  GROUP BY patient_id\n)\
             \nSELECT people.*{measured}\nFROM people LEFT JOIN folded ON folded.patient_id = people.patient_id\nWHERE {keep}",
            values = values.join(", "),
            events = inputs.events,
            birth = if b.needs_birth { ", people.date_of_birth" } else { "" },
            aggs = b
                .aggregates
                .iter()
                .enumerate()
                .map(|(i, a)| format!("{a} AS r{i}"))
                .collect::<Vec<_>>()
                .join(",\n    "),
            keep = keep.join("\n  AND "),
        ));
    }
    Ok(Compiled {
        sql,
        reference_date: day.clone(),
        outcomes: cohort
            .outcomes
            .iter()
            .map(|c| c.name.clone().unwrap_or_default())
            .collect(),
    })
}

struct Builder<'a> {
    cohort: &'a Cohort,
    day: &'a ReferenceDate,
    /// Per-patient aggregate expressions over `recorded`.
    aggregates: Vec<String>,
    needs_birth: bool,
}

impl Builder<'_> {
    /// A new per-patient aggregate; its column in `folded`.
    fn fold(&mut self, expr: String) -> String {
        if let Some(i) = self.aggregates.iter().position(|a| *a == expr) {
            return format!("folded.r{i}");
        }
        self.aggregates.push(expr);
        format!("folded.r{}", self.aggregates.len() - 1)
    }

    fn since(&self, c: &Criterion) -> Result<String, CohortError> {
        let mut out = String::new();
        if let Some(span) = c.within {
            out.push_str(&format!(" AND event_date > {}", self.back(span, c)?));
        }
        if let Some(d) = c.on_or_after {
            out.push_str(&format!(" AND event_date >= {}", date(d)));
        }
        Ok(out)
    }

    fn back(&self, span: Span, c: &Criterion) -> Result<String, CohortError> {
        self.day.back_sql(span).ok_or_else(|| CohortError::Invalid {
            cohort: self.cohort.name.clone(),
            problems: vec![format!(
                "{}: {span} before {} is not a date",
                c.label(),
                self.day
            )],
        })
    }

    /// The rule as a predicate that is true or false, never null.
    fn predicate(&mut self, c: &Criterion) -> Result<String, CohortError> {
        if let Some(vs) = &c.event {
            let mut when = format!("value_set = {}{}", quote(vs), self.since(c)?);
            if let Some(age) = c.by_age {
                self.needs_birth = true;
                when.push_str(&format!(
                    " AND event_date <= date_of_birth + INTERVAL '{}'",
                    age.interval()
                ));
            }
            let k = c.min_count.unwrap_or(1);
            return Ok(if k <= 1 {
                let col = self.fold(format!("max(CASE WHEN {when} THEN event_date END)"));
                format!("({col} IS NOT NULL)")
            } else {
                let col = self.fold(format!(
                    "count(DISTINCT CASE WHEN {when} THEN event_date END)"
                ));
                format!("(coalesce({col}, 0) >= {k})")
            });
        }
        if let Some(vs) = &c.latest {
            let latest = self.fold(format!(
                "max(CASE WHEN value_set = {}{} THEN event_date END)",
                quote(vs),
                self.since(c)?
            ));
            return Ok(match &c.not_followed_by {
                None => format!("({latest} IS NOT NULL)"),
                Some(after) => {
                    let undone = self.fold(format!(
                        "max(CASE WHEN value_set = {} THEN event_date END)",
                        quote(after)
                    ));
                    format!("({latest} IS NOT NULL AND ({undone} IS NULL OR {undone} < {latest}))")
                }
            });
        }
        if let Some(age) = &c.age {
            let on = age
                .on
                .map(ReferenceDate::On)
                .unwrap_or_else(|| self.day.clone());
            let mut parts = Vec::new();
            if let Some(lo) = age.at_least {
                let born_by = on.back_sql(lo).ok_or_else(|| self.not_a_date(c, lo, &on))?;
                parts.push(format!("people.date_of_birth <= {born_by}"));
            }
            if let Some(hi) = age.under {
                let born_after = on.back_sql(hi).ok_or_else(|| self.not_a_date(c, hi, &on))?;
                parts.push(format!("people.date_of_birth > {born_after}"));
            }
            return Ok(format!("coalesce({}, false)", parts.join(" AND ")));
        }
        if let Some(sexes) = &c.sex {
            let list: Vec<String> = sexes.iter().map(|s| quote(&s.to_lowercase())).collect();
            return Ok(format!(
                "coalesce(lower(people.sex) IN ({}), false)",
                list.join(", ")
            ));
        }
        let (parts, join) = match (&c.any_of, &c.all_of) {
            (Some(p), _) => (p, " OR "),
            (None, Some(p)) => (p, " AND "),
            (None, None) => unreachable!("checked: one kind per criterion"),
        };
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            out.push(self.predicate(p)?);
        }
        Ok(format!("({})", out.join(join)))
    }

    fn not_a_date(&self, c: &Criterion, span: Span, on: &ReferenceDate) -> CohortError {
        CohortError::Invalid {
            cohort: self.cohort.name.clone(),
            problems: vec![format!("{}: {span} before {on} is not a date", c.label())],
        }
    }
}

fn date(d: NaiveDate) -> String {
    format!("DATE '{}'", d.format("%Y-%m-%d"))
}

/// A SQL string literal.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
