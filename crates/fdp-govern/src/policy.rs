//! The instance's access policy: a TOML file the information-governance lead
//! reads, reviews and signs off, validated when the instance starts.
//!
//! Per role and purpose it says which object types may be read (`objects`)
//! and changed (`change`, for direct care and operations only), which rows
//! (the instance's own organisation, sites, wards, restricted-view groups)
//! and, per sensitivity tag of the canonical model (with per-column
//! exceptions), whether a value is shown, masked, pseudonymised, generalised
//! or removed. Anything it does not grant is refused: a tag it does not
//! mention is removed, a purpose it does not grant cannot be declared.
//!
//! ```toml
//! sensitive_purposes = ["research"]
//!
//! [disclosure]
//! suppress_below = 8   # counts 1..7 are suppressed
//! round_to = 5
//!
//! [role.analyst]
//! description = "Business intelligence analysts"
//!
//! [role.analyst.planning]
//! objects = ["admission", "ward_stay", "patient"]
//! identifying = "remove"
//! quasi_identifying = "show"
//! clinical = "show"
//! operational = "show"
//!
//! [role.analyst.planning.columns]
//! "patient.person_id" = "pseudonymise"
//! "*.patient_id" = "pseudonymise"
//! "patient.date_of_birth" = "year"
//! "patient.postcode" = "district"
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use fdp_model::{Model, PropertyType, Sensitivity};
use serde::Deserialize;

use crate::purpose::Purpose;
use crate::Principal;

/// The demo policy: the roles of a trust's instance, and what the policy
/// matrix test checks every path against.
pub const DEMO_POLICY: &str = include_str!("../policy/demo.toml");

/// What happens to one column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// As stored.
    Show,
    /// The column stays, its values do not: `[masked]` for text, NULL otherwise.
    Mask,
    /// A keyed HMAC pseudonym, with a key per purpose and project.
    Pseudonymise,
    /// The column is not there at all.
    Remove,
    /// A date reduced to its year.
    Year,
    /// A date reduced to the first day of its month. A date of birth so
    /// reduced still gives a person's exact age in whole years on the last
    /// day of any month (the end of a QOF year, 31 August for flu).
    Month,
    /// A date of birth (or an age) reduced to a ten-year band, `40-49`.
    AgeBand,
    /// A postcode reduced to its district (outward code, `LS1`).
    District,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Show => "show",
            Action::Mask => "mask",
            Action::Pseudonymise => "pseudonymise",
            Action::Remove => "remove",
            Action::Year => "year",
            Action::Month => "month",
            Action::AgeBand => "age_band",
            Action::District => "district",
        }
    }

    const ALL: [Action; 8] = [
        Action::Show,
        Action::Mask,
        Action::Pseudonymise,
        Action::Remove,
        Action::Year,
        Action::Month,
        Action::AgeBand,
        Action::District,
    ];

    /// Whether the action makes sense for a column of this type.
    fn fits(self, t: PropertyType) -> bool {
        match self {
            Action::Show | Action::Mask | Action::Remove => true,
            Action::Pseudonymise => t != PropertyType::StringList,
            Action::Year | Action::Month => {
                matches!(t, PropertyType::Date | PropertyType::Timestamp)
            }
            Action::AgeBand => matches!(
                t,
                PropertyType::Date | PropertyType::Integer | PropertyType::Long
            ),
            Action::District => t == PropertyType::String,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown action `{s}`; use one of show, mask, pseudonymise, remove, year, age_band, district"
                )
            })
    }
}

/// Which object types a grant covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Objects {
    All,
    Only(BTreeSet<String>),
}

impl Objects {
    pub fn covers(&self, table: &str) -> bool {
        match self {
            Objects::All => true,
            Objects::Only(set) => set.contains(table),
        }
    }
}

