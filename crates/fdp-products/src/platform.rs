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
use fdp_govern::{GovernError, Governance, GovernedSession, ProductView, Purpose, SessionRequest};
use fdp_ingest::adt::census::Census;
use fdp_ingest::live::{Live, StaffAction};
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
    /// The ODS code of the organisation that publishes it; `None` for a
    /// product built into OpenFDP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// The purposes it may be used for; any other is refused.
    pub purposes: Vec<Purpose>,
    /// The tables it reads, and of each the columns.
    pub reads: Vec<Reads>,
    pub views: Vec<ViewSpec>,
    /// What staff may change through it (governed write-back).
    pub actions: Vec<ActionSpec>,
    /// What it offers the federation.
    #[serde(skip_serializing_if = "Offers::is_empty")]
    pub offers: Offers,
}

/// What a product offers the federation: questions a collecting instance
/// (an ICB, the national instance) may ask of each member, answered in
/// aggregate under the member's own policy, opt-out and disclosure
/// control; and the kinds of message it takes from peers, which the
/// instance registers a handler for (`fdp-federation::handler`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Offers {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub questions: Vec<QuestionSpec>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageSpec>,
}

impl Offers {
    pub fn is_empty(&self) -> bool {
        self.questions.is_empty() && self.messages.is_empty()
    }
}

/// A federated question: one query over the canonical model with typed
/// parameters (`:name` in the SQL), asked of members by name and version.
/// A member's IG lead approves it as worded here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionSpec {
    /// `product/question`, e.g. `daily-return/beds-occupied`.
    pub name: String,
    pub version: u32,
    /// The purpose it is asked for (`planning` for a return).
    pub purpose: Purpose,
    #[serde(default)]
    pub description: String,
    /// Each parameter's type by name: `timestamp`, `date` or `integer`.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    pub sql: String,
}

/// A kind of message a product takes from peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageSpec {
    /// The envelope's `kind`, e.g. `referral`.
    pub kind: String,
    pub description: String,
}

impl MessageSpec {
    pub fn new(kind: &str, description: &str) -> MessageSpec {
        MessageSpec {
            kind: kind.to_string(),
            description: description.to_string(),
        }
    }
}

/// One table a product reads, and which of its columns.
#[derive(Debug, Clone, Serialize)]
pub struct Reads {
    pub table: String,
    pub columns: Vec<String>,
    /// Shown where the grant covers the table, and left out where it does
    /// not; a table not optional must be granted for the product to run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl Reads {
    pub fn new(table: &str, columns: &[&str]) -> Reads {
        Reads {
            table: table.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            optional: false,
        }
    }

    /// [`Self::new`] for a table the product shows only where granted.
    pub fn optional(table: &str, columns: &[&str]) -> Reads {
        Reads {
            optional: true,
            ..Reads::new(table, columns)
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
    /// What it is computed from.
    pub input: Input,
    /// A chart of the answer, drawn beside its table on the page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart: Option<Chart>,
    /// The timestamp parameter whose instant the tables are read as they
    /// stood at (Delta time travel), so that the answer for an instant is
    /// the same whenever it is asked; `None` reads them as they are now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    /// Tables the product reads only optionally that this view cannot be
    /// answered without: where the grant does not cover one, the view is
    /// refused, and the refusal audited, before any query.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
}

/// The version of the tables `spec` is answered from, given `given`: the
/// instant its [`ViewSpec::as_of`] parameter names, or the latest. A value
/// that is not an instant is left to the parameter's own check.
pub fn as_of(spec: &ViewSpec, given: &BTreeMap<String, String>) -> fdp_govern::AsOf {
    spec.as_of
        .as_ref()
        .and_then(|p| given.get(p))
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| fdp_govern::AsOf::Timestamp(t.with_timezone(&Utc)))
        .unwrap_or(fdp_govern::AsOf::Latest)
}

/// What a view is computed from: the governed tables (a
/// [`GovernedSession`]), or the live census, which is newer than the
/// tables by the time the canonical writer takes (a [`GovernedCensus`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Input {
    #[default]
    Tables,
    /// The live census, shown patient by patient: refused wherever only
    /// aggregates may leave (see [`ProductView::one_by_one`]).
    Census,
}

