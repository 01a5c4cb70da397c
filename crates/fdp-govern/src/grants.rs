//! Roles and organisation for principals the identity provider does not
//! describe: local API tokens (service accounts, the demo's admin), and
//! extra roles an instance grants to named people. Declared in the instance
//! configuration:
//!
//! ```toml
//! [principal.pas-feed]
//! roles = ["feed"]
//!
//! [principal."amelia.khan"]
//! roles = ["information-governance-lead"]
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Principal;

/// What the instance grants one principal.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[serde(default)]
    pub roles: Vec<String>,
    /// The organisation they act for; a local token's default is the
    /// instance's own organisation.
    pub organisation: Option<String>,
}

/// The instance's grants, by principal name.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    by_name: BTreeMap<String, Grant>,
    own_organisation: String,
}

impl Grants {
    pub fn new(by_name: BTreeMap<String, Grant>, own_organisation: &str) -> Grants {
        Grants {
            by_name,
            own_organisation: own_organisation.to_string(),
        }
    }

    /// A local token's principal: its roles and organisation all come from here.
    pub fn local(&self, mut p: Principal) -> Principal {
        let grant = self.by_name.get(&p.name).cloned().unwrap_or_default();
        p.roles = grant.roles;
        p.organisation = Some(
            grant
                .organisation
                .unwrap_or_else(|| self.own_organisation.clone()),
        );
        p
    }

    /// An identity provider's principal: its claims, plus roles granted here.
    /// The organisation stays the one the provider vouches for.
    pub fn federated(&self, mut p: Principal) -> Principal {
        if let Some(grant) = self.by_name.get(&p.name) {
            for r in &grant.roles {
                if !p.roles.contains(r) {
                    p.roles.push(r.clone());
                }
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_tokens_take_their_roles_here_and_federated_people_add_to_their_claims() {
        let grants: BTreeMap<String, Grant> = toml_like();
        let g = Grants::new(grants, "RXX");
        let feed = g.local(Principal {
            name: "pas-feed".into(),
            ..Principal::default()
        });
        assert_eq!(feed.roles, ["feed"]);
        assert_eq!(feed.organisation.as_deref(), Some("RXX"));
        let unknown = g.local(Principal {
            name: "someone".into(),
            roles: vec!["forged".into()],
            ..Principal::default()
        });
        assert!(unknown.roles.is_empty());
        let amelia = g.federated(Principal {
            name: "amelia.khan".into(),
            roles: vec!["clinician".into()],
            organisation: Some("RYY".into()),
        });
        assert_eq!(amelia.roles, ["clinician", "information-governance-lead"]);
        assert_eq!(amelia.organisation.as_deref(), Some("RYY"));
    }

    fn toml_like() -> BTreeMap<String, Grant> {
        let mut m = BTreeMap::new();
        m.insert(
            "pas-feed".to_string(),
            Grant {
                roles: vec!["feed".into()],
                organisation: None,
            },
        );
        m.insert(
            "amelia.khan".to_string(),
            Grant {
                roles: vec!["information-governance-lead".into()],
                organisation: None,
            },
        );
        m
    }
}
