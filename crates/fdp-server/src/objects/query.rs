//! The object API's requests read as SQL over one object type's table, as
//! one governed session sees it.
//!
//! Everything a caller names (a property to select, filter, order or group
//! by; a value to compare with) is checked against the model and against
//! the columns the session's view of the table holds, so a property the
//! policy removed for the purpose can be neither shown nor used to narrow
//! an answer down. Values become typed SQL literals; identifiers are the
//! model's own column names, quoted. Nothing the caller sends is pasted
//! into SQL as it came.

use std::collections::BTreeSet;

use fdp_model::{ObjectType, Property, PropertyType};
use serde_json::{Map, Value};

/// What was wrong with a request, in the published API's terms: each has
/// the error name that API gives and the HTTP status it answers with.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ObjectError {
    #[error("no ontology {0:?}: this instance serves `palantirukhealth-ontology`")]
    Ontology(String),
    #[error("no object type {0:?} in the canonical model or its extensions")]
    UnknownType(String),
    #[error("{object} has no property {property:?}")]
    UnknownProperty { object: String, property: String },
    #[error(
        "{object}.{property} is not shown for this purpose, so it cannot be read, filtered, ordered or grouped by"
    )]
    NotVisible { object: String, property: String },
    #[error("{object} has no link {link:?}")]
    UnknownLink { object: String, link: String },
    #[error("no {object} with primary key {key:?}")]
    NotFound { object: String, key: String },
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error("page token {0:?} was not given by this API: send back a nextPageToken as it came")]
    PageToken(String),
}

impl ObjectError {
    /// The published API's error code, name and HTTP status.
    pub fn kind(&self) -> (&'static str, &'static str, u16) {
        match self {
            ObjectError::Ontology(_) => ("NOT_FOUND", "OntologyNotFound", 404),
            ObjectError::UnknownType(_) => ("NOT_FOUND", "ObjectTypeNotFound", 404),
            ObjectError::UnknownProperty { .. } => ("INVALID_ARGUMENT", "PropertiesNotFound", 400),
            ObjectError::NotVisible { .. } => ("PERMISSION_DENIED", "PropertiesNotVisible", 403),
            ObjectError::UnknownLink { .. } => ("NOT_FOUND", "LinkTypeNotFound", 404),
            ObjectError::NotFound { .. } => ("NOT_FOUND", "ObjectNotFound", 404),
            ObjectError::Invalid { .. } => ("INVALID_ARGUMENT", "InvalidRequest", 400),
            ObjectError::PageToken(_) => ("INVALID_ARGUMENT", "InvalidPageToken", 400),
        }
    }
}

fn invalid(at: &str, message: impl Into<String>) -> ObjectError {
    ObjectError::Invalid {
        at: at.to_string(),
        message: message.into(),
    }
}

/// The largest page the API answers; the published default is 1,000.
pub const MAX_PAGE: usize = 10_000;
const DEFAULT_PAGE: usize = 1_000;
/// Groups an aggregation answers with when the caller sets no limit.
const DEFAULT_GROUPS: usize = 10_000;

/// One page of a listing: how many objects, after how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub size: usize,
    pub offset: usize,
}

impl Page {
    /// `pageSize` (default 1,000, at most [`MAX_PAGE`]) and `pageToken`
    /// (one this API gave).
    pub fn parse(size: Option<i64>, token: Option<&str>) -> Result<Page, ObjectError> {
        let size = match size {
            None => DEFAULT_PAGE,
            Some(n) if n >= 1 && n as usize <= MAX_PAGE => n as usize,
            Some(n) => return Err(invalid("pageSize", format!("{n}: give 1 to {MAX_PAGE}"))),
        };
        let offset = match token.filter(|t| !t.is_empty()) {
            None => 0,
            Some(t) => t
                .strip_prefix("o")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| ObjectError::PageToken(t.chars().take(64).collect()))?,
        };
        Ok(Page { size, offset })
    }

    /// The token for the page after this one.
    pub fn next_token(&self) -> String {
        format!("o{}", self.offset + self.size)
    }
}

/// A direction to order by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

impl Direction {
    fn parse(text: Option<&str>, at: &str) -> Result<Direction, ObjectError> {
        match text.map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => Ok(Direction::Asc),
            Some("desc") => Ok(Direction::Desc),
            Some(other) => Err(invalid(at, format!("direction {other:?}: use asc or desc"))),
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Direction::Asc => "ASC",
            Direction::Desc => "DESC",
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// One object type as one session sees it: the model's properties, and
/// which of their columns the session's view holds.
#[derive(Debug, Clone)]
pub struct ObjectView<'m> {
    pub ty: &'m ObjectType,
    visible: BTreeSet<String>,
}

impl<'m> ObjectView<'m> {
    /// `visible` is the column names the session's view of the table has.
    pub fn new(ty: &'m ObjectType, visible: impl IntoIterator<Item = String>) -> ObjectView<'m> {
        ObjectView {
            ty,
            visible: visible.into_iter().collect(),
        }
    }

    /// The name the published API calls this type by.
    pub fn api_name(&self) -> &'m str {
        self.ty.api_name.as_deref().unwrap_or(&self.ty.name)
    }

