//! A governed session's queries: planned over the policy's views, answered
//! with disclosure control where the purpose requires it, and audited with
//! the patients each answer names.

use super::*;

/// For each table, the stored tables it is read from and their versions.
pub type TableVersions = BTreeMap<String, Vec<(String, u64)>>;

/// Column names, and rows of text (NULL as `None`).
pub type TextTable = (Vec<String>, Vec<Vec<Option<String>>>);

/// Rows in each batch of an answer being held (see `GovernedSession::hold`).
const HELD_BATCH_ROWS: usize = 65_536;

/// The largest input, in rows and bytes, a join building an answer being
/// held hashes whole rather than partitioned (see `GovernedSession::hold`).
const HELD_JOIN_BUILD_ROWS: usize = 2_000_000;
const HELD_JOIN_BUILD_BYTES: usize = 512 * 1024 * 1024;

/// A principal's session, with the policy compiled in.
pub struct GovernedSession {
    pub(super) ctx: SessionContext,
    pub(super) req: SessionRequest,
    pub(super) role: String,
    pub(super) decisions: Vec<String>,
    pub(super) objects_granted: BTreeSet<String>,
    /// The stored tables and versions behind each table in the session.
    pub(super) versions: TableVersions,
    pub(super) disclosure: Option<crate::policy::Disclosure>,
    /// The tables that name a patient, by the column that does: how the
    /// patients behind each row of an answer are counted.
    pub(super) patient_keys: PatientKeys,
    /// Of those, the ones whose stored files are known, with their patient
    /// column: their rows per patient can be bounded (see `behind`).
    pub(super) row_sources: HashMap<String, (Arc<dyn crate::access::RowMasking>, String)>,
    pub(super) masks: Arc<MaskCache>,
    /// What runs the session's physical plans.
    pub(super) executor: Arc<dyn crate::execution::PlanExecutor>,
    pub(super) audit: Arc<AuditLog>,
    pub(super) policy_digest: String,
    pub(super) audit_each_query: bool,
    /// The extract specifications approved for the session's research
    /// project (see [`GovernedSession::extract`]).
    pub(super) extracts: BTreeMap<String, crate::projects::ExtractSpec>,
    /// The object types the grant covers, whether or not they hold data yet.
    pub(super) covered: crate::policy::Objects,
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
pub(super) fn read_only() -> SQLOptions {
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

    /// The columns of `table` as the session's view of it holds them (a
    /// column the policy removes is not there), or `None` where the session
    /// has no such table. Read from the view itself: nothing is planned.
    pub async fn visible_columns(&self, table: &str) -> Option<Vec<String>> {
        let view = self.ctx.table_provider(table).await.ok()?;
        Some(
            view.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
        )
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

    /// Answer `sql` (governed and audited as any query) and hold the answer
    /// in this session as a table named `name` until the returned guard is
    /// dropped: how a product computes a large intermediate once (the PTL)
    /// and asks several questions of it, where a common table expression
    /// would be computed again in each. Refused, audited, where disclosure
    /// control applies: a held answer no longer says which patients are
    /// behind each of its rows, which that control needs.
    pub async fn hold(&self, name: &str, sql: &str) -> Result<Held<'_>, GovernError> {
        self.refuse_hold_under_disclosure(&format!("hold {name}"))?;
        if self.ctx.table_exist(name)? {
            return Err(GovernError::Source(format!(
                "an answer cannot be held as {name}: the session already has a table of that name"
            )));
        }
        let planned = self.held_context().sql_with_options(sql, read_only()).await;
        let answer = self
            .audited(
                sql,
                None,
                async move { self.run(planned?, None, false).await },
            )
            .await?;
        // The batches' own schema: the planned one may differ from it in
        // nullability, which a held table must match.
        let schema = answer
            .batches
            .first()
            .map(|b| b.schema())
            .unwrap_or(answer.schema);
        // Dealt across the session's partitions, so that the questions asked
        // of it scan it on every core rather than one.
        let partitions = self.ctx.state().config().target_partitions().max(1);
        let mut dealt = vec![Vec::new(); partitions.min(answer.batches.len()).max(1)];
        let n = dealt.len();
        for (i, batch) in answer.batches.into_iter().enumerate() {
            dealt[i % n].push(batch);
        }
        let table = datafusion::datasource::MemTable::try_new(schema, dealt)?;
        self.ctx.register_table(name, Arc::new(table))?;
        Ok(Held {
            session: self,
            name: name.to_string(),
        })
    }

    /// Refused, audited as `what`, where disclosure control applies: a held
    /// answer no longer says which patients are behind each of its rows.
    fn refuse_hold_under_disclosure(&self, what: &str) -> Result<(), GovernError> {
        if self.disclosure.is_none() {
            return Ok(());
        }
        let refusal = format!(
            "an answer is not held for further queries under {}: disclosure control needs the patients behind each row",
            self.req.purpose
        );
        self.refused(what, &refusal)?;
        Err(GovernError::Source(refusal))
    }

    /// The context a held answer is planned in: the session's tables and
    /// governance, with settings for a large answer.
    fn held_context(&self) -> SessionContext {
        // Planned for a large answer, unlike a question's: a held answer is
        // a large intermediate (a million PTL entries). Built in fewer,
        // larger batches it sorts, windows and joins faster, and its joins
        // build one hash table of up to two million rows rather than
        // repartitioning both sides (measured by `fdp bench elective`). A
        // question keeps the defaults, which suit the small aggregates a
        // session mostly answers: larger batches slow those down
        // (`fdp bench cohort`).
        //
        // Its joins are built in the order the query nests them, not
        // swapped by estimated size: a held answer is a product's own
        // query, written so that every hash table is built from a table or
        // an aggregate. A join's output shares its inputs' string buffers,
        // and a table built from it copies them batch by batch; swapped
        // onto one, a million-entry PTL spent 0.7 s building one table.
        let mut config = self
            .ctx
            .state()
            .config()
            .clone()
            .with_batch_size(HELD_BATCH_ROWS)
            // The session's own catalog, not a new empty one in its place.
            .with_create_default_catalog_and_schema(false);
        let optimizer = &mut config.options_mut().optimizer;
        optimizer.hash_join_single_partition_threshold_rows = HELD_JOIN_BUILD_ROWS;
        optimizer.hash_join_single_partition_threshold = HELD_JOIN_BUILD_BYTES;
        optimizer.join_reordering = false;
        SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(self.ctx.state())
                .with_config(config)
                .build(),
        )
    }

