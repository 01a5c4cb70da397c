//! Reading an ADT event out of a parsed HL7 v2 message, with UK conventions.
//!
//! What a real feed varies on, and how it is read here:
//! - the NHS number sits in a PID-3 repetition whose assigning authority
//!   (CX-4) or identifier type (CX-5) says NHS: `NHS^NH`, `NHSNBR^NHSNMBR`,
//!   the NHS number OID, or the FHIR system URL;
//! - the local hospital number is the repetition typed `MR`/`MRN`/`PI`, else
//!   the first other identifier, else PID-2 (v2.3 feeds);
//! - times without an offset are local UK time (GMT or BST);
//! - the spell is PV1-19, the visit number.

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use fdp_hl7::{ErrorCode, ErrorLocation, Message, Segment};
use fdp_model::identifiers;

use fdp_model::identifiers::NhsNumberError;

use super::event::{AdtEvent, Location, NhsNumberStatus, PatientDetails, VisitDetails};

/// ADT triggers this instance applies to the census. Others are kept in raw
/// unprocessed.
pub const APPLIED_TRIGGERS: &[&str] = &[
    "A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A12", "A13", "A17", "A21",
    "A22", "A28", "A31", "A34", "A40",
];

/// Triggers that are about a spell and so need PV1.
const NEEDS_VISIT: &[&str] = &[
    "A01", "A02", "A03", "A05", "A06", "A07", "A11", "A12", "A13", "A17", "A21", "A22",
];

/// Why an ADT message cannot be applied: what, where, and the HL7 error code
/// to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdtError {
    pub code: ErrorCode,
    pub segment: &'static str,
    pub segment_index: usize,
    pub field: usize,
    pub message: String,
}

impl AdtError {
    fn at(code: ErrorCode, seg: &'static str, idx: usize, field: usize, message: String) -> Self {
        AdtError {
            code,
            segment: seg,
            segment_index: idx,
            field,
            message,
        }
    }
    pub fn location(&self) -> ErrorLocation {
        if self.field == 0 {
            ErrorLocation::segment(self.segment, self.segment_index)
        } else {
            ErrorLocation::field(self.segment, self.segment_index, self.field)
        }
    }
    /// `segment 3 (PID) field 3`, for people.
    pub fn describe_location(&self) -> String {
        if self.field == 0 {
            format!("segment {} ({})", self.segment_index, self.segment)
        } else {
            format!(
                "segment {} ({}) field {}",
                self.segment_index, self.segment, self.field
            )
        }
    }
}

/// The trigger event of an ADT message: MSH-9.2, else EVN-1.
pub fn trigger(msg: &Message) -> String {
    let t = msg.message_type();
    let from_msh = t.trigger.trim();
    if !from_msh.is_empty() {
        return from_msh.to_ascii_uppercase();
    }
    msg.get("EVN-1").unwrap_or("").trim().to_ascii_uppercase()
}

