//! Opening a session: the policy's grant compiled into one view per
//! table (row filters, column actions, the opt-out), registered in a
//! session context of its own.

use super::*;

impl Governance {
    pub(super) async fn compile<S: TableSource>(
        &self,
        source: &S,
        req: &SessionRequest,
    ) -> Result<GovernedSession, GovernError> {
        let (role, grant, approved) = self.checked(req)?;
        let ctx = new_context();
        if self.executor.ships_plans() {
            // A shipped plan's stages are planned again as their inputs
            // finish, and that may swap a hash join's sides, which a join
            // already holding a dynamic filter refuses: the stage fails
            // and the query waits for ever. Such joins are planned without.
            ctx.state_ref()
                .write()
                .config_mut()
                .options_mut()
                .optimizer
                .enable_join_dynamic_filter_pushdown = false;
        }
        let access = TableAccess::new();
        let mut tables = source
            .canonical_tables(&access, &ctx, req.as_of)
            .await
            .map_err(|e| GovernError::Source(e.to_string()))?;
        // A table the grant covers that nothing has written yet holds no
        // rows now: read as empty, so a query that joins it is answered
        // rather than failing. Not in the past, where a table that did not
        // exist yet means no data, not none (see `missing_tables`).
        if req.as_of == AsOf::Latest {
            for object in self.model.object_types() {
                if grant.objects.covers(&object.table)
                    && !tables.iter().any(|t| t.name == object.table)
                {
                    let schema = Arc::new(object.arrow_schema());
                    tables.push(SourceTable {
                        name: object.table.clone(),
                        provider: Arc::new(datafusion::datasource::MemTable::try_new(
                            schema,
                            vec![Vec::new()],
                        )?),
                        masking: None,
                        versions: Vec::new(),
                    });
                }
            }
        }
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
                    Action::Month => Some(crate::udf::month_start(c)),
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
                // The store's own scan of every row, rather than the table's
                // provider: it leaves filters to the plan unless the session
                // asks for them in the Parquet reader, and ships as plain
                // Parquet to a cluster.
                (Some(masking), None) => {
                    named_scan(&ctx, &t.name, masking.keeping(&Default::default())?)?
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
            executor: self.executor.clone(),
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
pub(super) fn named_scan(
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

pub(super) fn new_context() -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("datafusion", "public");
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.add_optimizer_rule(Arc::new(crate::late_pseudonyms::PseudonymiseAfterAggregate));
    ctx.add_optimizer_rule(Arc::new(crate::late_pseudonyms::PseudonymiseAfterJoin));
    ctx.add_optimizer_rule(Arc::new(crate::late_pseudonyms::NullnessWithoutPseudonym));
    ctx.add_optimizer_rule(Arc::new(crate::day_arithmetic::DaysAsDayCounts));
    ctx.add_optimizer_rule(Arc::new(crate::running_window::RunningExtremes));
    ctx
}

/// Register the raw tables under `raw.`; answers their versions by name.
pub(super) fn register_raw(
    ctx: &SessionContext,
    raw: Vec<SourceTable>,
) -> Result<TableVersions, GovernError> {
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
pub(super) fn patient_key(object: &fdp_model::ObjectType) -> Option<String> {
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

pub(super) fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The columns of `object` that name a patient: the patient table's key, and
/// every foreign key the model links to Patient.
pub(crate) fn patient_columns(object: &fdp_model::ObjectType) -> Vec<String> {
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
