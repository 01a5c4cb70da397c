//! Products declared as data: a folder an organisation writes with no
//! Rust, served exactly like a coded product and under the same governance.
//!
//! ```text
//! discharge-delays-summary/
//!   product.toml        what it is, who publishes it, purposes, what it reads, its views
//!   by-ward.sql         one query per view, with typed named parameters (:as_at)
//! ```
//!
//! ```toml
//! id = "discharge-delays-summary"
//! title = "Discharge delays summary"
//! version = "1.0.0"
//! publisher = "RXX"
//! priority = "care-coordination"
//! description = "Delayed discharges by ward"
//! purposes = ["operations", "planning"]
//!
//! [[reads]]
//! table = "discharge_readiness"
//! columns = ["admission_id", "medically_optimised", "medically_optimised_date"]
//!
//! [[view]]
//! name = "by-ward"
//! title = "Delayed discharges by ward"
//! description = "…"
//! sql = "by-ward.sql"
//! param = [{ name = "as_at", kind = "date", description = "The day counted to" }]
//! column = [
//!   { name = "ward_id", title = "Ward", source = "ward_stay.ward_id" },
//!   { name = "patients", title = "Patients", source = "count(discharge_readiness)" },
//!   { name = "mean_days", title = "Mean days", source = "derived(discharge_readiness.medically_optimised_date)" },
//! ]
//! ```
//!
//! [`DeclaredProduct::load`] checks the folder against the canonical model
//! and the policy, and says what is wrong by file and line: a table or
//! column the model does not have, a query that reads a table the product
//! does not declare, a parameter used but not declared (or declared but
//! not used), a column's source the product does not read, a purpose no
//! role of the policy may use it for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use fdp_govern::{GovernedSession, Policy, Purpose};
use fdp_model::Model;
use serde::Deserialize;

use crate::platform::{
    Answer, Chart, Input, Manifest, Offers, OutputColumn, ParamKind, ParamSpec, Params, Priority,
    Product, ProductError, QuestionSpec, Reads, Source, ViewSpec,
};

/// What is wrong with a declared product: the file, the line where known,
/// and what.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct DeclareError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductToml {
    id: String,
    title: String,
    version: String,
    publisher: String,
    priority: Priority,
    description: String,
    purposes: Vec<Purpose>,
    reads: Vec<ReadsToml>,
    view: Vec<ViewToml>,
    /// Federated questions the product offers: asked of members by a
    /// collecting instance and answered in aggregate.
    #[serde(default)]
    question: Vec<QuestionToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuestionToml {
    name: String,
    version: u32,
    purpose: Purpose,
    #[serde(default)]
    description: String,
    /// Each parameter's type by name: timestamp, date or integer.
    #[serde(default)]
    parameters: BTreeMap<String, String>,
    sql: String,
}