/// Read the event. `fallback_time_us` is used when the message carries no
/// event time at all (the arrival time, so that replay is deterministic).
pub fn event(msg: &Message, fallback_time_us: i64) -> Result<AdtEvent, AdtError> {
    let trigger = trigger(msg);
    let occurred_at_us = event_time(msg)?.unwrap_or(fallback_time_us);
    let sending_facility = msg.sending_facility().to_string();

    let mut pids = msg.segments_named("PID");
    let Some(pid) = pids.next() else {
        return Err(AdtError::at(
            ErrorCode::SegmentSequenceError,
            "PID",
            0,
            0,
            format!("ADT^{trigger} has no PID segment: the patient is not identified"),
        ));
    };
    let mut problems = Vec::new();
    let patient_details = patient(&pid, &mut problems)?;
    let mut pv1s = msg.segments_named("PV1");
    let pv1 = pv1s.next();
    let visit_details = match &pv1 {
        Some(pv1) => Some(visit(pv1, &patient_details, &sending_facility)?),
        None => None,
    };
    if visit_details.is_none() && NEEDS_VISIT.contains(&trigger.as_str()) {
        return Err(AdtError::at(
            ErrorCode::SegmentSequenceError,
            "PV1",
            0,
            0,
            format!("ADT^{trigger} needs a PV1 segment naming the visit and location"),
        ));
    }
    if trigger == "A02" {
        let has_location = visit_details
            .as_ref()
            .and_then(|v| v.location.as_ref())
            .is_some_and(|l| !l.ward.is_empty());
        if !has_location {
            let idx = pv1.as_ref().map(|s| s.index()).unwrap_or(0);
            return Err(AdtError::at(
                ErrorCode::RequiredFieldMissing,
                "PV1",
                idx,
                3,
                "ADT^A02 transfer without a new location in PV1-3".into(),
            ));
        }
    }

    let mut merged_ids = Vec::new();
    if trigger == "A40" || trigger == "A34" {
        let Some(mrg) = msg.segment("MRG") else {
            return Err(AdtError::at(
                ErrorCode::SegmentSequenceError,
                "MRG",
                0,
                0,
                format!("ADT^{trigger} merge without an MRG segment naming the record to merge"),
            ));
        };
        if let Some(f) = mrg.field(1) {
            for rep in f.repetitions() {
                let ids = Identifiers::read(rep.as_str(), &msg.delimiters());
                if let Some(id) = ids.patient_id() {
                    merged_ids.push(id);
                }
            }
        }
        if merged_ids.is_empty() {
            return Err(AdtError::at(
                ErrorCode::RequiredFieldMissing,
                "MRG",
                mrg.index(),
                1,
                "MRG-1 (prior patient identifier) is empty".into(),
            ));
        }
    }

    let swap_with = if trigger == "A17" {
        let (Some(pid2), Some(pv12)) = (pids.next(), pv1s.next()) else {
            return Err(AdtError::at(
                ErrorCode::SegmentSequenceError,
                "PID",
                0,
                0,
                "ADT^A17 swap needs two PID and PV1 groups, one per patient".into(),
            ));
        };
        let p2 = patient(&pid2, &mut problems)?;
        let v2 = visit(&pv12, &p2, &sending_facility)?;
        Some((p2, v2))
    } else {
        None
    };

    Ok(AdtEvent {
        trigger,
        occurred_at_us,
        patient: patient_details,
        visit: visit_details,
        merged_ids,
        swap_with,
        problems,
    })
}

fn event_time(msg: &Message) -> Result<Option<i64>, AdtError> {
    for (path, seg, field) in [
        ("EVN-6", "EVN", 6),
        ("EVN-2", "EVN", 2),
        ("MSH-7", "MSH", 7),
    ] {
        if let Some(raw) = msg.get(path).filter(|s| !s.trim().is_empty()) {
            let idx = msg.segment(seg).map(|s| s.index()).unwrap_or(1);
            return parse_ts(raw)
                .map(Some)
                .ok_or_else(|| bad_time(seg, idx, field, raw));
        }
    }
    Ok(None)
}

fn bad_time(seg: &'static str, idx: usize, field: usize, raw: &str) -> AdtError {
    AdtError::at(
        ErrorCode::DataTypeError,
        seg,
        idx,
        field,
        format!("{seg}-{field} {raw:?} is not an HL7 date/time (YYYYMMDD[HHMM[SS[.S]]][+ZZZZ])"),
    )
}

