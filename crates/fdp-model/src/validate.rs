use std::fmt;

use serde_json::{Map, Value};
use thiserror::Error;

use crate::model::{ObjectType, Property, PropertyType};

/// One problem with one property of a record. Every variant names the property so a
/// person fixing a feed can find it without reading the whole record.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ValidationError {
    #[error("{object}: unknown property `{property}`")]
    UnknownProperty { object: String, property: String },
    #[error("{object}.{property}: given twice (by name and by column)")]
    DuplicateProperty { object: String, property: String },
    #[error("{object}.{property}: primary key missing")]
    MissingPrimaryKey { object: String, property: String },
    #[error("{object}.{property}: null not allowed")]
    NullNotAllowed { object: String, property: String },
    #[error("{object}.{property}: expected {expected}, found {found}")]
    WrongType {
        object: String,
        property: String,
        expected: PropertyType,
        found: &'static str,
    },
    #[error("{object}.{property}: invalid {expected} `{value}`: {reason}")]
    InvalidValue {
        object: String,
        property: String,
        expected: PropertyType,
        value: String,
        reason: &'static str,
    },
    #[error("{object}.{property}: `{value}` is not one of the allowed values")]
    NotAllowed {
        object: String,
        property: String,
        value: String,
    },
}

impl ValidationError {
    /// The property the error is about, as given in the record (or the CDM name).
    pub fn property(&self) -> &str {
        match self {
            ValidationError::UnknownProperty { property, .. }
            | ValidationError::DuplicateProperty { property, .. }
            | ValidationError::MissingPrimaryKey { property, .. }
            | ValidationError::NullNotAllowed { property, .. }
            | ValidationError::WrongType { property, .. }
            | ValidationError::InvalidValue { property, .. }
            | ValidationError::NotAllowed { property, .. } => property,
        }
    }
}

