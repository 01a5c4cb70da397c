//! Declared mappings from flat extracts to canonical object types.
//!
//! A mapping is a TOML file (see `docs/extracts.md`): which files it reads,
//! how they are encoded and delimited, whether they have a header, and for
//! each target column where its value comes from and how it is parsed.
//! [`Mapping::compile`] checks the mapping against the model and a file's
//! header once; [`Plan::apply`] then turns each record into typed values.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use fdp_model::{Model, ObjectType, PropertyType};
use fdp_store::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use fdp_store::arrow::datatypes::{Field, Schema, SchemaRef};
use fdp_store::RecordBatch;
use serde::Deserialize;

/// The text encodings extracts arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Encoding {
    #[default]
    #[serde(rename = "utf-8", alias = "UTF-8", alias = "utf8")]
    Utf8,
    /// ISO-8859-1 (Latin-1): every byte is the character of the same number.
    #[serde(rename = "iso-8859-1", alias = "ISO-8859-1", alias = "latin1")]
    Latin1,
    /// Windows-1252: Latin-1 with printable characters in 0x80–0x9F.
    #[serde(rename = "windows-1252", alias = "cp1252")]
    Windows1252,
}

/// Where a value comes from: a header name or a 1-based column position.
/// Inside `concat`, also a fixed text (`{ constant = "nursing" }`): one wide
/// line filling several mappings needs a key per mapping, such as a care
/// home's location id with the kind of bed each mapping reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Source {
    Name(String),
    Position(usize),
    Constant {
        constant: String,
    },
    /// In a mapping with `[unpivot]`: the header name of the column being
    /// turned into a row (`{ unpivoted = "name" }`), or its value
    /// (`{ unpivoted = "value" }`).
    Unpivoted {
        unpivoted: UnpivotPart,
    },
}

/// Which part of an unpivoted column a value takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnpivotPart {
    Name,
    Value,
}

/// A wide file's run of columns, each of which becomes a row of its own:
/// a population estimate with one column per year of age gives one row per
/// area, sex and age. Every column from `first` to `last` (header names,
/// inclusive, in the file's order) is one row.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unpivot {
    pub first: String,
    pub last: String,
}

/// How a value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parse {
    Text,
    /// Text in upper case (codes).
    Upper,
    Integer,
    Number,
    Boolean,
    Date,
    Timestamp,
    /// Checked by modulus 11; stored as ten digits.
    NhsNumber,
    OdsCode,
    Postcode,
    /// A SNOMED CT id, checked by its Verhoeff digit.
    Snomed,
    /// A GS1 GTIN, checked by its check digit; stored at 14 digits.
    Gtin,
    Icd10,
    Opcs4,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// The rule for one target column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    /// The source column.
    pub from: Option<Source>,
    /// Several source columns (or fixed texts) joined by `separator`
    /// (default `:`), e.g. for a key made of patient, encounter and code.
    pub concat: Option<Vec<Source>>,
    pub separator: Option<String>,
    /// A fixed value.
    pub constant: Option<String>,
    /// How to read it; defaults from the target column's type.
    pub parse: Option<Parse>,
    /// chrono formats for dates and timestamps, tried in order
    /// (default: ISO 8601). Timestamps without a zone are UK local time.
    pub format: Option<OneOrMany>,
    /// Replace values (after trimming) by these; a value not listed is an error
    /// unless `map_default` is given.
    pub map: Option<BTreeMap<String, String>>,
    pub map_default: Option<String>,
    /// Replace the value by one chosen by its length in characters.
    pub by_length: Option<BTreeMap<String, String>>,
    /// Keep characters `[start, start + len)` (0-based).
    pub slice: Option<[usize; 2]>,
    /// Null unless the value has exactly this many characters.
    pub if_length: Option<usize>,
    /// An empty value is an error instead of null.
    #[serde(default)]
    pub required: bool,
    /// A column later exports added (`from` a named column only): where
    /// the file's header lacks it, the target is left empty rather than
    /// the file refused, so older exports still load.
    #[serde(default)]
    pub optional: bool,
}