/// A change staff make through a product (governed write-back): recorded
/// durably as a staff action, applied to the live census, and audited as
/// a change with the patient it is about.
#[derive(Debug, Clone, Serialize)]
pub struct ActionSpec {
    /// Letters, digits and `-`: the action's name in URLs.
    pub name: String,
    pub title: String,
    pub description: String,
    /// What the action is done to, named by its id in the URL (an
    /// admission, a bed).
    pub target: String,
    /// The model's tables it changes: the grant must allow a change to
    /// each under the caller's purpose, or nothing is looked up.
    pub changes: Vec<String>,
    pub inputs: Vec<ParamSpec>,
    /// What it is made against: the live census (a staff action, recorded
    /// and applied to it: [`Product::act`]) or the governed tables (records
    /// stored through ingest: [`Product::act_on_tables`]).
    pub input: Input,
    /// Views whose every row offers it (the page shows a form on each).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offered_on: Vec<OfferedOn>,
}

/// A view whose rows offer an action: its target is the row's value of
/// `column`, and an input named like one of the view's columns starts
/// with the row's value of it.
#[derive(Debug, Clone, Serialize)]
pub struct OfferedOn {
    pub view: String,
    pub column: String,
}

/// A chart of a view's answer. As bars (the default): one bar a row,
/// labelled by one column and as long as another's number, with the
/// numbers of further columns stacked after it. As lines: the rows in
/// order along the bottom, labelled by one column, and a line for each
/// number column, for a trend week by week. As a heat map: a grid with a
/// row for each value of one column and a column for each value of
/// another (`across`), each cell shaded by a number, the lowest
/// strongest (where cover is least).
///
/// ```
/// use fdp_products::platform::Chart;
/// // Minutes booked, then minutes free, on each list.
/// let week = Chart::bars("list", "booked_minutes").stacked(&["usable_unbooked_minutes"]);
/// // Utilisation capped and uncapped, week by week.
/// let trend = Chart::lines("week", &["utilisation_capped", "utilisation_uncapped"]);
/// assert_eq!(trend.columns(), ["week", "utilisation_capped", "utilisation_uncapped"]);
/// # let _ = week;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chart {
    /// The column that names each bar, or each point along the bottom.
    pub label: String,
    /// The column whose number is the bar's length (its first part), or
    /// the first line.
    pub value: String,
    /// Columns whose numbers follow `value`'s: the further parts of each
    /// bar, or further lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<String>,
    #[serde(default, skip_serializing_if = "ChartKind::is_bars")]
    pub kind: ChartKind,
    /// For a heat map: the column naming each cell's column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub across: Option<String>,
}

/// How a [`Chart`] is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChartKind {
    #[default]
    Bars,
    Lines,
    Heat,
}

impl ChartKind {
    fn is_bars(&self) -> bool {
        *self == ChartKind::Bars
    }
}

impl Chart {
    /// One bar a row, labelled by `label`, as long as `value`.
    pub fn bars(label: &str, value: &str) -> Chart {
        Chart {
            label: label.into(),
            value: value.into(),
            stack: Vec::new(),
            kind: ChartKind::Bars,
            across: None,
        }
    }

    /// A grid: a row for each value of `label`, a column for each value of
    /// `across`, each cell shaded by `value`.
    pub fn heat(label: &str, across: &str, value: &str) -> Chart {
        Chart {
            label: label.into(),
            value: value.into(),
            stack: Vec::new(),
            kind: ChartKind::Heat,
            across: Some(across.into()),
        }
    }

    /// A line for each of `values` across the rows, labelled by `label`.
    ///
    /// # Panics
    /// If `values` is empty: a line chart with no line is a bug.
    pub fn lines(label: &str, values: &[&str]) -> Chart {
        let (first, rest) = values.split_first().expect("a line chart has a line");
        Chart {
            label: label.into(),
            value: (*first).into(),
            stack: rest.iter().map(|s| s.to_string()).collect(),
            kind: ChartKind::Lines,
            across: None,
        }
    }

    /// With `more` stacked after the value.
    pub fn stacked(mut self, more: &[&str]) -> Chart {
        self.stack.extend(more.iter().map(|s| s.to_string()));
        self
    }

    /// Every column the chart names: the label, then the numbers, then a
    /// heat map's `across`.
    pub fn columns(&self) -> Vec<&str> {
        [self.label.as_str(), self.value.as_str()]
            .into_iter()
            .chain(self.stack.iter().map(String::as_str))
            .chain(self.across.as_deref())
            .collect()
    }

