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
        })
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
        let principal = Principal {
            name: format!("instance:{component}"),
            roles: Vec::new(),
            organisation: Some(self.organisation.clone()),
        };
        let mut req = SessionRequest::new(principal, Purpose::Operations, "instance");
        req.role = Some("instance".into());
        Ok(GovernedSession {
            ctx,
            req,
            role: "instance".into(),
            decisions: vec!["raw tables only, for the instance's own bookkeeping".into()],
            objects_granted: BTreeSet::new(),
            versions,
            disclosure: None,
            patient_keys: PatientKeys::new(),
            row_sources: HashMap::new(),
            masks: self.masks.clone(),
            audit: self.audit.clone(),
            policy_digest: self.policy.digest.clone(),
            audit_each_query: false,
            extracts: BTreeMap::new(),
            covered: crate::policy::Objects::Only(BTreeSet::new()),
        })
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

    /// May `req` be given whole records as received (FHIR resources) that
    /// fill the canonical object types `object_types`? Only where the policy
    /// would show every column of each of them, on every row: a resource
    /// cannot be served with a column masked or a row filtered out, so a
    /// grant that would do either is refused here rather than widened.
    /// Records of no object type need the raw layer granted. The refusal is
    /// audited; an allowed read is audited by [`RecordRead::served`].
    pub fn whole_records(
        &self,
        req: &SessionRequest,
        object_types: &[&str],
        what: &str,
    ) -> Result<RecordRead, GovernError> {
        let mut entry = AuditEntry::for_request(req, what);
        entry.policy = Some(self.policy.digest.clone());
        let decided = self.check(req).and_then(|(role, grant)| {
            entry.role = Some(role.to_string());
            let refuse = |reason: String| {
                Err(Refusal::WholeRecordsRefused {
                    role: role.to_string(),
                    purpose: req.purpose,
                    reason,
                })
            };
            let own = self.acts_for_us(req);
            if grant.rows.own_organisation_only && !own {
                return refuse(format!("it sees only {}'s records", self.organisation));
            }
            if object_types.is_empty() && !grant.raw {
                return refuse("these records fill no canonical object type, and records as received (raw) are not granted".into());
            }
            for name in object_types {
                let Some(object) = self.model.object_type(name) else {
                    return refuse(format!("{name} is not in the canonical model"));
                };
                let table = object.table.as_str();
                if !grant.objects.covers(table) {
                    return refuse(format!("`{table}` is not granted"));
                }
                if grant.rows.sites.is_some() || grant.rows.wards.is_some() {
                    return refuse(format!("`{table}` is granted for some sites or wards only"));
                }
                if let Some(p) = object
                    .properties
                    .iter()
                    .find(|p| grant.action(table, &p.column, p.sensitivity) != Action::Show)
                {
                    return refuse(format!(
                        "`{table}.{}` is not shown ({})",
                        p.column,
                        grant.action(table, &p.column, p.sensitivity)
                    ));
                }
                entry.objects.push(table.to_string());
            }
            Ok(role.to_string())
        });
        match decided {
            Ok(_) => Ok(RecordRead {
                audit: self.audit.clone(),
                entry,
            }),
            Err(e) => self.refuse(entry, e),
        }
    }

    /// May `req` create, change or delete whole records (FHIR resources)
    /// that fill the canonical object types `object_types`? Only for direct
    /// care or operations, for the instance's own organisation, where the
    /// grant's `change` covers each of them on every row: a write cannot be
    /// kept to some sites or wards. Records of no object type (or of any
    /// type, as an undeclared bulk import) need `change = ["*"]`. The
    /// refusal is audited; an allowed change is audited, with its patients,
    /// by [`RecordChange::changed`].
    pub fn change_records(
        &self,
        req: &SessionRequest,
        object_types: &[&str],
        what: &str,
    ) -> Result<RecordChange, GovernError> {
        let mut entry = AuditEntry::for_request(req, what);
        entry.kind = "change".into();
        entry.policy = Some(self.policy.digest.clone());
        let decided = self.check(req).and_then(|(role, grant)| {
            entry.role = Some(role.to_string());
            let refuse = |reason: String| {
                Err(Refusal::ChangeRefused {
                    role: role.to_string(),
                    purpose: req.purpose,
                    reason,
                })
            };
            if req.purpose.is_secondary() {
                return refuse(
                    CHANGED_FOR_CARE_ONLY.into(),
                );
            }
            let own = self.acts_for_us(req);
            if !own {
                return refuse(format!("only {}'s own staff change its records", self.organisation));
            }
            if grant.rows.sites.is_some() || grant.rows.wards.is_some() {
                return refuse("the grant covers some sites or wards only, and a whole record is not kept to them".into());
            }
            if object_types.is_empty() && grant.change != Objects::All {
                return refuse("these records may be of any type, or fill no canonical object type, and only change = [\"*\"] covers them".into());
            }
            for name in object_types {
                let Some(object) = self.model.object_type(name) else {
                    return refuse(format!("{name} is not in the canonical model"));
                };
                let table = object.table.as_str();
                if !grant.change.covers(table) {
                    return refuse(format!("changing `{table}` is not granted"));
                }
                entry.objects.push(table.to_string());
            }
            Ok(())
        });
        match decided {
            Ok(()) => Ok(RecordChange(RecordRead {
                audit: self.audit.clone(),
                entry,
            })),
            Err(e) => self.refuse(entry, e),
        }
    }

    /// A product's view for `req` (the bed board reads the live census, not
    /// the tables): allowed only where the grant covers every table in
    /// `tables` for this principal's organisation, and then each field is
    /// shown or hidden as [`ProductView::action`] says, from the same policy
    /// the tables' views are compiled from. The refusal is audited; an
    /// allowed view is audited by [`ProductView::served`].
    pub fn product_view(
        &self,
        req: &SessionRequest,
        tables: &[&str],
        what: &str,
    ) -> Result<ProductView, GovernError> {
        self.view(req, tables, Need::Read, what)
    }

    /// A change to care records through a product (discharge readiness, a
    /// bed's status): like [`Self::product_view`], and only for direct care
    /// or operations: planning and research read, they never change records.
    pub fn change_view(
        &self,
        req: &SessionRequest,
        tables: &[&str],
        what: &str,
    ) -> Result<ProductView, GovernError> {
        self.view(req, tables, Need::Change, what)
    }

    /// A view of records as received (what the feeds refused, kept in
    /// quarantine), for roles the policy grants the raw layer under the
    /// purpose. Audited like [`Self::product_view`].
    pub fn raw_records_view(
        &self,
        req: &SessionRequest,
        what: &str,
    ) -> Result<ProductView, GovernError> {
        self.view(req, &[], Need::Raw, what)
    }

    fn view(
        &self,
        req: &SessionRequest,
        tables: &[&str],
        need: Need,
        what: &str,
    ) -> Result<ProductView, GovernError> {
        let mut entry = AuditEntry::for_request(req, what);
        entry.policy = Some(self.policy.digest.clone());
        let decided = self.check(req).and_then(|(role, grant)| {
            entry.role = Some(role.to_string());
            let own = self.acts_for_us(req);
            let refuse = |reason: String| {
                Err(Refusal::ProductRefused {
                    role: role.to_string(),
                    purpose: req.purpose,
                    reason,
                })
            };
            if grant.rows.own_organisation_only && !own {
                return refuse(format!("it sees only {}'s records", self.organisation));
            }
            if let Some(t) = tables.iter().find(|t| !grant.objects.covers(t)) {
                return refuse(format!("`{t}` is not granted"));
            }
            if need == Need::Raw && !grant.raw {
                return refuse("records as received (raw) are not granted".into());
            }
            if need == Need::Change {
                if req.purpose.is_secondary() {
                    return refuse(CHANGED_FOR_CARE_ONLY.into());
                }
                if let Some(t) = tables.iter().find(|t| !grant.change.covers(t)) {
                    return refuse(format!("changing `{t}` is not granted"));
                }
            }
            entry.objects = tables.iter().map(|t| t.to_string()).collect();
            Ok(grant.clone())
        });
        let opted_out = match (&decided, req.purpose.is_secondary()) {
            (Ok(_), true) => self.opt_out.nhs_numbers()?,
            _ => Default::default(),
        };
        match decided {
            Ok(grant) => Ok(ProductView {
                grant,
                model: self.model,
                keystore: self.keystore.clone(),
                key: std::sync::OnceLock::new(),
                purpose: req.purpose,
                project: req
                    .project
                    .clone()
                    .unwrap_or_else(|| req.purpose.as_str().to_string()),
                opted_out,
                row_level: !(req.purpose.is_secondary() && req.leaves_instance()),
                read: RecordRead {
                    audit: self.audit.clone(),
                    entry,
                },
            }),
            Err(e) => self.refuse(entry, e),
        }
    }

    /// Re-identification for direct care: the patient a pseudonym made under
    /// `made_for` (the purpose and project whose key made it) stands for.
    /// It is never done through the pseudonym itself (HMAC cannot be
    /// reversed): the instance recomputes the pseudonyms of its own patients
    /// with that key version and looks for the match. Only a `direct-care`
    /// request with a justification, whose grant shows the patient's
    /// identity, may ask; the request, granted, refused or unmatched, is
    /// audited as `re-identification`.
    pub async fn reidentify<S: TableSource>(
        &self,
        source: &S,
        req: &SessionRequest,
        pseudonym: &str,
        made_for: (Purpose, &str),
    ) -> Result<Vec<Reidentified>, GovernError> {
        let (key_purpose, project) = made_for;
        let mut entry = AuditEntry::for_request(
            req,
            &format!("re-identify {pseudonym} (made for {key_purpose}, project {project})"),
        );
        entry.kind = "re-identification".into();
        entry.policy = Some(self.policy.digest.clone());
        let refuse = |reason: &str| Refusal::ReidentificationRefused(reason.to_string());
        let decided = if req.purpose != Purpose::DirectCare {
            Err(refuse("re-identification is only for direct care"))
        } else if req
            .justification
            .as_deref()
            .is_none_or(|j| j.trim().is_empty())
        {
            Err(refuse("a re-identification request needs a justification"))
        } else {
            self.check(req).and_then(|(role, grant)| {
                entry.role = Some(role.to_string());
                let shown =
                    |c: &str| grant.action("patient", c, Sensitivity::Identifying) == Action::Show;
                if grant.objects.covers("patient") && shown("person_id") && shown("nhs_number") {
                    Ok(())
                } else {
                    Err(refuse(&format!(
                        "the role `{role}` is not shown patients' identity for direct care"
                    )))
                }
            })
        };
        if let Err(e) = decided {
            return self.refuse(entry, e);
        }
        let key = pseudonym
            .strip_prefix('p')
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(v, _)| v.parse::<u32>().ok())
            .map(|v| self.keystore.pseudonym_key_version(key_purpose, project, v))
            .transpose()?
            .flatten();
        let mut found = Vec::new();
        if let Some(key) = key {
            let ctx = new_context();
            let access = TableAccess::new();
            let tables = source
                .canonical_tables(&access, &ctx, AsOf::Latest)
                .await
                .map_err(|e| GovernError::Source(e.to_string()))?;
            if let Some(patient) = tables.into_iter().find(|t| t.name == "patient") {
                let df = ctx
                    .read_table(patient.provider)?
                    .select(vec![col("person_id"), col("nhs_number")])?;
                for b in df.collect().await? {
                    let ids = column_text(b.column(0))?;
                    let numbers = column_text(b.column(1))?;
                    for (id, nhs) in ids.into_iter().zip(numbers) {
                        let Some(id) = id else { continue };
                        if key.pseudonym(&id) == pseudonym.trim() {
                            found.push(Reidentified {
                                person_id: id,
                                nhs_number: nhs,
                            });
                        }
                    }
                }
            }
        }
        entry.rows = Some(found.len() as u64);
        entry.patients = found.iter().map(|r| r.person_id.clone()).collect();
        entry.outcome = if found.is_empty() {
            "no patient of this instance has this pseudonym".into()
        } else {
            "ok".into()
        };
        self.audit.append(entry)?;
        Ok(found)
    }

    /// The audit entries matching `filter`, for a principal whose role
    /// reviews the audit. The review is itself audited.
    pub fn review_audit(
        &self,
        principal: &Principal,
        filter: &AuditFilter,
        channel: &str,
    ) -> Result<Vec<AuditEntry>, GovernError> {
        let mut entry = self.review_entry(principal, "audit-review", channel, filter.describe());
        if !self.policy.reviews_audit(principal) {
            return self.refuse(entry, Refusal::NotAuditReviewer(principal.name.clone()));
        }
        let found: Vec<AuditEntry> = self
            .audit
            .entries()?
            .into_iter()
            .filter(|e| filter.matches(e))
            .collect();
        entry.rows = Some(found.len() as u64);
        entry.outcome = "ok".into();
        self.audit.append(entry)?;
        Ok(found)
    }

    /// How many records of each canonical table the national data opt-out
    /// keeps out of planning and research: for a principal whose role
    /// reviews the audit (never for the analyst, whose answers it shapes).
    /// Audited.
    pub async fn opt_out_exclusions<S: TableSource>(
        &self,
        source: &S,
        principal: &Principal,
        channel: &str,
    ) -> Result<Vec<OptOutExclusion>, GovernError> {
        let mut entry = self.review_entry(
            principal,
            "opt-out-review",
            channel,
            "opt-out exclusions".into(),
        );
        if !self.policy.reviews_audit(principal) {
            return self.refuse(entry, Refusal::NotAuditReviewer(principal.name.clone()));
        }
        let ctx = new_context();
        let access = TableAccess::new();
        let tables = source
            .canonical_tables(&access, &ctx, AsOf::Latest)
            .await
            .map_err(|e| GovernError::Source(e.to_string()))?;
        let (numbers, opted_out) = self.opted_out(&ctx, &tables).await?;
        let mut out = Vec::new();
        for t in tables {
            let Some(object) = self.model.object_type_by_table(&t.name) else {
                continue;
            };
            let schema = t.provider.schema();
            let columns: Vec<String> = patient_columns(object)
                .into_iter()
                .filter(|c| schema.index_of(c).is_ok())
                .collect();
            if columns.is_empty() {
                continue;
            }
            let excluded = columns
                .iter()
                .map(|c| col(c.as_str()).in_list(opted_out.iter().map(lit).collect(), false))
                .reduce(Expr::or)
                .filter(|_| !opted_out.is_empty())
                .unwrap_or(lit(false));
            use datafusion::functions_aggregate::expr_fn::{count, sum};
            let df = ctx.read_table(t.provider)?.aggregate(
                vec![],
                vec![
                    count(lit(1)).alias("rows"),
                    sum(when(excluded, lit(1i64)).otherwise(lit(0i64))?).alias("excluded"),
                ],
            )?;
            let batches = df.collect().await?;
            let value = |i: usize| -> u64 {
                batches
                    .first()
                    .filter(|b| b.num_rows() > 0)
                    .and_then(|b| cast(b.column(i), &DataType::Int64).ok())
                    .and_then(|a| {
                        let a = a.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                        (!a.is_null(0)).then(|| a.value(0).max(0) as u64)
                    })
                    .unwrap_or(0)
            };
            out.push(OptOutExclusion {
                table: t.name.clone(),
                rows: value(0),
                excluded: value(1),
            });
        }
        entry.rows = Some(out.len() as u64);
        entry.objects = out.iter().map(|e| e.table.clone()).collect();
        entry.decisions = vec![format!(
            "national data opt-out: {} NHS numbers on the list",
            numbers.len()
        )];
        entry.outcome = "ok".into();
        self.audit.append(entry)?;
        Ok(out)
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

    /// The opt-out list, and every identifier it stands for in the tables:
    /// the NHS numbers, and the person ids the patient table gives them
    /// (the other tables name the patient by person id).
    async fn opted_out(
        &self,
        ctx: &SessionContext,
        tables: &[SourceTable],
    ) -> Result<(Arc<BTreeSet<String>>, Vec<String>), GovernError> {
        let numbers = self.opt_out.nhs_numbers()?;
        let mut ids: Vec<String> = numbers.iter().cloned().collect();
        if !numbers.is_empty() {
            if let Some(patient) = tables.iter().find(|t| t.name == "patient") {
                ids.extend(person_ids_of(ctx, patient, &numbers).await?);
            }
        }
        Ok((numbers, ids))
    }

    async fn compile<S: TableSource>(
        &self,
        source: &S,
        req: &SessionRequest,
    ) -> Result<GovernedSession, GovernError> {
        let (role, grant, approved) = self.checked(req)?;
        let ctx = new_context();
        let access = TableAccess::new();
        let tables = source
            .canonical_tables(&access, &ctx, req.as_of)
            .await
            .map_err(|e| GovernError::Source(e.to_string()))?;
        let mut decisions = Vec::new();
        let own = self.acts_for_us(req);
        let no_rows = grant.rows.own_organisation_only && !own;
        if no_rows {
            decisions.push(format!(
                "no rows: the role `{role}` sees only {}'s rows and {} acts for {}",
                self.organisation,
                req.principal.name,
                req.principal
                    .organisation
                    .as_deref()
                    .unwrap_or("no organisation")
            ));
        }
        // The opt-out is recorded against NHS numbers; the other tables name
        // the patient by the patient table's person_id.
        let mut opted_out: Vec<String> = Vec::new();
        if req.purpose.is_secondary() {
            let (numbers, mut ids) = self.opted_out(&ctx, &tables).await?;
            if !numbers.is_empty() && req.as_of != AsOf::Latest {
                // The opt-out is today's wish, and the patient table of the
                // past may not yet have linked a number to its person id
                // (traced later, merged since): look the numbers up in
                // today's table too, so going back in time never brings an
                // opted-out patient back.
                let today = source
                    .canonical_tables(&access, &ctx, AsOf::Latest)
                    .await
                    .map_err(|e| GovernError::Source(e.to_string()))?;
                if let Some(patient) = today.iter().find(|t| t.name == "patient") {
                    ids.extend(person_ids_of(&ctx, patient, &numbers).await?);
                }
                ids.sort_unstable();
                ids.dedup();
            }
            if !numbers.is_empty() {
                opted_out = ids;
                decisions.push(format!(
                    "national data opt-out: {} NHS numbers applied",
                    numbers.len()
                ));
            }
        }
        let project = req
            .project
            .clone()
            .unwrap_or_else(|| req.purpose.as_str().to_string());
        let mut key: Option<PseudonymKey> = None;
        let mut objects_granted = BTreeSet::new();
        let mut versions = TableVersions::new();
        let mut patient_keys = PatientKeys::new();
        let mut row_sources = HashMap::new();
        for t in tables {
            if !grant.objects.covers(&t.name) {
                continue;
            }
            let Some(object) = self.model.object_type_by_table(&t.name) else {
                continue;
            };
            let schema = t.provider.schema();
            let has = |c: &str| schema.index_of(c).is_ok();
            let mut filters: Vec<Expr> = Vec::new();
            // Rules on columns a question seldom reads, which the store can
            // apply per stored file instead of per row (see `masks`).
            let mut row_rules: Vec<Expr> = Vec::new();
            if no_rows {
                filters.push(lit(false));
            }
            if let (Some(sites), true) = (&grant.rows.sites, has("site_name")) {
                filters.push(col("site_name").in_list(sites.iter().map(lit).collect(), false));
            }
            if let (Some(wards), true) = (&grant.rows.wards, has("ward")) {
                filters.push(col("ward").in_list(wards.iter().map(lit).collect(), false));
            }
            if has("rv_group_ids") {
                let unrestricted = col("rv_group_ids")
                    .is_null()
                    .or(cardinality(col("rv_group_ids")).eq(lit(0u64)));
                row_rules.push(if grant.rows.rv_groups.is_empty() {
                    unrestricted
                } else {
                    unrestricted.or(array_has_any(
                        col("rv_group_ids"),
                        make_array(grant.rows.rv_groups.iter().map(lit).collect()),
                    ))
                });
            }
            if !opted_out.is_empty() {
                for c in patient_columns(object) {
                    if has(&c) {
                        let list: Vec<Expr> = opted_out.iter().map(lit).collect();
                        row_rules.push(col(&c).is_null().or(col(&c).in_list(list, true)));
                    }
                }
            }
            // A canonical table may be read from several stored parts, and
            // a plan scans the parts by their own names.
            let patient = patient_key(object).filter(|c| has(c));
            for name in std::iter::once(&t.name).chain(t.versions.iter().map(|(part, _)| part)) {
                patient_keys.insert(name.clone(), patient.clone());
            }
            if let (Some(masking), Some(key)) = (&t.masking, &patient) {
                row_sources.insert(t.name.clone(), (masking.clone(), key.clone()));
            }
            let mut projection = Vec::new();
            let mut changed: BTreeMap<Action, Vec<String>> = BTreeMap::new();
            let mut unknown: Vec<String> = Vec::new();
            for field in schema.fields() {
                let name = field.name();
                // A stored column the model does not know has no tag to
                // decide by: it is left out, never guessed harmless.
                let action = match object.property_by_column(name) {
                    Some(p) => grant.action(&t.name, name, p.sensitivity),
                    None => {
                        unknown.push(format!("{}.{name}", t.name));
                        Action::Remove
                    }
                };
                let c = col(name.as_str());
                let e = match action {
                    Action::Show => Some(c),
                    Action::Remove => None,
                    Action::Mask => Some(if is_text(field.data_type()) {
                        when(c.is_null(), lit(ScalarValue::Utf8(None)))
                            .otherwise(lit("[masked]"))?
                    } else {
                        lit(ScalarValue::try_from(field.data_type())?)
                    }),
                    Action::Pseudonymise => {
                        if key.is_none() {
                            key = Some(self.keystore.pseudonym_key(req.purpose, &project)?);
                        }
                        Some(crate::udf::pseudonym(
                            key.clone().expect("key made above"),
                            c,
                        ))
                    }
                    Action::Year => Some(crate::udf::year(c)),
                    Action::AgeBand => Some(match field.data_type() {
                        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => {
                            crate::udf::age_band_from_birth(c)
                        }
                        _ => crate::udf::age_band(c),
                    }),
                    Action::District => Some(crate::udf::district(c)),
                };
                if action != Action::Show {
                    changed.entry(action).or_default().push(name.clone());
                }
                if let Some(e) = e {
                    projection.push(e.alias(name.as_str()));
                }
            }
            if !unknown.is_empty() {
                decisions.push(format!(
                    "not in the model, so removed: {}",
                    unknown.join(", ")
                ));
            }
            if projection.is_empty() {
                decisions.push(format!("{}: every column removed", t.name));
                continue;
            }
            let rule = row_rules.into_iter().reduce(Expr::and);
            let mut df = match (&t.masking, rule) {
                (Some(masking), Some(rule)) => named_scan(
                    &ctx,
                    &t.name,
                    self.masks
                        .scan_keeping(masking.as_ref(), &rule, &ctx)
                        .await?,
                )?,
                (None, Some(rule)) => {
                    named_scan(&ctx, &t.name, t.provider.clone())?.filter(rule)?
                }
                (_, None) => named_scan(&ctx, &t.name, t.provider.clone())?,
            };
            if let Some(f) = filters.into_iter().reduce(Expr::and) {
                df = df.filter(f)?;
            }
            df = df.select(projection)?;
            ctx.register_table(t.name.as_str(), Arc::new(GovernedTable(df.into_view())))?;
            for (a, cols) in changed {
                decisions.push(format!("{}: {} {}", t.name, a, cols.join(", ")));
            }
            objects_granted.insert(t.name.clone());
            versions.insert(t.name.clone(), t.versions.clone());
        }
        // The policy refuses `raw` for secondary use; a grant that has it
        // anyway is still not honoured there.
        if grant.raw && !req.purpose.is_secondary() {
            let raw = source
                .raw_tables(&access, &ctx, req.as_of)
                .await
                .map_err(|e| GovernError::Source(e.to_string()))?;
            versions.extend(register_raw(&ctx, raw)?);
            decisions.push("raw tables granted".into());
        }
        // The extracts the IG lead approved for the session's research
        // project: the only answers that leave it row by row.
        let extracts = approved
            .filter(|_| req.purpose == Purpose::Research)
            .map(|p| p.extracts)
            .unwrap_or_default();
        Ok(GovernedSession {
            extracts,
            covered: grant.objects.clone(),
            ctx,
            req: req.clone(),
            role: role.to_string(),
            decisions,
            objects_granted,
            versions,
            disclosure: req.purpose.is_secondary().then_some(self.policy.disclosure),
            patient_keys,
            row_sources,
            masks: self.masks.clone(),
            audit: self.audit.clone(),
            policy_digest: self.policy.digest.clone(),
            audit_each_query: true,
        })
    }
}

