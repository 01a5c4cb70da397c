//! Name conversions between the CDM's camelCase/PascalCase and SQL snake_case.

/// `wardStay` → `ward_stay`, `isRTT` → `is_rtt`, `rttPeriodIs68WeekWaiter` →
/// `rtt_period_is_68_week_waiter`. Digit runs are words of their own, which is how the
/// spec itself spells the underlying column names (e.g. `rtt_period_is_42_week_waiter`).
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            if !out.ends_with('_') {
                out.push('_');
            }
            continue;
        }
        if i > 0 && !out.is_empty() && !out.ends_with('_') {
            let prev = chars[i - 1];
            let next = chars.get(i + 1).copied();
            let boundary = (c.is_ascii_uppercase() && (prev.is_ascii_lowercase() || prev.is_ascii_digit()))
                // The last capital of an acronym starts the next word: `RTTPeriod`.
                || (c.is_ascii_uppercase()
                    && prev.is_ascii_uppercase()
                    && next.is_some_and(|n| n.is_ascii_lowercase()))
                || (c.is_ascii_digit() && prev.is_ascii_alphabetic())
                || (c.is_ascii_alphabetic() && prev.is_ascii_digit());
            if boundary {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// `WardStay` → `wardStay`.
pub fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// `wardStay` → `WardStay`.
pub fn upper_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// English singular of the plural link names the CDM uses (`wardStays`, `injuries`,
/// `patientDiagnoses`). Only needs to be right for those names, not for English at large.
pub fn singular(name: &str) -> String {
    if let Some(stem) = name.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = name.strip_suffix("oses") {
        format!("{stem}osis")
    } else if name.ends_with("ss") {
        name.to_string()
    } else if let Some(stem) = name.strip_suffix('s') {
        stem.to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake() {
        for (camel, snake) in [
            ("wardStay", "ward_stay"),
            ("WardStay", "ward_stay"),
            ("startTimestamp", "start_timestamp"),
            ("nhsNumber", "nhs_number"),
            ("rvGroupIds", "rv_group_ids"),
            ("isRTT", "is_rtt"),
            ("rttPeriodIs68WeekWaiter", "rtt_period_is_68_week_waiter"),
            (
                "totalNumberOfLevel2CareDays",
                "total_number_of_level_2_care_days",
            ),
            ("_28DayBreachDate", "_28_day_breach_date"),
            ("moduleGroupIds_3", "module_group_ids_3"),
            ("EMed3FitNote", "e_med_3_fit_note"),
            ("emed3FitNoteId", "emed_3_fit_note_id"),
            ("diagnosisIcd10Code", "diagnosis_icd_10_code"),
            ("id", "id"),
            ("UecAttendance", "uec_attendance"),
            ("amPm", "am_pm"),
            ("RTTPeriod", "rtt_period"),
        ] {
            assert_eq!(snake_case(camel), snake, "{camel}");
        }
    }

    #[test]
    fn plurals() {
        assert_eq!(singular("wardStays"), "wardStay");
        assert_eq!(singular("injuries"), "injury");
        assert_eq!(singular("patientDiagnoses"), "patientDiagnosis");
        assert_eq!(singular("patient"), "patient");
        assert_eq!(singular("labours"), "labour");
    }

    #[test]
    fn case_first() {
        assert_eq!(lower_first("WardStay"), "wardStay");
        assert_eq!(upper_first("mdtMeeting"), "MdtMeeting");
    }
}
