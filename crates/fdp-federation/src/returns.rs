//! Returns: a set of federated questions asked of every member on a
//! schedule, in place of figures staff used to key in.
//!
//! The daily operational return ([`ReturnDefinition::daily_operational`])
//! describes one census instant: beds occupied by type, long stays,
//! discharges by pathway, medically optimised patients not yet discharged
//! and elective admissions. The collecting instance (the national instance,
//! or an ICB) asks each member for each census instant once it is due,
//! keeps what each member submitted, and asks again those that had not
//! answered until the next census instant falls due. A member computes its
//! own return for the same instant with [`compute`], through its own
//! governed session, and gets the same figures it submitted: both read the
//! member's tables as they stood at the census instant, so corrections
//! recorded afterwards (a cancelled admission, a discharge keyed late)
//! change neither.
//!
//! Only aggregates leave a member: each answer is a federated question's,
//! so the member's policy, opt-out and disclosure control apply.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use fdp_govern::GovernedSession;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::identity::OrgRole;
use crate::node::Federation;
use crate::questions::{ask, Question};

/// Who asks a return's questions, in the audits of both sides.
pub const RETURNS_COLLECTOR: &str = "instance:returns";

/// A return: its name and the questions it is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnDefinition {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "question")]
    pub questions: Vec<Question>,
}

impl ReturnDefinition {
    /// The daily operational return, as published with this release: the
    /// questions the daily-return product offers the federation
    /// (`fdp_products::daily_return`).
    pub fn daily_operational() -> ReturnDefinition {
        let declared = fdp_products::daily_return::daily_operational();
        ReturnDefinition {
            name: declared.name.clone(),
            description: declared.description.clone(),
            questions: declared
                .questions
                .iter()
                .map(|q| {
                    Question::from_spec(q).expect("the built-in daily return's questions are valid")
                })
                .collect(),
        }
    }

    /// A return file (TOML: name, description, `[[question]]`…).
    pub fn load(path: &Path) -> Result<ReturnDefinition, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The questions, asked for `census_at` of the tables as they stood
    /// then: what a member answers is the same whenever it is asked, and
    /// the same as it reports for itself.
    pub fn for_census(&self, census_at: DateTime<Utc>) -> Vec<Question> {
        let args = BTreeMap::from([("census_at".to_string(), census_at.to_rfc3339())]);
        self.questions
            .iter()
            .map(|q| Question {
                as_of: Some(census_at),
                ..q.with_arguments(args.clone())
            })
            .collect()
    }
}

/// When a return falls due: `[federation.returns]` in the collecting
/// instance's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnSchedule {
    /// The census time of day, UTC (default `08:00`).
    pub census_time: Option<NaiveTime>,
    /// Census instants this many minutes apart instead of daily (for a
    /// demonstration).
    pub every_minutes: Option<u32>,
    /// How long after the census instant to ask, so that what happened
    /// just before it has reached each member's tables (default 120 s).
    pub grace_secs: Option<u64>,
    /// The members asked (ODS codes); default every peer that is a trust.
    pub members: Option<Vec<String>>,
    /// A return file to ask instead of the built-in daily operational
    /// return.
    pub definition: Option<PathBuf>,
}

impl ReturnSchedule {
    fn grace(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.grace_secs.unwrap_or(120) as i64)
    }

    /// The census instant at or before `t`.
    pub fn census_at_or_before(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        match self.every_minutes.filter(|m| *m > 0) {
            Some(m) => {
                let step = i64::from(m) * 60;
                let secs = t.timestamp().div_euclid(step) * step;
                Utc.timestamp_opt(secs, 0).single().expect("in range")
            }
            None => {
                let at = self
                    .census_time
                    .unwrap_or(NaiveTime::from_hms_opt(8, 0, 0).expect("valid"));
                let today = t.date_naive().and_time(at).and_utc();
                if today <= t {
                    today
                } else {
                    today - chrono::Duration::days(1)
                }
            }
        }
    }

    /// The latest census instant whose return is due at `now` (its grace
    /// period over).
    pub fn latest_due(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.census_at_or_before(now - self.grace())
    }

    /// The members of `fed` this return is asked of.
    pub fn members(&self, fed: &Federation) -> Vec<String> {
        match &self.members {
            Some(m) => m.clone(),
            None => fed
                .peers()
                .iter()
                .filter(|p| p.role == OrgRole::Trust)
                .map(|p| p.ods.clone())
                .collect(),
        }
    }
}