/// A scan of `provider` that plans under the table's own name, so that
/// a query's plan (and so the audit and an answer's table versions) names
/// the tables it read. The provider itself is not registered: only the
/// governed view over it can be queried.
fn named_scan(
    ctx: &SessionContext,
    name: &str,
    provider: Arc<dyn TableProvider>,
) -> Result<datafusion::prelude::DataFrame, GovernError> {
    let plan = datafusion::logical_expr::LogicalPlanBuilder::scan(
        name,
        datafusion::datasource::provider_as_source(provider),
        None,
    )?
    .build()?;
    Ok(datafusion::prelude::DataFrame::new(ctx.state(), plan))
}

fn new_context() -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("datafusion", "public");
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.add_optimizer_rule(Arc::new(crate::late_pseudonyms::PseudonymiseAfterAggregate));
    ctx
}

/// Register the raw tables under `raw.`; answers their versions by name.
fn register_raw(ctx: &SessionContext, raw: Vec<SourceTable>) -> Result<TableVersions, GovernError> {
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| GovernError::Source("default catalog missing".into()))?;
    if catalog.schema("raw").is_none() {
        catalog.register_schema("raw", Arc::new(MemorySchemaProvider::new()))?;
    }
    let mut versions = TableVersions::new();
    for t in raw {
        let name = format!("raw.{}", t.name);
        ctx.register_table(name.as_str(), t.provider)?;
        versions.insert(name, t.versions);
    }
    Ok(versions)
}