/// A mapping file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The source's name: it names the canonical table part it writes
    /// (`patient@csv-<name>`) and its runs.
    pub name: String,
    pub description: Option<String>,
    /// The canonical object type it fills, e.g. `EalEntry`.
    pub object_type: String,
    /// File names it applies to (`*` and `?` wildcards), e.g. `waiting_list_*.csv`.
    pub file_pattern: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// One character (`,`, `|`, `\t`, `¬`).
    #[serde(default = "comma")]
    pub delimiter: String,
    #[serde(default = "yes")]
    pub header: bool,
    /// Lines before the header (or the data, without one) to skip.
    #[serde(default)]
    pub skip_lines: usize,
    /// Fields every record has. A header says so itself; a headerless file
    /// should declare it, or a line with fields added is not noticed.
    pub fields: Option<usize>,
    /// Where the same record is on several lines, each repeating it
    /// exactly (a patient on a list once per entry): `"one-record"` keeps
    /// it once. By default, and for lines that differ, the first line
    /// wins and the later ones are refused as duplicates.
    #[serde(default)]
    pub repeated: Repeated,
    /// Turn a run of columns into rows (see [`Unpivot`]).
    pub unpivot: Option<Unpivot>,
    /// Target column → rule.
    pub columns: BTreeMap<String, ColumnRule>,
}

/// What a line whose key an earlier line has is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Repeated {
    /// A duplicate, refused, unless this file's records repeat by design.
    #[default]
    Duplicate,
    /// The same record again where every value is the same: kept once.
    OneRecord,
}

fn comma() -> String {
    ",".into()
}

fn yes() -> bool {
    true
}

impl Mapping {
    pub fn from_toml(text: &str) -> Result<Mapping, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The delimiter as the bytes it has in the file's encoding.
    pub fn delimiter_bytes(&self) -> Result<Vec<u8>, String> {
        let mut chars = self.delimiter.chars();
        let (Some(c), None) = (chars.next(), chars.next()) else {
            return Err(format!(
                "delimiter {:?} must be one character",
                self.delimiter
            ));
        };
        match self.encoding {
            Encoding::Utf8 => Ok(c.to_string().into_bytes()),
            Encoding::Latin1 | Encoding::Windows1252 => u8::try_from(c as u32)
                .map(|b| vec![b])
                .map_err(|_| format!("delimiter {c:?} is not in {:?}", self.encoding)),
        }
    }

    /// Does a file name match `file_pattern`?
    pub fn matches_file(&self, name: &str) -> bool {
        wildcard(self.file_pattern.as_bytes(), name.as_bytes())
    }