    /// The number columns, in order.
    pub fn values(&self) -> Vec<&str> {
        [self.value.as_str()]
            .into_iter()
            .chain(self.stack.iter().map(String::as_str))
            .collect()
    }
}

/// A parameter a view takes.
#[derive(Debug, Clone, Serialize)]
pub struct ParamSpec {
    pub name: String,
    pub kind: ParamKind,
    pub required: bool,
    pub description: String,
}

impl ParamSpec {
    /// A parameter a view may go without.
    pub fn optional(name: &str, kind: ParamKind, description: &str) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            kind,
            required: false,
            description: description.into(),
        }
    }
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
    /// `true` or `false` (in a query string or form also `yes`, `no`).
    Boolean,
    /// A list of texts (in a query string, separated by commas).
    TextList,
}

/// A parameter's value, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Text(String),
    Integer(i64),
    Date(NaiveDate),
    Timestamp(DateTime<Utc>),
    Boolean(bool),
    TextList(Vec<String>),
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
            ParamValue::Boolean(b) => b.to_string().to_uppercase(),
            ParamValue::TextList(list) => format!(
                "({})",
                list.iter()
                    .map(|t| ParamValue::Text(t.clone()).sql_literal())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// A view's parameters, parsed by their declared types.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(BTreeMap<String, ParamValue>);

impl Params {
    /// Parse `given` (a query string's or a form's pairs) by `specs`: a
    /// required one missing, one of the wrong type or one the view does
    /// not take is refused, naming it.
    pub fn parse(
        specs: &[ParamSpec],
        given: &BTreeMap<String, String>,
    ) -> Result<Params, ProductError> {
        Params::typed(specs, given.keys(), |spec| {
            let raw = given
                .get(&spec.name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())?;
            Some(Self::from_text(spec, raw))
        })
    }

    /// Parse a JSON object (an action's body) by `specs`, as
    /// [`Self::parse`]; a `null` is a value not given.
    pub fn from_json(specs: &[ParamSpec], given: &Value) -> Result<Params, ProductError> {
        let Some(object) = given.as_object() else {
            return Err(ProductError::Param {
                name: "body".into(),
                message: "must be a JSON object of the inputs".into(),
            });
        };
        Params::typed(specs, object.keys(), |spec| {
            let value = object.get(&spec.name).filter(|v| !v.is_null())?;
            let bad = |expected: &str| ProductError::Param {
                name: spec.name.clone(),
                message: format!("{} is not {expected}", shorten(&value.to_string())),
            };
            Some(match (spec.kind, value) {
                (ParamKind::Boolean, Value::Bool(b)) => Ok(ParamValue::Boolean(*b)),
                (ParamKind::Boolean, _) => Err(bad("true or false")),
                (ParamKind::Integer, Value::Number(n)) => n
                    .as_i64()
                    .map(ParamValue::Integer)
                    .ok_or_else(|| bad("a whole number")),
                (ParamKind::Integer, _) => Err(bad("a whole number")),
                (ParamKind::TextList, Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().map(|t| t.trim().to_string()))
                    .collect::<Option<Vec<_>>>()
                    .map(|l| {
                        ParamValue::TextList(l.into_iter().filter(|t| !t.is_empty()).collect())
                    })
                    .ok_or_else(|| bad("a list of texts")),
                (ParamKind::TextList, _) => Err(bad("a list of texts")),
                (_, Value::String(raw)) => Self::from_text(spec, raw.trim()),
                (ParamKind::Text, _) => Err(bad("a text")),
                (ParamKind::Date, _) => Err(bad("a date YYYY-MM-DD")),
                (ParamKind::Timestamp, _) => Err(bad("an RFC 3339 instant")),
            })
        })
    }

    /// Each spec's value by `value_of` (`None` where not given), after
    /// refusing a name no spec has and a required one not given.
    fn typed<'k>(
        specs: &[ParamSpec],
        mut names: impl Iterator<Item = &'k String>,
        value_of: impl Fn(&ParamSpec) -> Option<Result<ParamValue, ProductError>>,
    ) -> Result<Params, ProductError> {
        if let Some(unknown) = names.find(|k| !specs.iter().any(|s| &s.name == *k)) {
            return Err(ProductError::Param {
                name: shorten(unknown),
                message: format!(
                    "not a parameter here (it takes {})",
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
            match value_of(spec) {
                Some(value) => {
                    out.insert(spec.name.clone(), value?);
                }
                None if spec.required => {
                    return Err(ProductError::Param {
                        name: spec.name.clone(),
                        message: "is required".into(),
                    })
                }
                None => {}
            }
        }
        Ok(Params(out))
    }

    /// One value written as text, by its declared type.
    fn from_text(spec: &ParamSpec, raw: &str) -> Result<ParamValue, ProductError> {
        let bad = |expected: &str| ProductError::Param {
            name: spec.name.clone(),
            message: format!("{:?} is not {expected}", shorten(raw)),
        };
        Ok(match spec.kind {
            ParamKind::Text => ParamValue::Text(raw.to_string()),
            ParamKind::Integer => {
                ParamValue::Integer(raw.parse().map_err(|_| bad("a whole number"))?)
            }
            ParamKind::Date => ParamValue::Date(
                NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| bad("a date YYYY-MM-DD"))?,
            ),
            ParamKind::Timestamp => ParamValue::Timestamp(
                DateTime::parse_from_rfc3339(raw)
                    .map_err(|_| bad("an RFC 3339 instant, e.g. 2026-11-22T08:00:00Z"))?
                    .with_timezone(&Utc),
            ),
            ParamKind::Boolean => ParamValue::Boolean(match raw.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => true,
                "false" | "no" | "off" => false,
                _ => return Err(bad("true or false")),
            }),
            ParamKind::TextList => ParamValue::TextList(
                raw.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
        })
    }

    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.get(name)
    }

    /// A text (or date, or instant, as written) given for `name`.
    pub fn text(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            ParamValue::Text(t) => Some(t.clone()),
            ParamValue::Date(d) => Some(d.to_string()),
            ParamValue::Timestamp(t) => Some(t.to_rfc3339()),
            _ => None,
        }
    }

    /// A date given for `name`.
    pub fn date(&self, name: &str) -> Option<chrono::NaiveDate> {
        match self.get(name)? {
            ParamValue::Date(d) => Some(*d),
            _ => None,
        }
    }

    pub fn integer(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            ParamValue::Integer(i) => Some(*i),
            _ => None,
        }
    }

    pub fn boolean(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            ParamValue::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// A list given for `name`; empty where none was.
    pub fn list(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Some(ParamValue::TextList(l)) => l.clone(),
            _ => Vec::new(),
        }
    }
}