/// The column that names the patient a record of `object` is about: the
/// patient table's own key, else the link to the patient.
fn patient_key(object: &fdp_model::ObjectType) -> Option<String> {
    if object.name == "Patient" {
        return Some(object.primary_key_property().column.clone());
    }
    let columns = patient_columns(object);
    columns
        .iter()
        .find(|c| *c == "patient_id")
        .or_else(|| columns.first())
        .cloned()
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The columns of `object` that name a patient: the patient table's key, and
/// every foreign key the model links to Patient.
fn patient_columns(object: &fdp_model::ObjectType) -> Vec<String> {
    let mut out = BTreeSet::new();
    if object.name == "Patient" {
        out.insert(object.primary_key_property().column.clone());
        out.insert("nhs_number".to_string());
    }
    for l in &object.links {
        if l.target != "Patient" {
            continue;
        }
        if let Some(fk) = &l.foreign_key {
            if fk.object == object.name {
                if let Some(p) = object.find_property(&fk.property) {
                    out.insert(p.column.clone());
                }
            }
        }
    }
    if object.property_by_column("patient_id").is_some() {
        out.insert("patient_id".to_string());
    }
    out.into_iter().collect()
}

async fn person_ids_of(
    ctx: &SessionContext,
    patient: &SourceTable,
    numbers: &BTreeSet<String>,
) -> Result<Vec<String>, GovernError> {
    let df = ctx
        .read_table(patient.provider.clone())?
        .filter(col("nhs_number").in_list(numbers.iter().map(lit).collect(), false))?
        .select(vec![col("person_id")])?;
    let mut out = Vec::new();
    for b in df.collect().await? {
        let a = cast(b.column(0), &DataType::Utf8)?;
        let s = a.as_string::<i32>();
        out.extend(s.iter().flatten().map(str::to_string));
    }
    Ok(out)
}

/// A read of whole records the policy allowed, to be audited once served.
#[must_use = "the read is audited only when `served` is called"]
pub struct RecordRead {
    audit: Arc<AuditLog>,
    entry: AuditEntry,
}

impl RecordRead {
    /// Audit what was served: how many records, and the patients they name.
    pub fn served(self, records: u64, patients: Vec<String>) -> Result<(), GovernError> {
        self.record(records, patients)
    }

    fn record(&self, records: u64, patients: Vec<String>) -> Result<(), GovernError> {
        self.record_as(None, records, patients)
    }

    fn record_as(
        &self,
        kind: Option<&str>,
        records: u64,
        patients: Vec<String>,
    ) -> Result<(), GovernError> {
        let mut entry = self.entry.clone();
        if let Some(k) = kind {
            entry.kind = k.to_string();
        }
        entry.rows = Some(records);
        entry.patients = patients;
        entry.outcome = "ok".into();
        self.audit.append(entry)?;
        Ok(())
    }
}

/// A change to whole records the policy allowed, to be audited once made.
#[must_use = "the change is audited only when `changed` is called"]
pub struct RecordChange(RecordRead);

impl RecordChange {
    /// Audit what was changed (its entry is of kind `change`): how many
    /// records, and the patients they are about. A change that cannot be
    /// audited must be reported as failed.
    pub fn changed(&self, records: u64, patients: Vec<String>) -> Result<(), GovernError> {
        self.0.record(records, patients)
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

/// A product's view allowed by the policy: what it may show of each field.
///
/// A product shows records it holds itself (the bed board reads the live
/// census, not the tables), so the view gives it the policy's rules to
/// apply: [`Self::admits`] for each record, [`Self::field`] for each value
/// by the model column it comes from, [`Self::row_level`] for whether any
/// patient's record may be shown at all. They are the rules a governed
/// session compiles into each table's plan, read from the same grant.
#[must_use = "the view is audited only when `served` is called"]
pub struct ProductView {
    grant: crate::policy::Grant,
    model: &'static Model,
    keystore: Keystore,
    /// The purpose's pseudonym key, read from the keystore once per view
    /// rather than for every value (a live board shapes every occupant on
    /// every change).
    key: std::sync::OnceLock<Option<PseudonymKey>>,
    purpose: Purpose,
    project: String,
    /// The national data opt-out, for a secondary purpose; empty otherwise.
    opted_out: Arc<BTreeSet<String>>,
    row_level: bool,
    read: RecordRead,
}

/// What a product knows of one record it would show, for the view's row
/// rules. What it does not know is `None`: a rule on it cannot pass.
#[derive(Debug, Default, Clone, Copy)]
pub struct RowFacts<'a> {
    /// The site's name (the tables' `site_name`).
    pub site: Option<&'a str>,
    /// The ward's code (the tables' `ward`).
    pub ward: Option<&'a str>,
    /// The restricted-view groups the record is in (`rv_group_ids`).
    pub rv_groups: &'a [String],
    /// The patient's NHS number, for the national data opt-out.
    pub nhs_number: Option<&'a str>,
}

impl ProductView {
    /// Whether a record passes the view's row rules: the sites and wards
    /// granted, the restricted-view groups, and for a secondary purpose the
    /// national data opt-out. A record a rule names but the product cannot
    /// place (no site, say, where the grant lists sites) does not pass.
    pub fn admits(&self, row: &RowFacts) -> bool {
        let rows = &self.grant.rows;
        let within = |granted: &Option<Vec<String>>, v: Option<&str>| match granted {
            None => true,
            Some(list) => v.is_some_and(|v| list.iter().any(|g| g == v)),
        };
        let unrestricted =
            row.rv_groups.is_empty() || row.rv_groups.iter().any(|g| rows.rv_groups.contains(g));
        let opted_out = row.nhs_number.is_some_and(|n| {
            let digits: String = n.chars().filter(|c| !c.is_whitespace()).collect();
            self.opted_out.contains(&digits)
        });
        within(&rows.sites, row.site) && within(&rows.wards, row.ward) && unrestricted && !opted_out
    }

    /// Whether patients' records may be shown one by one: not for a
    /// secondary purpose on a channel that leaves the instance, where only
    /// aggregates leave (as for SQL; see `behind`).
    pub fn row_level(&self) -> bool {
        self.row_level
    }

    /// This view, for a product that shows patients one by one (a bed
    /// board, an admission): refused, and the refusal audited, where
    /// [`Self::row_level`] says records may not leave one by one.
    pub fn one_by_one(self, product: &str) -> Result<ProductView, GovernError> {
        if self.row_level {
            return Ok(self);
        }
        let why = format!(
            "{product} shows patients one by one, and under {} only aggregates leave the instance (ask one through SQL)",
            self.purpose.as_str()
        );
        Err(self.refuse(&why))
    }

    /// Refuse what the product was about to show (a record the row rules
    /// do not admit, say), audited as refused; the error to answer with.
    pub fn refuse(self, reason: &str) -> GovernError {
        let refusal = Refusal::ProductRefused {
            role: self.read.entry.role.clone().unwrap_or_default(),
            purpose: self.purpose,
            reason: reason.to_string(),
        };
        let mut entry = self.read.entry.clone();
        entry.outcome = format!("refused: {refusal}");
        if let Err(e) = self.read.audit.append(entry) {
            return e.into();
        }
        GovernError::Refused(refusal)
    }

    /// `value`, of the model's `table.column`, as this view may show it:
    /// as it is, masked, pseudonymised with the purpose's key, generalised
    /// (a year, an age band, a postcode district), or `None` where the
    /// policy removes it (or the value is missing).
    pub fn field(&self, table: &str, column: &str, value: Option<&str>) -> Option<String> {
        let value = value?;
        match self.action(table, column) {
            Action::Show => Some(value.to_string()),
            Action::Remove => None,
            Action::Mask => Some("[masked]".into()),
            Action::Pseudonymise => self
                .key
                .get_or_init(|| {
                    self.keystore
                        .pseudonym_key(self.purpose, &self.project)
                        .map_err(
                            |e| tracing::error!(error = %e, "no pseudonym key for a product view"),
                        )
                        .ok()
                })
                .as_ref()
                .map(|k| k.pseudonym(value)),
            Action::Year => value.get(..4).map(str::to_string),
            Action::AgeBand => value.parse::<i64>().ok().map(crate::udf::band),
            Action::District => crate::udf::outward_code(value),
        }
    }

    /// [`Self::field`] for a number: shown as it is, or removed (a number
    /// is never masked or pseudonymised into text).
    pub fn number<T>(&self, table: &str, column: &str, value: Option<T>) -> Option<T> {
        match self.action(table, column) {
            Action::Show => value,
            _ => None,
        }
    }

    /// What the policy does with `table.column` for this view; a column of
    /// a table not granted, or one the model does not know, is removed.
    pub fn action(&self, table: &str, column: &str) -> Action {
        if !self.grant.objects.covers(table) {
            return Action::Remove;
        }
        match self
            .model
            .object_type_by_table(table)
            .and_then(|o| o.property_by_column(column))
        {
            Some(p) => self.grant.action(table, column, p.sensitivity),
            None => Action::Remove,
        }
    }

    /// Whether the grant covers `table` at all.
    pub fn reads(&self, table: &str) -> bool {
        self.grant.objects.covers(table)
    }

    /// The purpose the view is for.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// Whether records as received (the raw layer) are granted.
    pub fn raw(&self) -> bool {
        self.grant.raw
    }

    /// Whether `table.column` is shown as it is.
    pub fn shows(&self, table: &str, column: &str) -> bool {
        self.action(table, column) == Action::Show
    }

    /// Whether every column of `table` is shown as it is: what a whole
    /// record filling it (a FHIR resource in a referral) needs, since a
    /// record cannot be shown with a field masked (as for
    /// [`Governance::whole_records`]).
    pub fn shows_whole(&self, table: &str) -> bool {
        self.model
            .object_type_by_table(table)
            .is_some_and(|o| o.properties.iter().all(|p| self.shows(table, &p.column)))
    }

    /// Audit what was served (a view that keeps serving, like a live
    /// stream, may record more than once).
    pub fn served(&self, records: u64, patients: Vec<String>) -> Result<(), GovernError> {
        self.read.record(records, patients)
    }

    /// Audit a change made through the product (kind `change`).
    pub fn changed(&self, patients: Vec<String>) -> Result<(), GovernError> {
        self.read.record_as(Some("change"), 1, patients)
    }
}

/// For each table, the stored tables it is read from and their versions.
pub type TableVersions = BTreeMap<String, Vec<(String, u64)>>;

/// Column names, and rows of text (NULL as `None`).
pub type TextTable = (Vec<String>, Vec<Vec<Option<String>>>);

/// The patient a pseudonym stands for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reidentified {
    pub person_id: String,
    pub nhs_number: Option<String>,
}

/// What the national data opt-out keeps out of one table's secondary uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OptOutExclusion {
    pub table: String,
    /// Records in the table.
    pub rows: u64,
    /// Records of opted-out patients, left out under planning and research.
    pub excluded: u64,
}

