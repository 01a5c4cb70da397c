//! The functions the policy's column rewrites call.
//!
//! They are put into a view's plan directly and never registered in the
//! session by name: a user who could call the pseudonym function could
//! pseudonymise a known NHS number and find that patient in an extract.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Int32Array, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    create_udf, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::cast as cast_expr;

use crate::keystore::{KeyId, PseudonymKey};

fn call(udf: ScalarUDF, arg: Expr) -> Expr {
    udf.call(vec![arg])
}

/// The name a pseudonym call carries in a plan, where
/// [`crate::late_pseudonyms`] finds it.
pub(crate) const PSEUDONYM: &str = "pseudonym";

/// `p<version>-<hmac>` for every non-null value.
pub(crate) fn pseudonym(key: PseudonymKey, arg: Expr) -> Expr {
    call(pseudonym_udf(key), cast_expr(arg, DataType::Utf8))
}

/// The key a pseudonym call in a plan hashes with, if `func` is one.
pub(crate) fn pseudonym_key(func: &ScalarUDF) -> Option<&PseudonymKey> {
    let any: &dyn std::any::Any = func.inner().as_ref();
    any.downcast_ref::<Pseudonym>().map(|p| &p.key)
}

/// The pseudonym function under one key. Two calls are the same function
/// only under the same key, so that a plan rewrite may treat equal ids
/// under both as equal pseudonyms.
#[derive(Debug)]
struct Pseudonym {
    key: PseudonymKey,
    signature: Signature,
}

impl PartialEq for Pseudonym {
    fn eq(&self, other: &Self) -> bool {
        self.key.same_key(&other.key)
    }
}

impl Eq for Pseudonym {}

impl std::hash::Hash for Pseudonym {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.version.hash(state);
    }
}

