//! Governed sessions: the policy compiled into the query plan.
//!
//! A session is opened for a principal, a declared purpose and (for
//! pseudonymised purposes) a project. Every table the policy grants is put
//! into the session as a view over the stored table: a filter for the rows
//! (organisation, sites, wards, restricted-view groups, the national data
//! opt-out) and a projection that shows, masks, pseudonymises, generalises or
//! leaves out each column. A user's SQL is planned over those views, so
//! DataFusion pushes the policy's filters into the scan like any other, and
//! no query can reach a stored column the projection left out. The opt-out
//! and restricted-view rules are applied per stored file where the store
//! allows it (see `masks`), as a filter otherwise. Every query and every
//! refusal is written to the audit log.
//!
//! Here: [`Governance`] (the policy, keys, opt-out and audit of one
//! instance), the request a session is opened for, declared purposes and
//! the IG lead's reviewed changes. By concern:
//! - `compile`: opening a session, the grant compiled into each table's view;
//! - `query`: [`GovernedSession`] and what its queries answer;
//! - `records`: whole records read or changed under direct care;
//! - `product_view`: the rules for products that hold their own records;
//! - `oversight`: re-identification, audit review, the opt-out's reach.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{MemorySchemaProvider, Session, TableProvider};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::SessionStateBuilder;
use datafusion::functions_nested::expr_fn::{array_has_any, cardinality, make_array};
use datafusion::logical_expr::{LogicalPlan, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{col, lit, when, Expr, SessionConfig, SessionContext};
use fdp_model::{Model, Sensitivity};

use crate::access::{AsOf, SourceTable, TableAccess, TableSource};
use crate::audit::{AuditEntry, AuditError, AuditFilter, AuditLog};
use crate::behind::{self, PatientKeys};
use crate::disclosure::{self, DisclosureReport};
use crate::keystore::{Keystore, KeystoreError, PseudonymKey};
use crate::masks::MaskCache;
use crate::optout::{OptOut, OptOutError};
use crate::policy::{Action, Objects, Policy, Refusal};
use crate::purpose::Purpose;
use crate::Principal;

mod compile;
pub(crate) use compile::patient_columns;
mod oversight;
mod product_view;
mod query;
mod records;

pub use oversight::{OptOutExclusion, Reidentified};
pub use product_view::{ProductView, RowFacts};
pub(crate) use query::column_text;
pub use query::{GovernedSession, Held, QueryResult, TableVersions, TextTable};
pub use records::{RecordChange, RecordRead};

// What the concerns below share.
use compile::{new_context, register_raw};
use oversight::person_ids_of;
use query::GovernedTable;

/// Why a governed session or query did not run.
#[derive(Debug, thiserror::Error)]
pub enum GovernError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    #[error(transparent)]
    OptOut(#[from] OptOutError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("reading tables: {0}")]
    Source(String),
    #[error(transparent)]
    Query(#[from] DataFusionError),
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error(transparent)]
    Project(#[from] crate::projects::ProjectError),
    /// A reviewed change that was allowed but could not be made.
    #[error("{0}")]
    Change(String),
}

/// What a session is opened for.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    pub principal: Principal,
    pub purpose: Purpose,
    /// The role the session acts in, when the principal holds several
    /// granted the purpose.
    pub role: Option<String>,
    /// The approved project, which picks the pseudonymisation key.
    pub project: Option<String>,
    /// Why, for purposes the policy marks sensitive.
    pub justification: Option<String>,
    pub as_of: AsOf,
    /// How the request came: `sql` (the command line), `http`, `pgwire`,
    /// `export`, `ui`.
    pub channel: String,
}

impl SessionRequest {
    /// Whether an answer leaves the instance: everything but the command
    /// line on the instance's own machine and the instance's pages, which
    /// show rows on screen and offer no download. Under planning and research,
    /// what leaves is never row-level; inside, an analyst may look at
    /// pseudonymised rows, as in a trusted research environment.
    pub fn leaves_instance(&self) -> bool {
        !matches!(self.channel.as_str(), "sql" | "ui")
    }

    pub fn new(principal: Principal, purpose: Purpose, channel: &str) -> SessionRequest {
        SessionRequest {
            principal,
            purpose,
            role: None,
            project: None,
            justification: None,
            as_of: AsOf::Latest,
            channel: channel.to_string(),
        }
    }
}

/// A declared purpose lasts a shift.
const DECLARATION_LASTS: std::time::Duration = std::time::Duration::from_secs(12 * 3600);
const MAX_DECLARATIONS: usize = 10_000;

/// A purpose declared for a stretch of work: the id to present it by and the
/// role it acts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub id: String,
    pub role: String,
}