    /// Check the mapping against the model and the file's header.
    pub fn compile(
        &self,
        model: &'static Model,
        header: Option<&[String]>,
    ) -> Result<Plan, String> {
        let ot = model.object_type(&self.object_type).ok_or_else(|| {
            format!(
                "object_type {:?} is not in the model (see `fdp model`)",
                self.object_type
            )
        })?;
        let pk = &ot.primary_key_property().column;
        if !self.columns.contains_key(pk) {
            return Err(format!(
                "the mapping must fill {}'s primary key column {pk}",
                ot.name
            ));
        }
        let unpivoted = match &self.unpivot {
            None => Vec::new(),
            Some(u) => {
                let Some(h) = header else {
                    return Err(
                        "[unpivot] names header columns, so the file must have a header".into(),
                    );
                };
                let at = |name: &str| {
                    h.iter().position(|x| x.trim() == name).ok_or_else(|| {
                        format!(
                            "[unpivot]: the file has no column {name:?} (its header: {})",
                            h.join(", ")
                        )
                    })
                };
                let (first, last) = (at(&u.first)?, at(&u.last)?);
                if first > last {
                    return Err(format!(
                        "[unpivot]: {:?} comes after {:?} in the header; first must come first",
                        u.first, u.last
                    ));
                }
                (first..=last)
                    .map(|i| (i, h[i].trim().to_string()))
                    .collect()
            }
        };
        let unpivoted_part = |p: UnpivotPart, target: &str| -> Result<Part, String> {
            if unpivoted.is_empty() {
                return Err(format!(
                    "{target}: `unpivoted` needs an [unpivot] section saying which columns become rows"
                ));
            }
            Ok(match p {
                UnpivotPart::Name => Part::UnpivotedName,
                UnpivotPart::Value => Part::UnpivotedValue,
            })
        };
        let resolve = |s: &Source, target: &str| -> Result<usize, String> {
            match s {
                Source::Unpivoted { .. } => Err(format!(
                    "{target}: an unpivoted value is not a column position"
                )),
                Source::Constant { .. } => Err(format!(
                    "{target}: a constant goes in `constant = ...` or inside `concat`, not in `from`"
                )),
                Source::Position(p) if *p >= 1 => Ok(p - 1),
                Source::Position(_) => Err(format!("{target}: column positions start at 1")),
                Source::Name(n) => match header {
                    Some(h) => h.iter().position(|x| x.trim() == n).ok_or_else(|| {
                        format!(
                            "{target}: the file has no column {n:?} (its header: {})",
                            h.join(", ")
                        )
                    }),
                    None => Err(format!(
                        "{target}: the file has no header, so refer to column positions, not {n:?}"
                    )),
                },
            }
        };
        let mut columns = Vec::new();
        for (target, rule) in &self.columns {
            let prop = ot.property_by_column(target).ok_or_else(|| {
                format!(
                    "{} has no column {target:?} (see `fdp model {}`)",
                    ot.name, ot.name
                )
            })?;
            let parse = rule.parse.unwrap_or(match prop.property_type {
                PropertyType::Integer | PropertyType::Long => Parse::Integer,
                PropertyType::Double => Parse::Number,
                PropertyType::Boolean => Parse::Boolean,
                PropertyType::Date => Parse::Date,
                PropertyType::Timestamp => Parse::Timestamp,
                PropertyType::String | PropertyType::StringList => Parse::Text,
            });
            let fits = match parse {
                Parse::Integer => matches!(
                    prop.property_type,
                    PropertyType::Integer | PropertyType::Long
                ),
                Parse::Number => prop.property_type == PropertyType::Double,
                Parse::Boolean => prop.property_type == PropertyType::Boolean,
                Parse::Date => prop.property_type == PropertyType::Date,
                Parse::Timestamp => prop.property_type == PropertyType::Timestamp,
                _ => matches!(
                    prop.property_type,
                    PropertyType::String | PropertyType::StringList
                ),
            };
            if !fits {
                return Err(format!(
                    "{target} is {:?} in the model; parse = {parse:?} does not fill it",
                    prop.property_type
                ));
            }
            let source = match (&rule.from, &rule.concat, &rule.constant) {
                (Some(s @ Source::Name(_)), None, None)
                    if rule.optional && header.is_some() && resolve(s, target).is_err() =>
                {
                    ValueSource::Absent
                }
                (Some(Source::Unpivoted { unpivoted: p }), None, None) => {
                    ValueSource::Concat(vec![unpivoted_part(*p, target)?], String::new())
                }
                (Some(s), None, None) => ValueSource::Column(resolve(s, target)?),
                (None, Some(list), None) => ValueSource::Concat(
                    list.iter()
                        .map(|s| match s {
                            Source::Constant { constant } => Ok(Part::Text(constant.clone())),
                            Source::Unpivoted { unpivoted: p } => unpivoted_part(*p, target),
                            _ => resolve(s, target).map(Part::Column),
                        })
                        .collect::<Result<_, _>>()?,
                    rule.separator.clone().unwrap_or_else(|| ":".into()),
                ),
                (None, None, Some(c)) => ValueSource::Constant(c.clone()),
                _ => {
                    return Err(format!(
                        "{target}: give exactly one of from, concat, constant"
                    ))
                }
            };
            let formats = rule
                .format
                .as_ref()
                .map(OneOrMany::list)
                .unwrap_or_default();
            columns.push(CompiledColumn {
                target: target.clone(),
                property_type: prop.property_type,
                source,
                parse,
                formats,
                map: rule.map.clone(),
                map_default: rule.map_default.clone(),
                by_length: rule.by_length.as_ref().map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| k.parse().ok().map(|n| (n, v.clone())))
                        .collect()
                }),
                slice: rule.slice,
                if_length: rule.if_length,
                required: rule.required || target == pk,
            });
        }
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                let mut f = ot
                    .arrow_schema()
                    .field_with_name(&c.target)
                    .expect("columns come from the model")
                    .clone()
                    .with_metadata(Default::default());
                if c.target != *pk {
                    f = f.with_nullable(true);
                }
                f
            })
            .collect();
        if let (Some(h), Some(n)) = (header, self.fields) {
            if h.len() != n {
                return Err(format!(
                    "the mapping says fields = {n}, but the header has {} ({})",
                    h.len(),
                    h.join(", ")
                ));
            }
        }
        let width = header.map(<[String]>::len).or(self.fields);
        Ok(Plan {
            object_type: ot,
            schema: Arc::new(Schema::new(fields)),
            columns,
            width,
            unpivoted,
            key_index: self
                .columns
                .keys()
                .position(|k| k == pk)
                .expect("checked above"),
        })
    }
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

#[derive(Debug, Clone)]
enum ValueSource {
    Column(usize),
    Concat(Vec<Part>, String),
    Constant(String),
    /// An optional column the file does not have.
    Absent,
}

#[derive(Debug, Clone)]
enum Part {
    Column(usize),
    Text(String),
    /// The header name of the column being unpivoted.
    UnpivotedName,
    /// That column's value on this line.
    UnpivotedValue,
}

#[derive(Debug, Clone)]
struct CompiledColumn {
    target: String,
    property_type: PropertyType,
    source: ValueSource,
    parse: Parse,
    formats: Vec<String>,
    map: Option<BTreeMap<String, String>>,
    map_default: Option<String>,
    by_length: Option<BTreeMap<usize, String>>,
    slice: Option<[usize; 2]>,
    if_length: Option<usize>,
    required: bool,
}