/// Which rows a grant covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rows {
    /// Only principals acting for the instance's own organisation see rows.
    pub own_organisation_only: bool,
    /// Rows of these sites only (tables with a `site_name` column).
    pub sites: Option<Vec<String>>,
    /// Rows of these wards only (tables with a `ward` column).
    pub wards: Option<Vec<String>>,
    /// Restricted-view groups (the CDM's `rvGroupIds`) this role may see; a
    /// row in a group not listed here is hidden, a row in none is not.
    pub rv_groups: Vec<String>,
}

/// What one role may do under one purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub objects: Objects,
    pub rows: Rows,
    /// The raw layer (records as received) as well as the canonical tables.
    pub raw: bool,
    /// The object types whose records the role may create, change or delete
    /// (FHIR writes, a bed's status, discharge readiness, capacity): none
    /// unless the policy says so, and never for a secondary purpose.
    pub change: Objects,
    tags: HashMap<Sensitivity, Action>,
    /// `(table or "*", column) -> action`, overriding the tag's action.
    columns: BTreeMap<(String, String), Action>,
}

impl Grant {
    /// What happens to `table.column`, whose sensitivity tag is `tag`.
    pub fn action(&self, table: &str, column: &str, tag: Sensitivity) -> Action {
        self.columns
            .get(&(table.to_string(), column.to_string()))
            .or_else(|| self.columns.get(&("*".to_string(), column.to_string())))
            .or_else(|| self.tags.get(&tag))
            .copied()
            .unwrap_or(Action::Remove)
    }
}

/// A role: what it is for and the purposes it is granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub description: String,
    /// The role reviews the audit and the opt-out's effect: the IG lead's
    /// audit page, and the counts of records the opt-out excluded, which an
    /// analyst must not see.
    pub reviews_audit: bool,
    pub grants: BTreeMap<Purpose, Grant>,
}

/// Statistical disclosure control settings for what leaves the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Disclosure {
    /// Counts from 1 up to this minus one are suppressed.
    pub suppress_below: u64,
    /// Other counts are rounded to the nearest multiple of this.
    pub round_to: u64,
}

impl Default for Disclosure {
    fn default() -> Self {
        Disclosure {
            suppress_below: 8,
            round_to: 5,
        }
    }
}

/// The validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Where it was read from, for messages and the audit.
    pub source: String,
    /// SHA-256 of the policy text, recorded with every audited access.
    pub digest: String,
    pub sensitive: BTreeSet<Purpose>,
    pub disclosure: Disclosure,
    pub roles: BTreeMap<String, Role>,
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{source_name}: {message}")]
    Syntax {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: {}", problems.join("\n  "))]
    Invalid {
        source_name: String,
        problems: Vec<String>,
    },
}

