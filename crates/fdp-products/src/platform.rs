//! The product platform: the one extension point every product plugs into,
//! as a table plugs into DataFusion through `TableProvider`.
//!
//! A product is a type implementing [`Product`]. Its [`Manifest`] declares
//! what it is (id, title, version, the national priority it serves), the
//! purposes it may be used for, the model's tables and columns it reads,
//! and its views with their typed parameters. It is given only governed
//! input, a [`GovernedSession`] minted by `fdp-govern` for the caller's
//! principal and purpose, so every value it reads is already shaped by the
//! policy (masked, pseudonymised, generalised, rows left out) and every
//! answer that leaves the instance has passed disclosure control and been
//! audited with the patients it names. It returns an [`Output`] whose every
//! column says where its values come from ([`Source`]).
//!
//! [`run_view`] is the one path from a request to an answer: it checks the
//! purpose against the manifest and the grant against what the product
//! reads, parses the parameters by their declared types, runs the view and
//! checks its output against the manifest. The server mounts every product
//! in the [`Registry`] the same way (JSON, CSV, a page), so a new product is
//! a folder under `src/` and one line in [`Registry::builtin`].
//!
//! A product is tested alone: open a session over
//! [`fdp_govern::memory::MemoryTables`] with a real policy, and call
//! [`run_view`].

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use fdp_govern::{GovernError, GovernedSession, Purpose};
use serde::Serialize;
use serde_json::Value;

/// The national priority a product serves; `Local` for an organisation's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Priority {
    ElectiveRecovery,
    CareCoordination,
    Vaccination,
    PopulationHealth,
    SupplyChain,
    Local,
}

/// What a product is and what it needs: read by the platform before any
/// view runs, and by the IG lead before a product is installed.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// Letters, digits and `-`: the product's name in URLs.
    pub id: String,
    pub title: String,
    pub version: String,
    pub priority: Priority,
    pub description: String,
    /// The purposes it may be used for; any other is refused.
    pub purposes: Vec<Purpose>,
    /// The tables it reads, and of each the columns.
    pub reads: Vec<Reads>,
    pub views: Vec<ViewSpec>,
}

/// One table a product reads, and which of its columns.
#[derive(Debug, Clone, Serialize)]
pub struct Reads {
    pub table: String,
    pub columns: Vec<String>,
}

impl Reads {
    pub fn new(table: &str, columns: &[&str]) -> Reads {
        Reads {
            table: table.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }
    }
}

/// One view of a product: a table (or chart) answering a question.
#[derive(Debug, Clone, Serialize)]
pub struct ViewSpec {
    /// Letters, digits and `-`: the view's name in URLs.
    pub name: String,
    pub title: String,
    pub description: String,
    pub params: Vec<ParamSpec>,
    /// A chart of the answer, drawn beside its table on the page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart: Option<Chart>,
}

/// A bar chart of a view's answer: one bar a row, labelled by one column
/// and as long as another's number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chart {
    /// The column that names each bar.
    pub label: String,
    /// The column whose number is the bar's length.
    pub value: String,
}

/// A parameter a view takes.
#[derive(Debug, Clone, Serialize)]
pub struct ParamSpec {
    pub name: String,
    pub kind: ParamKind,
    pub required: bool,
    pub description: String,
}

/// The type of a parameter, checked before the view runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamKind {
    Text,
    Integer,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339.
    Timestamp,
}

/// A parameter's value, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Text(String),
    Integer(i64),
    Date(NaiveDate),
    Timestamp(DateTime<Utc>),
}

impl ParamValue {
    /// The value as a SQL literal: text quoted (quotes doubled), a date or
    /// timestamp as a typed literal. Products bind parameters this way, so
    /// a parameter can never become SQL of its own.
    pub fn sql_literal(&self) -> String {
        match self {
            ParamValue::Text(t) => format!("'{}'", t.replace('\'', "''")),
            ParamValue::Integer(i) => i.to_string(),
            ParamValue::Date(d) => format!("DATE '{d}'"),
            ParamValue::Timestamp(t) => format!("TIMESTAMP '{}'", t.to_rfc3339()),
        }
    }
}

/// A view's parameters, parsed by their declared types.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(BTreeMap<String, ParamValue>);