    /// [`Self::query`], governed and audited the same, also giving the plan
    /// the engine ran with what each step measured. For an operator timing
    /// the instance (`fdp bench`): no channel offers it, because a step's
    /// row counts are themselves counts no disclosure control has seen.
    pub async fn profile(&self, sql: &str) -> Result<(QueryResult, String), GovernError> {
        let planned = self.ctx.sql_with_options(sql, read_only()).await;
        self.run_profiled(sql, planned).await
    }

    /// [`Self::profile`] of an answer planned as [`Self::hold`] plans it
    /// (the same settings for a large answer), refused where holding is.
    /// The answer is not held.
    pub async fn profile_hold(&self, sql: &str) -> Result<(QueryResult, String), GovernError> {
        self.refuse_hold_under_disclosure("profile a held answer")?;
        let planned = self.held_context().sql_with_options(sql, read_only()).await;
        self.run_profiled(sql, planned).await
    }

    /// Run `planned` (`sql` as planned in one of the session's contexts),
    /// governed and audited as a query, with the plan as it ran.
    async fn run_profiled(
        &self,
        sql: &str,
        planned: datafusion::error::Result<datafusion::dataframe::DataFrame>,
    ) -> Result<(QueryResult, String), GovernError> {
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
                let batches = self
                    .executor
                    .collect(physical.clone(), Arc::new(task))
                    .await?;
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
                    let executor = &self.executor;
                    async move {
                        let physical = state
                            .query_planner()
                            .create_physical_plan(&protected.plan, state)
                            .await?;
                        let batches = executor.collect(physical.clone(), state.task_ctx()).await?;
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
pub(super) fn measured(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> String {
    datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan)
        .indent(true)
        .to_string()
}

pub(super) struct CancelledQueryAudit<'a> {
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
pub(super) struct GovernedTable(pub(super) Arc<dyn TableProvider>);

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
pub(super) fn scanned_tables(plan: &LogicalPlan) -> Vec<String> {
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
pub(super) fn patients_named(r: &QueryResult) -> Vec<String> {
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

/// An answer held in a session as a table (see [`GovernedSession::hold`]);
/// dropped, the table goes.
pub struct Held<'s> {
    session: &'s GovernedSession,
    name: String,
}

impl std::fmt::Debug for Held<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("name", &self.name).finish()
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Deregistering a table the session registered cannot fail in a
        // way the caller could act on; the session ends soon after anyway.
        let _ = self.session.ctx.deregister_table(self.name.as_str());
    }
}