impl ScalarUDFImpl for Pseudonym {
    fn name(&self) -> &str {
        PSEUDONYM
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let [ColumnarValue::Scalar(v)] = args.args.as_slice() {
            let value = match v {
                ScalarValue::Utf8(s) | ScalarValue::Utf8View(s) | ScalarValue::LargeUtf8(s) => {
                    s.as_deref().map(|s| self.key.pseudonym(s))
                }
                _ => None,
            };
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value)));
        }
        let a = ColumnarValue::values_to_arrays(&args.args)?;
        let s = a[0].as_string::<i32>();
        let mut out = StringBuilder::with_capacity(s.len(), s.len() * 24);
        self.key.pseudonyms(s.iter(), |p| out.append_option(p));
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// What a pseudonym is made from: the value without the white space
/// around it, as the key trims it. Equal inputs are exactly the values with
/// equal pseudonyms, so a plan may group or join on these in place of the
/// pseudonyms (see [`crate::late_pseudonyms`]).
pub(crate) fn pseudonym_input(arg: Expr) -> Expr {
    call(ScalarUDF::new_from_impl(PseudonymInput::default()), arg)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PseudonymInput {
    signature: Signature,
}

impl Default for PseudonymInput {
    fn default() -> Self {
        PseudonymInput {
            signature: Signature::uniform(
                1,
                vec![DataType::Utf8, DataType::Utf8View, DataType::LargeUtf8],
                Volatility::Immutable,
            ),
        }
    }
}

/// Whether `s` has white space at either end.
fn untrimmed(s: &str) -> bool {
    s.chars().next().is_some_and(char::is_whitespace)
        || s.chars().next_back().is_some_and(char::is_whitespace)
}

impl ScalarUDFImpl for PseudonymInput {
    fn name(&self) -> &str {
        "pseudonym_input"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args.first().cloned().unwrap_or(DataType::Utf8))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return datafusion::common::exec_err!("pseudonym_input takes one value");
        };
        let array = match value {
            ColumnarValue::Scalar(v) => {
                return Ok(ColumnarValue::Scalar(match v {
                    ScalarValue::Utf8(s) => {
                        ScalarValue::Utf8(s.as_deref().map(|s| s.trim().into()))
                    }
                    ScalarValue::Utf8View(s) => {
                        ScalarValue::Utf8View(s.as_deref().map(|s| s.trim().into()))
                    }
                    ScalarValue::LargeUtf8(s) => {
                        ScalarValue::LargeUtf8(s.as_deref().map(|s| s.trim().into()))
                    }
                    v => v.clone(),
                }))
            }
            ColumnarValue::Array(a) => a,
        };
        // Ids are almost always stored trimmed: then the column is its own
        // input, and nothing is copied.
        macro_rules! trimmed {
            ($strings:expr, $array:ty) => {{
                let strings = $strings;
                if strings.iter().flatten().any(untrimmed) {
                    let out: $array = strings.iter().map(|v| v.map(str::trim)).collect();
                    Arc::new(out) as ArrayRef
                } else {
                    array.clone()
                }
            }};
        }
        let out = match array.data_type() {
            DataType::Utf8 => trimmed!(array.as_string::<i32>(), StringArray),
            DataType::LargeUtf8 => trimmed!(
                array.as_string::<i64>(),
                datafusion::arrow::array::LargeStringArray
            ),
            DataType::Utf8View => trimmed!(
                array.as_string_view(),
                datafusion::arrow::array::StringViewArray
            ),
            other => {
                return datafusion::common::exec_err!("pseudonym_input of {other}");
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// The year of a date or timestamp.
pub(crate) fn year(arg: Expr) -> Expr {
    call(year_udf(), cast_expr(arg, DataType::Date32))
}

fn year_udf() -> ScalarUDF {
    let f = |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let a = ColumnarValue::values_to_arrays(args)?;
        let out: Int32Array = a[0]
            .as_primitive::<Date32Type>()
            .unary(|days| civil_from_days(days).0);
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    };
    create_udf(
        "year_of",
        vec![DataType::Date32],
        DataType::Int32,
        Volatility::Immutable,
        Arc::new(f),
    )
}

/// The proleptic Gregorian year and day of the month of a day counted from
/// 1970-01-01, in integer arithmetic (after Howard Hinnant's
/// `civil_from_days`): generalising every date of birth of ten million
/// patients a row at a time through a calendar type costs most of a
/// second, this a few milliseconds. Exact for every `Date32`.
pub(crate) fn civil_from_days(days: i32) -> (i32, i32) {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March, so that a leap day ends the year.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let year = year_of_era + era * 400 + i64::from(month_from_march >= 10);
    (year as i32, day as i32)
}

/// A date as the first day of its month (a date, so ages can still be
/// taken from it).
pub(crate) fn month_start(arg: Expr) -> Expr {
    call(month_udf(), cast_expr(arg, DataType::Date32))
}

fn month_udf() -> ScalarUDF {
    let f = |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let a = ColumnarValue::values_to_arrays(args)?;
        let out: Date32Array = a[0]
            .as_primitive::<Date32Type>()
            .unary(|days| days - (civil_from_days(days).1 - 1));
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    };
    create_udf(
        "month_of",
        vec![DataType::Date32],
        DataType::Date32,
        Volatility::Immutable,
        Arc::new(f),
    )
}

pub(crate) fn band(age: i64) -> String {
    if age >= 90 {
        return "90+".into();
    }
    let low = age.max(0) / 10 * 10;
    format!("{low}-{}", low + 9)
}

/// A ten-year age band (`40-49`, `90+`) from a date of birth, as of today.
pub(crate) fn age_band_from_birth(arg: Expr) -> Expr {
    call(
        age_band_of_birth_udf(chrono::Utc::now().date_naive()),
        cast_expr(arg, DataType::Date32),
    )
}

/// Age bands as of `today`: the day is part of the function, so that
/// every process running one plan bands alike.
fn age_band_of_birth_udf(today: chrono::NaiveDate) -> ScalarUDF {
    ScalarUDF::new_from_impl(AgeBandOfBirth {
        today,
        signature: Signature::exact(vec![DataType::Date32], Volatility::Immutable),
    })
}

/// The day an age-band function bands as of, if `func` is one.
pub(crate) fn age_band_day(func: &ScalarUDF) -> Option<chrono::NaiveDate> {
    let any: &dyn std::any::Any = func.inner().as_ref();
    any.downcast_ref::<AgeBandOfBirth>().map(|a| a.today)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct AgeBandOfBirth {
    today: chrono::NaiveDate,
    signature: Signature,
}

impl ScalarUDFImpl for AgeBandOfBirth {
    fn name(&self) -> &str {
        "age_band_of_birth"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let a = ColumnarValue::values_to_arrays(&args.args)?;
        let d = a[0].as_primitive::<Date32Type>();
        let out: StringArray = d
            .iter()
            .map(|v| {
                v.and_then(Date32Type::to_naive_date_opt)
                    .and_then(|born| self.today.years_since(born))
                    .map(|age| band(age as i64))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

/// A ten-year age band from an age in years.
pub(crate) fn age_band(arg: Expr) -> Expr {
    call(age_band_udf(), cast_expr(arg, DataType::Int64))
}

fn age_band_udf() -> ScalarUDF {
    let f = |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let a = ColumnarValue::values_to_arrays(args)?;
        let n = a[0].as_primitive::<Int64Type>();
        let out: StringArray = n.iter().map(|v| v.map(band)).collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    };
    create_udf(
        "age_band",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(f),
    )
}

/// The postcode district (outward code): `LS1 4AP` → `LS1`. A value that is
/// not shaped like a postcode gives NULL rather than leak through.
pub(crate) fn district(arg: Expr) -> Expr {
    call(district_udf(), cast_expr(arg, DataType::Utf8))
}

fn district_udf() -> ScalarUDF {
    let f = |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let a = ColumnarValue::values_to_arrays(args)?;
        let s = a[0].as_string::<i32>();
        let out: StringArray = s.iter().map(|v| v.and_then(outward_code)).collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    };
    create_udf(
        "postcode_district",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(f),
    )
}

pub(crate) fn outward_code(postcode: &str) -> Option<String> {
    let compact: String = postcode
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    // An inward code is always a digit and two letters; an outward code is
    // two to four characters.
    if !(5..=7).contains(&compact.len()) || !compact.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let (outward, inward) = compact.split_at(compact.len() - 3);
    let inward: Vec<char> = inward.chars().collect();
    (inward[0].is_ascii_digit()
        && inward[1].is_ascii_alphabetic()
        && inward[2].is_ascii_alphabetic())
    .then(|| outward.to_string())
}

/// The function named `name` that carries nothing of its own (the masks),
/// as [`crate::plan_codec`] rebuilds it in another process.
pub(crate) fn plain(name: &str) -> Option<ScalarUDF> {
    Some(match name {
        "pseudonym_input" => ScalarUDF::new_from_impl(PseudonymInput::default()),
        "year_of" => year_udf(),
        "month_of" => month_udf(),
        "age_band" => age_band_udf(),
        "postcode_district" => district_udf(),
        crate::day_arithmetic::DATE_ADD_DAYS => crate::day_arithmetic::date_add_days_udf(),
        _ => return None,
    })
}

/// [`pseudonym`]'s function under `key`.
pub(crate) fn pseudonym_udf(key: PseudonymKey) -> ScalarUDF {
    ScalarUDF::new_from_impl(Pseudonym {
        key,
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
    })
}

/// The pseudonym function as a process that holds no keys sees it in a
/// plan it passes on (a cluster's scheduler): it names its key, and
/// refuses to run.
pub(crate) fn sealed_pseudonym_udf(key: KeyId) -> ScalarUDF {
    ScalarUDF::new_from_impl(SealedPseudonym {
        key,
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
    })
}

/// The id of the key a pseudonym call hashes with, sealed or not.
pub(crate) fn pseudonym_key_id(func: &ScalarUDF) -> Option<KeyId> {
    if let Some(key) = pseudonym_key(func) {
        return Some(key.id.clone());
    }
    let any: &dyn std::any::Any = func.inner().as_ref();
    any.downcast_ref::<SealedPseudonym>().map(|p| p.key.clone())
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SealedPseudonym {
    key: KeyId,
    signature: Signature,
}

impl ScalarUDFImpl for SealedPseudonym {
    fn name(&self) -> &str {
        PSEUDONYM
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(datafusion::error::DataFusionError::Execution(format!(
            "pseudonyms under key {} {} version {} are made only where that key is; this process passes plans on",
            self.key.purpose.as_str(),
            self.key.project,
            self.key.version
        )))
    }
}

/// [`age_band_from_birth`]'s function as of `today`.
pub(crate) fn age_band_of_birth_as_of(today: chrono::NaiveDate) -> ScalarUDF {
    age_band_of_birth_udf(today)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;

    #[test]
    fn the_calendar_in_integers_agrees_with_chrono_on_every_day() {
        let from_days = |days: i32| Date32Type::to_naive_date_opt(days).unwrap();
        let limits = [
            Date32Type::from_naive_date(chrono::NaiveDate::MIN),
            Date32Type::from_naive_date(chrono::NaiveDate::MAX),
        ];
        // Five thousand years either side of 1970, every leap rule, and
        // the ends of the calendar chrono knows.
        for days in (-1_900_000..1_900_000)
            .chain(limits[0]..limits[0] + 800)
            .chain(limits[1] - 800..=limits[1])
        {
            let d = from_days(days);
            assert_eq!(
                civil_from_days(days),
                (d.year(), d.day() as i32),
                "day {days}: {d}"
            );
        }
        // Beyond them it still answers, without overflow.
        for days in [i32::MIN, i32::MIN + 1, i32::MAX - 1, i32::MAX] {
            let (_, day) = civil_from_days(days);
            assert!((1..=31).contains(&day), "day {days}");
        }
        let months = month_udf()
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(Arc::new(Date32Array::from(vec![
                    Some(Date32Type::from_naive_date(
                        chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap(),
                    )),
                    None,
                    Some(Date32Type::from_naive_date(
                        chrono::NaiveDate::from_ymd_opt(1969, 12, 31).unwrap(),
                    )),
                ])))],
                arg_fields: vec![Arc::new(datafusion::arrow::datatypes::Field::new(
                    "d",
                    DataType::Date32,
                    true,
                ))],
                number_rows: 3,
                return_field: Arc::new(datafusion::arrow::datatypes::Field::new(
                    "m",
                    DataType::Date32,
                    true,
                )),
                config_options: Arc::new(Default::default()),
            })
            .unwrap()
            .into_array(3)
            .unwrap();
        let months = months.as_primitive::<Date32Type>();
        assert_eq!(
            months.value_as_date(0),
            chrono::NaiveDate::from_ymd_opt(2024, 2, 1)
        );
        assert!(months.is_null(1));
        assert_eq!(
            months.value_as_date(2),
            chrono::NaiveDate::from_ymd_opt(1969, 12, 1)
        );
    }

    #[test]
    fn districts_and_bands() {
        assert_eq!(outward_code("ls1 4ap").as_deref(), Some("LS1"));
        assert_eq!(outward_code("SW1A1AA").as_deref(), Some("SW1A"));
        assert_eq!(outward_code("not a postcode"), None);
        assert_eq!(outward_code("12345"), None);
        assert_eq!(band(0), "0-9");
        assert_eq!(band(47), "40-49");
        assert_eq!(band(93), "90+");
    }
}
