//! Federated questions: a named, versioned aggregate question an ICB or the
//! national instance asks of its members, and each member's decision.
//!
//! A member answers only a question its information-governance lead has
//! approved: the same asker, name, version and text (an approval is of the
//! question's digest, so a question changed under the same name is
//! declined). Approvals and withdrawals are audited. An approved question
//! runs in a governed session of the member's own, as the principal
//! `peer:<asker>` in the policy's `federation` role, so the member's policy,
//! national data opt-out and disclosure control shape the answer before it
//! leaves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use fdp_govern::{AuditEntry, Governance, Principal, Purpose, SessionRequest, TableSource};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::released::Released;

/// The role a peer's question runs in, in the member's policy.
pub const FEDERATION_ROLE: &str = "federation";

/// A question as the asker publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub name: String,
    pub version: u32,
    /// `planning` for aggregate returns; the member's policy decides what it
    /// may see.
    pub purpose: Purpose,
    /// One query over the canonical model. It may name parameters as
    /// `:name`, each declared in `parameters`.
    pub sql: String,
    #[serde(default)]
    pub description: String,
    /// The parameters the query takes, by name, and their types.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, ParameterType>,
    /// The values asked with, by parameter name. Not part of what is
    /// approved: an approval is of the question, whatever it is asked for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arguments: BTreeMap<String, String>,
    /// Read the member's tables as they stood at this instant (Delta time
    /// travel), so that the answer is the same whenever it is computed.
    /// Like the arguments, not part of what is approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
    /// The principal at the asking instance who asked: audited there and
    /// at every member that answers. Not part of what is approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_by: Option<String>,
}

impl Question {
    /// The question a product offers the federation
    /// (`fdp_products::platform::QuestionSpec`), or why it is not one.
    pub fn from_spec(spec: &fdp_products::platform::QuestionSpec) -> Result<Question, String> {
        let parameters = spec
            .parameters
            .iter()
            .map(|(name, kind)| {
                serde_json::from_value(Value::String(kind.clone()))
                    .map(|t| (name.clone(), t))
                    .map_err(|_| {
                        format!(
                            "{}: parameter {name} is of type {kind:?}: give timestamp, date or integer",
                            spec.name
                        )
                    })
            })
            .collect::<Result<_, String>>()?;
        Ok(Question {
            name: spec.name.clone(),
            version: spec.version,
            purpose: spec.purpose,
            sql: spec.sql.clone(),
            description: spec.description.clone(),
            parameters,
            arguments: BTreeMap::new(),
            as_of: None,
            asked_by: None,
        })
    }
}

/// What a parameter may be given as. Each is checked and written into the
/// query as a literal of its type, so an argument can never change the
/// query's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    /// An instant, RFC 3339 (`2026-11-22T08:00:00Z`).
    Timestamp,
    /// A day, `YYYY-MM-DD`.
    Date,
    /// A whole number.
    Integer,
}

impl ParameterType {
    fn as_str(self) -> &'static str {
        match self {
            ParameterType::Timestamp => "timestamp",
            ParameterType::Date => "date",
            ParameterType::Integer => "integer",
        }
    }

    /// `value` as a number that orders as values of this type do, for
    /// checking it against an approved range. A timestamp or date bound may
    /// also be `now` or `now-Nd` (N days before `now`).
    fn ordinal(self, name: &str, value: &str, now: DateTime<Utc>) -> Result<i64, String> {
        let relative = match value.trim() {
            "now" => Some(now),
            v => v
                .strip_prefix("now-")
                .and_then(|d| d.strip_suffix('d'))
                .and_then(|d| d.parse::<i64>().ok())
                .map(|d| now - chrono::Duration::days(d)),
        };
        match (self, relative) {
            (ParameterType::Timestamp, Some(t)) => return Ok(t.timestamp_micros()),
            (ParameterType::Date, Some(t)) => return Ok(t.date_naive().to_epoch_days().into()),
            _ => {}
        }
        let bad = |what: &str| format!("{name} = {value:?} is not {what}");
        match self {
            ParameterType::Timestamp => DateTime::parse_from_rfc3339(value)
                .map(|t| t.timestamp_micros())
                .map_err(|_| bad("an RFC 3339 timestamp, `now` or `now-Nd`")),
            ParameterType::Date => chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .map(|d| d.to_epoch_days().into())
                .map_err(|_| bad("a date (YYYY-MM-DD), `now` or `now-Nd`")),
            ParameterType::Integer => value.parse().map_err(|_| bad("a whole number")),
        }
    }

    /// `value` as a SQL literal of this type.
    fn literal(self, name: &str, value: &str) -> Result<String, String> {
        let bad = |what: &str| format!("argument {name} = {value:?} is not {what}");
        match self {
            ParameterType::Timestamp => {
                let t = DateTime::parse_from_rfc3339(value)
                    .map_err(|_| bad("an RFC 3339 timestamp"))?
                    .with_timezone(&Utc);
                Ok(format!(
                    "TIMESTAMP '{}'",
                    t.format("%Y-%m-%dT%H:%M:%S%.6fZ")
                ))
            }
            ParameterType::Date => {
                let d = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                    .map_err(|_| bad("a date (YYYY-MM-DD)"))?;
                Ok(format!("DATE '{}'", d.format("%Y-%m-%d")))
            }
            ParameterType::Integer => {
                let n: i64 = value.parse().map_err(|_| bad("a whole number"))?;
                Ok(n.to_string())
            }
        }
    }
}