/// Parse an HL7 TS/DTM into microseconds since the epoch. No offset means UK
/// local time.
pub fn parse_ts(raw: &str) -> Option<i64> {
    let raw = raw.split('^').next().unwrap_or("").trim();
    let (body, offset) = match raw.find(['+', '-']) {
        Some(i) => (&raw[..i], Some(&raw[i..])),
        None => (raw, None),
    };
    let (whole, frac) = match body.find('.') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, ""),
    };
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |a: usize, b: usize, default: u32| -> Option<u32> {
        if whole.len() >= b {
            whole[a..b].parse().ok()
        } else if whole.len() <= a {
            Some(default)
        } else {
            None
        }
    };
    if whole.len() < 4 || whole.len() > 14 || whole.len() % 2 != 0 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(whole[0..4].parse().ok()?, num(4, 6, 1)?, num(6, 8, 1)?)?;
    let time = date.and_hms_opt(num(8, 10, 0)?, num(10, 12, 0)?, num(12, 14, 0)?)?;
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        let f: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        f.parse().ok()?
    };
    let utc = match offset {
        Some(off) => {
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let digits = &off[1..];
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let h: i64 = digits[0..2].parse().ok()?;
            let m: i64 = digits[2..4].parse().ok()?;
            time.and_utc().timestamp_micros() - sign * (h * 3600 + m * 60) * 1_000_000
        }
        None => london_to_utc(time)?,
    };
    Some(utc + micros)
}

fn london_to_utc(t: NaiveDateTime) -> Option<i64> {
    use chrono::LocalResult;
    match chrono_tz::Europe::London.from_local_datetime(&t) {
        LocalResult::Single(d) => Some(d.timestamp_micros()),
        // The repeated hour when clocks go back: take the first.
        LocalResult::Ambiguous(a, _) => Some(a.timestamp_micros()),
        // The skipped hour when clocks go forward: the PAS clock was wrong
        // by an hour; read it as GMT.
        LocalResult::None => Some(t.and_utc().timestamp_micros()),
    }
}

/// Identifiers found in a CX list.
#[derive(Default)]
struct Identifiers {
    nhs: Option<(String, usize)>,
    mrn: Option<String>,
    other: Option<String>,
}

const NHS_AUTHORITIES: &[&str] = &[
    "NHS",
    "NHSNBR",
    "NHSNMBR",
    "NHS NUMBER",
    "NHSNUMBER",
    "2.16.840.1.113883.2.1.4.1",
    "HTTPS://FHIR.NHS.UK/ID/NHS-NUMBER",
];
const NHS_TYPES: &[&str] = &["NH", "NHS", "NHSNBR", "NHSNMBR", "NHSNUMBER"];
const MRN_TYPES: &[&str] = &["MR", "MRN", "PI", "HN", "LR", "PT"];

impl Identifiers {
    /// Read one repetition list (the raw text of a CX field).
    fn read(field_text: &str, d: &fdp_hl7::Delimiters) -> Identifiers {
        let mut out = Identifiers::default();
        for (n, rep) in field_text.split(d.repetition()).enumerate() {
            let comps: Vec<&str> = rep.split(d.component()).collect();
            let id = comps.first().map(|s| s.trim()).unwrap_or("");
            if id.is_empty() {
                continue;
            }
            let sub = |i: usize| -> String {
                comps
                    .get(i)
                    .and_then(|c| c.split(d.subcomponent()).next())
                    .unwrap_or("")
                    .trim()
                    .to_ascii_uppercase()
            };
            let (authority, kind) = (sub(3), sub(4));
            let unescaped = fdp_hl7::unescape(id, d).into_owned();
            if NHS_AUTHORITIES.contains(&authority.as_str()) || NHS_TYPES.contains(&kind.as_str()) {
                out.nhs.get_or_insert((unescaped, n + 1));
            } else if MRN_TYPES.contains(&kind.as_str()) || authority.contains("MRN") {
                out.mrn.get_or_insert(unescaped);
            } else {
                out.other.get_or_insert(unescaped);
            }
        }
        out
    }

    /// The key the census files the patient under: the hospital number,
    /// else a valid NHS number. An invalid NHS number is never a key.
    fn patient_id(&self) -> Option<String> {
        self.mrn.clone().or_else(|| self.other.clone()).or_else(|| {
            self.nhs
                .as_ref()
                .filter(|(n, _)| identifiers::parse_nhs_number(n).is_ok())
                .map(|(n, _)| format!("NHS:{}", normalise_nhs(n)))
        })
    }
}

fn normalise_nhs(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_digit()).collect()
}

