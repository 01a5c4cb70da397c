//! What a member has released to each asker, kept so that no later answer
//! can be subtracted from an earlier one to single out a few patients.
//!
//! Each answer on its own passes disclosure control: no figure stands
//! behind fewer patients than the threshold. Two answers to the same
//! question asked a little differently can still differ by a handful: the
//! admissions up to Monday and up to Tuesday, the patients born since one
//! day and since the next. Their difference is about those few patients,
//! and no single answer showed it.
//!
//! So a member keeps every answer it released, per asking instance and
//! question (name, version and text), and declines a new answer in which
//! some figure differs from the same figure of an earlier answer by more
//! than nothing and less than the threshold plus the rounding base. Figures
//! are rounded before they are released, so a released difference `d` can
//! stand for a true difference as small as `d - round_to`; below that bound
//! the true difference may be smaller than the threshold. A row is the same
//! row in two answers when its values other than numbers (a site, a week, a
//! specialty) are the same; a figure is a whole number in that row. A group
//! in only one of the answers is not compared: on its own it passed
//! disclosure control.
//!
//! The record is a file of JSON lines per asker and question, made durable
//! before the answer is sent. An answer declined is not recorded: it never
//! left.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fdp_govern::policy::Disclosure;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::questions::Question;

/// The answers released, under `<data dir>/federation/released/`.
pub struct Released {
    dir: PathBuf,
    /// Checking an answer and recording it happen as one step, so two
    /// answers computed at once are compared with each other too.
    lock: Mutex<()>,
}

/// One row of an answer: its values other than numbers, which name the
/// row, and its whole-number figures by column.
type Figures = BTreeMap<String, BTreeMap<String, i64>>;

/// The rows of an answer (`columns` and `rows` as [`crate::questions::answer_json`]
/// gives them) as the figures each row holds.
fn figures(answer: &Value) -> Figures {
    let columns: Vec<&str> = answer["columns"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = Figures::new();
    for row in answer["rows"].as_array().into_iter().flatten() {
        let Some(row) = row.as_object() else { continue };
        let mut key = Vec::new();
        let mut numbers = BTreeMap::new();
        for c in &columns {
            match row.get(*c) {
                Some(Value::Number(n)) => {
                    let whole = n
                        .as_i64()
                        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64));
                    match whole {
                        Some(v) => {
                            numbers.insert(c.to_string(), v);
                        }
                        // A mean, a ratio: not a count of anyone.
                        None => key.push(Value::Null),
                    }
                }
                Some(v) => key.push(v.clone()),
                None => key.push(Value::Null),
            }
        }
        out.insert(Value::Array(key).to_string(), numbers);
    }
    out
}

/// Where two answers' figures differ by a released amount that could stand
/// for fewer patients than the threshold: the first such column.
fn too_close(earlier: &Figures, now: &Figures, rule: Disclosure) -> Option<String> {
    let bound = (rule.suppress_below + rule.round_to) as i64;
    for (row, figures) in now {
        let Some(before) = earlier.get(row) else {
            continue;
        };
        for (column, v) in figures {
            if let Some(b) = before.get(column) {
                let d = (v - b).abs();
                if d > 0 && d < bound {
                    return Some(column.clone());
                }
            }
        }
    }
    None
}

impl Released {
    pub fn open(data_dir: &Path) -> Released {
        Released {
            dir: data_dir.join("federation").join("released"),
            lock: Mutex::new(()),
        }
    }

    /// The file for one asker and question. Named by a digest, so nothing a
    /// peer sends becomes part of a path.
    fn file(&self, asker: &str, q: &Question) -> PathBuf {
        let mut h = Sha256::new();
        h.update(asker.as_bytes());
        h.update([0]);
        h.update(q.digest().as_bytes());
        let name: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.jsonl"))
    }