/// The governance of one instance: its policy, keys, opt-out list and audit.
pub struct Governance {
    declarations: std::sync::Mutex<BTreeMap<String, (SessionRequest, std::time::Instant)>>,
    policy: Arc<Policy>,
    keystore: Keystore,
    projects: crate::projects::Projects,
    opt_out: OptOut,
    audit: Arc<AuditLog>,
    organisation: String,
    model: &'static Model,
    masks: Arc<MaskCache>,
    executor: Arc<dyn crate::execution::PlanExecutor>,
}

impl Governance {
    /// `organisation` is the ODS code of the organisation running the instance.
    pub fn open(
        data_dir: &Path,
        policy: Policy,
        organisation: &str,
        opt_out_file: Option<&Path>,
    ) -> Result<Governance, GovernError> {
        let keystore = Keystore::open(data_dir);
        let audit = Arc::new(AuditLog::open(data_dir, &keystore)?);
        let default_opt_out = data_dir.join("opt-out.txt");
        Ok(Governance {
            policy: Arc::new(policy),
            keystore,
            projects: crate::projects::Projects::open(data_dir),
            opt_out: OptOut::new(opt_out_file.unwrap_or(&default_opt_out)),
            audit,
            organisation: organisation.to_string(),
            model: Model::canonical(),
            masks: Default::default(),
            declarations: Default::default(),
            executor: Arc::new(crate::execution::InProcess),
        })
    }