/// A mapping checked against the model and a file: ready to apply.
pub struct Plan {
    pub object_type: &'static ObjectType,
    pub schema: SchemaRef,
    columns: Vec<CompiledColumn>,
    /// Fields every record must have (from the header), if known.
    width: Option<usize>,
    /// The columns `[unpivot]` turns into rows: position and header name.
    unpivoted: Vec<(usize, String)>,
    /// Which of the columns is the primary key.
    pub key_index: usize,
}

/// A typed value ready for a column builder.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    /// Borrowed from the file where nothing changed it.
    Text(std::borrow::Cow<'a, str>),
    Int(i64),
    Num(f64),
    Bool(bool),
    Date(i32),
    Micros(i64),
}

impl Plan {
    /// Fields a record must have: from the header, else the highest position used.
    pub fn expected_width(&self) -> Option<usize> {
        self.width
    }

    /// How many rows each record becomes: one, or one per unpivoted column.
    pub fn rows_per_record(&self) -> usize {
        self.unpivoted.len().max(1)
    }

    /// Turn one record's fields into values, or say what is wrong with it.
    pub fn apply<'a>(&'a self, fields: &[&'a str], out: &mut Vec<Val<'a>>) -> Result<(), String> {
        self.apply_row(fields, 0, out)
    }