/// At most 64 characters of what a caller sent, for an error message.
fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
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

/// A column named `name` (in the answer), titled `title` (for people),
/// whose values come from `source`.
pub fn column(name: &str, title: &str, source: Source) -> OutputColumn {
    OutputColumn {
        name: name.into(),
        title: title.into(),
        source,
    }
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
    /// The patients (by id, as the view shows them) a census view's rows
    /// name, for the audit; a session's queries are audited as they run.
    pub patients: Vec<String>,
}

impl Answer {
    /// Rows worked out by the product that name no patient, such as stock
    /// (no disclosure control applies: the views are for operations).
    pub fn without_patients(columns: Vec<OutputColumn>, rows: Vec<Vec<Value>>) -> Answer {
        Answer {
            columns,
            rows,
            disclosure: None,
            patients: Vec::new(),
        }
    }

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
            patients: Vec::new(),
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
    #[error("{product} has no action {action:?}")]
    UnknownAction { product: String, action: String },
    /// What an action names (an admission, a bed) is not there.
    #[error("{0}")]
    NotFound(String),
    /// The change was refused by the census as it stands (a bed already
    /// taken, an admission already discharged).
    #[error("{0}")]
    Conflict(String),
    /// The change could not be recorded durably; nothing was changed.
    #[error("not recorded: {0}")]
    NotRecorded(String),
    /// The record an action names is outside what the caller's grant
    /// shows: answered as not found, audited as refused.
    #[error("{0}")]
    NotAdmitted(String),
    /// The product's own rule refuses the caller (a proposer signing off
    /// their own change): audited as refused, answered as forbidden.
    #[error("{0}")]
    Forbidden(String),
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
    /// The product is already doing this for the caller, or is as busy as
    /// it allows itself to be: ask again later.
    #[error("{0}")]
    Busy(String),
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
                | ProductError::Forbidden(_)
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
                | ProductError::UnknownAction { .. }
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
///
/// A view declared with [`Input::Census`] is answered by
/// [`Product::census_view`], and an action by [`Product::act`]; a product
/// implements the ones its manifest declares.
#[async_trait::async_trait]
pub trait Product: Send + Sync {
    fn manifest(&self) -> Manifest;

