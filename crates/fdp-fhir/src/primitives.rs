//! FHIR primitive types: ids, dates and date-times, checked to the letter of
//! the R4 specification and converted to what the canonical tables hold.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// `id`: 1–64 of `A-Z a-z 0-9 - .`
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A FHIR `date` or `dateTime`, keeping how precise it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FhirDateTime {
    Year(i32),
    Month(i32, u32),
    Date(NaiveDate),
    DateTime(DateTime<FixedOffset>),
}

impl FhirDateTime {
    /// The first day the value covers.
    pub fn date(&self) -> Option<NaiveDate> {
        match *self {
            FhirDateTime::Year(y) => NaiveDate::from_ymd_opt(y, 1, 1),
            FhirDateTime::Month(y, m) => NaiveDate::from_ymd_opt(y, m, 1),
            FhirDateTime::Date(d) => Some(d),
            FhirDateTime::DateTime(t) => Some(t.date_naive()),
        }
    }

    /// The first instant the value covers, in UTC. A date without a time is
    /// taken as midnight UTC.
    pub fn instant(&self) -> Option<DateTime<Utc>> {
        match *self {
            FhirDateTime::DateTime(t) => Some(t.with_timezone(&Utc)),
            other => other
                .date()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|n| Utc.from_utc_datetime(&n)),
        }
    }

    /// `YYYY-MM-DD` for date columns.
    pub fn date_string(&self) -> Option<String> {
        self.date().map(|d| d.format("%Y-%m-%d").to_string())
    }

    /// RFC 3339 in UTC with microseconds, for timestamp columns.
    pub fn timestamp_string(&self) -> Option<String> {
        self.instant()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
    }
}

/// Why a date or date-time was refused.
pub fn parse_date_time(s: &str) -> Result<FhirDateTime, String> {
    let bad = || {
        format!(
            "{s:?} is not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or \
             YYYY-MM-DDThh:mm:ss with a time zone, e.g. 2024-03-01T09:30:00Z)"
        )
    };
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|x| x.iter().all(u8::is_ascii_digit))
    };
    match b.len() {
        4 if digits(0..4) => s.parse().map(FhirDateTime::Year).map_err(|_| bad()),
        7 if digits(0..4) && b[4] == b'-' && digits(5..7) => {
            let y: i32 = s[..4].parse().map_err(|_| bad())?;
            let m: u32 = s[5..7].parse().map_err(|_| bad())?;
            if (1..=12).contains(&m) {
                Ok(FhirDateTime::Month(y, m))
            } else {
                Err(bad())
            }
        }
        10 => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .filter(|_| digits(0..4) && b[4] == b'-' && b[7] == b'-')
            .map(FhirDateTime::Date)
            .ok_or_else(bad),
        n if n > 10 && b[10] == b'T' => {
            if s.ends_with('Z') || has_offset(s) {
                DateTime::parse_from_rfc3339(s)
                    .map(FhirDateTime::DateTime)
                    .map_err(|_| bad())
            } else if NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok() {
                Err(format!(
                    "{s:?} has a time but no time zone; FHIR requires one (add Z or +00:00)"
                ))
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

fn has_offset(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 6 && matches!(b[b.len() - 6], b'+' | b'-') && b[b.len() - 3] == b':'
}

/// A FHIR `instant`: always to the second, always with a zone.
pub fn parse_instant(s: &str) -> Result<DateTime<FixedOffset>, String> {
    match parse_date_time(s)? {
        FhirDateTime::DateTime(t) => Ok(t),
        _ => Err(format!(
            "{s:?} is not a FHIR instant (a date-time with seconds and zone)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_valid_id("d4519c92-d241-b2b2-7360-291d60be699e"));
        assert!(is_valid_id("example.1"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id(&"x".repeat(65)));
    }

    #[test]
    fn dates_keep_precision_and_convert() {
        assert_eq!(parse_date_time("2011").unwrap(), FhirDateTime::Year(2011));
        assert_eq!(
            parse_date_time("2011-02").unwrap().date_string().unwrap(),
            "2011-02-01"
        );
        assert_eq!(
            parse_date_time("2011-02-02T05:57:27-08:00")
                .unwrap()
                .timestamp_string()
                .unwrap(),
            "2011-02-02T13:57:27.000000Z"
        );
        assert_eq!(
            parse_date_time("2020-02-29T05:57:27.970Z")
                .unwrap()
                .date_string()
                .unwrap(),
            "2020-02-29"
        );
    }

    #[test]
    fn wrong_formats_say_what_is_expected() {
        for bad in [
            "02/03/2011",
            "2011-13",
            "2011-02-30",
            "20110202",
            "2011-02-02 10:00",
            "2011-2-2",
        ] {
            let e = parse_date_time(bad).unwrap_err();
            assert!(e.contains("not a FHIR date"), "{bad}: {e}");
        }
        assert!(parse_date_time("2011-02-02T10:00:00")
            .unwrap_err()
            .contains("no time zone"));
    }
}