fn text(seg: &Segment, field: usize, component: usize) -> Option<String> {
    let f = seg.field(field)?;
    let rep = f.repetition(1)?;
    let c = rep.component(component)?;
    let v = c.unescaped();
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// The patient a PID segment describes. A field too poor to use is left
/// empty and described in `problems`: one bad field never costs a patient
/// their place on the bed board.
fn patient(pid: &Segment, problems: &mut Vec<String>) -> Result<PatientDetails, AdtError> {
    let d = pid.delimiters();
    let idx = pid.index();
    let mut ids = Identifiers::read(pid.field(3).map(|f| f.as_str()).unwrap_or(""), &d);
    if ids.mrn.is_none() && ids.other.is_none() {
        let pid2 = Identifiers::read(pid.field(2).map(|f| f.as_str()).unwrap_or(""), &d);
        ids.mrn = pid2.mrn.or(pid2.other);
        if ids.nhs.is_none() {
            ids.nhs = pid2.nhs;
        }
    }
    // PID-32, Identity Reliability Code: UK feeds carry the NHS NUMBER
    // STATUS INDICATOR CODE here.
    let indicator =
        text(pid, 32, 1).filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_digit()));
    let (nhs_number, nhs_number_status) = match &ids.nhs {
        Some((raw, _)) => match identifiers::parse_nhs_number(raw) {
            Ok(_) => {
                let status = match indicator.as_deref() {
                    None | Some("01") => NhsNumberStatus::Verified,
                    Some(code) => NhsNumberStatus::Unverified { code: code.into() },
                };
                (Some(normalise_nhs(raw)), status)
            }
            // Admitted all the same, under the hospital number: refusing
            // the message would take a real patient off the bed board.
            Err(why) => (
                None,
                NhsNumberStatus::Invalid {
                    value: raw.clone(),
                    why: invalid_reason(&why).to_string(),
                },
            ),
        },
        None => (None, NhsNumberStatus::Missing { code: indicator }),
    };
    let Some(patient_id) = ids.patient_id() else {
        let message = match (&ids.nhs, &nhs_number_status) {
            (Some((_, rep)), NhsNumberStatus::Invalid { value, why }) => format!(
                "PID-3 has no usable patient identifier: no hospital number, and the NHS number \
                 {value:?} in repetition {rep} is not valid ({why}); send the hospital number \
                 (CX-5 MR) or a valid NHS number"
            ),
            _ => "PID-3 has no patient identifier (neither a hospital number nor an NHS number)"
                .into(),
        };
        return Err(AdtError::at(
            ErrorCode::RequiredFieldMissing,
            "PID",
            idx,
            3,
            message,
        ));
    };
    let date_of_birth = text(pid, 7, 1).and_then(|raw| {
        let digits = raw.get(0..8).unwrap_or("");
        match NaiveDate::parse_from_str(digits, "%Y%m%d") {
            Ok(dob) => Some(dob.to_string()),
            Err(_) => {
                problems.push(format!(
                    "PID-7 date of birth {raw:?} (segment {}) is not a date (YYYYMMDD); \
                     the patient is kept without a date of birth",
                    pid.index()
                ));
                None
            }
        }
    });
    Ok(PatientDetails {
        patient_id,
        mrn: ids.mrn,
        nhs_number,
        nhs_number_status: Some(nhs_number_status),
        title: text(pid, 5, 5),
        first_name: text(pid, 5, 2),
        surname: text(pid, 5, 1),
        date_of_birth,
        sex: text(pid, 8, 1),
        address_line1: text(pid, 11, 1),
        address_line2: text(pid, 11, 2),
        address_city: text(pid, 11, 3),
        postcode: text(pid, 11, 5),
        phone_number: text(pid, 13, 1),
        ethnic_category_code: text(pid, 22, 1),
        registered_gp: None,
    })
}