    /// Run sessions' physical plans with `executor` rather than in this
    /// process.
    pub fn with_executor(
        mut self,
        executor: Arc<dyn crate::execution::PlanExecutor>,
    ) -> Governance {
        self.executor = executor;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    pub fn opt_out(&self) -> &OptOut {
        &self.opt_out
    }

    pub fn keystore(&self) -> &Keystore {
        &self.keystore
    }

    /// The approved projects (read only; changes go through
    /// [`Governance::manage_project`]).
    pub fn projects(&self) -> &crate::projects::Projects {
        &self.projects
    }

    /// Change the registry of approved projects as `by`, who must review
    /// the audit (the information-governance lead): `what` says what for
    /// the audit, `change` makes the change and returns the project as it
    /// now stands. Audited, refusals and failures too.
    pub fn manage_project(
        &self,
        by: &Principal,
        channel: &str,
        what: String,
        change: impl FnOnce(
            &crate::projects::Projects,
        ) -> Result<crate::projects::Project, crate::projects::ProjectError>,
    ) -> Result<crate::projects::Project, GovernError> {
        let mut entry = self.review_entry(by, "project", channel, what);
        if !self.policy.reviews_audit(by) {
            return self.refuse(entry, Refusal::NotAuditReviewer(by.name.clone()));
        }
        match change(&self.projects) {
            Ok(p) => {
                entry.project = Some(p.name.clone());
                entry.purpose = Some(p.purpose.as_str().into());
                entry.decisions = vec![format!(
                    "principals: {}{}",
                    p.principals_listed(),
                    if p.closed_at.is_some() {
                        "; closed"
                    } else {
                        ""
                    }
                )];
                entry.decisions.extend(p.extracts.values().map(|x| {
                    format!(
                        "extract {} approved by {}: files {} (spec {})",
                        x.name,
                        x.approved_by.as_deref().unwrap_or("?"),
                        x.file_names(),
                        x.digest()
                    )
                }));
                entry.outcome = "ok".into();
                self.audit.append(entry)?;
                Ok(p)
            }
            Err(e) => self.refuse(entry, e),
        }
    }

    /// Make a change to what the instance serves (a product installed or
    /// rolled back) as `by`, who must review the audit (the
    /// information-governance lead). `change` makes it and says, for the
    /// audit, what was decided. Audited as `kind`, refused and failed too.
    pub fn reviewed_change<T, E: std::fmt::Display>(
        &self,
        by: &Principal,
        kind: &str,
        channel: &str,
        what: String,
        change: impl FnOnce() -> Result<(T, Vec<String>), E>,
    ) -> Result<T, GovernError> {
        let mut entry = self.review_entry(by, kind, channel, what);
        if !self.policy.reviews_audit(by) {
            return self.refuse(entry, Refusal::NotAuditReviewer(by.name.clone()));
        }
        match change() {
            Ok((done, decisions)) => {
                entry.decisions = decisions;
                entry.outcome = "ok".into();
                self.audit.append(entry)?;
                Ok(done)
            }
            Err(e) => {
                entry.outcome = format!("failed: {e}");
                self.audit.append(entry)?;
                Err(GovernError::Change(e.to_string()))
            }
        }
    }

    pub fn organisation(&self) -> &str {
        &self.organisation
    }

    /// Whether `req`'s principal acts for this instance's own organisation.
    fn acts_for_us(&self, req: &SessionRequest) -> bool {
        req.principal.organisation.as_deref() == Some(self.organisation.as_str())
    }

    /// Open a session for a principal's declared purpose. A refusal is
    /// audited before it is returned.
    pub async fn session<S: TableSource>(
        &self,
        source: &S,
        req: SessionRequest,
    ) -> Result<GovernedSession, GovernError> {
        match self.compile(source, &req).await {
            Ok(s) => Ok(s),
            Err(e) => self.refuse(AuditEntry::for_request(&req, "open session"), e),
        }
    }

    /// The instance's own bookkeeping (what a feed wrote, which runs were
    /// refused): the raw tables only, under `operations`, audited as the
    /// named component of the instance.
    pub async fn instance_session<S: TableSource>(
        &self,
        source: &S,
        component: &str,
    ) -> Result<GovernedSession, GovernError> {
        let ctx = new_context();
        let access = TableAccess::new();
        let raw = source
            .raw_tables(&access, &ctx, AsOf::Latest)
            .await
            .map_err(|e| GovernError::Source(e.to_string()))?;
        let versions = register_raw(&ctx, raw)?;
        Ok(self.own_session(
            component,
            ctx,
            versions,
            BTreeSet::new(),
            "raw tables only, for the instance's own bookkeeping".into(),
            false,
        ))
    }

    /// The request the instance's own processing is made under: its
    /// component as the principal, acting for this organisation, under
    /// `operations`, in the role `instance`.
    fn own_request(&self, component: &str) -> SessionRequest {
        let principal = Principal {
            name: format!("instance:{component}"),
            roles: Vec::new(),
            organisation: Some(self.organisation.clone()),
        };
        let mut req = SessionRequest::new(principal, Purpose::Operations, "instance");
        req.role = Some("instance".into());
        req
    }

    /// A session of the instance's own processing over the tables already
    /// registered in `ctx`: no policy shapes them, so nothing is filtered,
    /// masked or put under disclosure control.
    fn own_session(
        &self,
        component: &str,
        ctx: datafusion::prelude::SessionContext,
        versions: TableVersions,
        objects: BTreeSet<String>,
        decision: String,
        audit_each_query: bool,
    ) -> GovernedSession {
        GovernedSession {
            ctx,
            req: self.own_request(component),
            role: "instance".into(),
            decisions: vec![decision],
            objects_granted: objects.clone(),
            versions,
            disclosure: None,
            patient_keys: PatientKeys::new(),
            row_sources: HashMap::new(),
            masks: self.masks.clone(),
            executor: self.executor.clone(),
            audit: self.audit.clone(),
            policy_digest: self.policy.digest.clone(),
            audit_each_query,
            extracts: BTreeMap::new(),
            covered: crate::policy::Objects::Only(objects),
        }
    }

    /// A derivation the instance makes for itself from canonical tables (a
    /// patient's area and deprivation decile from their postcode): the
    /// tables named in `objects`, whole and unmasked, under `operations`,
    /// audited as the named component when it opens and on every query. What
    /// it derives is written as a canonical table, which every principal
    /// then reads through the policy like any other; that is what lets a
    /// planning analyst have a patient's deprivation decile while the
    /// postcode it came from stays generalised.
    pub async fn derivation_session<S: TableSource>(
        &self,
        source: &S,
        component: &str,
        objects: &[&str],
    ) -> Result<GovernedSession, GovernError> {
        let ctx = new_context();
        let access = TableAccess::new();
        let tables = source
            .canonical_tables(&access, &ctx, AsOf::Latest)
            .await
            .map_err(|e| GovernError::Source(e.to_string()))?;
        let mut versions = TableVersions::new();
        let mut covered = BTreeSet::new();
        for name in objects {
            let object = self.model.object_type_by_table(name).ok_or_else(|| {
                GovernError::Source(format!("{name} is not a canonical table of the model"))
            })?;
            covered.insert(object.table.clone());
            match tables.iter().find(|t| t.name == object.table) {
                Some(t) => {
                    ctx.register_table(t.name.as_str(), t.provider.clone())?;
                    versions.insert(t.name.clone(), t.versions.clone());
                }
                // Not written yet: no rows, so the derivation still runs.
                None => {
                    let empty = datafusion::datasource::MemTable::try_new(
                        Arc::new(object.arrow_schema()),
                        vec![Vec::new()],
                    )?;
                    ctx.register_table(object.table.as_str(), Arc::new(empty))?;
                }
            }
        }
        let mut entry = AuditEntry::for_request(
            &self.own_request(component),
            &format!("open derivation {component}"),
        );
        entry.objects = covered.iter().cloned().collect();
        entry.policy = Some(self.policy.digest.clone());
        entry.outcome = "opened".into();
        self.audit.append(entry)?;
        let decision = format!(
            "the instance's own derivation {component}: {} whole",
            covered.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        Ok(self.own_session(component, ctx, versions, covered, decision, true))
    }

    /// Audit `why` as the outcome of `entry` and answer it as the error.
    fn refuse<T, E>(&self, mut entry: AuditEntry, why: E) -> Result<T, GovernError>
    where
        E: std::fmt::Display + Into<GovernError>,
    {
        entry.outcome = format!("refused: {why}");
        self.audit.append(entry)?;
        Err(why.into())
    }

    /// Declare a purpose for a stretch of work before anything is read (the
    /// UI's checkpoint after sign-in): checked against the policy like a
    /// session, and audited with its justification. The declaration is kept
    /// for a shift under an unguessable id; [`Governance::declared`] gives
    /// it back to the same principal only.
    pub fn declare(&self, req: &SessionRequest) -> Result<Declared, GovernError> {
        let mut entry = AuditEntry::for_request(req, "declare purpose");
        entry.kind = "purpose".into();
        entry.policy = Some(self.policy.digest.clone());
        match self.check(req) {
            Ok((role, _)) => {
                let role = role.to_string();
                entry.role = Some(role.clone());
                entry.outcome = "declared".into();
                self.audit.append(entry)?;
                let mut kept = req.clone();
                kept.role = Some(role.clone());
                let id = crate::tokens::random_hex(24);
                let mut map = self.declarations.lock().expect("declarations lock");
                map.retain(|_, (_, at)| at.elapsed() < DECLARATION_LASTS);
                if map.len() >= MAX_DECLARATIONS {
                    if let Some(oldest) = map
                        .iter()
                        .min_by_key(|(_, (_, at))| *at)
                        .map(|(k, _)| k.clone())
                    {
                        map.remove(&oldest);
                    }
                }
                map.insert(id.clone(), (kept, std::time::Instant::now()));
                Ok(Declared { id, role })
            }
            Err(e) => self.refuse(entry, e),
        }
    }

    /// The purpose `principal` declared under `id`, as a request on
    /// `channel`; none if it was never declared, has lapsed, or was declared
    /// by someone else.
    pub fn declared(
        &self,
        id: &str,
        principal: &Principal,
        channel: &str,
    ) -> Option<SessionRequest> {
        let map = self.declarations.lock().expect("declarations lock");
        let (req, at) = map.get(id)?;
        if at.elapsed() >= DECLARATION_LASTS || req.principal.name != principal.name {
            return None;
        }
        let mut req = req.clone();
        // The principal as it is now: roles may have changed since.
        req.principal = principal.clone();
        req.channel = channel.to_string();
        Some(req)
    }

    /// The role and grant `req` acts under, or why it may not.
    fn check(&self, req: &SessionRequest) -> Result<(&str, &crate::policy::Grant), Refusal> {
        self.checked(req).map(|(role, grant, _)| (role, grant))
    }

    /// [`Self::check`], with the approved project `req` names, if any (read
    /// once: a session keeps the project's extracts).
    fn checked(
        &self,
        req: &SessionRequest,
    ) -> Result<
        (
            &str,
            &crate::policy::Grant,
            Option<crate::projects::Project>,
        ),
        Refusal,
    > {
        let (role, grant) =
            self.policy
                .grant_for(&req.principal, req.purpose, req.role.as_deref())?;
        if self.policy.sensitive.contains(&req.purpose)
            && req
                .justification
                .as_deref()
                .is_none_or(|j| j.trim().is_empty())
        {
            return Err(Refusal::JustificationRequired(req.purpose));
        }
        if req.purpose == Purpose::Research
            && req.project.as_deref().is_none_or(|p| p.trim().is_empty())
        {
            return Err(Refusal::ProjectRequired);
        }
        // A project picks a pseudonymisation key: only one the IG lead
        // registered, for this purpose, with this principal on it.
        let project = match req.project.as_deref().filter(|p| !p.trim().is_empty()) {
            Some(project) => Some(
                self.projects
                    .check(project, req.purpose, &req.principal.name)
                    .map_err(|e| Refusal::ProjectRefused(e.to_string()))?,
            ),
            None => None,
        };
        Ok((role, grant, project))
    }

    fn review_entry(
        &self,
        principal: &Principal,
        kind: &str,
        channel: &str,
        what: String,
    ) -> AuditEntry {
        AuditEntry {
            kind: kind.into(),
            principal: principal.name.clone(),
            organisation: principal.organisation.clone(),
            channel: channel.into(),
            what,
            policy: Some(self.policy.digest.clone()),
            ..AuditEntry::default()
        }
    }
}

/// Why a change is refused under planning or research.
const CHANGED_FOR_CARE_ONLY: &str =
    "records are changed for direct care or operations, never for a secondary purpose";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Read,
    Raw,
    Change,
}
