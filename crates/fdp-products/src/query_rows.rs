//! Reading a governed query's answer in a product: its rows as JSON
//! objects, and each value as the kind the product needs, whatever kind the
//! engine gave it as.

use chrono::NaiveDate;
use fdp_govern::GovernedSession;
use serde_json::Value;

use crate::platform::ProductError;

/// The rows `sql` gives in `session`, each a JSON object by column.
pub(crate) async fn rows(session: &GovernedSession, sql: &str) -> Result<Vec<Value>, ProductError> {
    let result = session.query(sql).await?;
    let json = result
        .rows_json()
        .map_err(|e| ProductError::Failed(e.to_string()))?;
    Ok(json.as_array().cloned().unwrap_or_default())
}

/// A column's text, trimmed; `None` where it is null or blank.
pub(crate) fn text(row: &Value, column: &str) -> Option<String> {
    match row.get(column)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A column's whole number (a fraction cut to it, a number written as text
/// read).
pub(crate) fn number(row: &Value, column: &str) -> Option<i64> {
    match row.get(column)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A column's date (`YYYY-MM-DD`, of a date or the start of a timestamp).
pub(crate) fn date(row: &Value, column: &str) -> Option<NaiveDate> {
    let t = text(row, column)?;
    NaiveDate::parse_from_str(t.get(..10)?, "%Y-%m-%d").ok()
}

/// The instant the day after `day` begins in England: what was counted
/// before it was counted on `day` or earlier, in the summer as in winter.
pub(crate) fn end_of_day_in_england(day: NaiveDate) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    let next = day
        .succ_opt()
        .unwrap_or(day)
        .and_time(chrono::NaiveTime::MIN);
    chrono_tz::Europe::London
        .from_local_datetime(&next)
        .earliest()
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| next.and_utc())
}