    /// Release `answer` to `asker`: declined (with the reason to send) if a
    /// figure in it differs too little from an earlier answer to the same
    /// question; otherwise recorded, durably, before it may be sent.
    pub fn release(
        &self,
        asker: &str,
        q: &Question,
        asked: &str,
        answer: &Value,
        rule: Disclosure,
    ) -> Result<(), String> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.file(asker, q);
        let now = figures(answer);
        let earlier = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(format!(
                    "cannot read the answers released before ({}): {e}",
                    path.display()
                ))
            }
        };
        for line in earlier.lines().filter(|l| !l.trim().is_empty()) {
            // A line cut short by a crash mid-write never reached the asker.
            let Ok(before) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if let Some(column) = too_close(&figures(&before["answer"]), &now, rule) {
                return Err(format!(
                    "declined: its {column} would differ from an answer already released ({}) by fewer than {} patients allow, so the two together could single out patients",
                    before["asked"].as_str().unwrap_or("an earlier ask"),
                    rule.suppress_below + rule.round_to
                ));
            }
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let line = json!({"asked": asked, "answer": {"columns": answer["columns"], "rows": answer["rows"]}});
        writeln!(file, "{line}")
            .and_then(|_| file.sync_data())
            .map_err(|e| format!("cannot record the answer in {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Disclosure = Disclosure {
        suppress_below: 8,
        round_to: 5,
    };

    fn answer(rows: Value) -> Value {
        json!({"columns": ["site", "n", "mean_stay"], "rows": rows})
    }

    fn question() -> Question {
        toml::from_str(
            "name = \"admitted-since\"\nversion = 1\npurpose = \"planning\"\nsql = \"SELECT 1\"\n",
        )
        .unwrap()
    }

    #[test]
    fn an_answer_a_few_patients_from_one_released_is_declined() {
        let dir = tempfile::tempdir().unwrap();
        let released = Released::open(dir.path());
        let q = question();
        let first = answer(
            json!([{"site": "A", "n": 100, "mean_stay": 3.2}, {"site": "B", "n": 40, "mean_stay": 2.0}]),
        );
        released.release("QWO", &q, "first", &first, RULE).unwrap();
        // The same figures again, or a mean that moved: nothing new.
        let same = answer(
            json!([{"site": "A", "n": 100, "mean_stay": 3.7}, {"site": "B", "n": 40, "mean_stay": 2.5}]),
        );
        released.release("QWO", &q, "same", &same, RULE).unwrap();
        // Site B up by 5 or 10, which could be as few as 1 or 6 patients.
        for n in [45, 50, 35] {
            let close = answer(
                json!([{"site": "A", "n": 200, "mean_stay": 3.2}, {"site": "B", "n": n, "mean_stay": 2.0}]),
            );
            let why = released
                .release("QWO", &q, "close", &close, RULE)
                .unwrap_err();
            assert!(
                why.contains("its n would differ") && why.contains("first"),
                "{why}"
            );
        }
        // Far enough from every answer released: released, and recorded.
        let far =
            answer(json!([{"site": "A", "n": 150}, {"site": "B", "n": 55}, {"site": "C", "n": 9}]));
        released.release("QWO", &q, "far", &far, RULE).unwrap();
        let near_far = answer(json!([{"site": "C", "n": 14}]));
        assert!(released
            .release("QWO", &q, "near far", &near_far, RULE)
            .is_err());
        // Another asker, or another question, is another record.
        released
            .release(
                "QXX",
                &q,
                "close",
                &answer(json!([{"site": "B", "n": 45}])),
                RULE,
            )
            .unwrap();
        let other = Question {
            version: 2,
            ..question()
        };
        released
            .release(
                "QWO",
                &other,
                "close",
                &answer(json!([{"site": "B", "n": 45}])),
                RULE,
            )
            .unwrap();
    }

    #[test]
    fn nothing_from_outside_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let released = Released::open(dir.path());
        let mut q = question();
        q.name = "../../etc/passwd".into();
        let path = released.file("../QWO", &q);
        assert_eq!(
            path.parent().unwrap(),
            dir.path().join("federation/released")
        );
        assert!(path
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_hexdigit()));
    }
}
