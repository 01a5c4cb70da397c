//! What products' own tests share: the demo policy's governance over a
//! temporary directory and tables in memory, and a view asked as one of
//! the policy's roles, through the platform's one path.

use std::collections::BTreeMap;

use fdp_govern::memory::MemoryTables;
use fdp_govern::{Governance, Policy, Principal, Purpose, SessionRequest};

use crate::platform::{run_view, Output, ProductError, Registry};

/// An instance of organisation RXX under the demo policy, holding `tables`.
pub(crate) struct DemoInstance {
    _dir: tempfile::TempDir,
    governance: Governance,
    tables: MemoryTables,
}

impl DemoInstance {
    pub(crate) fn new(tables: MemoryTables) -> DemoInstance {
        let dir = tempfile::tempdir().unwrap();
        let governance = Governance::open(
            dir.path(),
            Policy::demo(fdp_model::Model::canonical()),
            "RXX",
            None,
        )
        .unwrap();
        DemoInstance {
            _dir: dir,
            governance,
            tables,
        }
    }

    /// `product`'s `view` with `params`, asked by someone in `role` for
    /// `purpose` over `channel` (`http` leaves the instance, `ui` does not).
    pub(crate) async fn view(
        &self,
        product: &str,
        role: &str,
        purpose: Purpose,
        channel: &str,
        view: &str,
        params: &[(&str, &str)],
    ) -> Result<Output, ProductError> {
        let principal = Principal {
            name: format!("a {role}"),
            roles: vec![role.to_string()],
            organisation: Some("RXX".into()),
        };
        let session = self
            .governance
            .session(
                &self.tables,
                SessionRequest::new(principal, purpose, channel),
            )
            .await?;
        let given: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        run_view(&Registry::builtin(), product, view, &session, &given).await
    }
}