impl Question {
    /// SHA-256 of what is approved: name, version, purpose and the query.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.name.as_str(),
            &self.version.to_string(),
            self.purpose.as_str(),
            self.sql.trim(),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        // Questions without parameters keep the digest they always had.
        for (name, ty) in &self.parameters {
            h.update(format!("{name}:{}", ty.as_str()).as_bytes());
            h.update([0u8]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The query with its arguments written in as literals. Every
    /// parameter the query names must be declared and given; `::` casts and
    /// text in quotes are left alone.
    pub fn bound_sql(&self) -> Result<String, String> {
        for name in self.arguments.keys() {
            if !self.parameters.contains_key(name) {
                return Err(format!(
                    "{} takes no parameter {name} (it takes: {})",
                    self.name,
                    self.parameters
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        fdp_govern::statement::bind_named(&self.sql, |name| {
            let ty = self
                .parameters
                .get(name)
                .ok_or_else(|| format!("{} names :{name}, which it does not declare", self.name))?;
            let value = self
                .arguments
                .get(name)
                .ok_or_else(|| format!("{} was asked without a value for :{name}", self.name))?;
            ty.literal(name, value)
        })
    }

    /// The same question, asked with `arguments`.
    pub fn with_arguments(&self, arguments: BTreeMap<String, String>) -> Question {
        Question {
            arguments,
            ..self.clone()
        }
    }

    /// A question file (TOML).
    pub fn load(path: &Path) -> Result<Question, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// How far an approval reaches: the values each parameter may be asked
/// with, and how far back the tables may be read. Asks outside it are
/// declined, so that a question cannot be slid along its parameters, or
/// back in time, further than the IG lead agreed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reach {
    /// For every parameter the question takes, its least and greatest value.
    #[serde(default)]
    pub ranges: BTreeMap<String, ValueRange>,
    /// How many days back `as_of` may reach; none: never read the tables
    /// as they stood before (only as they are).
    #[serde(default)]
    pub as_of_days: Option<u32>,
}

/// The least and greatest value of one parameter: values of its type, or for
/// a timestamp or date `now` or `now-Nd`, counted from when it is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueRange {
    pub min: String,
    pub max: String,
}

impl std::str::FromStr for ValueRange {
    type Err = String;
    /// `MIN..MAX`.
    fn from_str(s: &str) -> Result<ValueRange, String> {
        let (min, max) = s
            .split_once("..")
            .ok_or_else(|| format!("{s:?}: give a range as MIN..MAX"))?;
        Ok(ValueRange {
            min: min.trim().to_string(),
            max: max.trim().to_string(),
        })
    }
}

impl Reach {
    /// What is wrong with this reach for `question`: every parameter needs
    /// a range of values of its type, least first, and no other.
    pub fn check_for(&self, question: &Question) -> Result<(), String> {
        let now = Utc::now();
        let mut problems = Vec::new();
        for (name, ty) in &question.parameters {
            let Some(r) = self.ranges.get(name) else {
                problems.push(format!(
                    "{name}: give the range of values it may be asked with"
                ));
                continue;
            };
            match (ty.ordinal(name, &r.min, now), ty.ordinal(name, &r.max, now)) {
                (Ok(lo), Ok(hi)) if lo > hi => {
                    problems.push(format!("{name}: {} is after {}", r.min, r.max))
                }
                (Ok(_), Ok(_)) => {}
                (Err(e), _) | (_, Err(e)) => problems.push(e),
            }
        }
        for name in self.ranges.keys() {
            if !question.parameters.contains_key(name) {
                problems.push(format!("{name}: {} takes no such parameter", question.name));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Why `question` as asked is outside this reach, if it is.
    fn admits(&self, question: &Question, now: DateTime<Utc>) -> Result<(), String> {
        for (name, ty) in &question.parameters {
            let Some(value) = question.arguments.get(name) else {
                continue; // bound_sql refuses it, saying so
            };
            let r = self
                .ranges
                .get(name)
                .ok_or_else(|| format!("no range of {name} is approved"))?;
            let v = ty.ordinal(name, value, now)?;
            let lo = ty.ordinal(name, &r.min, now)?;
            let hi = ty.ordinal(name, &r.max, now)?;
            if v < lo || v > hi {
                return Err(format!(
                    "{name} = {value} is outside the approved range {}..{}",
                    r.min, r.max
                ));
            }
        }
        if let Some(at) = question.as_of {
            let Some(days) = self.as_of_days else {
                return Err(
                    "reading the tables as they stood before (as_of) is not approved".into(),
                );
            };
            // A little skew between the instances' clocks is not a future.
            let (earliest, latest) = (
                now - chrono::Duration::days(days.into()),
                now + chrono::Duration::minutes(5),
            );
            if at < earliest || at > latest {
                return Err(format!(
                    "as_of {} is outside the approved {days} days back",
                    at.to_rfc3339()
                ));
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .ranges
            .iter()
            .map(|(n, r)| format!("{n} in {}..{}", r.min, r.max))
            .collect();
        parts.push(match self.as_of_days {
            Some(d) => format!("as_of up to {d} days back"),
            None => "no as_of".into(),
        });
        parts.join(", ")
    }
}

/// An IG lead's decision on one question from one asker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub from: String,
    pub name: String,
    pub version: u32,
    pub digest: String,
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    pub withdrawn_at: Option<DateTime<Utc>>,
    /// Approvals made before reach was recorded reach nothing: a question
    /// with parameters, or asked as of before, is declined until approved
    /// again.
    #[serde(default)]
    pub reach: Reach,
}

impl Approval {
    /// Whether this approval, not withdrawn, is of `question` from `from`
    /// as it is worded.
    pub fn covers(&self, from: &str, question: &Question) -> bool {
        self.from == from
            && self.name == question.name
            && self.version == question.version
            && self.digest == question.digest()
            && self.withdrawn_at.is_none()
    }
}

/// The approvals of one instance (`federation/approvals.json`).
pub struct Approvals {
    path: PathBuf,
}

impl Approvals {
    pub fn open(data_dir: &Path) -> Approvals {
        Approvals {
            path: crate::identity::dir_in(data_dir).join("approvals.json"),
        }
    }

    pub fn list(&self) -> Result<Vec<Approval>, String> {
        crate::store::read_json_or_default(&self.path)
    }

    fn save(&self, all: &[Approval]) -> Result<(), String> {
        crate::store::write_durably(
            &self.path,
            &serde_json::to_vec_pretty(all).expect("approvals serialise"),
        )
        .map_err(|e| e.to_string())
    }

    /// Approve `question` from `from` within `reach`, audited.
    pub fn approve(
        &self,
        governance: &Governance,
        from: &str,
        question: &Question,
        by: &str,
        reason: &str,
        reach: Reach,
    ) -> Result<(), String> {
        reach
            .check_for(question)
            .map_err(|e| format!("{} v{}: {e}", question.name, question.version))?;
        let what = format!(
            "{} v{} from {from} ({})",
            question.name,
            question.version,
            reach.describe()
        );
        let mut all = self.list()?;
        all.retain(|a| {
            !(a.from == from && a.name == question.name && a.version == question.version)
        });
        all.push(Approval {
            from: from.to_string(),
            name: question.name.clone(),
            version: question.version,
            digest: question.digest(),
            by: by.to_string(),
            reason: reason.to_string(),
            at: Utc::now(),
            withdrawn_at: None,
            reach,
        });
        self.save(&all)?;
        audit_decision(
            governance,
            Decision {
                kind: "question-approval",
                what: &what,
                by,
                reason,
            },
        )
    }

    /// Withdraw an approval, audited; later asks are declined.
    pub fn withdraw(
        &self,
        governance: &Governance,
        from: &str,
        name: &str,
        version: u32,
        by: &str,
        reason: &str,
    ) -> Result<(), String> {
        let mut all = self.list()?;
        let Some(a) = all.iter_mut().find(|a| {
            a.from == from && a.name == name && a.version == version && a.withdrawn_at.is_none()
        }) else {
            return Err(format!(
                "no approval of {name} v{version} from {from} to withdraw"
            ));
        };
        a.withdrawn_at = Some(Utc::now());
        self.save(&all)?;
        audit_decision(
            governance,
            Decision {
                kind: "question-withdrawal",
                what: &format!("{name} v{version} from {from}"),
                by,
                reason,
            },
        )
    }

    /// Whether `question` from `from` is approved now, as it is worded.
    pub fn approved(&self, from: &str, question: &Question) -> Result<bool, String> {
        Ok(self.list()?.iter().any(|a| a.covers(from, question)))
    }

    /// Whether `question` from `from` may be answered as it is asked: it is
    /// approved as worded, and its arguments and `as_of` are within the
    /// approval's reach; if not, why.
    pub fn admits(&self, from: &str, question: &Question) -> Result<(), String> {
        let all = self.list()?;
        let Some(a) = all.iter().find(|a| a.covers(from, question)) else {
            return Err(format!(
                "{} v{} from {from} is not approved by this instance's information-governance lead",
                question.name, question.version
            ));
        };
        a.reach.admits(question, Utc::now()).map_err(|e| {
            format!(
                "{} v{} from {from} is approved, but not as asked: {e}",
                question.name, question.version
            )
        })
    }
}

/// An IG lead's decision, audited.
struct Decision<'a> {
    kind: &'a str,
    what: &'a str,
    by: &'a str,
    reason: &'a str,
}

fn audit_decision(governance: &Governance, d: Decision) -> Result<(), String> {
    let Decision {
        kind,
        what,
        by,
        reason,
    } = d;
    governance
        .audit()
        .append(AuditEntry {
            kind: kind.into(),
            principal: by.to_string(),
            organisation: Some(governance.organisation().to_string()),
            justification: Some(reason.to_string()),
            channel: "federation".into(),
            what: what.to_string(),
            outcome: "ok".into(),
            ..AuditEntry::default()
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Answers approved questions from peers through the instance's governance.
pub struct QuestionAnswerer<S> {
    governance: Arc<Governance>,
    source: S,
    approvals: Approvals,
    released: Released,
}

impl<S: TableSource + Send + Sync> QuestionAnswerer<S> {
    pub fn new(governance: Arc<Governance>, source: S, data_dir: &Path) -> QuestionAnswerer<S> {
        QuestionAnswerer {
            governance,
            source,
            approvals: Approvals::open(data_dir),
            released: Released::open(data_dir),
        }
    }

    /// A question declined, audited with who asked and why.
    fn decline(&self, principal: &str, from: &str, q: &Question, why: String) -> String {
        let _ = self.governance.audit().append(AuditEntry {
            kind: "federated-question".into(),
            principal: principal.to_string(),
            organisation: Some(from.to_string()),
            purpose: Some(q.purpose.as_str().into()),
            channel: "federation".into(),
            what: asked(q),
            outcome: format!("refused: {why}"),
            ..AuditEntry::default()
        });
        why
    }

    /// Run an approved question in a governed session: its columns and rows
    /// (after disclosure control), or why it was declined.
    pub async fn answer(&self, from: &str, q: &Question) -> Result<Value, String> {
        // The person who asked is named in this instance's audit too.
        let asked_by = q
            .asked_by
            .as_deref()
            .filter(|a| valid_principal_name(a))
            .ok_or_else(|| {
                format!(
                    "{} v{} from {from} does not say who asked it, so it cannot be audited",
                    q.name, q.version
                )
            })?;
        let principal_name = format!("peer:{from}/{asked_by}");
        if let Err(why) = self.approvals.admits(from, q) {
            return Err(self.decline(&principal_name, from, q, why));
        }
        let principal = Principal {
            name: principal_name.clone(),
            roles: vec![FEDERATION_ROLE.to_string()],
            organisation: Some(from.to_string()),
        };
        let mut req = SessionRequest::new(principal, q.purpose, "federation");
        if let Some(t) = q.as_of {
            req.as_of = fdp_govern::AsOf::Timestamp(t);
        }
        req.justification = Some(format!(
            "federated question {} v{} (approved)",
            q.name, q.version
        ));
        let session = self
            .governance
            .session(&self.source, req)
            .await
            .map_err(|e| e.to_string())?;
        let answer = run(&session, q).await?;
        if answer.get("no_data").is_none() {
            let rule = self.governance.policy().disclosure;
            if let Err(why) = self.released.release(from, q, &asked(q), &answer, rule) {
                return Err(self.decline(&principal_name, from, q, why));
            }
        }
        Ok(answer)
    }
}

/// A principal's name as an asking instance gives it: printable, short,
/// and without the separators the audit's principal names use.
fn valid_principal_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@:".contains(c))
}

/// What was asked, for the audit: the question, its arguments and `as_of`.
fn asked(q: &Question) -> String {
    let mut s = format!("{} v{}", q.name, q.version);
    if !q.arguments.is_empty() {
        let args: Vec<String> = q
            .arguments
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!(" with {}", args.join(", ")));
    }
    if let Some(at) = q.as_of {
        s.push_str(&format!(" as of {}", at.to_rfc3339()));
    }
    s
}

/// Run a question in a governed session: its answer, or for an instant
/// before the instance held the data it reads, an answer that says so
/// (`no_data`), never a count of nothing as zero.
pub async fn run(session: &fdp_govern::GovernedSession, q: &Question) -> Result<Value, String> {
    let sql = q.bound_sql()?;
    if let Some(at) = q.as_of {
        let missing = session.missing_tables(&sql).map_err(|e| e.to_string())?;
        if !missing.is_empty() {
            return Ok(json!({
                "question": q.name,
                "version": q.version,
                "arguments": q.arguments,
                "as_of": q.as_of,
                "no_data": format!(
                    "no data at {}: this instance's {} began after that instant",
                    at.to_rfc3339(),
                    missing.join(", ")
                ),
            }));
        }
    }
    let result = session.query(&sql).await.map_err(|e| e.to_string())?;
    answer_json(q, &result)
}

/// A question's answer as a member sends it (or reports it for itself):
/// its columns, rows, disclosure control and the table versions it was
/// computed from.
pub fn answer_json(q: &Question, result: &fdp_govern::QueryResult) -> Result<Value, String> {
    Ok(json!({
        "question": q.name,
        "version": q.version,
        "arguments": q.arguments,
        "as_of": q.as_of,
        "columns": result.column_names(),
        "rows": result.rows_json().map_err(|e| e.to_string())?,
        "disclosure_control": result.disclosure.as_ref().map(|d| d.summary()),
        // How its counts were rounded, for an asker that sums them.
        "rounded_to": result.disclosure.as_ref().map(|d| d.rounded_to),
        "tables": result.versions,
        "computed_at": Utc::now(),
    }))
}

/// A member's status when it held no data at the instant asked about.
pub const NO_DATA: &str = "no-data";

/// One member's part in a federated answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberAnswer {
    pub member: String,
    /// `answered`, `declined`, `unreachable`, `refused` or `no-data`.
    pub status: String,
    pub answer: Option<Value>,
    pub reason: Option<String>,
}

/// Ask `members` `question` at once, each through the outbox, and gather
/// what each said. A member that cannot be reached now is reported so and
/// not asked again later: a late answer would be to a question no one is
/// waiting on.
///
/// `asked_by` is the principal asking here: the question carries it to each
/// member, and the ask is audited here with it and what each member said.
pub async fn ask(
    fed: &crate::node::Federation,
    question: &Question,
    members: &[String],
    asked_by: &str,
) -> Result<Vec<MemberAnswer>, String> {
    if !valid_principal_name(asked_by) {
        return Err(format!(
            "{asked_by:?} cannot name who asks: use letters, digits and . _ - @ : only"
        ));
    }
    let question = Question {
        asked_by: Some(asked_by.to_string()),
        ..question.clone()
    };
    let body = serde_json::to_value(&question).expect("a question serialises");
    let asks = members.iter().map(|m| {
        let body = body.clone();
        async move {
            // A site that only connects out has this long to collect it.
            let outcome = fed
                .request(m, "question", body, std::time::Duration::from_secs(30))
                .await;
            match outcome {
                Ok(a) if a.body["answer"].get("no_data").is_some() => MemberAnswer {
                    member: m.clone(),
                    status: NO_DATA.into(),
                    answer: None,
                    reason: a.body["answer"]["no_data"].as_str().map(str::to_string),
                },
                Ok(a) if a.body.get("declined").is_some() => MemberAnswer {
                    member: m.clone(),
                    status: "declined".into(),
                    answer: None,
                    reason: a.body["declined"].as_str().map(str::to_string),
                },
                Ok(a) => MemberAnswer {
                    member: m.clone(),
                    status: "answered".into(),
                    answer: a.body.get("answer").cloned(),
                    reason: None,
                },
                Err(e) => MemberAnswer {
                    member: m.clone(),
                    status: if e.is_transient() {
                        "unreachable"
                    } else {
                        "refused"
                    }
                    .into(),
                    answer: None,
                    reason: Some(e.to_string()),
                },
            }
        }
    });
    let answers = futures::future::join_all(asks).await;
    let said: Vec<String> = answers
        .iter()
        .map(|a| format!("{} {}", a.member, a.status))
        .collect();
    fed.audit_log()
        .append(AuditEntry {
            kind: "federated-question".into(),
            principal: asked_by.to_string(),
            organisation: Some(fed.identity.ods.clone()),
            purpose: Some(question.purpose.as_str().into()),
            channel: "federation".into(),
            what: format!("ask {} of {}", asked(&question), members.join(", ")),
            outcome: said.join("; "),
            ..AuditEntry::default()
        })
        .map_err(|e| format!("the ask could not be audited: {e}"))?;
    Ok(answers)
}

/// The members' answers combined by the product in `registry` that offers
/// `question` (sums, and the rates and intervals of the sums), where it
/// combines them: its columns' names, its rows and what it says of
/// disclosure control. `None` where no product combines the question.
pub fn combined_by_product(
    registry: &fdp_products::platform::Registry,
    question: &str,
    answers: &[MemberAnswer],
) -> Result<Option<Value>, String> {
    let Some(product) = registry
        .manifests()
        .into_iter()
        .find(|m| m.offers.questions.iter().any(|q| q.name == question))
        .and_then(|m| registry.get(&m.id).cloned())
    else {
        return Ok(None);
    };
    let rows: Vec<fdp_products::platform::MemberRows> = answers
        .iter()
        .filter_map(|a| {
            let answer = a.answer.as_ref()?;
            Some(fdp_products::platform::MemberRows {
                member: a.member.clone(),
                rows: answer["rows"].as_array()?.clone(),
                rounded_to: answer["rounded_to"].as_u64().unwrap_or(0),
            })
        })
        .collect();
    match product.combine(question, &rows) {
        None => Ok(None),
        Some(Err(e)) => Err(format!("combining the answers to {question}: {e}")),
        Some(Ok(answer)) => Ok(Some(json!({
            "columns": answer.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
            "rows": answer.rows,
            "disclosure": answer.disclosure,
        }))),
    }
}

/// Every answering member's rows, each marked with the member it came from.
pub fn combine(answers: &[MemberAnswer]) -> Vec<Value> {
    let mut combined = Vec::new();
    for a in answers {
        if let Some(rows) = a.answer.as_ref().and_then(|v| v["rows"].as_array()) {
            for r in rows {
                let mut r = r.clone();
                r["member"] = json!(a.member);
                combined.push(r);
            }
        }
    }
    combined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(sql: &str) -> Question {
        Question {
            name: "q".into(),
            version: 1,
            purpose: Purpose::Planning,
            sql: sql.into(),
            description: String::new(),
            parameters: BTreeMap::from([
                ("census_at".to_string(), ParameterType::Timestamp),
                ("n".to_string(), ParameterType::Integer),
            ]),
            arguments: BTreeMap::new(),
            as_of: None,
            asked_by: None,
        }
    }

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn arguments_are_written_in_as_literals_of_their_type() {
        let q =
            question("SELECT x::date, ':n' FROM t WHERE at <= :census_at LIMIT :n").with_arguments(
                args(&[("census_at", "2026-11-22T09:00:00+01:00"), ("n", "5")]),
            );
        assert_eq!(
            q.bound_sql().unwrap(),
            "SELECT x::date, ':n' FROM t WHERE at <= TIMESTAMP '2026-11-22T08:00:00.000000Z' LIMIT 5"
        );
    }

    #[test]
    fn an_argument_cannot_change_the_query() {
        let q = question("SELECT * FROM t WHERE at <= :census_at LIMIT :n");
        let bad = q.with_arguments(args(&[
            ("census_at", "2026-11-22T08:00:00Z' OR 1=1 --"),
            ("n", "1"),
        ]));
        assert!(bad.bound_sql().unwrap_err().contains("census_at"));
        let bad = q.with_arguments(args(&[
            ("census_at", "2026-11-22T08:00:00Z"),
            ("n", "1; DROP"),
        ]));
        assert!(bad.bound_sql().unwrap_err().contains("whole number"));
        let missing = q.with_arguments(args(&[("n", "1")]));
        assert!(missing.bound_sql().unwrap_err().contains(":census_at"));
        let unknown = q.with_arguments(args(&[
            ("census_at", "2026-11-22T08:00:00Z"),
            ("n", "1"),
            ("other", "1"),
        ]));
        assert!(unknown.bound_sql().unwrap_err().contains("other"));
        let undeclared = question("SELECT :what");
        assert!(undeclared
            .bound_sql()
            .unwrap_err()
            .contains("does not declare"));
    }

    #[test]
    fn an_approval_reaches_only_its_ranges_and_days_back() {
        let q = question("SELECT :census_at, :n");
        let reach = Reach {
            ranges: BTreeMap::from([
                (
                    "census_at".to_string(),
                    "now-7d..now".parse::<ValueRange>().unwrap(),
                ),
                ("n".to_string(), "1..10".parse().unwrap()),
            ]),
            as_of_days: Some(2),
        };
        reach.check_for(&q).unwrap();
        let now = Utc::now();
        let asked = |at: DateTime<Utc>, n: &str, as_of: Option<DateTime<Utc>>| Question {
            as_of,
            ..q.with_arguments(args(&[("census_at", &at.to_rfc3339()), ("n", n)]))
        };
        let day = chrono::Duration::days(1);
        assert!(reach.admits(&asked(now - day, "5", None), now).is_ok());
        assert!(reach
            .admits(&asked(now - day, "5", Some(now - day)), now)
            .is_ok());
        let e = reach
            .admits(&asked(now - day * 8, "5", None), now)
            .unwrap_err();
        assert!(e.contains("census_at") && e.contains("outside"), "{e}");
        let e = reach
            .admits(&asked(now - day, "11", None), now)
            .unwrap_err();
        assert!(e.contains("n = 11"), "{e}");
        let e = reach
            .admits(&asked(now - day, "5", Some(now - day * 3)), now)
            .unwrap_err();
        assert!(e.contains("2 days back"), "{e}");
        let e = Reach::default()
            .admits(&asked(now, "5", None), now)
            .unwrap_err();
        assert!(e.contains("no range"), "{e}");
        // Every parameter needs a range, least first, of its type.
        let e = Reach::default().check_for(&q).unwrap_err();
        assert!(
            e.contains("census_at: give the range") && e.contains("n: give"),
            "{e}"
        );
        let backwards = Reach {
            ranges: BTreeMap::from([
                ("census_at".to_string(), "now..now-1d".parse().unwrap()),
                ("n".to_string(), "x..2".parse().unwrap()),
                ("m".to_string(), "1..2".parse().unwrap()),
            ]),
            as_of_days: None,
        };
        let e = backwards.check_for(&q).unwrap_err();
        assert!(
            e.contains("is after")
                && e.contains("whole number")
                && e.contains("m: q takes no such parameter"),
            "{e}"
        );
    }

    #[test]
    fn arguments_are_not_part_of_what_is_approved_but_parameters_are() {
        let q = question("SELECT :census_at");
        let asked = q.with_arguments(args(&[("census_at", "2026-11-22T08:00:00Z")]));
        assert_eq!(q.digest(), asked.digest());
        let mut retyped = q.clone();
        retyped
            .parameters
            .insert("census_at".into(), ParameterType::Date);
        assert_ne!(q.digest(), retyped.digest());
    }
}