/// The types a federated question's parameter may have.
const QUESTION_PARAMETER_TYPES: &[&str] = &["timestamp", "date", "integer"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadsToml {
    table: String,
    columns: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewToml {
    name: String,
    title: String,
    #[serde(default)]
    description: String,
    sql: String,
    #[serde(default)]
    param: Vec<ParamToml>,
    column: Vec<ColumnToml>,
    #[serde(default)]
    chart: Option<Chart>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamToml {
    name: String,
    kind: ParamKind,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    description: String,
}

/// An output column as declared: its name, title and source
/// (`table.column`, `count(table)` or `derived(table.column, …)`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ColumnToml {
    pub(crate) name: String,
    pub(crate) title: String,
    pub(crate) source: String,
}

/// One view of a declared product: its query, and its columns' sources.
#[derive(Debug, Clone)]
struct DeclaredView {
    spec: ViewSpec,
    sql: String,
    columns: Vec<OutputColumn>,
}

/// A product declared as data, checked and ready to serve.
#[derive(Debug, Clone)]
pub struct DeclaredProduct {
    manifest: Manifest,
    views: Vec<DeclaredView>,
    /// The files it was read from, by name, as read: what an install keeps.
    pub files: BTreeMap<String, String>,
}

/// Whether `name` can name a product or a view in a URL.
pub(crate) fn valid_id(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The line of byte `offset` in `text`, counted from 1.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where `needle` first appears in `text` (for errors that name
/// a value the TOML parser has no span for).
fn line_with(text: &str, needle: &str) -> Option<usize> {
    text.find(needle).map(|i| line_of(text, i))
}

impl DeclaredProduct {
    /// The ODS code of the organisation that publishes it.
    pub fn publisher(&self) -> &str {
        self.manifest.publisher.as_deref().unwrap_or_default()
    }

    /// Read and check the product in `dir` against the canonical model and
    /// `policy`.
    pub fn load(dir: &Path, policy: &Policy) -> Result<DeclaredProduct, DeclareError> {
        let toml_path = dir.join("product.toml");
        let text = std::fs::read_to_string(&toml_path).map_err(|e| DeclareError {
            file: toml_path.clone(),
            line: None,
            message: format!("cannot read it: {e}"),
        })?;
        let err = |line: Option<usize>, message: String| DeclareError {
            file: toml_path.clone(),
            line,
            message,
        };
        let at = |needle: &str| line_with(&text, needle);
        let declared: ProductToml = toml::from_str(&text).map_err(|e| {
            err(
                e.span().map(|s| line_of(&text, s.start)),
                e.message().to_string(),
            )
        })?;
        if !valid_id(&declared.id) {
            return Err(err(
                at("id"),
                format!(
                    "{:?} is not a product id: use 1–64 lowercase letters, digits and -",
                    declared.id
                ),
            ));
        }
        if declared.purposes.is_empty() {
            return Err(err(at("purposes"), "name at least one purpose".into()));
        }
        let model = Model::canonical();
        let mut reads: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in &declared.reads {
            let Some(object) = model.object_type_by_table(&r.table) else {
                return Err(err(
                    at(&format!("\"{}\"", r.table)),
                    format!("{} is not a table of the canonical model", r.table),
                ));
            };
            for c in &r.columns {
                if object.property_by_column(c).is_none() {
                    return Err(err(
                        at(&format!("\"{c}\"")),
                        format!("{}.{c} is not a column of the canonical model", r.table),
                    ));
                }
            }
            reads
                .entry(r.table.clone())
                .or_default()
                .extend(r.columns.iter().cloned());
        }
        // Each purpose must be one some role of the policy may use it for.
        for purpose in &declared.purposes {
            let usable = policy.roles.values().any(|role| {
                role.grants
                    .get(purpose)
                    .is_some_and(|g| reads.keys().all(|t| g.objects.covers(t)))
            });
            if !usable {
                return Err(err(
                    at("purposes"),
                    format!(
                        "no role of the policy may read {} under {purpose}",
                        reads.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        let mut files = BTreeMap::from([("product.toml".to_string(), text.clone())]);
        let mut views = Vec::new();
        let mut names = BTreeSet::new();
        for v in &declared.view {
            if !valid_id(&v.name) || !names.insert(v.name.clone()) {
                return Err(err(
                    at(&format!("\"{}\"", v.name)),
                    format!(
                        "view {:?}: a view's name is unique, lowercase letters, digits and -",
                        v.name
                    ),
                ));
            }
            let declared_params: BTreeSet<String> =
                v.param.iter().map(|p| p.name.clone()).collect();
            let sql = read_sql(
                (dir, &toml_path, &text),
                &format!("view {}", v.name),
                &v.sql,
                &declared_params,
                &reads,
            )?;
            let mut columns = Vec::new();
            for c in &v.column {
                let source = parse_source(&c.source, &reads).map_err(|m| {
                    err(
                        at(&c.source),
                        format!("view {}, column {}: {m}", v.name, c.name),
                    )
                })?;
                columns.push(OutputColumn {
                    name: c.name.clone(),
                    title: c.title.clone(),
                    source,
                });
            }
            if let Some(chart) = &v.chart {
                for c in chart.columns() {
                    if !columns.iter().any(|o| o.name == c) {
                        return Err(err(
                            at(&format!("\"{c}\"")),
                            format!(
                                "view {}: the chart names column {c}, which the view does not have",
                                v.name
                            ),
                        ));
                    }
                }
            }
            files.insert(v.sql.clone(), sql.clone());
            views.push(DeclaredView {
                spec: ViewSpec {
                    name: v.name.clone(),
                    title: v.title.clone(),
                    description: v.description.clone(),
                    params: v
                        .param
                        .iter()
                        .map(|p| ParamSpec {
                            name: p.name.clone(),
                            kind: p.kind,
                            required: p.required,
                            description: p.description.clone(),
                        })
                        .collect(),
                    input: Input::Tables,
                    chart: v.chart.clone(),
                    as_of: None,
                    needs: vec![],
                },
                sql,
                columns,
            });
        }
        if views.is_empty() {
            return Err(err(None, "declare at least one [[view]]".into()));
        }
        let mut questions = Vec::new();
        for q in &declared.question {
            let what = format!("question {}", q.name);
            if !valid_id(&q.name)
                || questions
                    .iter()
                    .any(|o: &QuestionSpec| o.name.ends_with(&format!("/{}", q.name)))
            {
                return Err(err(
                    at(&format!("\"{}\"", q.name)),
                    format!("{what}: a question's name is unique, lowercase letters, digits and -"),
                ));
            }
            if q.version == 0 {
                return Err(err(
                    at("version = 0"),
                    format!("{what}: versions count from 1"),
                ));
            }
            if !declared.purposes.contains(&q.purpose) {
                return Err(err(
                    at(&format!("purpose = \"{}\"", q.purpose)),
                    format!(
                        "{what} is asked for {}, which is not among the product's purposes",
                        q.purpose
                    ),
                ));
            }
            if let Some((name, kind)) = q
                .parameters
                .iter()
                .find(|(_, kind)| !QUESTION_PARAMETER_TYPES.contains(&kind.as_str()))
            {
                return Err(err(
                    at(&format!("{name} = \"{kind}\"")),
                    format!("{what}: parameter {name} is of type {kind:?}: give timestamp, date or integer"),
                ));
            }
            let params: BTreeSet<String> = q.parameters.keys().cloned().collect();
            let sql = read_sql((dir, &toml_path, &text), &what, &q.sql, &params, &reads)?;
            files.insert(q.sql.clone(), sql.clone());
            questions.push(QuestionSpec {
                name: format!("{}/{}", declared.id, q.name),
                version: q.version,
                purpose: q.purpose,
                description: q.description.clone(),
                parameters: q.parameters.clone(),
                sql,
            });
        }
        Ok(DeclaredProduct {
            manifest: Manifest {
                id: declared.id,
                title: declared.title,
                version: declared.version,
                priority: declared.priority,
                description: declared.description,
                publisher: Some(declared.publisher),
                purposes: declared.purposes,
                reads: reads
                    .into_iter()
                    .map(|(table, columns)| Reads {
                        table,
                        columns: columns.into_iter().collect(),
                        optional: false,
                    })
                    .collect(),
                views: views.iter().map(|v| v.spec.clone()).collect(),
                actions: Vec::new(),
                offers: Offers {
                    questions,
                    messages: Vec::new(),
                },
            },
            views,
            files,
        })
    }
}

/// The query in `name` (a `.sql` file in the product's folder `dir`) for
/// `what` (a view, a question), checked: it uses exactly the parameters
/// `params` declares, and reads only tables the product declares.
fn read_sql(
    (dir, toml_path, toml_text): (&Path, &Path, &str),
    what: &str,
    name: &str,
    params: &BTreeSet<String>,
    reads: &BTreeMap<String, BTreeSet<String>>,
) -> Result<String, DeclareError> {
    let at = |needle: &str| line_with(toml_text, needle);
    let plain = name.ends_with(".sql") && !name.contains(['/', '\\']) && !name.starts_with('.');
    if !plain {
        return Err(DeclareError {
            file: toml_path.to_path_buf(),
            line: at(name),
            message: format!(
                "{what}: sql = {name:?} must name a .sql file in the product's folder"
            ),
        });
    }
    let sql_path = dir.join(name);
    let sql_err = |message: String| DeclareError {
        file: sql_path.clone(),
        line: None,
        message,
    };
    let sql =
        std::fs::read_to_string(&sql_path).map_err(|e| sql_err(format!("cannot read it: {e}")))?;
    let used = fdp_govern::statement::named_parameters(&sql);
    if let Some(p) = used.difference(params).next() {
        return Err(sql_err(format!(
            ":{p} is used but {what} declares no parameter {p}"
        )));
    }
    if let Some(p) = params.difference(&used).next() {
        return Err(DeclareError {
            file: toml_path.to_path_buf(),
            line: at(&format!("\"{p}\"")).or_else(|| at(&format!("{p} ="))),
            message: format!("{what} declares parameter {p}, which {name} does not use"),
        });
    }
    // The query, with every parameter as a placeholder literal, reads only
    // tables the product declares.
    let probe = fdp_govern::statement::bind_named(&sql, |_| Ok("NULL".into())).map_err(sql_err)?;
    let tables = fdp_govern::statement::tables_read(&probe)
        .map_err(|e| sql_err(format!("not a query this platform can run: {e}")))?;
    if let Some(t) = tables.iter().find(|t| !reads.contains_key(*t)) {
        return Err(sql_err(format!(
            "reads {t}, which product.toml does not declare under [[reads]]"
        )));
    }
    Ok(sql)
}

/// A column's declared source: `table.column`, `count(table)` or
/// `derived(table.column, …)`, each column one the product reads.
pub(crate) fn parse_source(
    text: &str,
    reads: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Source, String> {
    let column = |tc: &str| -> Result<(String, String), String> {
        let (t, c) = tc
            .trim()
            .split_once('.')
            .ok_or_else(|| format!("{tc:?} is not table.column"))?;
        if !reads.get(t).is_some_and(|cols| cols.contains(c)) {
            return Err(format!("{t}.{c} is not among what the product reads"));
        }
        Ok((t.to_string(), c.to_string()))
    };
    let text = text.trim();
    if let Some(inner) = text
        .strip_prefix("count(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let t = inner.trim();
        if !reads.contains_key(t) {
            return Err(format!("{t} is not among the tables the product reads"));
        }
        return Ok(Source::count(t));
    }
    if let Some(inner) = text
        .strip_prefix("derived(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let from = inner
            .split(',')
            .map(column)
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Source::Derived { from });
    }
    let (t, c) = column(text)?;
    Ok(Source::Column {
        table: t,
        column: c,
    })
}

#[async_trait]
impl Product for DeclaredProduct {
    fn manifest(&self) -> Manifest {
        self.manifest.clone()
    }

    async fn view(
        &self,
        view: &str,
        session: &GovernedSession,
        params: &Params,
    ) -> Result<Answer, ProductError> {
        let v = self
            .views
            .iter()
            .find(|v| v.spec.name == view)
            .ok_or_else(|| ProductError::UnknownView {
                product: self.manifest.id.clone(),
                view: view.to_string(),
            })?;
        let sql = fdp_govern::statement::bind_named(&v.sql, |name| {
            Ok(params
                .get(name)
                .map(|p| p.sql_literal())
                .unwrap_or_else(|| "NULL".to_string()))
        })
        .map_err(ProductError::Failed)?;
        let result = session.query(&sql).await?;
        Answer::from_query(&result, v.columns.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/products")
    }

    fn policy() -> Policy {
        Policy::demo(Model::canonical())
    }

    #[test]
    fn the_shipped_examples_load() {
        for name in ["discharge-delays-summary", "theatre-utilisation"] {
            let p = DeclaredProduct::load(&examples().join(name), &policy())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(p.manifest().id, name);
            assert!(p.files.contains_key("product.toml"));
            let offered = p.manifest().offers.questions;
            assert_eq!(p.files.len(), 1 + p.manifest().views.len() + offered.len());
        }
        let delays =
            DeclaredProduct::load(&examples().join("discharge-delays-summary"), &policy()).unwrap();
        let q = &delays.manifest().offers.questions[0];
        assert_eq!(q.name, "discharge-delays-summary/delayed-by-ward");
        assert_eq!(q.parameters["census_at"], "timestamp");
        assert!(q.sql.contains(":census_at"));
    }

    /// A copy of the discharge delays example with `edit` applied to one
    /// of its files: what loading it says.
    fn load_edited(file: &str, edit: impl Fn(&str) -> String) -> String {
        let dir = tempfile::tempdir().unwrap();
        let from = examples().join("discharge-delays-summary");
        for f in ["product.toml", "by-ward.sql", "delayed-by-ward.sql"] {
            let text = std::fs::read_to_string(from.join(f)).unwrap();
            let text = if f == file { edit(&text) } else { text };
            std::fs::write(dir.path().join(f), text).unwrap();
        }
        match DeclaredProduct::load(dir.path(), &policy()) {
            Ok(_) => "loaded".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn what_is_wrong_is_named_by_file_and_line() {
        type Edit = Box<dyn Fn(&str) -> String>;
        let cases: Vec<(&str, Edit, &str)> = vec![
            (
                "product.toml",
                Box::new(|t| t.replace("table = \"admission\"", "table = \"admissions\"")),
                "product.toml:16: admissions is not a table of the canonical model",
            ),
            (
                "product.toml",
                Box::new(|t| t.replace("\"discharge_timestamp\"]", "\"discharged_at\"]")),
                "admission.discharged_at is not a column",
            ),
            (
                "product.toml",
                Box::new(|t| t.replace("priority = \"care-coordination\"", "priority = \"beds\"")),
                "product.toml:7:",
            ),
            (
                "by-ward.sql",
                Box::new(|t| {
                    t.replace(
                        "JOIN admission a",
                        "JOIN patient p ON true JOIN admission a",
                    )
                }),
                "by-ward.sql: reads patient, which product.toml does not declare",
            ),
            (
                "by-ward.sql",
                Box::new(|t| t.replace("current_date", ":today")),
                "by-ward.sql: :today is used but view by-ward declares no parameter today",
            ),
            (
                "product.toml",
                Box::new(|t| {
                    t.replace(
                        "source = \"ward_stay.ward_id\"",
                        "source = \"ward_stay.patient_id\"",
                    )
                }),
                "ward_stay.patient_id is not among what the product reads",
            ),
            (
                "product.toml",
                Box::new(|t| {
                    t.replace(
                        "purposes = [\"operations\", \"planning\"]",
                        "purposes = [\"research\"]",
                    )
                }),
                "no role of the policy may read",
            ),
            (
                "product.toml",
                Box::new(|t| t.replace("sql = \"by-ward.sql\"", "sql = \"../../etc/passwd.sql\"")),
                "must name a .sql file in the product's folder",
            ),
            (
                "product.toml",
                Box::new(|t| t.replace("value = \"patients\"", "value = \"beds\"")),
                "the chart names column beds, which the view does not have",
            ),
            (
                "product.toml",
                Box::new(|t| t.replace("purpose = \"planning\"", "purpose = \"research\"")),
                "question delayed-by-ward is asked for research, which is not among the product's purposes",
            ),
            (
                "product.toml",
                Box::new(|t| t.replace("census_at = \"timestamp\"", "census_at = \"instant\"")),
                "parameter census_at is of type \"instant\": give timestamp, date or integer",
            ),
            (
                "delayed-by-ward.sql",
                Box::new(|t| t.replace("JOIN ward_stay s", "JOIN patient p ON true JOIN ward_stay s")),
                "delayed-by-ward.sql: reads patient, which product.toml does not declare",
            ),
            (
                "delayed-by-ward.sql",
                Box::new(|t| t.replace(":census_at", "current_timestamp")),
                "question delayed-by-ward declares parameter census_at, which delayed-by-ward.sql does not use",
            ),
        ];
        for (file, edit, expected) in cases {
            let said = load_edited(file, edit);
            assert!(
                said.contains(expected),
                "expected {expected:?}, got {said:?}"
            );
        }
    }
}