    pub fn table(&self) -> String {
        quote_ident(&self.ty.table)
    }

    /// A property the caller named, which the session must also show.
    pub fn property(&self, name: &str) -> Result<&'m Property, ObjectError> {
        let p = self
            .ty
            .property(name)
            .ok_or_else(|| ObjectError::UnknownProperty {
                object: self.api_name().to_string(),
                property: name.chars().take(64).collect(),
            })?;
        if !self.visible.contains(&p.column) {
            return Err(ObjectError::NotVisible {
                object: self.api_name().to_string(),
                property: p.name.clone(),
            });
        }
        Ok(p)
    }

    /// Whether the primary key is shown: an object without it cannot be
    /// listed as an object, only counted and aggregated.
    pub fn key_shown(&self) -> bool {
        self.visible
            .contains(&self.ty.primary_key_property().column)
    }

    /// The columns to read: those named by `select` (the primary key
    /// always with them), or every one the session shows.
    pub fn columns(&self, select: &[String]) -> Result<String, ObjectError> {
        let key = self.ty.primary_key_property();
        let mut chosen: Vec<&Property> = if select.is_empty() {
            self.ty
                .properties
                .iter()
                .filter(|p| self.visible.contains(&p.column))
                .collect()
        } else {
            let mut chosen = vec![self.property(&key.name)?];
            for name in select {
                let p = self.property(name)?;
                if !chosen.iter().any(|c| c.name == p.name) {
                    chosen.push(p);
                }
            }
            chosen
        };
        if chosen.is_empty() {
            chosen.push(self.property(&key.name)?);
        }
        Ok(chosen
            .iter()
            .map(|p| quote_ident(&p.column))
            .collect::<Vec<_>>()
            .join(", "))
    }

    /// `orderBy` of a listing: `p.name:asc,properties.other:desc`.
    pub fn order_by_text(
        &self,
        text: Option<&str>,
    ) -> Result<Vec<(String, Direction)>, ObjectError> {
        let mut out = Vec::new();
        for part in text
            .unwrap_or("")
            .split(',')
            .filter(|p| !p.trim().is_empty())
        {
            let part = part.trim();
            let (field, dir) = part.split_once(':').unwrap_or((part, "asc"));
            let field = field
                .strip_prefix("properties.")
                .or_else(|| field.strip_prefix("p."))
                .unwrap_or(field);
            out.push((field.to_string(), Direction::parse(Some(dir), "orderBy")?));
        }
        Ok(out)
    }

