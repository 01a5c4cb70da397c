//! The policy's functions in a physical plan sent to another process.
//!
//! A governed plan carries functions DataFusion does not know: keyed
//! pseudonyms, masks (year, month, age band, postcode district), and under
//! disclosure control the rule applied to counts and the aggregate of the
//! patients behind each row. None of them is registered by name anywhere,
//! so that no query can call them. When a plan is written for an executor
//! (see `docs/scale.md`), each is written as what it is and what it needs,
//! and rebuilt there:
//!
//! - a pseudonym by its key's id (purpose, project, version), never the
//!   key: the executor takes the key of that id from its own keystore, and
//!   refuses the plan where it has none;
//! - an age band with the day it bands as of, so every process bands alike;
//! - a disclosure function with its rule; the patients-behind aggregate
//!   with its cap.
//!
//! DataFusion's own functions are left to DataFusion, which finds them by
//! name. A function of the policy's that this module does not know is not
//! written, so the executor looks for it by name, finds nothing and
//! refuses the plan: a new mask cannot travel without its meaning.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use serde::{Deserialize, Serialize};

use crate::keystore::{KeyId, Keystore};
use crate::policy::Disclosure;

/// What is written for one function.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "function", rename_all = "snake_case")]
enum Written {
    Pseudonym {
        key: KeyId,
    },
    AgeBandOfBirth {
        today: NaiveDate,
    },
    Disclosed {
        suppress_below: u64,
        round_to: u64,
        float: bool,
    },
    PatientsBehind {
        cap: u64,
    },
    /// A mask that carries nothing of its own, rebuilt by name.
    Mask,
}

/// Writes the policy's functions into plans and rebuilds them from plans.
///
/// The instance writes ([`GovernedFunctions::writer`]); an executor rebuilds
/// with its own keystore ([`GovernedFunctions::with_keystore`]); a process
/// that only passes plans on rebuilds pseudonyms sealed
/// ([`GovernedFunctions::relay`]).
#[derive(Debug, Clone, Default)]
pub struct GovernedFunctions {
    keystore: Option<Keystore>,
    relay: bool,
}

fn refused(what: String) -> DataFusionError {
    DataFusionError::Plan(what)
}

impl GovernedFunctions {
    /// For the side that only writes plans: it rebuilds no pseudonym.
    pub fn writer() -> GovernedFunctions {
        GovernedFunctions::default()
    }

    /// For an executor: pseudonyms are rebuilt with `keystore`'s keys.
    pub fn with_keystore(keystore: Keystore) -> GovernedFunctions {
        GovernedFunctions {
            keystore: Some(keystore),
            relay: false,
        }
    }

    /// For a process that reads plans only to pass them on (a cluster's
    /// scheduler): a pseudonym is rebuilt as its key's id alone, written
    /// again as it came, and refuses to run there.
    pub fn relay() -> GovernedFunctions {
        GovernedFunctions {
            keystore: None,
            relay: true,
        }
    }

    /// Write `udf` into `buf` if it is one of the policy's; leave `buf`
    /// empty for DataFusion's own.
    pub fn encode_udf(&self, udf: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        let written = if let Some(key) = crate::udf::pseudonym_key_id(udf) {
            Written::Pseudonym { key }
        } else if let Some(today) = crate::udf::age_band_day(udf) {
            Written::AgeBandOfBirth { today }
        } else if let Some((rule, float)) = crate::behind::disclosed_rule(udf) {
            Written::Disclosed {
                suppress_below: rule.suppress_below,
                round_to: rule.round_to,
                float,
            }
        } else if crate::udf::plain(udf.name()).is_some() {
            Written::Mask
        } else {
            return Ok(());
        };
        serde_json::to_writer(buf, &written).map_err(|e| refused(e.to_string()))
    }

