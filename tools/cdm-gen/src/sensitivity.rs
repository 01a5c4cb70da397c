//! The sensitivity rules in `model/sensitivity.toml` and how a property is classified.
//!
//! Resolution, in order: a per-type override; an exact property name listed under a tag;
//! name patterns, where if patterns of several tags match, the more restrictive tag wins
//! (identifying, quasi_identifying, clinical, operational); otherwise the default.

use std::collections::BTreeMap;

use fdp_model::Sensitivity;
use serde::Deserialize;

use crate::GenError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagRulesFile {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideFile {
    object: String,
    property: String,
    sensitivity: Sensitivity,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    default: Sensitivity,
    #[serde(default)]
    identifying: TagRulesFile,
    #[serde(default)]
    quasi_identifying: TagRulesFile,
    #[serde(default)]
    clinical: TagRulesFile,
    #[serde(default)]
    operational: TagRulesFile,
    #[serde(default)]
    overrides: Vec<OverrideFile>,
}

/// Which rule decided a property's tag, so unused rules can be reported as stale.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    Override {
        object: String,
        property: String,
    },
    Name(String),
    /// Tag name and lower-cased pattern.
    Pattern(&'static str, String),
    Default,
}

impl Rule {
    pub fn kind(&self) -> &'static str {
        match self {
            Rule::Override { .. } => "override",
            Rule::Name(_) => "name",
            Rule::Pattern(..) => "pattern",
            Rule::Default => "default",
        }
    }
}

#[derive(Debug)]
pub struct SensitivityRules {
    default: Sensitivity,
    names: BTreeMap<String, Sensitivity>,
    /// Lower-cased patterns, most restrictive tag first.
    patterns: Vec<(Sensitivity, String)>,
    overrides: BTreeMap<(String, String), Sensitivity>,
}

impl SensitivityRules {
    pub fn parse(text: &str) -> Result<SensitivityRules, GenError> {
        let file: RulesFile = toml::from_str(text).map_err(GenError::Toml)?;
        let mut names = BTreeMap::new();
        let mut patterns = Vec::new();
        let per_tag = [
            (Sensitivity::Identifying, &file.identifying),
            (Sensitivity::QuasiIdentifying, &file.quasi_identifying),
            (Sensitivity::Clinical, &file.clinical),
            (Sensitivity::Operational, &file.operational),
        ];
        for (tag, rules) in per_tag {
            for name in &rules.names {
                if name.contains('*') {
                    return Err(GenError::Rules(format!(
                        "`{name}` under {tag}.names contains `*`; put it under patterns"
                    )));
                }
                if let Some(previous) = names.insert(name.clone(), tag) {
                    return Err(GenError::Rules(format!(
                        "property name `{name}` is listed under both {previous} and {tag}"
                    )));
                }
            }
            for pattern in &rules.patterns {
                if !pattern.contains('*') {
                    return Err(GenError::Rules(format!(
                        "pattern `{pattern}` under {tag} has no `*`; put it under names"
                    )));
                }
                patterns.push((tag, pattern.to_ascii_lowercase()));
            }
        }
        let mut overrides = BTreeMap::new();
        for o in file.overrides {
            if o.reason.trim().is_empty() {
                return Err(GenError::Rules(format!(
                    "override {}.{} needs a reason for the reviewer",
                    o.object, o.property
                )));
            }
            if overrides
                .insert((o.object.clone(), o.property.clone()), o.sensitivity)
                .is_some()
            {
                return Err(GenError::Rules(format!(
                    "override {}.{} is given twice",
                    o.object, o.property
                )));
            }
        }
        Ok(SensitivityRules {
            default: file.default,
            names,
            patterns,
            overrides,
        })
    }