    /// `orderBy` of a search request: `{"fields": [{"field", "direction"}]}`.
    pub fn order_by_json(
        &self,
        v: Option<&Value>,
    ) -> Result<Vec<(String, Direction)>, ObjectError> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(Vec::new());
        };
        let fields = v
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("orderBy", "expected {\"fields\": [{\"field\": …}]}"))?;
        fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let at = format!("orderBy.fields[{i}]");
                let field = f
                    .get("field")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(&at, "field is required"))?;
                let dir = Direction::parse(f.get("direction").and_then(Value::as_str), &at)?;
                Ok((field.to_string(), dir))
            })
            .collect()
    }

    /// An ORDER BY clause: the caller's fields, then the primary key, so
    /// that pages do not overlap or skip.
    pub fn order_clause(&self, fields: &[(String, Direction)]) -> Result<String, ObjectError> {
        let key = self.ty.primary_key_property();
        let mut parts = Vec::new();
        for (field, dir) in fields {
            let p = self.property(field)?;
            parts.push(format!(
                "{} {} NULLS LAST",
                quote_ident(&p.column),
                dir.sql()
            ));
        }
        if self.visible.contains(&key.column) {
            parts.push(format!("{} ASC", quote_ident(&key.column)));
        }
        Ok(if parts.is_empty() {
            String::new()
        } else {
            format!(" ORDER BY {}", parts.join(", "))
        })
    }

    /// A listing's query: `page.size + 1` rows, so the caller knows
    /// whether another page follows.
    pub fn list_sql(
        &self,
        select: &[String],
        predicate: Option<&str>,
        order: &[(String, Direction)],
        page: Page,
    ) -> Result<String, ObjectError> {
        Ok(format!(
            "SELECT {} FROM {}{}{} LIMIT {} OFFSET {}",
            self.columns(select)?,
            self.table(),
            where_clause(predicate),
            self.order_clause(order)?,
            page.size + 1,
            page.offset
        ))
    }

    /// The query counting the objects `predicate` matches.
    pub fn count_sql(&self, predicate: Option<&str>) -> String {
        format!(
            "SELECT count(*) AS count FROM {}{}",
            self.table(),
            where_clause(predicate)
        )
    }

    /// The SQL condition for the published API's `where` query.
    pub fn predicate(&self, q: &Value, at: &str) -> Result<String, ObjectError> {
        let kind = q
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(at, "every query needs a type (eq, and, startsWith, …)"))?;
        let value = q.get("value");
        let list = |at: &str| -> Result<Vec<String>, ObjectError> {
            let items = value.and_then(Value::as_array).ok_or_else(|| {
                invalid(at, format!("{kind} takes a list of queries as its value"))
            })?;
            items
                .iter()
                .enumerate()
                .map(|(i, q)| self.predicate(q, &format!("{at}.value[{i}]")))
                .collect()
        };
        match kind {
            "and" => {
                let parts = list(at)?;
                Ok(if parts.is_empty() {
                    "TRUE".into()
                } else {
                    format!("({})", parts.join(" AND "))
                })
            }
            "or" => {
                let parts = list(at)?;
                Ok(if parts.is_empty() {
                    "FALSE".into()
                } else {
                    format!("({})", parts.join(" OR "))
                })
            }
            "not" => {
                let inner = value.ok_or_else(|| invalid(at, "not takes one query as its value"))?;
                Ok(format!(
                    "(NOT {})",
                    self.predicate(inner, &format!("{at}.value"))?
                ))
            }
            _ => self.field_predicate(kind, q, at),
        }
    }

    fn field_predicate(&self, kind: &str, q: &Value, at: &str) -> Result<String, ObjectError> {
        let field = q
            .get("field")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(at, format!("{kind} needs a field")))?;
        let p = self.property(field)?;
        let col = quote_ident(&p.column);
        let value = q.get("value").unwrap_or(&Value::Null);
        let at_value = format!("{at}.value");
        let scalar = |v: &Value| -> Result<String, ObjectError> {
            if p.property_type == PropertyType::StringList {
                return Err(invalid(
                    at,
                    format!("{field} is a list: use contains to find a value in it"),
                ));
            }
            literal(p.property_type, v, &at_value)
        };
        let text = |what: &str| -> Result<String, ObjectError> {
            if p.property_type != PropertyType::String {
                return Err(invalid(
                    at,
                    format!("{what} applies to text; {field} is {}", p.property_type),
                ));
            }
            if q.get("fuzzy").and_then(Value::as_bool) == Some(true) {
                return Err(invalid(
                    at,
                    "fuzzy matching is not offered: leave fuzzy out or false",
                ));
            }
            value
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| invalid(&at_value, format!("{what} takes text")))
        };
        Ok(match kind {
            "eq" if value.is_null() => format!("{col} IS NULL"),
            "eq" => format!("{col} = {}", scalar(value)?),
            "gt" => format!("{col} > {}", scalar(value)?),
            "gte" => format!("{col} >= {}", scalar(value)?),
            "lt" => format!("{col} < {}", scalar(value)?),
            "lte" => format!("{col} <= {}", scalar(value)?),
            "isNull" => match value.as_bool() {
                Some(true) => format!("{col} IS NULL"),
                Some(false) => format!("{col} IS NOT NULL"),
                None => return Err(invalid(&at_value, "isNull takes true or false")),
            },
            "in" => {
                let items = value
                    .as_array()
                    .ok_or_else(|| invalid(&at_value, "in takes a list of values"))?;
                if items.is_empty() {
                    "FALSE".into()
                } else {
                    let lits = items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?;
                    format!("{col} IN ({})", lits.join(", "))
                }
            }
            "startsWith" => format!("starts_with({col}, {})", quote_text(&text("startsWith")?)),
            "contains" => {
                if p.property_type != PropertyType::StringList {
                    return Err(invalid(
                        at,
                        format!("contains finds a value in a list; {field} is {}", p.property_type),
                    ));
                }
                format!(
                    "array_has({col}, {})",
                    literal(PropertyType::String, value, &at_value)?
                )
            }
            "containsAnyTerm" | "containsAllTerms" => {
                let terms: Vec<String> = text(kind)?
                    .split_whitespace()
                    .map(|t| format!("regexp_like({col}, {})", quote_text(&word_pattern(&[t], false))))
                    .collect();
                if terms.is_empty() {
                    return Err(invalid(&at_value, format!("{kind} needs at least one word")));
                }
                let join = if kind == "containsAnyTerm" { " OR " } else { " AND " };
                format!("({})", terms.join(join))
            }
            "containsAllTermsInOrder" | "containsAllTermsInOrderPrefixLastTerm" => {
                let given = text(kind)?;
                let words: Vec<&str> = given.split_whitespace().collect();
                if words.is_empty() {
                    return Err(invalid(&at_value, format!("{kind} needs at least one word")));
                }
                let prefix = kind == "containsAllTermsInOrderPrefixLastTerm";
                format!("regexp_like({col}, {})", quote_text(&word_pattern(&words, prefix)))
            }
            "withinDistanceOf" | "withinBoundingBox" | "withinPolygon" | "intersectsBoundingBox"
            | "intersectsPolygon" | "doesNotIntersectBoundingBox" | "doesNotIntersectPolygon" => {
                return Err(invalid(
                    at,
                    format!("{kind} needs a geographic property; {field} is {}", p.property_type),
                ))
            }
            other => {
                return Err(invalid(
                    at,
                    format!("unknown query type {other:?}: use eq, gt, gte, lt, lte, isNull, in, startsWith, contains, containsAnyTerm, containsAllTerms, containsAllTermsInOrder, containsAllTermsInOrderPrefixLastTerm, and, or or not"),
                ))
            }
        })
    }

    /// One object in the published API's shape: `__apiName`,
    /// `__primaryKey`, and each property the row holds under its API name.
    /// A property without a value is left out, as the published API does.
    pub fn object(&self, row: &Map<String, Value>) -> Value {
        let mut out = Map::new();
        out.insert(
            "__apiName".into(),
            Value::String(self.api_name().to_string()),
        );
        let key = self.ty.primary_key_property();
        let key_value = row.get(&key.column).map(key_text).unwrap_or_default();
        out.insert("__primaryKey".into(), Value::String(key_value));
        for p in &self.ty.properties {
            match row.get(&p.column) {
                None | Some(Value::Null) => {}
                Some(v) => {
                    out.insert(p.name.clone(), typed(p.property_type, v.clone()));
                }
            }
        }
        Value::Object(out)
    }
}

fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A value as the published API types its property: text properties stay
/// text when the policy generalised them into something else (a year).
fn typed(ty: PropertyType, v: Value) -> Value {
    match (ty, &v) {
        (PropertyType::String | PropertyType::Date | PropertyType::Timestamp, Value::Number(n)) => {
            Value::String(n.to_string())
        }
        _ => v,
    }
}

fn where_clause(predicate: Option<&str>) -> String {
    predicate.map(|p| format!(" WHERE {p}")).unwrap_or_default()
}

/// A regular expression matching `words` as whole words, adjacent and in
/// order, ignoring case; the last one as a prefix if `prefix`.
fn word_pattern(words: &[&str], prefix: bool) -> String {
    let escaped: Vec<String> = words.iter().map(|w| regex_escape(w)).collect();
    format!(
        "(?i)\\b{}{}",
        escaped.join("\\s+"),
        if prefix { "" } else { "\\b" }
    )
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A value as an SQL literal of the property's type, or why it cannot be.
pub fn literal(ty: PropertyType, v: &Value, at: &str) -> Result<String, ObjectError> {
    let wrong = |what: &str| invalid(at, format!("expected {what}, got {}", short(v)));
    match ty {
        PropertyType::String | PropertyType::StringList => {
            v.as_str().map(quote_text).ok_or_else(|| wrong("text"))
        }
        PropertyType::Integer | PropertyType::Long => match v {
            Value::Number(n) => n
                .as_i64()
                .map(|i| i.to_string())
                .ok_or_else(|| wrong("a whole number")),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(|i| i.to_string())
                .map_err(|_| wrong("a whole number")),
            _ => Err(wrong("a whole number")),
        },
        PropertyType::Double => {
            let f = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            f.filter(|f| f.is_finite())
                .map(|f| format!("CAST({f:?} AS DOUBLE)"))
                .ok_or_else(|| wrong("a number"))
        }
        PropertyType::Boolean => v
            .as_bool()
            .map(|b| if b { "TRUE" } else { "FALSE" }.to_string())
            .ok_or_else(|| wrong("true or false")),
        PropertyType::Date => v
            .as_str()
            .and_then(|s| chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok())
            .map(|d| format!("DATE '{d}'"))
            .ok_or_else(|| wrong("a date (YYYY-MM-DD)")),
        PropertyType::Timestamp => v
            .as_str()
            .and_then(|s| {
                let s = s.trim();
                chrono::DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .ok()
                    .or_else(|| {
                        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                            .ok()
                            .and_then(|d| d.and_hms_opt(0, 0, 0))
                            .map(|t| t.and_utc())
                    })
            })
            .map(|t| format!("TIMESTAMP '{}'", t.to_rfc3339()))
            .ok_or_else(|| wrong("a timestamp (RFC 3339, such as 2026-11-30T09:00:00Z)")),
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 64 {
        format!("{}…", text.chars().take(64).collect::<String>())
    } else {
        text
    }
}

/// An aggregation request read as one query, and how to read its rows back.
#[derive(Debug)]
pub struct Aggregation {
    pub sql: String,
    groups: Vec<Grouping>,
    metrics: Vec<String>,
    /// Whether a metric was estimated (approximate distinct, percentile).
    approximate: bool,
}

#[derive(Debug)]
struct Grouping {
    field: String,
    /// For a ranges grouping, the ranges by index, as asked.
    ranges: Option<Vec<Value>>,
}

impl<'m> ObjectView<'m> {
    /// The published API's `AggregateObjectsRequestV2`.
    pub fn aggregation(&self, req: &Value) -> Result<Aggregation, ObjectError> {
        let predicate = match req.get("where").filter(|w| !w.is_null()) {
            Some(w) => Some(self.predicate(w, "where")?),
            None => None,
        };
        if let Some(acc) = req.get("accuracy").and_then(Value::as_str) {
            if acc != "REQUIRE_ACCURATE" && acc != "ALLOW_APPROXIMATE" {
                return Err(invalid(
                    "accuracy",
                    "use REQUIRE_ACCURATE or ALLOW_APPROXIMATE",
                ));
            }
        }
        let mut select = Vec::new();
        let mut groups = Vec::new();
        let mut max_groups = DEFAULT_GROUPS;
        let mut range_exprs = Vec::new();
        let mut approximate = false;
        let group_by = req
            .get("groupBy")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, g) in group_by.iter().enumerate() {
            let at = format!("groupBy[{i}]");
            let field = g
                .get("field")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(&at, "field is required"))?;
            let p = self.property(field)?;
            let col = quote_ident(&p.column);
            let kind = g.get("type").and_then(Value::as_str).unwrap_or("");
            let mut ranges = None;
            let expr = match kind {
                "exact" => {
                    if let Some(n) = g.get("maxGroupCount") {
                        let n = n.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                            invalid(&at, "maxGroupCount is a whole number above 0")
                        })?;
                        max_groups = max_groups.min(n as usize);
                    }
                    col
                }
                "fixedWidth" => {
                    if !matches!(
                        p.property_type,
                        PropertyType::Integer | PropertyType::Long | PropertyType::Double
                    ) {
                        return Err(invalid(
                            &at,
                            format!("fixedWidth groups numbers; {field} is {}", p.property_type),
                        ));
                    }
                    let w = g
                        .get("fixedWidth")
                        .and_then(Value::as_i64)
                        .filter(|w| *w >= 1)
                        .ok_or_else(|| invalid(&at, "fixedWidth is a whole number above 0"))?;
                    format!("CAST(floor({col} / {w}) * {w} AS BIGINT)")
                }
                "ranges" => {
                    let given = g
                        .get("ranges")
                        .and_then(Value::as_array)
                        .filter(|r| !r.is_empty())
                        .ok_or_else(|| {
                            invalid(&at, "ranges is a list of {startValue, endValue}")
                        })?;
                    let mut arms = Vec::new();
                    for (j, r) in given.iter().enumerate() {
                        let at = format!("{at}.ranges[{j}]");
                        let start = literal(
                            p.property_type,
                            r.get("startValue").unwrap_or(&Value::Null),
                            &format!("{at}.startValue"),
                        )?;
                        let end = literal(
                            p.property_type,
                            r.get("endValue").unwrap_or(&Value::Null),
                            &format!("{at}.endValue"),
                        )?;
                        arms.push(format!("WHEN {col} >= {start} AND {col} < {end} THEN {j}"));
                    }
                    ranges = Some(given.clone());
                    format!("CASE {} END", arms.join(" "))
                }
                "duration" => {
                    if !matches!(
                        p.property_type,
                        PropertyType::Date | PropertyType::Timestamp
                    ) {
                        return Err(invalid(
                            &at,
                            format!(
                                "duration groups dates and timestamps; {field} is {}",
                                p.property_type
                            ),
                        ));
                    }
                    let unit = g.get("unit").and_then(Value::as_str).unwrap_or("");
                    let n = g
                        .get("value")
                        .and_then(Value::as_i64)
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| invalid(&at, "value is a whole number above 0"))?;
                    let (trunc, bin) = match unit {
                        "SECONDS" => ("second", Some("seconds")),
                        "MINUTES" => ("minute", Some("minutes")),
                        "HOURS" => ("hour", Some("hours")),
                        "DAYS" => ("day", Some("days")),
                        "WEEKS" => ("week", None),
                        "MONTHS" => ("month", None),
                        "QUARTERS" => ("quarter", None),
                        "YEARS" => ("year", None),
                        other => {
                            return Err(invalid(&at, format!("unit {other:?}: use SECONDS, MINUTES, HOURS, DAYS, WEEKS, MONTHS, QUARTERS or YEARS")))
                        }
                    };
                    match (n, bin) {
                        (1, _) => format!("date_trunc('{trunc}', {col})"),
                        (n, Some(bin)) => format!(
                            "date_bin(INTERVAL '{n} {bin}', {col}, TIMESTAMP '1970-01-01T00:00:00Z')"
                        ),
                        (_, None) => {
                            return Err(invalid(&at, format!("grouping by {unit} takes value 1")))
                        }
                    }
                }
                other => {
                    return Err(invalid(
                        &at,
                        format!(
                            "grouping type {other:?}: use exact, fixedWidth, ranges or duration"
                        ),
                    ))
                }
            };
            select.push(format!("{expr} AS g{i}"));
            range_exprs.push(expr);
            groups.push(Grouping {
                field: p.name.clone(),
                ranges,
            });
        }
        let asked = req
            .get("aggregation")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if asked.is_empty() {
            return Err(invalid(
                "aggregation",
                "ask for at least one metric, such as {\"type\": \"count\"}",
            ));
        }
        let mut metrics: Vec<String> = Vec::new();
        let mut order = Vec::new();
        for (i, m) in asked.iter().enumerate() {
            let at = format!("aggregation[{i}]");
            let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
            let field = || -> Result<&'m Property, ObjectError> {
                let f = m
                    .get("field")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(&at, format!("{kind} needs a field")))?;
                self.property(f)
            };
            let numeric = |p: &Property| -> Result<String, ObjectError> {
                if matches!(
                    p.property_type,
                    PropertyType::Integer | PropertyType::Long | PropertyType::Double
                ) {
                    Ok(quote_ident(&p.column))
                } else {
                    Err(invalid(
                        &at,
                        format!("{kind} needs a number; {} is {}", p.name, p.property_type),
                    ))
                }
            };
            let (expr, default_name) = match kind {
                "count" => ("count(*)".to_string(), "count".to_string()),
                "min" | "max" => {
                    let p = field()?;
                    (format!("{kind}({})", quote_ident(&p.column)), format!("{kind}_{}", p.name))
                }
                "sum" | "avg" => {
                    let p = field()?;
                    (format!("{kind}({})", numeric(p)?), format!("{kind}_{}", p.name))
                }
                "exactDistinct" => {
                    let p = field()?;
                    (format!("count(DISTINCT {})", quote_ident(&p.column)), format!("exactDistinct_{}", p.name))
                }
                "approximateDistinct" => {
                    approximate = true;
                    let p = field()?;
                    (format!("approx_distinct({})", quote_ident(&p.column)), format!("approximateDistinct_{}", p.name))
                }
                "approximatePercentile" => {
                    approximate = true;
                    let p = field()?;
                    let q = m
                        .get("approximatePercentile")
                        .and_then(Value::as_f64)
                        .filter(|q| (0.0..=1.0).contains(q))
                        .ok_or_else(|| invalid(&at, "approximatePercentile is a number from 0 to 1"))?;
                    (
                        format!("approx_percentile_cont({}, {q:?})", numeric(p)?),
                        format!("approximatePercentile_{}", p.name),
                    )
                }
                other => {
                    return Err(invalid(&at, format!("metric type {other:?}: use count, min, max, sum, avg, exactDistinct, approximateDistinct or approximatePercentile")))
                }
            };
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or(default_name);
            if metrics.contains(&name) {
                return Err(invalid(
                    &at,
                    format!("two metrics are named {name:?}: give each its own name"),
                ));
            }
            if let Some(d) = m.get("direction").and_then(Value::as_str) {
                let dir = match d {
                    "ASC" => Direction::Asc,
                    "DESC" => Direction::Desc,
                    other => {
                        return Err(invalid(
                            &at,
                            format!("direction {other:?}: use ASC or DESC"),
                        ))
                    }
                };
                order.push(format!("m{i} {}", dir.sql()));
            }
            select.push(format!("{expr} AS m{i}"));
            metrics.push(name);
        }
        if approximate && req.get("accuracy").and_then(Value::as_str) == Some("REQUIRE_ACCURATE") {
            return Err(invalid(
                "accuracy",
                "REQUIRE_ACCURATE was asked, but approximateDistinct and approximatePercentile are estimates: use exactDistinct, or ALLOW_APPROXIMATE",
            ));
        }
        // Objects outside every range asked for belong to no group.
        let mut conditions: Vec<String> = predicate.into_iter().collect();
        for (i, g) in groups.iter().enumerate() {
            if g.ranges.is_some() {
                conditions.push(format!("({}) IS NOT NULL", range_exprs[i]));
            }
        }
        let predicate = (!conditions.is_empty()).then(|| conditions.join(" AND "));
        let mut sql = format!(
            "SELECT {} FROM {}{}",
            select.join(", "),
            self.table(),
            where_clause(predicate.as_deref())
        );
        if !groups.is_empty() {
            let keys: Vec<String> = (0..groups.len()).map(|i| format!("g{i}")).collect();
            sql.push_str(&format!(" GROUP BY {}", keys.join(", ")));
            order.extend(keys);
            sql.push_str(&format!(
                " ORDER BY {} LIMIT {max_groups}",
                order.join(", ")
            ));
        }
        Ok(Aggregation {
            sql,
            groups,
            metrics,
            approximate,
        })
    }
}