impl Params {
    /// Parse `given` (a query string's pairs) by `specs`: a required one
    /// missing, one of the wrong type or one the view does not take is
    /// refused, naming it.
    pub fn parse(
        specs: &[ParamSpec],
        given: &BTreeMap<String, String>,
    ) -> Result<Params, ProductError> {
        if let Some(unknown) = given.keys().find(|k| !specs.iter().any(|s| &s.name == *k)) {
            return Err(ProductError::Param {
                name: unknown.chars().take(64).collect(),
                message: format!(
                    "not a parameter of this view (it takes {})",
                    if specs.is_empty() {
                        "none".to_string()
                    } else {
                        specs
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            });
        }
        let mut out = BTreeMap::new();
        for spec in specs {
            let Some(raw) = given
                .get(&spec.name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
            else {
                if spec.required {
                    return Err(ProductError::Param {
                        name: spec.name.clone(),
                        message: "is required".into(),
                    });
                }
                continue;
            };
            let bad = |expected: &str| ProductError::Param {
                name: spec.name.clone(),
                message: format!("{raw:?} is not {expected}"),
            };
            let value = match spec.kind {
                ParamKind::Text => ParamValue::Text(raw.to_string()),
                ParamKind::Integer => {
                    ParamValue::Integer(raw.parse().map_err(|_| bad("a whole number"))?)
                }
                ParamKind::Date => ParamValue::Date(
                    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                        .map_err(|_| bad("a date YYYY-MM-DD"))?,
                ),
                ParamKind::Timestamp => ParamValue::Timestamp(
                    DateTime::parse_from_rfc3339(raw)
                        .map_err(|_| bad("an RFC 3339 instant, e.g. 2026-11-22T08:00:00Z"))?
                        .with_timezone(&Utc),
                ),
            };
            out.insert(spec.name.clone(), value);
        }
        Ok(Params(out))
    }

    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.get(name)
    }
}

/// Where a column of a product's output comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// A column of the model, as the session shaped it.
    Column { table: String, column: String },
    /// A count (of rows or patients) of the model's `table`: a number
    /// disclosure control treats as a count.
    Count { table: String },
    /// Computed from these columns (a mean, a difference of dates).
    Derived { from: Vec<(String, String)> },
}

impl Source {
    pub fn column(table: &str, column: &str) -> Source {
        Source::Column {
            table: table.into(),
            column: column.into(),
        }
    }

    pub fn count(table: &str) -> Source {
        Source::Count {
            table: table.into(),
        }
    }

    pub fn derived(from: &[(&str, &str)]) -> Source {
        Source::Derived {
            from: from
                .iter()
                .map(|(t, c)| (t.to_string(), c.to_string()))
                .collect(),
        }
    }

    /// The model columns it reads.
    fn columns(&self) -> Vec<(&str, &str)> {
        match self {
            Source::Column { table, column } => vec![(table, column)],
            Source::Count { .. } => Vec::new(),
            Source::Derived { from } => {
                from.iter().map(|(t, c)| (t.as_str(), c.as_str())).collect()
            }
        }
    }
}

/// One column of an output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputColumn {
    pub name: String,
    pub title: String,
    pub source: Source,
}

/// What a view answers: columns that say where they come from, and rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    pub product: String,
    pub view: String,
    pub title: String,
    pub purpose: Purpose,
    pub columns: Vec<OutputColumn>,
    pub rows: Vec<Vec<Value>>,
    /// What disclosure control did, for a secondary purpose.
    pub disclosure: Option<String>,
}

impl Output {
    /// The answer as a CSV file's text: a header of column names, then
    /// the rows (text quoted where it must be, null as empty).
    pub fn to_csv(&self) -> String {
        let cell = |v: &Value| -> String {
            let text = match v {
                Value::Null => return String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if text.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", text.replace('"', "\"\""))
            } else {
                text
            }
        };
        let mut out = self
            .columns
            .iter()
            .map(|c| cell(&Value::String(c.name.clone())))
            .collect::<Vec<_>>()
            .join(",");
        out.push('\n');
        for row in &self.rows {
            out.push_str(&row.iter().map(cell).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }
}

/// Rows a product computed, before the platform checks them: what
/// [`Product::view`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub columns: Vec<OutputColumn>,
    pub rows: Vec<Vec<Value>>,
    pub disclosure: Option<String>,
}

impl Answer {
    /// A governed query's answer, its columns described by `columns` in
    /// order (name, title, source).
    pub fn from_query(
        result: &fdp_govern::QueryResult,
        columns: Vec<OutputColumn>,
    ) -> Result<Answer, ProductError> {
        let json = result
            .rows_json()
            .map_err(|e| ProductError::Failed(e.to_string()))?;
        let rows = json
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        columns
                            .iter()
                            .map(|c| r.get(&c.name).cloned().unwrap_or(Value::Null))
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Answer {
            columns,
            rows,
            disclosure: result.disclosure.as_ref().map(|d| d.summary()),
        })
    }
}

/// Why a product answered nothing.
#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error("no product {0:?}")]
    UnknownProduct(String),
    #[error("{product} has no view {view:?}")]
    UnknownView { product: String, view: String },
    #[error("{product} is for {allowed}, not {asked}")]
    Purpose {
        product: String,
        allowed: String,
        asked: Purpose,
    },
    #[error("{product} reads {table}, which the grant does not cover under {purpose}")]
    NotGranted {
        product: String,
        table: String,
        purpose: Purpose,
    },
    #[error("parameter {name}: {message}")]
    Param { name: String, message: String },
    #[error("{product}/{view} gave column {column} from {source_column}, which its manifest does not say it reads")]
    Undeclared {
        product: String,
        view: String,
        column: String,
        source_column: String,
    },
    #[error(transparent)]
    Govern(#[from] GovernError),
    #[error("{0}")]
    Failed(String),
}