    /// The values of row `row` (below [`Plan::rows_per_record`]) of one record.
    pub fn apply_row<'a>(
        &'a self,
        fields: &[&'a str],
        row: usize,
        out: &mut Vec<Val<'a>>,
    ) -> Result<(), String> {
        out.clear();
        if let Some(w) = self.width {
            if fields.len() != w {
                return Err(format!("expected {w} fields, found {}", fields.len()));
            }
        }
        for c in &self.columns {
            let raw: std::borrow::Cow<'a, str> = match &c.source {
                ValueSource::Column(i) => match fields.get(*i) {
                    Some(v) => std::borrow::Cow::Borrowed(v.trim()),
                    None => {
                        return Err(format!(
                            "{}: there is no column {} on this line ({} fields)",
                            c.target,
                            i + 1,
                            fields.len()
                        ))
                    }
                },
                ValueSource::Concat(list, sep) => {
                    let mut parts = Vec::with_capacity(list.len());
                    for part in list {
                        parts.push(match part {
                            Part::Column(i) => {
                                fields.get(*i).map(|s| s.trim()).ok_or_else(|| {
                                    format!("{}: there is no column {}", c.target, i + 1)
                                })?
                            }
                            Part::Text(t) => t.as_str(),
                            Part::UnpivotedName => self.unpivoted[row].1.as_str(),
                            Part::UnpivotedValue => {
                                let (i, name) = &self.unpivoted[row];
                                fields.get(*i).map(|s| s.trim()).ok_or_else(|| {
                                    format!(
                                        "{}: there is no column {name:?} on this line",
                                        c.target
                                    )
                                })?
                            }
                        });
                    }
                    std::borrow::Cow::Owned(parts.join(sep))
                }
                ValueSource::Constant(k) => std::borrow::Cow::Owned(k.clone()),
                ValueSource::Absent => std::borrow::Cow::Borrowed(""),
            };
            out.push(
                self.value(c, raw)
                    .map_err(|e| format!("{}: {e}", c.target))?,
            );
        }
        Ok(())
    }

    fn value<'a>(
        &'a self,
        c: &'a CompiledColumn,
        raw: std::borrow::Cow<'a, str>,
    ) -> Result<Val<'a>, String> {
        let mut s = raw;
        if c.if_length.is_some_and(|n| s.chars().count() != n) {
            return Ok(Val::Null);
        }
        if let Some([start, len]) = c.slice {
            s = std::borrow::Cow::Owned(s.chars().skip(start).take(len).collect());
        }
        if let Some(by_len) = &c.by_length {
            let n = s.chars().count();
            s = std::borrow::Cow::Owned(by_len.get(&n).cloned().ok_or_else(|| {
                format!("{s:?} has {n} characters; by_length has no entry for it")
            })?);
        }
        if s.is_empty() {
            return if c.required {
                Err("is empty, and it is required".into())
            } else {
                Ok(Val::Null)
            };
        }
        if let Some(map) = &c.map {
            s = std::borrow::Cow::Borrowed(match map.get(s.as_ref()) {
                Some(v) => v.as_str(),
                None => match &c.map_default {
                    Some(d) => d.as_str(),
                    None => {
                        return Err(format!(
                            "{s:?} is not one of the mapped values ({})",
                            map.keys().cloned().collect::<Vec<_>>().join(", ")
                        ))
                    }
                },
            });
        }
        use fdp_model::identifiers as id;
        let text = |v: String| Val::Text(std::borrow::Cow::Owned(v));
        match c.parse {
            Parse::Text => return Ok(Val::Text(s)),
            Parse::Upper if !s.bytes().any(|b| b.is_ascii_lowercase()) && s.is_ascii() => {
                return Ok(Val::Text(s))
            }
            _ => {}
        }
        if c.parse == Parse::NhsNumber {
            let n = id::parse_nhs_number(&s)
                .map_err(|e| format!("{s:?} is not a valid NHS number: {e}"))?;
            // Ten characters that pass are the ten digits: keep them borrowed.
            return Ok(Val::Text(if s.len() == 10 {
                s
            } else {
                std::borrow::Cow::Owned(n.digits())
            }));
        }
        let s = s.as_ref();
        Ok(match c.parse {
            Parse::Text => unreachable!("returned above"),
            Parse::Upper => text(s.to_uppercase()),
            Parse::Integer => Val::Int(
                s.parse::<i64>()
                    .map_err(|_| format!("{s:?} is not a whole number"))?,
            ),
            Parse::Number => Val::Num(
                s.parse::<f64>()
                    .map_err(|_| format!("{s:?} is not a number"))?,
            ),
            Parse::Boolean => Val::Bool(match s.to_ascii_lowercase().as_str() {
                "true" | "t" | "y" | "yes" | "1" => true,
                "false" | "f" | "n" | "no" | "0" => false,
                _ => return Err(format!("{s:?} is not true/false, Y/N or 1/0")),
            }),
            Parse::Date => Val::Date(parse_date(s, &c.formats)?),
            Parse::Timestamp => Val::Micros(parse_timestamp(s, &c.formats)?),
            Parse::NhsNumber => unreachable!("returned above"),
            Parse::OdsCode => text(
                id::parse_ods_code(s)
                    .map_err(|e| e.to_string())?
                    .to_string(),
            ),
            Parse::Postcode => text(
                id::parse_postcode(s)
                    .map_err(|e| e.to_string())?
                    .to_string(),
            ),
            Parse::Snomed => text(id::parse_sctid(s).map_err(|e| e.to_string())?.to_string()),
            Parse::Gtin => text(id::parse_gtin(s).map_err(|e| e.to_string())?.to_string()),
            Parse::Icd10 => text(id::parse_icd10(s).map_err(|e| e.to_string())?.to_string()),
            Parse::Opcs4 => text(id::parse_opcs4(s).map_err(|e| e.to_string())?.to_string()),
        })
    }

    /// Column builders for a batch of about `rows` rows.
    pub fn builders(&self, rows: usize) -> Builders {
        Builders {
            columns: self
                .columns
                .iter()
                .map(|c| match c.property_type {
                    PropertyType::String => {
                        ColumnBuilder::Text(StringBuilder::with_capacity(rows, rows * 16))
                    }
                    PropertyType::StringList => {
                        ColumnBuilder::List(ListBuilder::new(StringBuilder::new()))
                    }
                    PropertyType::Integer => ColumnBuilder::I32(Int32Builder::with_capacity(rows)),
                    PropertyType::Long => ColumnBuilder::I64(Int64Builder::with_capacity(rows)),
                    PropertyType::Double => ColumnBuilder::F64(Float64Builder::with_capacity(rows)),
                    PropertyType::Boolean => {
                        ColumnBuilder::Bool(BooleanBuilder::with_capacity(rows))
                    }
                    PropertyType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(rows)),
                    PropertyType::Timestamp => ColumnBuilder::Ts(
                        TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
                    ),
                })
                .collect(),
            schema: self.schema.clone(),
            rows: 0,
        }
    }
}

pub enum ColumnBuilder {
    Text(StringBuilder),
    List(ListBuilder<StringBuilder>),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
}

/// Typed Arrow builders, one per mapped column.
pub struct Builders {
    columns: Vec<ColumnBuilder>,
    schema: SchemaRef,
    pub rows: usize,
}

