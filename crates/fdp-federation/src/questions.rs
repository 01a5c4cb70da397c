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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use fdp_govern::{AuditEntry, Governance, Principal, Purpose, SessionRequest, TableSource};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::envelope::Envelope;
use crate::node::{Handler, Peer};

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
    /// One query over the canonical model.
    pub sql: String,
    #[serde(default)]
    pub description: String,
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
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A question file (TOML).
    pub fn load(path: &Path) -> Result<Question, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
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
        match std::fs::read(&self.path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", self.path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    fn save(&self, all: &[Approval]) -> Result<(), String> {
        crate::store::write_durably(
            &self.path,
            &serde_json::to_vec_pretty(all).expect("approvals serialise"),
        )
        .map_err(|e| e.to_string())
    }

    /// Approve `question` from `from`, audited.
    pub fn approve(
        &self,
        governance: &Governance,
        from: &str,
        question: &Question,
        by: &str,
        reason: &str,
    ) -> Result<(), String> {
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
        });
        self.save(&all)?;
        audit_decision(governance, "question-approval", from, question, by, reason)
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
        let q = Question {
            name: name.to_string(),
            version,
            purpose: Purpose::Planning,
            sql: String::new(),
            description: String::new(),
        };
        audit_decision(governance, "question-withdrawal", from, &q, by, reason)
    }

    /// Whether `question` from `from` is approved now, as it is worded.
    pub fn approved(&self, from: &str, question: &Question) -> Result<bool, String> {
        let digest = question.digest();
        Ok(self.list()?.iter().any(|a| {
            a.from == from
                && a.name == question.name
                && a.version == question.version
                && a.digest == digest
                && a.withdrawn_at.is_none()
        }))
    }
}

fn audit_decision(
    governance: &Governance,
    kind: &str,
    from: &str,
    q: &Question,
    by: &str,
    reason: &str,
) -> Result<(), String> {
    governance
        .audit()
        .append(AuditEntry {
            kind: kind.into(),
            principal: by.to_string(),
            organisation: Some(governance.organisation().to_string()),
            justification: Some(reason.to_string()),
            channel: "federation".into(),
            what: format!("{} v{} from {from}", q.name, q.version),
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
}

impl<S: TableSource + Send + Sync> QuestionAnswerer<S> {
    pub fn new(governance: Arc<Governance>, source: S, data_dir: &Path) -> QuestionAnswerer<S> {
        QuestionAnswerer {
            governance,
            source,
            approvals: Approvals::open(data_dir),
        }
    }

    /// Run an approved question in a governed session: its columns and rows
    /// (after disclosure control), or why it was declined.
    pub async fn answer(&self, from: &str, q: &Question) -> Result<Value, String> {
        if !self.approvals.approved(from, q)? {
            return Err(format!(
                "{} v{} from {from} is not approved by this instance's information-governance lead",
                q.name, q.version
            ));
        }
        let principal = Principal {
            name: format!("peer:{from}"),
            roles: vec![FEDERATION_ROLE.to_string()],
            organisation: Some(from.to_string()),
        };
        let mut req = SessionRequest::new(principal, q.purpose, "federation");
        req.justification = Some(format!(
            "federated question {} v{} (approved)",
            q.name, q.version
        ));
        let session = self
            .governance
            .session(&self.source, req)
            .await
            .map_err(|e| e.to_string())?;
        let result = session.query(&q.sql).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        {
            let mut w = arrow_json::ArrayWriter::new(&mut buf);
            for b in &result.batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
            w.finish().map_err(|e| e.to_string())?;
        }
        let rows: Value = if buf.is_empty() {
            json!([])
        } else {
            serde_json::from_slice(&buf).map_err(|e| e.to_string())?
        };
        let columns: Vec<&String> = result.schema.fields().iter().map(|f| f.name()).collect();
        Ok(json!({
            "question": q.name,
            "version": q.version,
            "columns": columns,
            "rows": rows,
            "disclosure_control": result.disclosure.as_ref().map(|d| d.summary()),
            // Which versions of which tables it was computed from.
            "tables": result.versions,
            "computed_at": Utc::now(),
        }))
    }
}

#[async_trait::async_trait]
impl<S: TableSource + Send + Sync> Handler for QuestionAnswerer<S> {
    async fn handle(&self, from: &Peer, message: &Envelope) -> Result<Value, String> {
        match message.kind.as_str() {
            "question" => {
                let q: Question = serde_json::from_value(message.body.clone())
                    .map_err(|e| format!("not a question: {e}"))?;
                self.answer(&from.ods, &q).await
            }
            other => Err(format!("this instance does not take `{other}` messages")),
        }
    }
}

/// One member's part in a federated answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberAnswer {
    pub member: String,
    /// `answered`, `declined`, `unreachable` or `refused`.
    pub status: String,
    pub answer: Option<Value>,
    pub reason: Option<String>,
}

/// Ask `members` `question` at once, each through the outbox, and gather
/// what each said. A member that cannot be reached now is reported so and
/// not asked again later: a late answer would be to a question no one is
/// waiting on.
pub async fn ask(
    fed: &crate::node::Federation,
    question: &Question,
    members: &[String],
) -> Vec<MemberAnswer> {
    let body = serde_json::to_value(question).expect("a question serialises");
    let asks = members.iter().map(|m| {
        let body = body.clone();
        async move {
            // A site that only connects out has this long to collect it.
            let outcome = fed
                .request(m, "question", body, std::time::Duration::from_secs(30))
                .await;
            match outcome {
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
    futures::future::join_all(asks).await
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