/// A principal's session, with the policy compiled in.
pub struct GovernedSession {
    ctx: SessionContext,
    req: SessionRequest,
    role: String,
    decisions: Vec<String>,
    objects_granted: BTreeSet<String>,
    /// The stored tables and versions behind each table in the session.
    versions: TableVersions,
    disclosure: Option<crate::policy::Disclosure>,
    /// The tables that name a patient, by the column that does: how the
    /// patients behind each row of an answer are counted.
    patient_keys: PatientKeys,
    /// Of those, the ones whose stored files are known, with their patient
    /// column: their rows per patient can be bounded (see `behind`).
    row_sources: HashMap<String, (Arc<dyn crate::access::RowMasking>, String)>,
    masks: Arc<MaskCache>,
    audit: Arc<AuditLog>,
    policy_digest: String,
    audit_each_query: bool,
    /// The extract specifications approved for the session's research
    /// project (see [`GovernedSession::extract`]).
    extracts: BTreeMap<String, crate::projects::ExtractSpec>,
    /// The object types the grant covers, whether or not they hold data yet.
    covered: crate::policy::Objects,
}

/// A query's answer.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// The tables the answer was computed from: for each table read, the
    /// stored tables (a canonical table's parts) and their versions.
    pub versions: TableVersions,
    /// What disclosure control did, for a secondary purpose.
    pub disclosure: Option<DisclosureReport>,
}