impl ProductError {
    /// Whether the caller was refused (rather than the product failing).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ProductError::Purpose { .. }
                | ProductError::NotGranted { .. }
                | ProductError::Govern(GovernError::Refused(_))
        )
    }

    /// Whether the request itself was wrong (a parameter, a name).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            ProductError::Param { .. }
                | ProductError::UnknownProduct(_)
                | ProductError::UnknownView { .. }
        )
    }
}

/// A product: the one trait every product implements.
///
/// ```ignore
/// pub struct DischargeDelays;
///
/// #[async_trait::async_trait]
/// impl Product for DischargeDelays {
///     fn manifest(&self) -> Manifest { /* id, purposes, reads, views */ }
///     async fn view(&self, view: &str, session: &GovernedSession, params: &Params)
///         -> Result<Answer, ProductError> {
///         let result = session.query("SELECT …").await?;
///         Answer::from_query(&result, columns)
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Product: Send + Sync {
    fn manifest(&self) -> Manifest;

    /// Answer `view` with `params` (already checked against the view's
    /// declared parameters) from `session`, the caller's governed session.
    async fn view(
        &self,
        view: &str,
        session: &GovernedSession,
        params: &Params,
    ) -> Result<Answer, ProductError>;
}

/// The products an instance serves.
#[derive(Clone, Default)]
pub struct Registry {
    /// Each product by its id, read from its manifest once, when it was
    /// registered, not on every lookup.
    products: Vec<(String, Arc<dyn Product>)>,
}

impl Registry {
    /// Every product built into OpenFDP (see [`crate::built_in`]).
    pub fn builtin() -> Registry {
        Registry {
            products: crate::built_in()
                .into_iter()
                .map(|p| (p.manifest().id, p))
                .collect(),
        }
    }

    pub fn with(mut self, product: impl Product + 'static) -> Registry {
        self.products
            .push((product.manifest().id, Arc::new(product)));
        self
    }

    pub fn get(&self, id: &str) -> Option<&Arc<dyn Product>> {
        self.products
            .iter()
            .find(|(known, _)| known == id)
            .map(|(_, p)| p)
    }

    pub fn manifests(&self) -> Vec<Manifest> {
        self.products.iter().map(|(_, p)| p.manifest()).collect()
    }
}

/// The one path from a request to a product's answer.
///
/// Refused, and the refusal audited, before the product runs, where the
/// session's purpose is not one the manifest names or the grant does not
/// cover a table the product reads. The parameters are parsed by the
/// view's declared types. The output is checked against the manifest: a
/// column from a model column the product did not declare it reads is a
/// fault of the product, and nothing is answered.
pub async fn run_view(
    registry: &Registry,
    id: &str,
    view: &str,
    session: &GovernedSession,
    given: &BTreeMap<String, String>,
) -> Result<Output, ProductError> {
    let product = registry
        .get(id)
        .ok_or_else(|| ProductError::UnknownProduct(id.chars().take(64).collect()))?;
    let manifest = product.manifest();
    let spec = manifest
        .views
        .iter()
        .find(|v| v.name == view)
        .ok_or_else(|| ProductError::UnknownView {
            product: manifest.id.clone(),
            view: view.chars().take(64).collect(),
        })?;
    let what = format!("product {}/{}", manifest.id, spec.name);
    let refuse = |e: ProductError| -> ProductError {
        // Refused before any query: the session's audit has not seen it.
        match session.refused(&what, &e.to_string()) {
            Ok(()) => e,
            Err(audit) => audit.into(),
        }
    };
    let purpose = session.purpose();
    if !manifest.purposes.contains(&purpose) {
        return Err(refuse(ProductError::Purpose {
            product: manifest.id.clone(),
            allowed: manifest
                .purposes
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            asked: purpose,
        }));
    }
    if let Some(r) = manifest.reads.iter().find(|r| !session.covers(&r.table)) {
        return Err(refuse(ProductError::NotGranted {
            product: manifest.id.clone(),
            table: r.table.clone(),
            purpose,
        }));
    }
    let params = Params::parse(&spec.params, given)?;
    let answer = product.view(view, session, &params).await?;
    for c in &answer.columns {
        for (table, column) in c.source.columns() {
            let declared = manifest
                .reads
                .iter()
                .any(|r| r.table == table && r.columns.iter().any(|x| x == column));
            if !declared {
                return Err(ProductError::Undeclared {
                    product: manifest.id.clone(),
                    view: view.to_string(),
                    column: c.name.clone(),
                    source_column: format!("{table}.{column}"),
                });
            }
        }
    }
    Ok(Output {
        product: manifest.id.clone(),
        view: spec.name.clone(),
        title: spec.title.clone(),
        purpose,
        columns: answer.columns,
        rows: answer.rows,
        disclosure: answer.disclosure,
    })
}