impl Aggregation {
    /// The published API's `AggregateObjectsResponseV2` from the query's
    /// rows (`g0…`, `m0…`).
    pub fn response(&self, rows: &[Value]) -> Value {
        let data: Vec<Value> = rows
            .iter()
            .map(|row| {
                let mut group = Map::new();
                for (i, g) in self.groups.iter().enumerate() {
                    let v = row.get(format!("g{i}")).cloned().unwrap_or(Value::Null);
                    let v = match (&g.ranges, v.as_u64()) {
                        (Some(ranges), Some(j)) => {
                            ranges.get(j as usize).cloned().unwrap_or(Value::Null)
                        }
                        _ => v,
                    };
                    group.insert(g.field.clone(), v);
                }
                let metrics: Vec<Value> = self
                    .metrics
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        serde_json::json!({
                            "name": name,
                            "value": row.get(format!("m{i}")).cloned().unwrap_or(Value::Null)
                        })
                    })
                    .collect();
                serde_json::json!({ "group": group, "metrics": metrics })
            })
            .collect();
        let accuracy = if self.approximate {
            "APPROXIMATE"
        } else {
            "ACCURATE"
        };
        serde_json::json!({ "accuracy": accuracy, "data": data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdp_model::Model;
    use serde_json::json;

    fn admission(hidden: &[&str]) -> ObjectView<'static> {
        let ty = Model::canonical().object_type("Admission").unwrap();
        let visible = ty
            .properties
            .iter()
            .map(|p| p.column.clone())
            .filter(|c| !hidden.contains(&c.as_str()));
        ObjectView::new(ty, visible)
    }

    #[test]
    fn where_queries_become_typed_conditions_on_model_columns() {
        let v = admission(&[]);
        let q = json!({"type": "and", "value": [
            {"type": "eq", "field": "ward", "value": "RXX:A"},
            {"type": "gte", "field": "admissionTimestamp", "value": "2026-11-01T08:00:00+01:00"},
            {"type": "not", "value": {"type": "isNull", "field": "dischargeReadyDate", "value": true}},
            {"type": "or", "value": [
                {"type": "in", "field": "admissionType", "value": ["elective", "emergency"]},
                {"type": "lt", "field": "dischargeReadyDate", "value": "2026-11-20"},
                {"type": "eq", "field": "isDischargeTimeConfirmed", "value": false}
            ]}
        ]});
        assert_eq!(
            v.predicate(&q, "where").unwrap(),
            "(\"ward\" = 'RXX:A' AND \"admission_timestamp\" >= TIMESTAMP '2026-11-01T07:00:00+00:00' \
             AND (NOT \"discharge_ready_date\" IS NULL) AND (\"admission_type\" IN ('elective', 'emergency') \
             OR \"discharge_ready_date\" < DATE '2026-11-20' OR \"is_discharge_time_confirmed\" = FALSE))"
        );
        assert_eq!(
            v.predicate(&json!({"type": "or", "value": []}), "where")
                .unwrap(),
            "FALSE"
        );
        assert_eq!(
            v.predicate(
                &json!({"type": "in", "field": "ward", "value": []}),
                "where"
            )
            .unwrap(),
            "FALSE"
        );
        assert_eq!(
            v.predicate(
                &json!({"type": "contains", "field": "rvGroupIds", "value": "g1"}),
                "where"
            )
            .unwrap(),
            "array_has(\"rv_group_ids\", 'g1')"
        );
    }

    #[test]
    fn what_the_caller_sends_is_never_pasted_into_sql() {
        let v = admission(&[]);
        let q = json!({"type": "startsWith", "field": "ward", "value": "A' OR '1'='1"});
        assert_eq!(
            v.predicate(&q, "where").unwrap(),
            "starts_with(\"ward\", 'A'' OR ''1''=''1')"
        );
        let q = json!({"type": "eq", "field": "ward\" = \"ward\" OR TRUE --", "value": "x"});
        assert!(matches!(
            v.predicate(&q, "where"),
            Err(ObjectError::UnknownProperty { .. })
        ));
        // A number where a timestamp belongs, a term with regex in it.
        let q = json!({"type": "gt", "field": "admissionTimestamp", "value": 1});
        let e = v.predicate(&q, "where").unwrap_err().to_string();
        assert!(e.starts_with("where.value: expected a timestamp"), "{e}");
        let q = json!({"type": "containsAllTermsInOrder", "field": "patientName", "value": "o'neil (jo"});
        assert_eq!(
            v.predicate(&q, "where").unwrap(),
            "regexp_like(\"patient_name\", '(?i)\\bo''neil\\s+\\(jo\\b')"
        );
        let q = json!({"type": "containsAnyTerm", "field": "ward", "value": "a b", "fuzzy": true});
        assert!(v
            .predicate(&q, "where")
            .unwrap_err()
            .to_string()
            .contains("fuzzy"));
        let q = json!({"type": "withinDistanceOf", "field": "ward", "value": {}});
        assert!(v
            .predicate(&q, "where")
            .unwrap_err()
            .to_string()
            .contains("geographic"));
        let q = json!({"type": "regex", "field": "ward", "value": ".*"});
        assert!(v
            .predicate(&q, "where")
            .unwrap_err()
            .to_string()
            .contains("unknown query type"));
    }

    #[test]
    fn a_property_the_purpose_does_not_show_cannot_be_used_at_all() {
        let v = admission(&["patient_name"]);
        let q = json!({"type": "startsWith", "field": "patientName", "value": "A"});
        assert!(matches!(
            v.predicate(&q, "where"),
            Err(ObjectError::NotVisible { .. })
        ));
        assert!(matches!(
            v.columns(&["patientName".into()]),
            Err(ObjectError::NotVisible { .. })
        ));
        assert!(matches!(
            v.order_clause(&[("patientName".into(), Direction::Asc)]),
            Err(ObjectError::NotVisible { .. })
        ));
        let agg = json!({"aggregation": [{"type": "count"}],
                          "groupBy": [{"type": "exact", "field": "patientName"}]});
        assert!(matches!(
            v.aggregation(&agg),
            Err(ObjectError::NotVisible { .. })
        ));
        assert!(!v.columns(&[]).unwrap().contains("patient_name"));
    }

    #[test]
    fn listings_page_in_primary_key_order() {
        let v = admission(&[]);
        let page = Page::parse(Some(2), Some("o4")).unwrap();
        assert_eq!(page, Page { size: 2, offset: 4 });
        assert_eq!(page.next_token(), "o6");
        assert_eq!(
            v.list_sql(&["ward".into()], None, &[("admissionTimestamp".into(), Direction::Desc)], page)
                .unwrap(),
            "SELECT \"admission_id\", \"ward\" FROM \"admission\" ORDER BY \"admission_timestamp\" DESC NULLS LAST, \"admission_id\" ASC LIMIT 3 OFFSET 4"
        );
        assert_eq!(
            Page::parse(None, None).unwrap(),
            Page {
                size: 1000,
                offset: 0
            }
        );
        assert!(Page::parse(Some(0), None).is_err());
        assert!(Page::parse(Some(MAX_PAGE as i64 + 1), None).is_err());
        assert!(matches!(
            Page::parse(None, Some("42")),
            Err(ObjectError::PageToken(_))
        ));
        assert_eq!(
            v.order_by_text(Some("p.ward:desc,properties.admissionId"))
                .unwrap(),
            vec![
                ("ward".into(), Direction::Desc),
                ("admissionId".into(), Direction::Asc)
            ]
        );
    }

    #[test]
    fn aggregations_group_and_name_their_metrics() {
        let v = admission(&[]);
        let agg = v
            .aggregation(&json!({
                "aggregation": [{"type": "count", "direction": "DESC"}, {"type": "max", "field": "admissionTimestamp", "name": "latest"}],
                "groupBy": [{"type": "exact", "field": "ward", "maxGroupCount": 5},
                            {"type": "duration", "field": "admissionTimestamp", "unit": "DAYS", "value": 7}],
                "where": {"type": "isNull", "field": "dischargeTimestamp", "value": true}
            }))
            .unwrap();
        assert_eq!(
            agg.sql,
            "SELECT \"ward\" AS g0, date_bin(INTERVAL '7 days', \"admission_timestamp\", TIMESTAMP '1970-01-01T00:00:00Z') AS g1, \
             count(*) AS m0, max(\"admission_timestamp\") AS m1 FROM \"admission\" WHERE \"discharge_timestamp\" IS NULL \
             GROUP BY g0, g1 ORDER BY m0 DESC, g0, g1 LIMIT 5"
        );
        let out = agg.response(&[json!({"g0": "RXX:A", "g1": "2026-11-19T00:00:00Z", "m0": 10, "m1": "2026-11-20T08:00:00Z"})]);
        assert_eq!(
            out,
            json!({"accuracy": "ACCURATE", "data": [{"group": {"ward": "RXX:A", "admissionTimestamp": "2026-11-19T00:00:00Z"},
                   "metrics": [{"name": "count", "value": 10}, {"name": "latest", "value": "2026-11-20T08:00:00Z"}]}]})
        );

        let agg = v
            .aggregation(&json!({
                "aggregation": [{"type": "count"}],
                "groupBy": [{"type": "ranges", "field": "dischargeReadyDate",
                             "ranges": [{"startValue": "2026-11-01", "endValue": "2026-11-15"},
                                        {"startValue": "2026-11-15", "endValue": "2026-12-01"}]}]
            }))
            .unwrap();
        assert!(
            agg.sql
                .contains("WHERE (CASE WHEN \"discharge_ready_date\" >= DATE '2026-11-01'"),
            "{}",
            agg.sql
        );
        let out = agg.response(&[json!({"g0": 1, "m0": 3})]);
        assert_eq!(
            out["data"][0]["group"]["dischargeReadyDate"],
            json!({"startValue": "2026-11-15", "endValue": "2026-12-01"})
        );
        for (bad, says) in [
            (json!({"aggregation": []}), "at least one metric"),
            (
                json!({"aggregation": [{"type": "sum", "field": "ward"}]}),
                "needs a number",
            ),
            (
                json!({"aggregation": [{"type": "count"}, {"type": "count"}]}),
                "two metrics",
            ),
            (
                json!({"aggregation": [{"type": "count"}], "groupBy": [{"type": "duration", "field": "admissionTimestamp", "unit": "MONTHS", "value": 2}]}),
                "takes value 1",
            ),
            (
                json!({"aggregation": [{"type": "approximateDistinct", "field": "ward"}], "accuracy": "REQUIRE_ACCURATE"}),
                "REQUIRE_ACCURATE",
            ),
        ] {
            let e = v.aggregation(&bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn an_object_has_the_published_shape_without_empty_properties() {
        let v = admission(&[]);
        let row = json!({"admission_id": "A1", "ward": "RXX:A", "patient_name": null, "admission_timestamp": "2026-11-01T08:00:00Z"});
        assert_eq!(
            v.object(row.as_object().unwrap()),
            json!({"__apiName": "Admission", "__primaryKey": "A1", "admissionId": "A1", "ward": "RXX:A",
                   "admissionTimestamp": "2026-11-01T08:00:00Z"})
        );
    }
}