impl Builders {
    pub fn push(&mut self, values: &[Val]) {
        self.rows += 1;
        for (b, v) in self.columns.iter_mut().zip(values) {
            match (b, v) {
                (ColumnBuilder::Text(b), Val::Text(s)) => b.append_value(s.as_ref()),
                (ColumnBuilder::Text(b), Val::Int(n)) => b.append_value(n.to_string()),
                (ColumnBuilder::Text(b), _) => b.append_null(),
                (ColumnBuilder::List(b), Val::Text(s)) => {
                    for part in s.split(';') {
                        b.values().append_value(part.trim());
                    }
                    b.append(true);
                }
                (ColumnBuilder::List(b), _) => b.append(false),
                (ColumnBuilder::I32(b), Val::Int(n)) => b.append_option(i32::try_from(*n).ok()),
                (ColumnBuilder::I32(b), _) => b.append_null(),
                (ColumnBuilder::I64(b), Val::Int(n)) => b.append_value(*n),
                (ColumnBuilder::I64(b), _) => b.append_null(),
                (ColumnBuilder::F64(b), Val::Num(n)) => b.append_value(*n),
                (ColumnBuilder::F64(b), _) => b.append_null(),
                (ColumnBuilder::Bool(b), Val::Bool(x)) => b.append_value(*x),
                (ColumnBuilder::Bool(b), _) => b.append_null(),
                (ColumnBuilder::Date(b), Val::Date(d)) => b.append_value(*d),
                (ColumnBuilder::Date(b), _) => b.append_null(),
                (ColumnBuilder::Ts(b), Val::Micros(t)) => b.append_value(*t),
                (ColumnBuilder::Ts(b), _) => b.append_null(),
            }
        }
    }

