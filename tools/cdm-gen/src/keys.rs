//! Primary keys: from the spec where it says so, else by `<type>Id` naming, else from
//! the reviewed list in `model/primary_keys.toml`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::naming::lower_first;
use crate::spec::SpecType;
use crate::GenError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    property: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    primary_keys: BTreeMap<String, KeyEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeySource {
    /// A property description says it is the primary key.
    Declared,
    /// No declaration, but the type has a `<type>Id` property.
    Named,
    /// Chosen by a person, with the reason recorded in `primary_keys.toml`.
    Listed,
}

pub struct KeyList(BTreeMap<String, String>);

impl KeyList {
    pub fn parse(text: &str) -> Result<KeyList, GenError> {
        let file: KeysFile = toml::from_str(text).map_err(GenError::Toml)?;
        let mut out = BTreeMap::new();
        for (object, entry) in file.primary_keys {
            if entry.reason.trim().is_empty() {
                return Err(GenError::Keys(format!("{object}: a reason is required")));
            }
            out.insert(object, entry.property);
        }
        Ok(KeyList(out))
    }

    pub fn objects(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Resolves the key of one type, refusing list entries that the spec has made
    /// redundant so the list cannot drift from the spec unnoticed.
    pub fn resolve(&self, t: &SpecType) -> Result<(String, KeySource), GenError> {
        let declared: Vec<&str> = t
            .properties
            .iter()
            .filter(|p| declares_primary_key(&p.description))
            .map(|p| p.name.as_str())
            .collect();
        let listed = self.0.get(&t.name);
        let has = |name: &str| t.properties.iter().any(|p| p.name == name);
        match (declared.as_slice(), listed) {
            ([one], None) => Ok((one.to_string(), KeySource::Declared)),
            ([one], Some(l)) => Err(GenError::Keys(format!(
                "{}: the spec declares `{one}` as primary key; remove the listed `{l}`",
                t.name
            ))),
            ([_, _, ..], _) => Err(GenError::Keys(format!(
                "{}: several properties claim to be the primary key: {declared:?}",
                t.name
            ))),
            ([], Some(l)) if has(l) => Ok((l.clone(), KeySource::Listed)),
            ([], Some(l)) => Err(GenError::Keys(format!(
                "{}: listed primary key `{l}` is not a property",
                t.name
            ))),
            ([], None) => {
                let named = format!("{}Id", lower_first(&t.name));
                t.properties
                    .iter()
                    .find(|p| p.name.eq_ignore_ascii_case(&named))
                    .map(|p| (p.name.clone(), KeySource::Named))
                    .ok_or_else(|| {
                        GenError::Keys(format!(
                            "{}: no primary key in the spec and none listed in primary_keys.toml",
                            t.name
                        ))
                    })
            }
        }
    }
}

/// The spec's wordings: "Primary key.", "Primary Key: ...", "The primary key for the
/// cancer pathway.", "Primary key - ID ...", and once "id of the histology and pk of the table."
pub fn declares_primary_key(description: &str) -> bool {
    let d = description.trim().to_ascii_lowercase();
    d.starts_with("primary key")
        || d.starts_with("the primary key")
        || d.contains("pk of the table")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations() {
        assert!(declares_primary_key("Primary key."));
        assert!(declares_primary_key("Primary Key: Site ID https://..."));
        assert!(declares_primary_key("The primary key for the MDT meeting."));
        assert!(declares_primary_key(
            "id of the histology and pk of the table."
        ));
        assert!(!declares_primary_key("A foreign key to the ward."));
        assert!(!declares_primary_key("Secondary key, not the primary key."));
    }
}