    /// Answer `view` with `params` (already checked against the view's
    /// declared parameters) from `session`, the caller's governed session.
    async fn view(
        &self,
        view: &str,
        _session: &GovernedSession,
        _params: &Params,
    ) -> Result<Answer, ProductError> {
        Err(self.no_view(view))
    }

    /// Answer a view over the live census, as `census` lets it be seen.
    /// The rows' patients go in [`Answer::patients`], for the audit.
    fn census_view(
        &self,
        view: &str,
        _census: &GovernedCensus<'_>,
        _params: &Params,
    ) -> Result<Answer, ProductError> {
        Err(self.no_view(view))
    }

    /// Make `action` on `target` with `inputs` (checked against its
    /// declared inputs) as the census stands: the staff action to record,
    /// or why not. The platform records it and audits the change.
    fn act(
        &self,
        action: &str,
        _target: &str,
        _census: &GovernedCensus<'_>,
        _inputs: &Params,
        _by: &str,
    ) -> Result<Change, ProductError> {
        Err(ProductError::UnknownAction {
            product: self.manifest().id,
            action: shorten(action),
        })
    }

    /// Make `action` on `target` with `inputs` over the tables, as
    /// `session` (the caller's) shows them: the records to store, or why
    /// not. `held` gives the current version of a record already stored,
    /// to change it. The platform stores them through ingest and audits
    /// the change.
    async fn act_on_tables(
        &self,
        action: &str,
        _target: &str,
        _session: &GovernedSession,
        _held: &dyn RecordIntake,
        _inputs: &Params,
        _by: &str,
    ) -> Result<RecordsChange, ProductError> {
        Err(ProductError::UnknownAction {
            product: self.manifest().id,
            action: shorten(action),
        })
    }

    /// Combine the members' answers to `question`, one this product
    /// offers, into one answer for the asker (sums, and the rates and
    /// intervals of the sums), or `None` where the members' rows are best
    /// left side by side.
    fn combine(
        &self,
        _question: &str,
        _answers: &[MemberRows],
    ) -> Option<Result<Answer, ProductError>> {
        None
    }

    #[doc(hidden)]
    fn no_view(&self, view: &str) -> ProductError {
        ProductError::UnknownView {
            product: self.manifest().id,
            view: shorten(view),
        }
    }
}

/// One member's answer to a federated question: its rows, each an object
/// of the question's columns, as they left the member (after its
/// disclosure control: a suppressed count is null).
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRows {
    /// The member's ODS code.
    pub member: String,
    pub rows: Vec<Value>,
    /// The nearest multiple its counts were rounded to (1 or 0: exact).
    pub rounded_to: u64,
}

/// The live census as a product may see it: the census at one moment and
/// the policy's [`ProductView`] of it (minted by `fdp-govern` for the
/// caller's principal and purpose). A product reads the census through
/// the view's rules: [`ProductView::admits`] for each record,
/// [`ProductView::field`] for each value by its model column.
pub struct GovernedCensus<'a> {
    census: &'a Census,
    view: &'a ProductView,
    now: DateTime<Utc>,
}

impl<'a> GovernedCensus<'a> {
    pub fn new(census: &'a Census, view: &'a ProductView, now: DateTime<Utc>) -> Self {
        GovernedCensus { census, view, now }
    }

    pub fn census(&self) -> &'a Census {
        self.census
    }

    pub fn view(&self) -> &'a ProductView {
        self.view
    }

    /// The moment the census is read at (lengths of stay count to it).
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }
}

/// A change a product made: the staff action to record, the patients it
/// is about (for the audit) and what to answer the caller.
#[derive(Debug, Clone)]
pub struct Change {
    pub action: StaffAction,
    pub patients: Vec<String>,
    pub answer: Value,
}