/// Why a session was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{principal} has no role that is granted the purpose `{purpose}`")]
    PurposeNotGranted { principal: String, purpose: Purpose },
    #[error("{principal} does not hold the role `{role}`")]
    RoleNotHeld { principal: String, role: String },
    #[error("the role `{role}` is not granted the purpose `{purpose}`")]
    RoleLacksPurpose { role: String, purpose: Purpose },
    #[error("{principal} holds several roles granted `{purpose}` ({}); say which one the session acts in", roles.join(", "))]
    AmbiguousRole {
        principal: String,
        purpose: Purpose,
        roles: Vec<String>,
    },
    #[error("the purpose `{0}` needs a justification before the first access")]
    JustificationRequired(Purpose),
    #[error("the purpose `research` needs the approved project it is for")]
    ProjectRequired,
    #[error("{0}")]
    ProjectRefused(String),
    #[error("whole records cannot be given to the role `{role}` for `{purpose}`: {reason}")]
    WholeRecordsRefused {
        role: String,
        purpose: Purpose,
        reason: String,
    },
    #[error("the role `{role}` may not change these records for `{purpose}`: {reason}")]
    ChangeRefused {
        role: String,
        purpose: Purpose,
        reason: String,
    },
    #[error("the role `{role}` may not use this for `{purpose}`: {reason}")]
    ProductRefused {
        role: String,
        purpose: Purpose,
        reason: String,
    },
    #[error("re-identification refused: {0}")]
    ReidentificationRefused(String),
    #[error("{0} holds no role that reviews the audit")]
    NotAuditReviewer(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    #[serde(default)]
    sensitive_purposes: Vec<String>,
    #[serde(default)]
    disclosure: Option<DisclosureDoc>,
    #[serde(default)]
    role: BTreeMap<String, RoleDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisclosureDoc {
    suppress_below: u64,
    round_to: u64,
}

#[derive(Deserialize)]
struct RoleDoc {
    #[serde(default)]
    description: String,
    #[serde(default)]
    reviews_audit: bool,
    #[serde(flatten)]
    purposes: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantDoc {
    objects: Vec<String>,
    #[serde(default)]
    organisation: Option<String>,
    #[serde(default)]
    sites: Option<Vec<String>>,
    #[serde(default)]
    wards: Option<Vec<String>>,
    #[serde(default)]
    rv_groups: Vec<String>,
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    change: Vec<String>,
    identifying: Option<String>,
    quasi_identifying: Option<String>,
    clinical: Option<String>,
    operational: Option<String>,
    #[serde(default)]
    columns: BTreeMap<String, String>,
}

impl Policy {
    /// Read and validate a policy file.
    pub fn load(path: &Path, model: &Model) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Policy::parse(&path.display().to_string(), &text, model)
    }

    /// The built-in demo policy.
    pub fn demo(model: &Model) -> Policy {
        Policy::parse("demo policy", DEMO_POLICY, model).expect("the demo policy is valid")
    }

    /// Validate policy text; every problem is reported, not just the first.
    pub fn parse(source_name: &str, text: &str, model: &Model) -> Result<Policy, PolicyError> {
        let doc: PolicyDoc = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        let mut problems = Vec::new();
        let mut sensitive = BTreeSet::new();
        for p in &doc.sensitive_purposes {
            match p.parse::<Purpose>() {
                Ok(p) => {
                    sensitive.insert(p);
                }
                Err(e) => problems.push(format!("sensitive_purposes: {e}")),
            }
        }
        let disclosure = match doc.disclosure {
            None => Disclosure::default(),
            Some(d) => {
                if d.suppress_below < 2 {
                    problems.push(
                        "disclosure.suppress_below must be at least 2 (counts of 1 are always suppressed)"
                            .into(),
                    );
                }
                if d.round_to == 0 {
                    problems.push("disclosure.round_to must be at least 1".into());
                }
                Disclosure {
                    suppress_below: d.suppress_below,
                    round_to: d.round_to,
                }
            }
        };
        let tables: BTreeMap<&str, &fdp_model::ObjectType> = model
            .object_types()
            .iter()
            .map(|o| (o.table.as_str(), o))
            .collect();
        let mut roles = BTreeMap::new();
        for (name, r) in doc.role {
            let mut grants = BTreeMap::new();
            for (key, value) in r.purposes {
                let at = format!("role `{name}`, purpose `{key}`");
                let purpose = match key.parse::<Purpose>() {
                    Ok(p) => p,
                    Err(e) => {
                        problems.push(format!("role `{name}`: `{key}`: {e}"));
                        continue;
                    }
                };
                let g: GrantDoc = match value.try_into() {
                    Ok(g) => g,
                    Err(e) => {
                        problems.push(format!("{at}: {e}"));
                        continue;
                    }
                };
                if g.raw && purpose.is_secondary() {
                    // Raw records are whole messages as received: names,
                    // numbers and addresses, outside masking, the opt-out
                    // and disclosure control. Never for secondary use.
                    problems.push(format!(
                        "{at}: raw = true: raw records are identifiable and bypass masking, the national data opt-out and disclosure control, so only direct-care or operations may read them; remove `raw` from this grant"
                    ));
                }
                if !g.change.is_empty() && purpose.is_secondary() {
                    // Planning and research read what care recorded; a
                    // record changed under them would no longer be care's.
                    problems.push(format!(
                        "{at}: change = {:?}: records are changed for direct care or operations, never for a secondary purpose; remove `change` from this grant",
                        g.change
                    ));
                }
                grants.insert(purpose, grant(&at, g, &tables, &mut problems));
            }
            roles.insert(
                name,
                Role {
                    description: r.description,
                    reviews_audit: r.reviews_audit,
                    grants,
                },
            );
        }
        if !problems.is_empty() {
            return Err(PolicyError::Invalid {
                source_name: source_name.to_string(),
                problems,
            });
        }
        use sha2::{Digest, Sha256};
        Ok(Policy {
            source: source_name.to_string(),
            digest: crate::hex(&Sha256::digest(text.as_bytes())),
            sensitive,
            disclosure,
            roles,
        })
    }

    /// The role a session of `principal` acts in for `purpose`: the one it
    /// names, or the only one of the principal's roles granted the purpose.
    pub fn grant_for<'p>(
        &'p self,
        principal: &Principal,
        purpose: Purpose,
        role: Option<&str>,
    ) -> Result<(&'p str, &'p Grant), Refusal> {
        if let Some(role) = role {
            if !principal.roles.iter().any(|r| r == role) {
                return Err(Refusal::RoleNotHeld {
                    principal: principal.name.clone(),
                    role: role.to_string(),
                });
            }
            return self
                .roles
                .get_key_value(role)
                .and_then(|(k, r)| r.grants.get(&purpose).map(|g| (k.as_str(), g)))
                .ok_or_else(|| Refusal::RoleLacksPurpose {
                    role: role.to_string(),
                    purpose,
                });
        }
        let granted: Vec<(&str, &Grant)> = principal
            .roles
            .iter()
            .filter_map(|r| {
                self.roles
                    .get_key_value(r)
                    .and_then(|(k, role)| role.grants.get(&purpose).map(|g| (k.as_str(), g)))
            })
            .collect();
        match granted.as_slice() {
            [] => Err(Refusal::PurposeNotGranted {
                principal: principal.name.clone(),
                purpose,
            }),
            [one] => Ok(*one),
            many => Err(Refusal::AmbiguousRole {
                principal: principal.name.clone(),
                purpose,
                roles: many.iter().map(|(r, _)| r.to_string()).collect(),
            }),
        }
    }

    /// Whether one of `principal`'s roles reviews the audit.
    pub fn reviews_audit(&self, principal: &Principal) -> bool {
        principal
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .any(|r| r.reviews_audit)
    }

    /// The purposes `principal`'s roles are granted.
    pub fn purposes_of(&self, principal: &Principal) -> BTreeSet<Purpose> {
        principal
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.grants.keys().copied())
            .collect()
    }
}

