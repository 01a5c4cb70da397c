//! The validation rules, as data: `rules/rules.toml` names each rule, why
//! it exists and what its evidence is; its SQL file, over the canonical
//! model and `ptl`, returns the entries it flags with their evidence.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The rule files built in, by the name `rules.toml` gives them.
const FILES: &[(&str, &str)] = &[
    ("already-treated.sql", include_str!("rules/already-treated.sql")),
    ("duplicate-pathway.sql", include_str!("rules/duplicate-pathway.sql")),
    ("deceased.sql", include_str!("rules/deceased.sql")),
    ("not-validated.sql", include_str!("rules/not-validated.sql")),
    (
        "past-latest-clinically-appropriate-date.sql",
        include_str!("rules/past-latest-clinically-appropriate-date.sql"),
    ),
    ("no-contact.sql", include_str!("rules/no-contact.sql")),
    ("wrong-clock-status.sql", include_str!("rules/wrong-clock-status.sql")),
    ("not-consultant-led.sql", include_str!("rules/not-consultant-led.sql")),
];

/// One validation rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Lowercase letters, digits and `-`: how flags and proposals name it.
    pub name: String,
    pub title: String,
    /// The file of its SQL.
    pub sql: String,
    /// Why the rule exists.
    pub rationale: String,
    /// What its evidence shows.
    pub evidence: String,
    /// The removal reason a sign-off of its flag usually records, where
    /// the usual remedy is removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal_reason: Option<String>,
    #[serde(skip)]
    text: String,
}

impl Rule {
    /// Its SQL as it reads on `as_at` (a SQL date literal).
    pub fn query(&self, as_at: &str) -> String {
        self.text.replace("{as_at}", as_at)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rule: Vec<Rule>,
}

/// Parse a rules file whose SQL files are looked up by `file`.
fn parse(text: &str, file: impl Fn(&str) -> Option<String>) -> Result<Vec<Rule>, String> {
    let parsed: RulesFile = toml::from_str(text).map_err(|e| format!("rules.toml: {e}"))?;
    let mut rules = Vec::with_capacity(parsed.rule.len());
    for mut rule in parsed.rule {
        if !crate::declared::valid_id(&rule.name) {
            return Err(format!(
                "rules.toml: rule {:?}: a name is 1–64 lowercase letters, digits and -",
                rule.name
            ));
        }
        if rules.iter().any(|r: &Rule| r.name == rule.name) {
            return Err(format!("rules.toml: rule {} is given twice", rule.name));
        }
        rule.text = file(&rule.sql)
            .ok_or_else(|| format!("rules.toml: rule {}: no file {}", rule.name, rule.sql))?;
        rules.push(rule);
    }
    Ok(rules)
}

/// The rules built in, in the order `rules.toml` lists them.
pub fn built_in() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        parse(include_str!("rules/rules.toml"), |name| {
            FILES
                .iter()
                .find(|(f, _)| *f == name)
                .map(|(_, t)| t.to_string())
        })
        // Both are compiled in and checked by the tests below.
        .expect("the built-in rules parse")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_rules_parse_and_each_file_is_used_once() {
        let rules = built_in();
        assert_eq!(rules.len(), FILES.len());
        for (file, _) in FILES {
            assert_eq!(rules.iter().filter(|r| r.sql == *file).count(), 1, "{file}");
        }
        for r in rules {
            assert!(r.query("DATE '2026-11-30'").contains("eal_id"), "{}", r.name);
            assert!(!r.rationale.is_empty() && !r.evidence.is_empty(), "{}", r.name);
        }
    }

    #[test]
    fn a_rules_file_that_names_a_missing_file_or_repeats_a_rule_is_refused() {
        let text = "[[rule]]\nname = \"a\"\ntitle = \"A\"\nsql = \"a.sql\"\nrationale = \"r\"\nevidence = \"e\"\n";
        let none = |_: &str| None;
        assert!(parse(text, none).unwrap_err().contains("no file a.sql"));
        let some = |_: &str| Some("SELECT 1".to_string());
        let twice = format!("{text}{text}");
        assert!(parse(&twice, some).unwrap_err().contains("given twice"));
        let bad = text.replace("name = \"a\"", "name = \"a b\"");
        assert!(parse(&bad, some).unwrap_err().contains("letters, digits"));
    }
}