/// A change a product made over the tables: the records to store (FHIR
/// resources, each with the id to store it under), the patients they are
/// about (for the audit) and what to answer the caller.
#[derive(Debug, Clone)]
pub struct RecordsChange {
    pub records: Vec<(Value, String)>,
    pub patients: Vec<String>,
    pub answer: Value,
}

/// Where records are kept when a product's action writes them, or a peer
/// sends them: the instance's FHIR source, so each is in raw with its
/// lineage and mapped to the canonical tables, versioned and governed like
/// any other (the instance's FHIR service; a test's own).
#[async_trait::async_trait]
pub trait RecordIntake: Send + Sync {
    /// Store `resources` (each with the id to store it under) as received
    /// from `source`: the `Type/id` of each, or why the record was not
    /// taken (what was refused stays in quarantine).
    async fn take(
        &self,
        source: &str,
        resources: Vec<(Value, String)>,
    ) -> Result<Vec<String>, String>;

    /// The current version of each of `record` (`Type/id`) that is held.
    fn current(&self, record: &[String]) -> Vec<Value>;
}

/// Where the platform records a change: durably, and applied to the live
/// census before it returns (the instance's committer; a test's own).
#[async_trait::async_trait]
pub trait Recorder: Send + Sync {
    async fn record(&self, action: &StaffAction, by: &str) -> Result<(), String>;
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

    /// Every kind of message a product takes from peers, with the product
    /// that declares it.
    pub fn message_kinds(&self) -> Vec<(String, String)> {
        self.manifests()
            .into_iter()
            .flat_map(|m| {
                let id = m.id.clone();
                m.offers
                    .messages
                    .into_iter()
                    .map(move |k| (k.kind, id.clone()))
            })
            .collect()
    }

    pub fn manifests(&self) -> Vec<Manifest> {
        self.products.iter().map(|(_, p)| p.manifest()).collect()
    }

    /// What `id`'s `view` is declared as, if there is one.
    pub fn view_spec(&self, id: &str, view: &str) -> Option<ViewSpec> {
        self.get(id)?
            .manifest()
            .views
            .into_iter()
            .find(|v| v.name == view)
    }
}

/// A product, its manifest and one of its views, found by name.
fn find_view<'r>(
    registry: &'r Registry,
    id: &str,
    view: &str,
) -> Result<(&'r Arc<dyn Product>, Manifest, ViewSpec), ProductError> {
    let product = registry
        .get(id)
        .ok_or_else(|| ProductError::UnknownProduct(shorten(id)))?;
    let manifest = product.manifest();
    let spec = manifest
        .views
        .iter()
        .find(|v| v.name == view)
        .cloned()
        .ok_or_else(|| ProductError::UnknownView {
            product: manifest.id.clone(),
            view: shorten(view),
        })?;
    Ok((product, manifest, spec))
}

/// Why `purpose` may not use the product, if it may not.
fn purpose_refused(manifest: &Manifest, purpose: Purpose) -> Option<ProductError> {
    (!manifest.purposes.contains(&purpose)).then(|| ProductError::Purpose {
        product: manifest.id.clone(),
        allowed: manifest
            .purposes
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        asked: purpose,
    })
}