fn location(seg: &Segment, field: usize, default_site: &str) -> Option<Location> {
    let f = seg.field(field)?;
    let rep = f.repetition(1)?;
    let part = |n: usize| -> String {
        rep.component(n)
            .map(|c| {
                // HD and IS components: the first subcomponent names it.
                let first = c.subcomponent(1).map(|s| s.unescaped().into_owned());
                first.unwrap_or_default().trim().to_string()
            })
            .unwrap_or_default()
    };
    let ward = part(1);
    if ward.is_empty() {
        return None;
    }
    let mut site = part(4);
    if site.is_empty() {
        site = default_site.to_string();
    }
    Some(Location {
        site,
        ward,
        room: part(2),
        bed: part(3),
    })
}

fn visit(
    pv1: &Segment,
    patient: &PatientDetails,
    sending_facility: &str,
) -> Result<VisitDetails, AdtError> {
    let idx = pv1.index();
    let default_site = text(pv1, 39, 1).unwrap_or_else(|| sending_facility.to_string());
    let ts = |field: usize| -> Result<Option<i64>, AdtError> {
        match text(pv1, field, 1) {
            Some(raw) => parse_ts(&raw)
                .map(Some)
                .ok_or_else(|| bad_time("PV1", idx, field, &raw)),
            None => Ok(None),
        }
    };
    let admit_at_us = ts(44)?;
    let discharge_at_us = ts(45)?;
    let admission_id = match text(pv1, 19, 1) {
        Some(v) => v,
        // No visit number: one spell per patient at a time, keyed by the
        // admission time when the feed gives one.
        None => match text(pv1, 44, 1) {
            Some(t) => format!("{}@{t}", patient.patient_id),
            None => format!("{}@current", patient.patient_id),
        },
    };
    let consultant = match (text(pv1, 7, 1), text(pv1, 7, 2)) {
        (Some(code), Some(name)) => Some(format!("{code}^{name}")),
        (Some(code), None) => Some(code),
        _ => None,
    };
    Ok(VisitDetails {
        admission_id,
        patient_class: text(pv1, 2, 1).unwrap_or_default(),
        location: location(pv1, 3, &default_site),
        prior_location: location(pv1, 6, &default_site),
        admit_at_us,
        discharge_at_us,
        admission_method: text(pv1, 4, 1),
        specialty: text(pv1, 10, 1),
        consultant,
    })
}

/// Why an NHS number fails, without quoting any of it: the reason travels
/// with the status into operational columns that roles not shown NHS
/// numbers see, and "check digit is 3 but should be 7" gives a digit away.
fn invalid_reason(e: &NhsNumberError) -> &'static str {
    match e {
        NhsNumberError::Empty => "empty",
        NhsNumberError::InvalidCharacter(_) => "contains characters other than digits",
        NhsNumberError::WrongLength { .. } => "not ten digits",
        NhsNumberError::CheckDigitWouldBeTen => "no NHS number begins with those nine digits",
        NhsNumberError::CheckDigitMismatch { .. } => "the check digit does not match",
        NhsNumberError::RepeatedDigit(_) => "one digit repeated ten times, a placeholder",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_uk_local_time() {
        // Winter: GMT.
        let w = parse_ts("20260115103000").unwrap();
        assert_eq!(
            w,
            chrono::Utc
                .with_ymd_and_hms(2026, 1, 15, 10, 30, 0)
                .unwrap()
                .timestamp_micros()
        );
        // Summer: BST is UTC+1.
        let s = parse_ts("20260715103000").unwrap();
        assert_eq!(
            s,
            chrono::Utc
                .with_ymd_and_hms(2026, 7, 15, 9, 30, 0)
                .unwrap()
                .timestamp_micros()
        );
        // Explicit offsets win.
        let o = parse_ts("20260715103000+0000").unwrap();
        assert_eq!(
            o,
            chrono::Utc
                .with_ymd_and_hms(2026, 7, 15, 10, 30, 0)
                .unwrap()
                .timestamp_micros()
        );
        assert!(parse_ts("2026071").is_none());
        assert!(parse_ts("20261345").is_none());
        assert!(parse_ts("yesterday").is_none());
        assert_eq!(parse_ts("20260715103000.5+0000").unwrap() - o, 500_000);
    }
}