fn grant(
    at: &str,
    g: GrantDoc,
    tables: &BTreeMap<&str, &fdp_model::ObjectType>,
    problems: &mut Vec<String>,
) -> Grant {
    let objects = objects_of(at, "objects", g.objects, tables, problems);
    let change = objects_of(at, "change", g.change, tables, problems);
    let own_organisation_only = match g.organisation.as_deref() {
        None | Some("own") => true,
        Some("any") => false,
        Some(other) => {
            problems.push(format!(
                "{at}: organisation = \"{other}\": use \"own\" (principals acting for this instance's organisation) or \"any\""
            ));
            true
        }
    };
    let mut tags = HashMap::new();
    for (tag, value) in [
        (Sensitivity::Identifying, g.identifying),
        (Sensitivity::QuasiIdentifying, g.quasi_identifying),
        (Sensitivity::Clinical, g.clinical),
        (Sensitivity::Operational, g.operational),
    ] {
        let Some(v) = value else { continue };
        match v.parse::<Action>() {
            Ok(a @ (Action::Show | Action::Mask | Action::Pseudonymise | Action::Remove)) => {
                tags.insert(tag, a);
            }
            Ok(a) => problems.push(format!(
                "{at}: {tag} = \"{a}\": `{a}` fits particular columns only; give it under [columns]"
            )),
            Err(e) => problems.push(format!("{at}: {tag}: {e}")),
        }
    }
    let mut columns = BTreeMap::new();
    for (key, v) in g.columns {
        let action = match v.parse::<Action>() {
            Ok(a) => a,
            Err(e) => {
                problems.push(format!("{at}: columns.\"{key}\": {e}"));
                continue;
            }
        };
        let Some((table, column)) = key.split_once('.') else {
            problems.push(format!(
                "{at}: columns.\"{key}\": name a column as TABLE.COLUMN or *.COLUMN"
            ));
            continue;
        };
        let candidates: Vec<&fdp_model::ObjectType> = if table == "*" {
            tables.values().copied().collect()
        } else {
            match tables.get(table) {
                Some(o) => vec![*o],
                None => {
                    problems.push(format!(
                        "{at}: columns.\"{key}\": no object type has the table `{table}`"
                    ));
                    continue;
                }
            }
        };
        let types: Vec<PropertyType> = candidates
            .iter()
            .filter_map(|o| o.property_by_column(column).map(|p| p.property_type))
            .collect();
        if types.is_empty() {
            problems.push(format!(
                "{at}: columns.\"{key}\": no such column (see `fdp model {table}`)"
            ));
            continue;
        }
        if let Some(t) = types.iter().find(|t| !action.fits(**t)) {
            problems.push(format!(
                "{at}: columns.\"{key}\" = \"{action}\": a {t} column cannot be given `{action}`"
            ));
            continue;
        }
        columns.insert((table.to_string(), column.to_string()), action);
    }
    Grant {
        objects,
        rows: Rows {
            own_organisation_only,
            sites: g.sites,
            wards: g.wards,
            rv_groups: g.rv_groups,
        },
        raw: g.raw,
        change,
        tags,
        columns,
    }
}