/// All the problems found in one record, so a caller can report them in one go.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl ObjectType {
    /// Checks a JSON record against this type. Keys may be CDM names or column names.
    /// Absent non-key properties are fine (the CDM makes them all optional); the
    /// primary key must be present, non-null and, for strings, not blank.
    pub fn validate_record(&self, record: &Map<String, Value>) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        let mut seen = vec![false; self.properties.len()];
        for (key, value) in record {
            let Some(index) = self
                .properties
                .iter()
                .position(|p| p.name == *key)
                .or_else(|| self.properties.iter().position(|p| p.column == *key))
            else {
                errors.push(ValidationError::UnknownProperty {
                    object: self.name.clone(),
                    property: key.clone(),
                });
                continue;
            };
            let property = &self.properties[index];
            if std::mem::replace(&mut seen[index], true) {
                errors.push(ValidationError::DuplicateProperty {
                    object: self.name.clone(),
                    property: property.name.clone(),
                });
                continue;
            }
            if let Err(e) = self.check_value(property, value) {
                errors.push(e);
            }
        }
        let pk = self
            .properties
            .iter()
            .position(|p| p.name == self.primary_key);
        if let Some(i) = pk {
            if !seen[i] {
                errors.push(ValidationError::MissingPrimaryKey {
                    object: self.name.clone(),
                    property: self.primary_key.clone(),
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }

    fn check_value(&self, p: &Property, value: &Value) -> Result<(), ValidationError> {
        let is_pk = p.name == self.primary_key;
        let blank_key = is_pk && value.as_str().is_some_and(|s| s.trim().is_empty());
        if is_pk && (value.is_null() || blank_key) {
            return Err(ValidationError::MissingPrimaryKey {
                object: self.name.clone(),
                property: p.name.clone(),
            });
        }
        if value.is_null() {
            return if p.nullable {
                Ok(())
            } else {
                Err(ValidationError::NullNotAllowed {
                    object: self.name.clone(),
                    property: p.name.clone(),
                })
            };
        }
        let wrong = || ValidationError::WrongType {
            object: self.name.clone(),
            property: p.name.clone(),
            expected: p.property_type,
            found: json_kind(value),
        };
        let invalid = |reason: &'static str| ValidationError::InvalidValue {
            object: self.name.clone(),
            property: p.name.clone(),
            expected: p.property_type,
            value: value_text(value),
            reason,
        };
        match p.property_type {
            PropertyType::String => {
                value.as_str().ok_or_else(wrong)?;
            }
            PropertyType::Integer => {
                let n = value.as_i64().ok_or_else(wrong)?;
                i32::try_from(n).map_err(|_| invalid("outside the 32-bit integer range"))?;
            }
            PropertyType::Long => match value {
                Value::Number(n) => {
                    n.as_i64().ok_or_else(wrong)?;
                }
                // The published API serialises longs as strings, so accept that form too.
                Value::String(s) => {
                    s.parse::<i64>()
                        .map_err(|_| invalid("not a 64-bit integer"))?;
                }
                _ => return Err(wrong()),
            },
            PropertyType::Double => {
                value.as_f64().ok_or_else(wrong)?;
            }
            PropertyType::Boolean => {
                value.as_bool().ok_or_else(wrong)?;
            }
            PropertyType::Date => {
                let s = value.as_str().ok_or_else(wrong)?;
                parse_date(s).map_err(invalid)?;
            }
            PropertyType::Timestamp => {
                let s = value.as_str().ok_or_else(wrong)?;
                check_timestamp(s).map_err(invalid)?;
            }
            PropertyType::StringList => {
                let items = value.as_array().ok_or_else(wrong)?;
                if !items.iter().all(Value::is_string) {
                    return Err(invalid("list elements must all be strings"));
                }
            }
        }
        self.check_allowed(p, value)
    }

    fn check_allowed(&self, p: &Property, value: &Value) -> Result<(), ValidationError> {
        let Some(allowed) = &p.allowed_values else {
            return Ok(());
        };
        let candidates: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for v in candidates {
            if !allowed.iter().any(|a| values_equal(a, v)) {
                return Err(ValidationError::NotAllowed {
                    object: self.name.clone(),
                    property: p.name.clone(),
                    value: value_text(v),
                });
            }
        }
        Ok(())
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        // 2 and 2.0 mean the same discharge pathway.
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number with a fraction",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

/// Parses `YYYY-MM-DD`, the only date form the canonical model stores.
pub(crate) fn parse_date(s: &str) -> Result<(u32, u32, u32), &'static str> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err("expected YYYY-MM-DD");
    }
    let (Some(y), Some(m), Some(d)) = (digits(&s[0..4]), digits(&s[5..7]), digits(&s[8..10]))
    else {
        return Err("expected YYYY-MM-DD");
    };
    if !(1..=12).contains(&m) {
        return Err("month out of range");
    }
    if d == 0 || d > days_in_month(y, m) {
        return Err("day out of range for the month");
    }
    Ok((y, m, d))
}

/// Accepts RFC 3339 date-times (`T` or space separator, optional fraction). An offset is
/// required: a local time without one cannot be placed on the UTC timeline.
pub(crate) fn check_timestamp(s: &str) -> Result<(), &'static str> {
    if s.len() < 11 {
        return Err("expected an RFC 3339 date-time");
    }
    parse_date(&s[..10])?;
    let sep = s.as_bytes()[10];
    if sep != b'T' && sep != b't' && sep != b' ' {
        return Err("expected `T` between date and time");
    }
    let rest = &s[11..];
    let offset_at = rest
        .find(['Z', 'z', '+', '-'])
        .ok_or("a UTC offset (Z or +hh:mm) is required")?;
    let (time, offset) = rest.split_at(offset_at);
    let (hms, fraction) = match time.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (time, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.len() != 2) {
        return Err("expected hh:mm:ss");
    }
    let (Some(h), Some(mi), Some(sec)) = (digits(parts[0]), digits(parts[1]), digits(parts[2]))
    else {
        return Err("expected hh:mm:ss");
    };
    // 60 allows a leap second, which RFC 3339 permits.
    if h > 23 || mi > 59 || sec > 60 {
        return Err("time out of range");
    }
    if let Some(frac) = fraction {
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err("bad fractional seconds");
        }
    }
    if offset.eq_ignore_ascii_case("z") {
        return Ok(());
    }
    let ob = offset.as_bytes();
    if ob.len() != 6 || ob[3] != b':' {
        return Err("expected offset as Z or +hh:mm");
    }
    match (digits(&offset[1..3]), digits(&offset[4..6])) {
        (Some(oh), Some(om)) if oh <= 23 && om <= 59 => Ok(()),
        _ => Err("offset out of range"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(parse_date("2024-02-29").is_ok());
        assert!(parse_date("2023-02-29").is_err());
        assert!(parse_date("2100-02-29").is_err());
        assert!(parse_date("2000-02-29").is_ok());
        assert!(parse_date("2024-13-01").is_err());
        assert!(parse_date("2024-1-01").is_err());
        assert!(parse_date("20240101").is_err());
    }

    #[test]
    fn timestamps() {
        for ok in [
            "2024-03-01T10:15:00Z",
            "2024-03-01T10:15:00.123456Z",
            "2024-03-01 10:15:00+01:00",
            "2024-03-01T23:59:60-05:30",
            "2024-03-01T10:15:00.1234567890123Z",
        ] {
            assert_eq!(check_timestamp(ok), Ok(()), "{ok}");
        }
        for bad in [
            "2024-03-01T10:15:00",
            "2024-03-01",
            "2024-03-01T25:00:00Z",
            "2024-03-01T10:15Z",
            "2024-03-01T10:15:00+0100",
            "2024-03-01T10:15:00.Z",
            "2024-02-30T10:15:00Z",
        ] {
            assert!(check_timestamp(bad).is_err(), "{bad}");
        }
    }
}