impl QueryResult {
    pub fn row_count(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// The rows as JSON objects, one per row, keyed by column name.
    pub fn rows_json(&self) -> Result<serde_json::Value, datafusion::arrow::error::ArrowError> {
        let mut buf = Vec::new();
        {
            // A suppressed count is a null, shown as one rather than left out.
            let mut w = arrow_json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow_json::writer::JsonArray>(&mut buf);
            for b in &self.batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        if buf.is_empty() {
            return Ok(serde_json::Value::Array(Vec::new()));
        }
        serde_json::from_slice(&buf)
            .map_err(|e| datafusion::arrow::error::ArrowError::JsonError(e.to_string()))
    }

    /// The names of the answer's columns.
    pub fn column_names(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }
}

/// SQL a governed session runs: queries only. Statements that would create
/// tables (`CREATE EXTERNAL TABLE … LOCATION` could name the store's files)
/// or change settings are refused.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl GovernedSession {
    pub fn purpose(&self) -> Purpose {
        self.req.purpose
    }

    /// The approved project, for purposes that name one.
    pub fn project(&self) -> Option<&str> {
        self.req.project.as_deref()
    }

    pub fn role(&self) -> &str {
        &self.role
    }

    pub fn principal(&self) -> &Principal {
        &self.req.principal
    }

    /// The object types (tables) this session may read.
    pub fn objects(&self) -> &BTreeSet<String> {
        &self.objects_granted
    }

    /// Audit a refusal made on this session's behalf before any query ran
    /// (a product the purpose may not use, say): `what` was asked, `why`
    /// not.
    pub fn refused(&self, what: &str, why: &str) -> Result<(), GovernError> {
        let mut entry = self.audit_entry(what);
        entry.outcome = format!("refused: {why}");
        self.audit.append(entry)?;
        Ok(())
    }

    /// Whether the grant covers `table`, whether or not it holds data yet.
    pub fn covers(&self, table: &str) -> bool {
        self.covered.covers(table)
    }

    /// What the policy did when the session was opened, for the audit.
    pub fn decisions(&self) -> &[String] {
        &self.decisions
    }

    /// Whether the session has a table (`ward_stay`, `raw.hl7v2_message`).
    pub fn has_table(&self, name: &str) -> bool {
        self.ctx.table_exist(name).ok() == Some(true)
    }

    /// The tables `sql` reads that this session does not have. A session
    /// as of an instant before a table's first data has no such table, so
    /// a question about that instant can say "no data then" instead of
    /// failing, or worse, counting nothing as zero.
    pub fn missing_tables(&self, sql: &str) -> Result<Vec<String>, GovernError> {
        let state = self.ctx.state();
        let statement =
            state.sql_to_statement(sql, &datafusion::common::config::Dialect::Generic)?;
        let references = state.resolve_table_references(&statement)?;
        let mut missing: Vec<String> = references
            .iter()
            .map(|r| r.to_string())
            .filter(|name| !self.has_table(name))
            .collect();
        missing.sort();
        missing.dedup();
        Ok(missing)
    }

    /// A query's rows as text (binary columns decoded as UTF-8, invalid
    /// bytes replaced; NULL as `None`), or no rows when `table` is not in
    /// the session: for pages and reports that list what a source has
    /// written, before it has written anything.
    pub async fn text_rows(
        &self,
        table: &str,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, GovernError> {
        if !self.has_table(table) {
            return Ok(Vec::new());
        }
        Ok(self.text_table(sql).await?.1)
    }

    /// A query's column names and its rows as text, as [`Self::text_rows`]
    /// gives them: for pages that show a result as it is.
    pub async fn text_table(&self, sql: &str) -> Result<TextTable, GovernError> {
        let r = self.query(sql).await?;
        let names = r.schema.fields().iter().map(|f| f.name().clone()).collect();
        let mut out = Vec::new();
        for b in &r.batches {
            let columns = b
                .columns()
                .iter()
                .map(column_text)
                .collect::<Result<Vec<_>, _>>()?;
            out.extend(
                (0..b.num_rows()).map(|row| columns.iter().map(|c| c[row].clone()).collect()),
            );
        }
        Ok((names, out))
    }

    /// The columns a query would return, without running it (for clients
    /// that describe a statement before executing it).
    pub async fn describe(&self, sql: &str) -> Result<SchemaRef, GovernError> {
        let df = self.ctx.sql_with_options(sql, read_only()).await?;
        Ok(Arc::new(df.schema().as_arrow().clone()))
    }

    /// The session's own planning context, for front ends in this crate that
    /// plan statements themselves (the PostgreSQL wire protocol). It holds
    /// only the policy's views; results still go through [`Self::execute`].
    pub(crate) fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Run one query, apply disclosure control if the purpose is secondary,
    /// and audit it (statement, objects, rows returned, patients named in
    /// the result, policy decisions), whether it ran or failed.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, GovernError> {
        let planned = self.ctx.sql_with_options(sql, read_only()).await;
        self.audited(
            sql,
            None,
            async move { self.run(planned?, None, false).await },
        )
        .await
    }

    /// [`Self::query`], governed and audited the same, also giving the plan
    /// the engine ran with what each step measured. For an operator timing
    /// the instance (`fdp bench`): no channel offers it, because a step's
    /// row counts are themselves counts no disclosure control has seen.
    pub async fn profile(&self, sql: &str) -> Result<(QueryResult, String), GovernError> {
        let planned = self.ctx.sql_with_options(sql, read_only()).await;
        let mut profile = String::new();
        let result = self
            .audited(sql, None, async {
                self.run(planned?, Some(&mut profile), false).await
            })
            .await?;
        Ok((result, profile))
    }

    /// Run a plan made in this session's context (a prepared statement with
    /// its parameters bound), checked as read-only, with the same disclosure
    /// control and audit as [`Self::query`]; `sql` is what the audit shows.
    pub(crate) async fn execute(
        &self,
        sql: &str,
        plan: LogicalPlan,
    ) -> Result<QueryResult, GovernError> {
        let planned = match read_only().verify_plan(&plan) {
            Ok(()) => self.ctx.execute_logical_plan(plan).await,
            Err(e) => Err(e),
        };
        self.audited(
            sql,
            None,
            async move { self.run(planned?, None, false).await },
        )
        .await
    }

    /// Take one file of an extract the IG lead approved for the session's
    /// research project: its query, fixed at approval, answered row by row
    /// on any channel. The answer is shaped by the policy like any other
    /// under research (identifiers removed, ids pseudonymised with the
    /// project's key, opted-out patients left out, counts in it rounded);
    /// only the rule that rows do not leave is lifted, for this query
    /// alone. Audited with the extract, its approver and its digest; an
    /// extract or file the project does not hold is refused, audited.
    pub async fn extract(&self, extract: &str, file: &str) -> Result<QueryResult, GovernError> {
        let what = format!("extract {extract}/{file}");
        let project = self.req.project.clone().unwrap_or_default();
        let found = match self.extracts.get(extract) {
            None => Err(crate::projects::ProjectError::NoExtract {
                project,
                extract: extract.chars().take(64).collect(),
            }),
            Some(spec) => match spec.files.iter().find(|f| f.name == file) {
                None => Err(crate::projects::ProjectError::NoExtractFile {
                    extract: spec.name.clone(),
                    file: file.chars().take(64).collect(),
                    files: spec.file_names(),
                }),
                Some(f) => Ok((spec, f)),
            },
        };
        let (spec, f) = match found {
            Ok(found) => found,
            Err(e) => {
                self.refused(&what, &e.to_string())?;
                return Err(e.into());
            }
        };
        let decision = format!(
            "{what}: approved by {} at {} (spec {}); rows released",
            spec.approved_by.as_deref().unwrap_or("?"),
            spec.approved_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            spec.digest()
        );
        let planned = self.ctx.sql_with_options(&f.sql, read_only()).await;
        self.audited(&f.sql, Some(decision), async move {
            self.run(planned?, None, true).await
        })
        .await
    }

    async fn audited(
        &self,
        sql: &str,
        decision: Option<String>,
        run: impl std::future::Future<Output = Result<(QueryResult, Vec<String>), GovernError>>,
    ) -> Result<QueryResult, GovernError> {
        // A query stopped before it finishes (the client cancels it, or its
        // statement timeout passes) drops this future: the guard audits it.
        let mut pending = CancelledQueryAudit {
            session: self,
            sql,
            finished: false,
        };
        let result = run.await;
        pending.finished = true;
        if self.audit_each_query {
            let mut entry = self.audit_entry(sql);
            entry.decisions.extend(decision);
            match &result {
                Ok((r, objects)) => {
                    entry.objects = objects.clone();
                    entry.rows = Some(r.row_count() as u64);
                    entry.patients = patients_named(r);
                    if let Some(d) = &r.disclosure {
                        entry.decisions.push(d.summary());
                    }
                    entry.outcome = "ok".into();
                }
                Err(e) => entry.outcome = format!("error: {e}"),
            }
            self.audit.append(entry)?;
        }
        result.map(|(r, _)| r)
    }

    fn audit_entry(&self, sql: &str) -> AuditEntry {
        let mut entry = AuditEntry::for_request(&self.req, sql);
        entry.role = Some(self.role.clone());
        entry.policy = Some(self.policy_digest.clone());
        entry.decisions = self.decisions.clone();
        entry
    }

    /// Run `df` under the session's disclosure control; with `profile`,
    /// also write there the physical plan with what each step measured.
    /// `extract`: the query is a file of an approved extract, whose rows may
    /// leave the instance.
    async fn run(
        &self,
        df: datafusion::prelude::DataFrame,
        profile: Option<&mut String>,
        extract: bool,
    ) -> Result<(QueryResult, Vec<String>), GovernError> {
        // A scan names a stored table (a canonical table's part, a raw
        // table); the audit and the answer name the table the session offers.
        let objects: Vec<String> = scanned_tables(df.logical_plan())
            .into_iter()
            .map(|scanned| {
                self.versions
                    .iter()
                    .find(|(table, parts)| {
                        **table == scanned || parts.iter().any(|(p, _)| *p == scanned)
                    })
                    .map(|(table, _)| table.clone())
                    .unwrap_or(scanned)
            })
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        let plan = df.logical_plan().clone();
        let (schema, batches, disclosure) = match self.disclosure {
            None => {
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let task = df.task_ctx();
                let physical = df.create_physical_plan().await?;
                let batches =
                    datafusion::physical_plan::collect(physical.clone(), Arc::new(task)).await?;
                if let Some(profile) = profile {
                    *profile = measured(physical.as_ref());
                }
                (schema, batches, None)
            }
            Some(rule) => {
                // The optimised plan, with the patients behind each row
                // carried through it (see `behind`), planned as it is.
                let (state, logical) = df.into_parts();
                let optimised = state.optimize(&logical)?;
                let run = |protected: behind::Protected| {
                    let state = &state;
                    async move {
                        let physical = state
                            .query_planner()
                            .create_physical_plan(&protected.plan, state)
                            .await?;
                        let batches =
                            datafusion::physical_plan::collect(physical.clone(), state.task_ctx())
                                .await?;
                        Ok::<_, GovernError>((protected, physical, batches))
                    }
                };
                // Answered by rows where that proves enough patients behind
                // every row (see `behind`), with the keys otherwise.
                let mut by_rows = None;
                if let Some((table, key)) =
                    behind::answerable_by_rows(&optimised, &self.patient_keys)
                        .and_then(|scan| self.row_sources.get(&scan))
                {
                    let bound = self.masks.row_bound(table.as_ref(), key).await?;
                    let answer =
                        run(behind::protect(&optimised, &self.patient_keys, rule, true)?).await?;
                    if behind::proven_by_rows(
                        &answer.2,
                        answer.0.visible,
                        bound,
                        rule.suppress_below,
                    ) {
                        by_rows = Some(answer);
                    }
                }
                let proven = by_rows.is_some();
                let (protected, physical, batches) = match by_rows {
                    Some(answer) => answer,
                    None => {
                        run(behind::protect(
                            &optimised,
                            &self.patient_keys,
                            rule,
                            false,
                        )?)
                        .await?
                    }
                };
                if let Some(profile) = profile {
                    *profile = measured(physical.as_ref());
                }
                let (batches, withheld) = behind::withhold(
                    batches,
                    protected.visible,
                    rule.suppress_below,
                    proven || extract || !self.req.leaves_instance(),
                )?;
                let full = protected.plan.schema().as_arrow().clone();
                let schema: SchemaRef =
                    Arc::new(full.project(&(0..protected.visible).collect::<Vec<_>>())?);
                let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
                let counts = disclosure::count_columns(&plan);
                let (batches, report) =
                    disclosure::apply(&schema, batches, &counts, rule, &withheld)?;
                let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
                (schema, batches, Some(report))
            }
        };
        let versions = objects
            .iter()
            .filter_map(|o| self.versions.get(o).map(|v| (o.clone(), v.clone())))
            .collect();
        Ok((
            QueryResult {
                schema,
                batches,
                versions,
                disclosure,
            },
            objects,
        ))
    }
}

/// A physical plan as run, with what each step measured.
fn measured(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> String {
    datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan)
        .indent(true)
        .to_string()
}

struct CancelledQueryAudit<'a> {
    session: &'a GovernedSession,
    sql: &'a str,
    finished: bool,
}