/// The answer as the caller gets it, once checked against the manifest: a
/// column from a model column the product did not declare it reads is a
/// fault of the product, and nothing is answered.
fn checked_output(
    manifest: &Manifest,
    spec: &ViewSpec,
    purpose: Purpose,
    answer: Answer,
) -> Result<Output, ProductError> {
    for c in &answer.columns {
        for (table, column) in c.source.columns() {
            let declared = manifest
                .reads
                .iter()
                .any(|r| r.table == table && r.columns.iter().any(|x| x == column));
            if !declared {
                return Err(ProductError::Undeclared {
                    product: manifest.id.clone(),
                    view: spec.name.clone(),
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

/// The one path from a request to a product's answer over the tables.
///
/// Refused, and the refusal audited, before the product runs, where the
/// session's purpose is not one the manifest names or the grant does not
/// cover a table the product needs. The parameters are parsed by the
/// view's declared types, and the output checked against the manifest.
pub async fn run_view(
    registry: &Registry,
    id: &str,
    view: &str,
    session: &GovernedSession,
    given: &BTreeMap<String, String>,
) -> Result<Output, ProductError> {
    let (product, manifest, spec) = find_view(registry, id, view)?;
    let what = format!("product {}/{}", manifest.id, spec.name);
    let refuse = |e: ProductError| -> ProductError {
        // Refused before any query: the session's audit has not seen it.
        match session.refused(&what, &e.to_string()) {
            Ok(()) => e,
            Err(audit) => audit.into(),
        }
    };
    let purpose = session.purpose();
    if let Some(refused) = purpose_refused(&manifest, purpose) {
        return Err(refuse(refused));
    }
    let required = manifest
        .reads
        .iter()
        .filter(|r| !r.optional)
        .map(|r| &r.table)
        .chain(&spec.needs);
    if let Some(table) = required.into_iter().find(|t| !session.covers(t)) {
        return Err(refuse(ProductError::NotGranted {
            product: manifest.id.clone(),
            table: table.clone(),
            purpose,
        }));
    }
    let params = Params::parse(&spec.params, given)?;
    let answer = product.view(view, session, &params).await?;
    checked_output(&manifest, &spec, purpose, answer)
}

/// The policy's view of the live census for `manifest`'s product, asked
/// as `req` (`what` names the request in the audit): refused, and audited,
/// where the grant does not cover a table the product needs, where the
/// purpose is not one the manifest names, or where only aggregates may
/// leave (the census is shown patient by patient).
pub fn census_view_for(
    governance: &Governance,
    req: &SessionRequest,
    manifest: &Manifest,
    what: &str,
) -> Result<ProductView, ProductError> {
    let needs: Vec<&str> = manifest
        .reads
        .iter()
        .filter(|r| !r.optional)
        .map(|r| r.table.as_str())
        .collect();
    let view = governance
        .product_view(req, &needs, what)?
        .one_by_one(&manifest.title)?;
    if let Some(refused) = purpose_refused(manifest, req.purpose) {
        return Err(view.refuse(&refused.to_string()).into());
    }
    Ok(view)
}

/// [`run_view`] for a view over the live census ([`Input::Census`]): the
/// census read once, as [`census_view_for`] lets `req` see it, and the
/// answer audited with the patients it names.
#[allow(clippy::too_many_arguments)]
pub async fn run_census_view(
    registry: &Registry,
    id: &str,
    view: &str,
    governance: &Governance,
    req: &SessionRequest,
    live: &Live,
    what: &str,
    given: &BTreeMap<String, String>,
) -> Result<Output, ProductError> {
    let (product, manifest, spec) = find_view(registry, id, view)?;
    let census_view = census_view_for(governance, req, &manifest, what)?;
    let params = Params::parse(&spec.params, given)?;
    let answer = {
        let census = live.read().await;
        product.census_view(
            view,
            &GovernedCensus::new(&census, &census_view, Utc::now()),
            &params,
        )?
    };
    let patients = answer.patients.clone();
    let out = checked_output(&manifest, &spec, req.purpose, answer)?;
    census_view.served(out.rows.len() as u64, patients)?;
    Ok(out)
}

/// What an action is asked to do: the product, the action, the id of
/// what it is done to, and the caller's inputs (a JSON object).
pub struct ActionRequest<'a> {
    pub product: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub inputs: &'a Value,
    /// The request as the audit names it (`POST /api/beds/B1/status`).
    pub what: &'a str,
}

/// The one path for a change through a product (governed write-back).
///
/// The grant must allow a change to every table the action changes under
/// the caller's purpose (direct care or operations: planning and research
/// never change records), and the purpose must be one the manifest names:
/// otherwise it is refused, and audited, before anything is looked up, so
/// a refusal tells nothing of what exists. The inputs are parsed by their
/// declared types; the product checks them against the census as the
/// policy lets the caller see it (a record the grant does not show is
/// answered as not found, and the attempt audited as refused); the staff
/// action is recorded durably by `recorder`, and only then audited as a
/// change with the patients it is about and answered.
pub async fn run_action(
    registry: &Registry,
    asked: ActionRequest<'_>,
    governance: &Governance,
    req: &SessionRequest,
    live: &Live,
    recorder: &dyn Recorder,
) -> Result<Value, ProductError> {
    let (product, spec) = find_action(registry, &asked, Input::Census)?;
    let (change_view, inputs) = allowed_change(&product, &spec, &asked, governance, req)?;
    let by = req.principal.name.as_str();
    let made = {
        let census = live.read().await;
        product.act(
            asked.action,
            asked.target,
            &GovernedCensus::new(&census, &change_view, Utc::now()),
            &inputs,
            by,
        )
    };
    let change = match made {
        Ok(change) => change,
        Err(e) => return Err(refused_change(e, &spec, &asked, change_view)),
    };
    recorder
        .record(&change.action, by)
        .await
        .map_err(ProductError::NotRecorded)?;
    change_view.changed(change.patients)?;
    Ok(change.answer)
}

/// [`run_action`] for an action over the tables ([`Input::Tables`]): the
/// same checks, in the same order, before anything is looked up; then the
/// product reads what it needs through `session` (the caller's) and
/// returns the records to store, which `intake` stores (raw, then the
/// canonical tables) under the source `product:{id}` before the change is
/// audited and answered.
pub async fn run_table_action(
    registry: &Registry,
    asked: ActionRequest<'_>,
    governance: &Governance,
    req: &SessionRequest,
    session: &GovernedSession,
    intake: &dyn RecordIntake,
) -> Result<Value, ProductError> {
    let (product, spec) = find_action(registry, &asked, Input::Tables)?;
    let (change_view, inputs) = allowed_change(&product, &spec, &asked, governance, req)?;
    let by = req.principal.name.as_str();
    let made = product
        .act_on_tables(asked.action, asked.target, session, intake, &inputs, by)
        .await;
    let change = match made {
        Ok(change) => change,
        Err(e) => return Err(refused_change(e, &spec, &asked, change_view)),
    };
    let source = format!("product:{}", product.manifest().id);
    intake
        .take(&source, change.records)
        .await
        .map_err(ProductError::NotRecorded)?;
    change_view.changed(change.patients)?;
    Ok(change.answer)
}

/// The product and action `asked` names, made against `input`.
fn find_action(
    registry: &Registry,
    asked: &ActionRequest<'_>,
    input: Input,
) -> Result<(Arc<dyn Product>, ActionSpec), ProductError> {
    let product = registry
        .get(asked.product)
        .ok_or_else(|| ProductError::UnknownProduct(shorten(asked.product)))?
        .clone();
    let manifest = product.manifest();
    let spec = manifest
        .actions
        .into_iter()
        .find(|a| a.name == asked.action && a.input == input)
        .ok_or_else(|| ProductError::UnknownAction {
            product: manifest.id.clone(),
            action: shorten(asked.action),
        })?;
    Ok((product, spec))
}

/// Whether the action on `asked` is an action over the tables.
pub fn is_table_action(registry: &Registry, asked: &ActionRequest<'_>) -> bool {
    find_action(registry, asked, Input::Tables).is_ok()
}

/// The change view for an action, refused (and audited) where the grant
/// does not allow a change to every table it changes or the purpose is
/// not the product's; and its inputs, parsed by their declared types.
fn allowed_change(
    product: &Arc<dyn Product>,
    spec: &ActionSpec,
    asked: &ActionRequest<'_>,
    governance: &Governance,
    req: &SessionRequest,
) -> Result<(ProductView, Params), ProductError> {
    let tables: Vec<&str> = spec.changes.iter().map(String::as_str).collect();
    let change_view = governance.change_view(req, &tables, asked.what)?;
    if let Some(refused) = purpose_refused(&product.manifest(), req.purpose) {
        return Err(change_view.refuse(&refused.to_string()).into());
    }
    let inputs = Params::from_json(&spec.inputs, asked.inputs)?;
    Ok((change_view, inputs))
}

/// What the caller is told when the product did not make the change. A
/// record outside the grant is answered as absent, so a grant kept to some
/// wards learns nothing of the others; it and the product's own refusals
/// are audited as refused.
fn refused_change(
    e: ProductError,
    spec: &ActionSpec,
    asked: &ActionRequest<'_>,
    change_view: ProductView,
) -> ProductError {
    match e {
        ProductError::NotAdmitted(why) => {
            let answer = format!(
                "no {} {} among those the grant shows",
                spec.target,
                shorten(asked.target)
            );
            match change_view.refuse(&why) {
                GovernError::Refused(_) => ProductError::NotFound(answer),
                unaudited => unaudited.into(),
            }
        }
        ProductError::Forbidden(why) => change_view.refuse(&why).into(),
        other => other,
    }
}