/// One member's submission of a return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub member: String,
    /// `submitted`, `declined`, `unreachable`, `refused` or `no-data` (the
    /// member's records begin after the census instant: it has nothing to
    /// report for it, which is not the same as reporting zeros).
    pub status: String,
    pub submitted_at: Option<DateTime<Utc>>,
    /// Each question's answer (columns, rows, disclosure control, the
    /// table versions it was computed from), by question name.
    #[serde(default)]
    pub sections: BTreeMap<String, Value>,
    pub reason: Option<String>,
    pub attempts: u32,
}

/// A return as collected for one census instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectedReturn {
    pub name: String,
    pub census_at: DateTime<Utc>,
    pub first_asked_at: DateTime<Utc>,
    pub last_asked_at: DateTime<Utc>,
    pub members: Vec<Submission>,
}

impl CollectedReturn {
    pub fn submitted(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.status == "submitted")
            .count()
    }

    /// Each section's rows summed over the members that submitted, by the
    /// row's text columns. A cell suppressed by a member's disclosure
    /// control counts as nothing and is reported under `suppressed`.
    pub fn picture(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let mut sections: Vec<&String> = self
            .members
            .iter()
            .flat_map(|m| m.sections.keys())
            .collect();
        sections.sort();
        sections.dedup();
        for name in sections {
            let mut columns: Vec<String> = Vec::new();
            // key (the text columns) → summed numeric columns
            let mut sums: BTreeMap<Vec<(String, String)>, BTreeMap<String, i64>> = BTreeMap::new();
            let mut suppressed = 0usize;
            for m in self.members.iter().filter(|m| m.status == "submitted") {
                let Some(section) = m.sections.get(name) else {
                    continue;
                };
                if columns.is_empty() {
                    columns = section["columns"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect();
                }
                for row in section["rows"].as_array().into_iter().flatten() {
                    let mut key = Vec::new();
                    let mut numbers = Vec::new();
                    for c in &columns {
                        match &row[c] {
                            Value::String(s) => key.push((c.clone(), s.clone())),
                            Value::Number(n) => numbers.push((c.clone(), n.as_i64())),
                            // Suppressed counts arrive as null (or absent).
                            _ => numbers.push((c.clone(), None)),
                        }
                    }
                    let entry = sums.entry(key).or_default();
                    for (c, n) in numbers {
                        match n {
                            Some(n) => *entry.entry(c).or_default() += n,
                            None => {
                                suppressed += 1;
                                entry.entry(c).or_default();
                            }
                        }
                    }
                }
            }
            let rows: Vec<Value> = sums
                .into_iter()
                .map(|(key, numbers)| {
                    let mut row = serde_json::Map::new();
                    for (c, v) in key {
                        row.insert(c, json!(v));
                    }
                    for (c, n) in numbers {
                        row.insert(c, json!(n));
                    }
                    Value::Object(row)
                })
                .collect();
            out.insert(
                name.clone(),
                json!({"columns": columns, "rows": rows, "suppressed_cells": suppressed}),
            );
        }
        out
    }
}

/// The returns an instance has collected (`federation/returns/`), one file
/// per census instant.
pub struct ReturnStore {
    dir: PathBuf,
}

impl ReturnStore {
    pub fn open(data_dir: &Path) -> ReturnStore {
        ReturnStore {
            dir: crate::identity::dir_in(data_dir).join("returns"),
        }
    }

    fn path(&self, name: &str, census_at: DateTime<Utc>) -> PathBuf {
        self.dir.join(format!(
            "{name}-{}.json",
            census_at.format("%Y%m%dT%H%M%SZ")
        ))
    }

    pub fn save(&self, r: &CollectedReturn) -> Result<(), crate::store::StoreError> {
        crate::store::write_durably(
            &self.path(&r.name, r.census_at),
            &serde_json::to_vec_pretty(r).expect("a return serialises"),
        )
    }