impl Drop for CancelledQueryAudit<'_> {
    fn drop(&mut self) {
        if self.finished || !self.session.audit_each_query {
            return;
        }
        let mut entry = self.session.audit_entry(self.sql);
        entry.outcome = "cancelled before it finished".into();
        if let Err(e) = self.session.audit.append(entry) {
            tracing::error!(error = %e, "could not audit a cancelled query");
        }
    }
}

/// A policy view as the session's catalog shows it: a table. Clients list
/// tables, not views (psql's `\dt`, a BI tool's navigator), and the view is
/// an implementation detail of how the policy is applied. Everything else,
/// the view's plan included, is the view's.
#[derive(Debug)]
struct GovernedTable(Arc<dyn TableProvider>);

#[async_trait::async_trait]
impl TableProvider for GovernedTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn statistics(&self) -> Option<datafusion::common::Statistics> {
        self.0.statistics()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_logical_plan(&self) -> Option<std::borrow::Cow<'_, LogicalPlan>> {
        self.0.get_logical_plan()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }
}

/// The tables a plan reads, by the names the user's SQL gave them.
fn scanned_tables(plan: &LogicalPlan) -> Vec<String> {
    let mut out = BTreeSet::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            out.insert(scan.table_name.to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out.into_iter().collect()
}

/// The patient identifiers a result carries, for "who looked at this
/// patient": values of person_id, patient_id and nhs_number columns, at most
/// a thousand (the audit says how many more).
fn patients_named(r: &QueryResult) -> Vec<String> {
    const MAX: usize = 1000;
    let mut out = BTreeSet::new();
    for (i, f) in r.schema.fields().iter().enumerate() {
        if !matches!(f.name().as_str(), "person_id" | "patient_id" | "nhs_number") {
            continue;
        }
        for b in &r.batches {
            let Ok(values) = column_text(b.column(i)) else {
                continue;
            };
            for v in values.into_iter().flatten() {
                out.insert(v);
                if out.len() > MAX {
                    let mut v: Vec<String> = out.into_iter().take(MAX).collect();
                    v.push("…".into());
                    return v;
                }
            }
        }
    }
    out.into_iter().collect()
}

/// A column's values as text: binary decoded as UTF-8 (invalid bytes
/// replaced), anything else cast; NULL as `None`.
pub(crate) fn column_text(
    a: &datafusion::arrow::array::ArrayRef,
) -> Result<Vec<Option<String>>, datafusion::arrow::error::ArrowError> {
    Ok(match a.data_type() {
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let bytes = cast(a, &DataType::Binary)?;
            bytes
                .as_binary::<i32>()
                .iter()
                .map(|v| v.map(|v| String::from_utf8_lossy(v).into_owned()))
                .collect()
        }
        _ => {
            let text = cast(a, &DataType::Utf8)?;
            text.as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()
        }
    })
}
