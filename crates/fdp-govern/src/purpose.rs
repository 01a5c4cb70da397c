//! Why someone is looking: the four purposes every session declares.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The purpose a session or request declares. Roles are granted purposes in
/// the instance's policy; what a session sees depends on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// Caring for the patient in front of you.
    DirectCare,
    /// Running services: beds, theatres, lists, staffing.
    Operations,
    /// Planning services for a population; a secondary use.
    Planning,
    /// Approved research; a secondary use.
    Research,
}

impl Purpose {
    pub const ALL: [Purpose; 4] = [
        Purpose::DirectCare,
        Purpose::Operations,
        Purpose::Planning,
        Purpose::Research,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::DirectCare => "direct-care",
            Purpose::Operations => "operations",
            Purpose::Planning => "planning",
            Purpose::Research => "research",
        }
    }

    /// Secondary uses: the national data opt-out applies, and what leaves
    /// the instance passes disclosure control. Not configurable: it is the
    /// national rule, not a local choice.
    pub fn is_secondary(self) -> bool {
        matches!(self, Purpose::Planning | Purpose::Research)
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown purpose `{0}`; declare one of direct-care, operations, planning, research")]
pub struct UnknownPurpose(pub String);

impl FromStr for Purpose {
    type Err = UnknownPurpose;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Purpose::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPurpose(s.to_string()))
    }
}