/// A list of tables, or `*` for all of them, each checked against the model.
fn objects_of(
    at: &str,
    key: &str,
    names: Vec<String>,
    tables: &BTreeMap<&str, &fdp_model::ObjectType>,
    problems: &mut Vec<String>,
) -> Objects {
    if names.iter().any(|o| o == "*") {
        return Objects::All;
    }
    let mut set = BTreeSet::new();
    for o in names {
        if tables.contains_key(o.as_str()) {
            set.insert(o);
        } else {
            problems.push(format!(
                "{at}: {key}: no object type has the table `{o}` (see `fdp model`)"
            ));
        }
    }
    Objects::Only(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> &'static Model {
        Model::canonical()
    }

    #[test]
    fn the_demo_policy_is_valid() {
        let p = Policy::demo(model());
        assert!(p.roles.contains_key("clinician"));
        assert!(p.sensitive.contains(&Purpose::Research));
    }

    #[test]
    fn every_problem_is_named_with_where_it_is() {
        let text = r#"
sensitive_purposes = ["resarch"]
[role.analyst.planing]
objects = ["patient"]
[role.analyst.planning]
objects = ["patients"]
identifying = "hide"
quasi_identifying = "year"
[role.analyst.planning.columns]
"patient.nhs_numbr" = "pseudonymise"
"patient.sex" = "year"
"nhs_number" = "show"
"#;
        let e = Policy::parse("p.toml", text, model())
            .unwrap_err()
            .to_string();
        for needle in [
            "p.toml",
            "sensitive_purposes: unknown purpose `resarch`",
            "role `analyst`: `planing`: unknown purpose",
            "no object type has the table `patients`",
            "identifying: unknown action `hide`",
            "quasi_identifying = \"year\"",
            "columns.\"patient.nhs_numbr\": no such column",
            "a string column cannot be given `year`",
            "name a column as TABLE.COLUMN",
        ] {
            assert!(e.contains(needle), "{needle:?} not in:\n{e}");
        }
    }

    #[test]
    fn raw_records_are_never_granted_for_secondary_use() {
        for purpose in ["planning", "research"] {
            let text = format!("[role.analyst.{purpose}]\nobjects = [\"*\"]\nraw = true\n");
            let err = Policy::parse("p", &text, model()).unwrap_err().to_string();
            assert!(
                err.contains(&format!("role `analyst`, purpose `{purpose}`: raw = true"))
                    && err.contains("only direct-care or operations"),
                "{err}"
            );
        }
        for purpose in ["direct-care", "operations"] {
            let text = format!("[role.engineer.{purpose}]\nobjects = [\"*\"]\nraw = true\n");
            let p = Policy::parse("p", &text, model()).unwrap();
            assert!(p.roles["engineer"].grants.values().all(|g| g.raw));
        }
    }

    #[test]
    fn records_are_changed_only_where_granted_and_never_for_secondary_use() {
        for purpose in ["planning", "research"] {
            let text = format!("[role.analyst.{purpose}]\nobjects = [\"*\"]\nchange = [\"bed\"]\n");
            let err = Policy::parse("p", &text, model()).unwrap_err().to_string();
            assert!(
                err.contains(&format!(
                    "role `analyst`, purpose `{purpose}`: change = [\"bed\"]"
                )) && err.contains("never for a secondary purpose"),
                "{err}"
            );
        }
        let text = "[role.a.operations]\nobjects = [\"*\"]\nchange = [\"bed\", \"beds\"]\n";
        let err = Policy::parse("p", text, model()).unwrap_err().to_string();
        assert!(
            err.contains("change: no object type has the table `beds`"),
            "{err}"
        );
        let p = Policy::demo(model());
        let change = |role: &str, purpose: Purpose, table: &str| {
            p.roles[role]
                .grants
                .get(&purpose)
                .is_some_and(|g| g.change.covers(table))
        };
        assert!(change("clinician", Purpose::DirectCare, "patient"));
        assert!(change("bed-manager", Purpose::Operations, "bed"));
        assert!(!change("bed-manager", Purpose::Operations, "patient"));
        assert!(!change("analyst", Purpose::Operations, "bed"));
        assert!(!change(
            "integration-engineer",
            Purpose::Operations,
            "patient"
        ));
        assert!(!change(
            "information-governance-lead",
            Purpose::Operations,
            "bed"
        ));
    }

    #[test]
    fn a_column_rule_beats_its_tag_and_unlisted_tags_are_removed() {
        let text = r#"
[role.analyst.planning]
objects = ["patient"]
quasi_identifying = "show"
[role.analyst.planning.columns]
"*.patient_id" = "pseudonymise"
"patient.date_of_birth" = "year"
"#;
        let p = Policy::parse("p", text, model()).unwrap();
        let g = &p.roles["analyst"].grants[&Purpose::Planning];
        assert_eq!(
            g.action("patient", "date_of_birth", Sensitivity::Identifying),
            Action::Year
        );
        assert_eq!(
            g.action("admission", "patient_id", Sensitivity::Identifying),
            Action::Pseudonymise
        );
        assert_eq!(
            g.action("patient", "surname", Sensitivity::Identifying),
            Action::Remove
        );
        assert_eq!(
            g.action("patient", "sex", Sensitivity::QuasiIdentifying),
            Action::Show
        );
        assert_eq!(
            g.action("patient", "x", Sensitivity::Operational),
            Action::Remove
        );
    }

    #[test]
    fn a_session_acts_in_one_role() {
        let p = Policy::demo(model());
        let who = |roles: &[&str]| Principal {
            name: "a".into(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            organisation: Some("RXX".into()),
        };
        assert!(matches!(
            p.grant_for(&who(&["analyst"]), Purpose::DirectCare, None),
            Err(Refusal::PurposeNotGranted { .. })
        ));
        assert_eq!(
            p.grant_for(&who(&["analyst"]), Purpose::Planning, None)
                .unwrap()
                .0,
            "analyst"
        );
        assert!(matches!(
            p.grant_for(&who(&["analyst"]), Purpose::Planning, Some("clinician")),
            Err(Refusal::RoleNotHeld { .. })
        ));
    }
}