    pub fn classify(&self, object: &str, property: &str) -> (Sensitivity, Rule) {
        if let Some(&tag) = self
            .overrides
            .get(&(object.to_string(), property.to_string()))
        {
            return (
                tag,
                Rule::Override {
                    object: object.to_string(),
                    property: property.to_string(),
                },
            );
        }
        if let Some(&tag) = self.names.get(property) {
            return (tag, Rule::Name(property.to_string()));
        }
        let lower = property.to_ascii_lowercase();
        // Patterns are stored most restrictive first, so the first match is the answer.
        if let Some((tag, pattern)) = self.patterns.iter().find(|(_, p)| glob_match(p, &lower)) {
            return (*tag, Rule::Pattern(tag.as_str(), pattern.clone()));
        }
        (self.default, Rule::Default)
    }

    /// Overrides must name real properties, or a typo would silently do nothing.
    pub fn unknown_overrides(&self, exists: impl Fn(&str, &str) -> bool) -> Vec<String> {
        self.overrides
            .keys()
            .filter(|(o, p)| !exists(o, p))
            .map(|(o, p)| format!("{o}.{p}"))
            .collect()
    }

    /// Rules that match no property name at all (whatever their precedence): likely
    /// stale after a CDM release renamed things.
    pub fn unused<'a>(&self, property_names: impl Iterator<Item = &'a str> + Clone) -> Vec<String> {
        let mut out = Vec::new();
        for name in self.names.keys() {
            if !property_names.clone().any(|p| p == name) {
                out.push(format!("name `{name}`"));
            }
        }
        for (tag, pattern) in &self.patterns {
            if !property_names
                .clone()
                .any(|p| glob_match(pattern, &p.to_ascii_lowercase()))
            {
                out.push(format!("{tag} pattern `{pattern}`"));
            }
        }
        out
    }
}

/// Case-folded glob where `*` matches any run of characters (including none).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*patientid", "babypatientid"));
        assert!(glob_match("*patientid", "patientid"));
        assert!(glob_match("nextofkin*", "nextofkinname"));
        assert!(glob_match("*icd*code*", "diagnosisicd10code"));
        assert!(!glob_match("*icd*code*", "diagnosisicd10"));
        assert!(glob_match("a*a", "aa"));
        assert!(!glob_match("a*a", "a"));
        assert!(!glob_match("*patientid", "patientidx"));
    }

    #[test]
    fn resolution_order() {
        let rules = SensitivityRules::parse(
            r#"
default = "operational"
[identifying]
names = ["nhsNumber"]
patterns = ["*patientId"]
[clinical]
patterns = ["diagnosis*", "*patient*"]
[operational]
names = ["diagnosisId"]
[[overrides]]
object = "Birth"
property = "babyPatientId"
sensitivity = "quasi_identifying"
reason = "test"
"#,
        )
        .unwrap();
        assert_eq!(rules.classify("X", "nhsNumber").0, Sensitivity::Identifying);
        // The more restrictive of two matching patterns wins.
        assert_eq!(rules.classify("X", "patientId").0, Sensitivity::Identifying);
        assert_eq!(
            rules.classify("X", "diagnosisCode").0,
            Sensitivity::Clinical
        );
        // An exact name beats any pattern.
        assert_eq!(
            rules.classify("X", "diagnosisId").0,
            Sensitivity::Operational
        );
        assert_eq!(
            rules.classify("Birth", "babyPatientId").0,
            Sensitivity::QuasiIdentifying
        );
        assert_eq!(
            rules.classify("X", "babyPatientId").0,
            Sensitivity::Identifying
        );
        assert_eq!(rules.classify("X", "ward").0, Sensitivity::Operational);
    }

    #[test]
    fn rejects_confusing_rules() {
        assert!(SensitivityRules::parse(
            "default = \"operational\"\n[identifying]\nnames = [\"a\"]\n[clinical]\nnames = [\"a\"]\n"
        )
        .is_err());
        assert!(SensitivityRules::parse(
            "default = \"operational\"\n[identifying]\nnames = [\"a*\"]\n"
        )
        .is_err());
        assert!(SensitivityRules::parse(
            "default = \"operational\"\n[identifying]\npatterns = [\"a\"]\n"
        )
        .is_err());
        assert!(SensitivityRules::parse("default = \"secret\"\n").is_err());
    }
}