    pub fn get(&self, name: &str, census_at: DateTime<Utc>) -> Option<CollectedReturn> {
        let bytes = std::fs::read(self.path(name, census_at)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Every collected return, the latest census instant first.
    pub fn list(&self) -> Vec<CollectedReturn> {
        let mut all: Vec<CollectedReturn> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        all.sort_by_key(|r: &CollectedReturn| std::cmp::Reverse(r.census_at));
        all
    }
}

/// Ask `members` that have not yet submitted (per `previous`) every
/// question of `definition` for `census_at`, and record what each did.
pub async fn collect(
    fed: &Federation,
    definition: &ReturnDefinition,
    census_at: DateTime<Utc>,
    members: &[String],
    previous: Option<CollectedReturn>,
) -> CollectedReturn {
    let now = Utc::now();
    let mut collected = previous.unwrap_or_else(|| CollectedReturn {
        name: definition.name.clone(),
        census_at,
        first_asked_at: now,
        last_asked_at: now,
        members: Vec::new(),
    });
    collected.last_asked_at = now;
    for m in members {
        if !collected.members.iter().any(|s| &s.member == m) {
            collected.members.push(Submission {
                member: m.clone(),
                status: "unreachable".into(),
                submitted_at: None,
                sections: BTreeMap::new(),
                reason: Some("not asked yet".into()),
                attempts: 0,
            });
        }
    }
    let outstanding: Vec<String> = collected
        .members
        .iter()
        .filter(|s| s.status != "submitted" && members.contains(&s.member))
        .map(|s| s.member.clone())
        .collect();
    if outstanding.is_empty() {
        return collected;
    }
    let questions = definition.for_census(census_at);
    // Members at once, each member's questions one after another: a
    // member answers one question at a time, as its analysts would.
    let asked = futures::future::join_all(outstanding.iter().map(|m| {
        let questions = &questions;
        async move {
            let mut sections = BTreeMap::new();
            for q in questions {
                // The collection is the instance's own work, on its schedule.
                let a = ask(fed, q, std::slice::from_ref(m), RETURNS_COLLECTOR)
                    .await
                    .map_err(|e| ("refused".to_string(), format!("{}: {e}", q.name)))?
                    .pop()
                    .expect("one member asked, one answer");
                match (a.status.as_str(), a.answer) {
                    ("answered", Some(v)) => {
                        sections.insert(q.name.clone(), v);
                    }
                    // A member that answers some questions and not others
                    // has not submitted: its figures would not add up to a
                    // return, and asking the rest would only add load.
                    (status, _) => {
                        // Answered with nothing in it is no answer.
                        let status = if status == "answered" {
                            "refused"
                        } else {
                            status
                        };
                        let why = a.reason.unwrap_or_else(|| status.to_string());
                        return Err((status.to_string(), format!("{}: {why}", q.name)));
                    }
                }
            }
            Ok(sections)
        }
    }))
    .await;
    for (member, outcome) in outstanding.iter().zip(asked) {
        let s = collected
            .members
            .iter_mut()
            .find(|s| &s.member == member)
            .expect("added above");
        s.attempts += 1;
        match outcome {
            Ok(sections) => {
                s.status = "submitted".into();
                s.submitted_at = Some(Utc::now());
                s.sections = sections;
                s.reason = None;
            }
            Err((status, reason)) => {
                s.status = status;
                s.reason = Some(reason);
            }
        }
    }
    collected
}

/// Collect the return on its schedule for as long as the instance runs:
/// each census instant once it is due, asking again every `retry` those
/// members that have not submitted, until the next one falls due.
pub async fn run_schedule(
    fed: Arc<Federation>,
    definition: ReturnDefinition,
    schedule: ReturnSchedule,
    store: ReturnStore,
    retry: Duration,
) {
    loop {
        let census_at = schedule.latest_due(Utc::now());
        let previous = store.get(&definition.name, census_at);
        let due = match &previous {
            None => true,
            Some(p) => {
                p.submitted() < p.members.len()
                    && Utc::now() - p.last_asked_at
                        >= chrono::Duration::from_std(retry).unwrap_or_default()
            }
        };
        if due {
            let members = schedule.members(&fed);
            let collected = collect(&fed, &definition, census_at, &members, previous).await;
            tracing::info!(
                census_at = %census_at,
                submitted = collected.submitted(),
                members = collected.members.len(),
                "{} collected",
                definition.name
            );
            if let Err(e) = store.save(&collected) {
                tracing::error!(error = %e, "the collected return could not be kept");
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// A member's own return for `census_at`, computed in `session` (which
/// should be for the return's purpose and read the tables as of
/// `census_at`): each question's answer by name.
pub async fn compute(
    session: &GovernedSession,
    definition: &ReturnDefinition,
    census_at: DateTime<Utc>,
) -> Result<BTreeMap<String, Value>, String> {
    let mut out = BTreeMap::new();
    for q in definition.for_census(census_at) {
        let answer = crate::questions::run(session, &q)
            .await
            .map_err(|e| format!("{}: {e}", q.name))?;
        if let Some(why) = answer["no_data"].as_str() {
            return Err(why.to_string());
        }
        out.insert(q.name.clone(), answer);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_daily_return_is_due_after_its_census_time_and_grace() {
        let s = ReturnSchedule::default();
        assert_eq!(
            s.latest_due(at("2026-11-22T08:01:00Z")),
            at("2026-11-21T08:00:00Z"),
            "within the grace period the previous day's is the latest due"
        );
        assert_eq!(
            s.latest_due(at("2026-11-22T08:02:00Z")),
            at("2026-11-22T08:00:00Z")
        );
        assert_eq!(
            s.latest_due(at("2026-11-22T07:00:00Z")),
            at("2026-11-21T08:00:00Z")
        );
        let every = ReturnSchedule {
            every_minutes: Some(2),
            grace_secs: Some(20),
            ..Default::default()
        };
        assert_eq!(
            every.latest_due(at("2026-11-22T10:03:30Z")),
            at("2026-11-22T10:02:00Z")
        );
        assert_eq!(
            every.latest_due(at("2026-11-22T10:02:10Z")),
            at("2026-11-22T10:00:00Z")
        );
    }

    #[test]
    fn the_built_in_return_binds_its_census_instant() {
        let d = ReturnDefinition::daily_operational();
        assert_eq!(d.questions.len(), 5);
        for q in d.for_census(at("2026-11-22T08:00:00Z")) {
            let sql = q.bound_sql().unwrap();
            assert!(!sql.contains(":census_at"), "{sql}");
            assert!(
                sql.contains("TIMESTAMP '2026-11-22T08:00:00.000000Z'"),
                "{sql}"
            );
        }
    }

    #[test]
    fn the_picture_sums_members_by_row_and_counts_what_was_suppressed() {
        let sub = |m: &str, rows: Value| Submission {
            member: m.into(),
            status: "submitted".into(),
            submitted_at: None,
            sections: BTreeMap::from([(
                "beds".to_string(),
                json!({"columns": ["bed_type", "beds_occupied"], "rows": rows}),
            )]),
            reason: None,
            attempts: 1,
        };
        let mut declined = sub(
            "RXC",
            json!([{"bed_type": "maternity", "beds_occupied": 100}]),
        );
        declined.status = "declined".into();
        let r = CollectedReturn {
            name: "daily".into(),
            census_at: at("2026-11-22T08:00:00Z"),
            first_asked_at: at("2026-11-22T08:02:00Z"),
            last_asked_at: at("2026-11-22T08:02:00Z"),
            members: vec![
                sub(
                    "RXA",
                    json!([{"bed_type": "general and acute", "beds_occupied": 200},
                           {"bed_type": "maternity", "beds_occupied": null}]),
                ),
                sub(
                    "RXB",
                    json!([{"bed_type": "general and acute", "beds_occupied": 150}]),
                ),
                declined,
            ],
        };
        let p = &r.picture()["beds"];
        assert_eq!(
            p["rows"],
            json!([{"bed_type": "general and acute", "beds_occupied": 350},
                   {"bed_type": "maternity", "beds_occupied": 0}])
        );
        assert_eq!(p["suppressed_cells"], 1);
        assert_eq!(r.submitted(), 2);
    }
}