    /// Rebuild function `name` from what [`Self::encode_udf`] wrote.
    pub fn decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        let written: Written = serde_json::from_slice(buf).map_err(|e| {
            refused(format!(
                "function {name}: not a function of the policy ({e})"
            ))
        })?;
        let udf = match written {
            Written::Pseudonym { key } if self.relay => crate::udf::sealed_pseudonym_udf(key),
            Written::Pseudonym { key } => {
                let keystore = self.keystore.as_ref().ok_or_else(|| {
                    refused(format!(
                        "function {name}: this process has no keystore, so it cannot make pseudonyms"
                    ))
                })?;
                let found = keystore
                    .pseudonym_key_version(key.purpose, &key.project, key.version)
                    .map_err(|e| refused(e.to_string()))?
                    .ok_or_else(|| {
                        refused(format!(
                            "the plan pseudonymises with key {} {} version {}, which this process's keystore does not hold: give it the instance's keystore",
                            key.purpose.as_str(),
                            key.project,
                            key.version
                        ))
                    })?;
                crate::udf::pseudonym_udf(found)
            }
            Written::AgeBandOfBirth { today } => crate::udf::age_band_of_birth_as_of(today),
            Written::Disclosed {
                suppress_below,
                round_to,
                float,
            } => crate::behind::disclosed_udf(
                Disclosure {
                    suppress_below,
                    round_to,
                },
                float,
            ),
            Written::Mask => crate::udf::plain(name)
                .ok_or_else(|| refused(format!("function {name}: no such mask")))?,
            Written::PatientsBehind { .. } => {
                return Err(refused(format!(
                    "function {name}: an aggregate, not a function"
                )))
            }
        };
        if udf.name() != name {
            return Err(refused(format!(
                "function {name}: written as {}",
                udf.name()
            )));
        }
        Ok(Arc::new(udf))
    }

    /// Write aggregate `udaf` into `buf` if it is the policy's; leave `buf`
    /// empty for DataFusion's own.
    pub fn encode_udaf(&self, udaf: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        let Some(cap) = crate::behind::patients_behind_cap(udaf) else {
            return Ok(());
        };
        serde_json::to_writer(buf, &Written::PatientsBehind { cap })
            .map_err(|e| refused(e.to_string()))
    }

    /// Write window function `udwf` into `buf`: nothing, as the instance's
    /// own ([`crate::running_window`]) carry nothing but their names, and
    /// DataFusion's are found by name.
    pub fn encode_udwf(&self, _udwf: &WindowUDF, _buf: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }

    /// Rebuild window function `name`, one the instance plans that the
    /// engine does not know by name.
    pub fn decode_udwf(&self, name: &str, _buf: &[u8]) -> Result<Arc<WindowUDF>> {
        crate::running_window::running_udwf(name)
            .map(Arc::new)
            .ok_or_else(|| {
                refused(format!(
                    "window function {name}: not one the instance plans"
                ))
            })
    }

    /// Rebuild aggregate `name` from what [`Self::encode_udaf`] wrote.
    pub fn decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        match serde_json::from_slice(buf) {
            Ok(Written::PatientsBehind { cap }) => {
                let udaf = crate::behind::patients_behind(cap);
                if udaf.name() != name {
                    return Err(refused(format!(
                        "aggregate {name}: written as {}",
                        udaf.name()
                    )));
                }
                Ok(Arc::new(udaf))
            }
            _ => Err(refused(format!(
                "aggregate {name}: not an aggregate of the policy"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Purpose;

    #[test]
    fn a_pseudonym_travels_as_its_keys_id_and_is_rebuilt_only_where_the_key_is() {
        let instance = tempfile::tempdir().unwrap();
        let keys = Keystore::open(instance.path());
        let key = keys.pseudonym_key(Purpose::Planning, "default").unwrap();
        let udf = crate::udf::pseudonym_udf(key.clone());
        let mut buf = Vec::new();
        GovernedFunctions::writer()
            .encode_udf(&udf, &mut buf)
            .unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(
            text.contains("\"planning\"") && text.contains("\"version\":1"),
            "{text}"
        );

        // An executor given the instance's keystore makes the same pseudonyms.
        let executor = GovernedFunctions::with_keystore(Keystore::open(instance.path()));
        let rebuilt = executor.decode_udf("pseudonym", &buf).unwrap();
        let again = crate::udf::pseudonym_key(&rebuilt).unwrap();
        assert_eq!(again.pseudonym("9434765919"), key.pseudonym("9434765919"));

        // One without the key, or without a keystore, refuses the plan.
        let elsewhere = tempfile::tempdir().unwrap();
        let stranger = GovernedFunctions::with_keystore(Keystore::open(elsewhere.path()));
        let e = stranger.decode_udf("pseudonym", &buf).unwrap_err();
        assert!(e.to_string().contains("does not hold"), "{e}");
        assert!(GovernedFunctions::writer()
            .decode_udf("pseudonym", &buf)
            .is_err());
        // Nor can a plan relabel one function as another.
        assert!(executor.decode_udf("year_of", &buf).is_err());

        // A process passing the plan on holds it sealed: the same key's
        // id written again, and no pseudonym made there.
        let relay = GovernedFunctions::relay();
        let sealed = relay.decode_udf("pseudonym", &buf).unwrap();
        let mut again = Vec::new();
        relay.encode_udf(&sealed, &mut again).unwrap();
        assert_eq!(again, buf);
        let args = datafusion::logical_expr::ScalarFunctionArgs {
            args: vec![datafusion::logical_expr::ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Utf8(Some("9434765919".into())),
            )],
            arg_fields: vec![Arc::new(datafusion::arrow::datatypes::Field::new(
                "nhs_number",
                datafusion::arrow::datatypes::DataType::Utf8,
                true,
            ))],
            number_rows: 1,
            return_field: Arc::new(datafusion::arrow::datatypes::Field::new(
                "pseudonym",
                datafusion::arrow::datatypes::DataType::Utf8,
                true,
            )),
            config_options: Default::default(),
        };
        let e = sealed.invoke_with_args(args).unwrap_err();
        assert!(e.to_string().contains("passes plans on"), "{e}");
        // And the executor given the key rebuilds from what the relay wrote.
        assert!(executor.decode_udf("pseudonym", &again).is_ok());
    }

    #[test]
    fn masks_and_disclosure_travel_with_what_they_need_and_datafusions_own_by_name() {
        let f = GovernedFunctions::writer();
        let round_trip = |udf: ScalarUDF| {
            let mut buf = Vec::new();
            f.encode_udf(&udf, &mut buf).unwrap();
            assert!(!buf.is_empty(), "{} not written", udf.name());
            f.decode_udf(udf.name(), &buf).unwrap()
        };
        let day = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        let band = round_trip(crate::udf::age_band_of_birth_as_of(day));
        assert_eq!(crate::udf::age_band_day(&band), Some(day));
        let rule = Disclosure {
            suppress_below: 10,
            round_to: 5,
        };
        let d = round_trip(crate::behind::disclosed_udf(rule, true));
        assert_eq!(crate::behind::disclosed_rule(&d), Some((rule, true)));
        for name in [
            "pseudonym_input",
            "year_of",
            "month_of",
            "age_band",
            "postcode_district",
            crate::day_arithmetic::DATE_ADD_DAYS,
        ] {
            let m = round_trip(crate::udf::plain(name).unwrap());
            assert_eq!(m.name(), name);
        }
        let mut buf = Vec::new();
        f.encode_udaf(&crate::behind::patients_behind(12), &mut buf)
            .unwrap();
        let udaf = f.decode_udaf("patients_behind", &buf).unwrap();
        assert_eq!(crate::behind::patients_behind_cap(&udaf), Some(12));

        // The running extremes carry their names alone.
        for name in [
            crate::running_window::RUNNING_MAX,
            crate::running_window::RUNNING_MIN,
        ] {
            let udwf = crate::running_window::running_udwf(name).unwrap();
            let mut buf = Vec::new();
            f.encode_udwf(&udwf, &mut buf).unwrap();
            assert_eq!(f.decode_udwf(name, &buf).unwrap().name(), name);
        }
        assert!(f.decode_udwf("nth_secret", &[]).is_err());

        // DataFusion's own functions are not written: found by name.
        let upper = datafusion::functions::string::upper();
        let mut buf = Vec::new();
        f.encode_udf(&upper, &mut buf).unwrap();
        assert!(buf.is_empty());
        assert!(f
            .decode_udf("upper", b"{\"function\":\"nothing\"}")
            .is_err());
    }
}