    pub fn finish(self) -> Result<RecordBatch, String> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .into_iter()
            .map(|b| -> ArrayRef {
                match b {
                    ColumnBuilder::Text(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::List(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::I32(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::I64(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::F64(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Bool(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Date(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Ts(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        RecordBatch::try_new(self.schema, arrays).map_err(|e| e.to_string())
    }
}

const EPOCH_DAYS_CE: i32 = 719_163;

fn digits(s: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as u32;
    }
    Some(n)
}

/// `YYYY-MM-DD` and `YYYYMMDD` without chrono's format machinery: the common
/// cases of big extracts.
fn fast_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let (y, m, d) = match b.len() {
        10 if b[4] == b'-' && b[7] == b'-' => {
            (digits(&b[..4])?, digits(&b[5..7])?, digits(&b[8..])?)
        }
        8 => (digits(&b[..4])?, digits(&b[4..6])?, digits(&b[6..])?),
        _ => return None,
    };
    NaiveDate::from_ymd_opt(y as i32, m, d)
}

/// Formats made only of `%d`, `%m`, `%Y` and single-byte separators
/// (`%d/%m/%Y`, `%d.%m.%Y`, `%d%m%Y`), for values with two-digit days and
/// months: the shape of nearly every UK extract. Anything else (one-digit
/// days, other directives) returns `None` and goes to chrono.
fn fixed_width_date(s: &str, format: &str) -> Option<NaiveDate> {
    let (f, b) = (format.as_bytes(), s.as_bytes());
    let (mut i, mut j) = (0, 0);
    let (mut y, mut m, mut d) = (None, None, None);
    while i < f.len() {
        if f[i] == b'%' {
            let width = match f.get(i + 1)? {
                b'd' | b'm' => 2,
                b'Y' => 4,
                _ => return None,
            };
            let n = digits(b.get(j..j + width)?)?;
            match f[i + 1] {
                b'd' => d = Some(n),
                b'm' => m = Some(n),
                _ => y = Some(n as i32),
            }
            i += 2;
            j += width;
        } else {
            if b.get(j) != Some(&f[i]) {
                return None;
            }
            i += 1;
            j += 1;
        }
    }
    if j != b.len() {
        return None;
    }
    NaiveDate::from_ymd_opt(y?, m?, d?)
}

fn parse_date(s: &str, formats: &[String]) -> Result<i32, String> {
    use chrono::Datelike;
    let date = if formats.is_empty() {
        fast_date(s).or_else(|| {
            // A timestamp in a date column: keep its date.
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.date_naive())
        })
    } else {
        formats
            .iter()
            .find_map(|f| fixed_width_date(s, f).or_else(|| NaiveDate::parse_from_str(s, f).ok()))
    };
    date.map(|d| d.num_days_from_ce() - EPOCH_DAYS_CE)
        .ok_or_else(|| {
            let want = if formats.is_empty() {
                "YYYY-MM-DD or YYYYMMDD".to_string()
            } else {
                formats.join(" or ")
            };
            format!("{s:?} is not a date in the format {want}")
        })
}

fn parse_timestamp(s: &str, formats: &[String]) -> Result<i64, String> {
    if formats.is_empty() {
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
            return Ok(t.timestamp_micros());
        }
        for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
            if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
                return uk_local(n, s);
            }
        }
        if let Some(d) = fast_date(s) {
            return uk_local(d.and_hms_opt(0, 0, 0).expect("midnight"), s);
        }
    } else {
        for f in formats {
            if let Ok(t) = chrono::DateTime::parse_from_str(s, f) {
                return Ok(t.timestamp_micros());
            }
            if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
                return uk_local(n, s);
            }
            if let Ok(d) = NaiveDate::parse_from_str(s, f) {
                return uk_local(d.and_hms_opt(0, 0, 0).expect("midnight"), s);
            }
        }
    }
    let want = if formats.is_empty() {
        "ISO 8601 (2024-03-01T09:30:00Z, or local 2024-03-01 09:30:00)".to_string()
    } else {
        formats.join(" or ")
    };
    Err(format!("{s:?} is not a timestamp in the format {want}"))
}

/// Extract times without a zone are UK local time.
fn uk_local(n: NaiveDateTime, s: &str) -> Result<i64, String> {
    chrono_tz::Europe::London
        .from_local_datetime(&n)
        .earliest()
        .map(|t| t.timestamp_micros())
        .ok_or_else(|| format!("{s:?} does not exist in UK local time (the clocks went forward)"))
}

/// Decode a field's bytes in the mapping's encoding.
pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<std::borrow::Cow<'_, str>, String> {
    match encoding {
        Encoding::Utf8 => std::str::from_utf8(bytes).map(std::borrow::Cow::Borrowed).map_err(|e| {
            let at = e.valid_up_to();
            format!(
                "not valid UTF-8 (byte 0x{:02X} at position {}); the mapping says encoding = \"utf-8\": is the file ISO-8859-1 or Windows-1252?",
                bytes[at],
                at + 1
            )
        }),
        Encoding::Latin1 => Ok(if bytes.is_ascii() {
            std::borrow::Cow::Borrowed(std::str::from_utf8(bytes).expect("ASCII is UTF-8"))
        } else {
            std::borrow::Cow::Owned(bytes.iter().map(|&b| b as char).collect())
        }),
        Encoding::Windows1252 => Ok(if bytes.is_ascii() {
            std::borrow::Cow::Borrowed(std::str::from_utf8(bytes).expect("ASCII is UTF-8"))
        } else {
            std::borrow::Cow::Owned(bytes.iter().map(|&b| cp1252(b)).collect())
        }),
    }
}

fn cp1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    if (0x80..0xA0).contains(&b) {
        HIGH[(b - 0x80) as usize]
    } else {
        b as char
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(toml_text: &str, header: &[&str]) -> Plan {
        let m = Mapping::from_toml(toml_text).unwrap();
        let h: Vec<String> = header.iter().map(|s| s.to_string()).collect();
        m.compile(Model::canonical(), if m.header { Some(&h) } else { None })
            .unwrap()
    }

    #[test]
    fn a_waiting_list_row_maps_with_priority_and_rtt_start() {
        let p = plan(
            r#"
            name = "wl"
            object_type = "EalEntry"
            file_pattern = "wl_*.csv"
            [columns]
            eal_id = { from = "Pathway" }
            patient_id = { from = "NHS No", parse = "nhs_number" }
            priority_type = { from = "Priority", map = { "1" = "P1", "2" = "P2", "3" = "P3", "4" = "P4" } }
            rtt_period_start_date = { from = "Clock start", format = "%d/%m/%Y" }
            "#,
            &["Pathway", "NHS No", "Priority", "Clock start"],
        );
        let mut out = Vec::new();
        p.apply(&["RXX1", "943 476 5919", "2", "01/02/2024"], &mut out)
            .unwrap();
        assert_eq!(out[0], Val::Text("RXX1".into()));
        assert_eq!(out[1], Val::Text("9434765919".into()));
        assert_eq!(out[2], Val::Text("P2".into()));
        assert!(matches!(out[3], Val::Date(_)));
        let e = p
            .apply(&["RXX2", "9434765918", "2", "01/02/2024"], &mut out)
            .unwrap_err();
        assert!(
            e.starts_with("patient_id: \"9434765918\" is not a valid NHS number"),
            "{e}"
        );
        let e = p
            .apply(&["RXX3", "9434765919", "5", "01/02/2024"], &mut out)
            .unwrap_err();
        assert!(e.contains("not one of the mapped values"), "{e}");
        let e = p
            .apply(&["RXX4", "9434765919", "1", "2024-02-01"], &mut out)
            .unwrap_err();
        assert!(e.contains("not a date in the format %d/%m/%Y"), "{e}");
        let e = p.apply(&["RXX4", "9434765919", "1"], &mut out).unwrap_err();
        assert_eq!(e, "expected 4 fields, found 3");
    }

    #[test]
    fn a_gtin_is_checked_and_kept_at_fourteen_digits() {
        let p = plan(
            r#"
            name = "cat"
            object_type = "SupplyItem"
            file_pattern = "cat_*.csv"
            [columns]
            item_code = { from = "NPC", parse = "upper" }
            gtin = { from = "GTIN", parse = "gtin" }
            "#,
            &["NPC", "GTIN"],
        );
        let mut out = Vec::new();
        p.apply(&["ftr202", "5012345002026"], &mut out).unwrap();
        assert!(out.contains(&Val::Text("05012345002026".into())), "{out:?}");
        assert!(out.contains(&Val::Text("FTR202".into())), "{out:?}");
        let e = p.apply(&["FTR202", "5012345002027"], &mut out).unwrap_err();
        assert_eq!(
            e,
            "gtin: GTIN: `5012345002027` ends in 7, but its check digit is 6"
        );
    }

    #[test]
    fn an_optional_column_an_older_export_lacks_is_left_empty() {
        let text = r#"
            name = "wl"
            object_type = "EalEntry"
            file_pattern = "wl_*.csv"
            [columns]
            eal_id = { from = "Pathway" }
            latest_clinically_appropriate_date = { from = "LCAD", format = "%d/%m/%Y", optional = true }
            "#;
        // A newer export has it, and it is read.
        let p = plan(text, &["Pathway", "LCAD"]);
        let mut out = Vec::new();
        p.apply(&["RXX1", "01/02/2027"], &mut out).unwrap();
        assert!(matches!(out[1], Val::Date(_)));
        // An older one has not: null, and the file still loads.
        let p = plan(text, &["Pathway"]);
        p.apply(&["RXX1"], &mut out).unwrap();
        assert_eq!(out[1], Val::Null);
        // Without `optional`, the missing column is named.
        let strict = Mapping::from_toml(&text.replace(", optional = true", "")).unwrap();
        let Err(e) = strict.compile(Model::canonical(), Some(&["Pathway".to_string()])) else {
            panic!("a mapping naming a column the file lacks compiled");
        };
        assert!(e.contains("the file has no column \"LCAD\""), "{e}");
    }

    #[test]
    fn a_key_joins_columns_with_fixed_text() {
        let p = plan(
            r#"
            name = "ct-nursing"
            object_type = "CareCapacity"
            file_pattern = "ct_*.csv"
            [columns]
            capacity_id = { concat = ["Location ID", { constant = "nursing" }] }
            places_total = { from = "Nursing Beds" }
            "#,
            &["Location ID", "Nursing Beds"],
        );
        let mut out = Vec::new();
        p.apply(&["1-101234567", "40"], &mut out).unwrap();
        assert_eq!(out[0], Val::Text("1-101234567:nursing".into()));
        assert_eq!(out[1], Val::Int(40));
        let m = Mapping::from_toml(
            "name='x'\nobject_type='CareCapacity'\nfile_pattern='*'\n[columns]\ncapacity_id={from={constant='a'}}",
        )
        .unwrap();
        let e = m
            .compile(Model::canonical(), Some(&["A".into()]))
            .err()
            .unwrap();
        assert!(e.contains("inside `concat`, not in `from`"), "{e}");
    }

    #[test]
    fn mistakes_in_a_mapping_are_named() {
        let m = Mapping::from_toml("name='x'\nobject_type='EalEntry'\nfile_pattern='*'\n[columns]\neal_id={from='A'}\nnot_a_column={from='B'}").unwrap();
        let e = m
            .compile(Model::canonical(), Some(&["A".into(), "B".into()]))
            .err()
            .unwrap();
        assert!(e.contains("EalEntry has no column \"not_a_column\""), "{e}");
        let m = Mapping::from_toml(
            "name='x'\nobject_type='EalEntry'\nfile_pattern='*'\n[columns]\neal_id={from='Z'}",
        )
        .unwrap();
        let e = m
            .compile(Model::canonical(), Some(&["A".into()]))
            .err()
            .unwrap();
        assert!(
            e.contains("the file has no column \"Z\" (its header: A)"),
            "{e}"
        );
    }

    #[test]
    fn encodings_and_patterns() {
        assert_eq!(decode(b"Bront\xeb", Encoding::Latin1).unwrap(), "Brontë");
        assert_eq!(decode(b"\x93q\x94", Encoding::Windows1252).unwrap(), "“q”");
        assert!(decode(b"Bront\xeb", Encoding::Utf8)
            .unwrap_err()
            .contains("is the file ISO-8859-1"));
        let m = Mapping::from_toml(
            "name='x'\nobject_type='EalEntry'\nfile_pattern='wl_*.CSV'\n[columns]\neal_id={from=1}",
        )
        .unwrap();
        assert!(m.matches_file("wl_2024-03.csv"));
        assert!(!m.matches_file("theatre.csv"));
    }
}
