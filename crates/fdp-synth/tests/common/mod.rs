//! Helpers shared by the integration tests: a deliberately naive HL7 reader,
//! a modulus 11 check written independently of the crate's, and a clock.

#![allow(dead_code)]

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};

/// Segments of a message as (id, fields) where `fields[n]` is field `n`
/// (for MSH, `fields[1]` is the field separator, as in the standard).
pub struct Parsed {
    pub segments: Vec<(String, Vec<String>)>,
}

impl Parsed {
    pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        if !text.ends_with('\r') {
            return Err("no trailing segment terminator".into());
        }
        let mut segments = Vec::new();
        for seg in text[..text.len() - 1].split('\r') {
            if seg.len() < 4 || seg.as_bytes()[3] != b'|' {
                return Err(format!("short or unterminated segment id: {seg:.20}"));
            }
            let id = &seg[..3];
            if !id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                || !id.as_bytes()[0].is_ascii_uppercase()
            {
                return Err(format!("bad segment id {id}"));
            }
            let mut fields: Vec<String> = vec![id.to_string()];
            if id == "MSH" {
                fields.push("|".to_string());
                fields.extend(seg[4..].split('|').map(str::to_string));
            } else {
                fields.extend(seg[4..].split('|').map(str::to_string));
            }
            segments.push((id.to_string(), fields));
        }
        if segments.first().map(|s| s.0.as_str()) != Some("MSH") {
            return Err("first segment is not MSH".into());
        }
        Ok(Parsed { segments })
    }

    pub fn all(&self, id: &str) -> Vec<&Vec<String>> {
        self.segments
            .iter()
            .filter(|s| s.0 == id)
            .map(|s| &s.1)
            .collect()
    }

    pub fn first(&self, id: &str) -> Option<&Vec<String>> {
        self.segments.iter().find(|s| s.0 == id).map(|s| &s.1)
    }

    /// Field `n` of the first segment `id` ("" when absent).
    pub fn field(&self, id: &str, n: usize) -> &str {
        self.first(id)
            .and_then(|f| f.get(n))
            .map_or("", String::as_str)
    }
}

/// Component `n` (1-based) of a field.
pub fn comp(field: &str, n: usize) -> &str {
    field.split('^').nth(n - 1).unwrap_or("")
}

/// (NHS number, MRN) from PID-3.
pub fn identifiers(pid3: &str) -> (Option<String>, Option<String>) {
    let mut nhs = None;
    let mut mrn = None;
    for rep in pid3.split('~') {
        match comp(rep, 5) {
            "NH" => nhs = Some(comp(rep, 1).to_string()),
            "MR" => mrn = Some(comp(rep, 1).to_string()),
            _ => {}
        }
    }
    (nhs, mrn)
}

pub fn nhs_valid(s: &str) -> bool {
    let d: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.len() != 10 || s.len() != 10 || d.iter().all(|x| *x == d[0]) {
        return false;
    }
    let sum: u32 = (0..9).map(|i| d[i] * (10 - i as u32)).sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return false,
        c => c,
    };
    check == d[9]
}

/// `yyyyMMddHHmmss+0000`, as the simulator writes times (UTC, with offset).
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.strip_suffix("+0000")?, "%Y%m%d%H%M%S")
        .ok()
        .map(|n| Utc.from_utc_datetime(&n))
}

pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 10, 8, 0, 0).unwrap()
}

/// The wall time of event `i` when events come every 30 seconds.
pub fn clock(i: usize) -> DateTime<Utc> {
    start() + Duration::seconds(30 * i as i64 + 1)
}
