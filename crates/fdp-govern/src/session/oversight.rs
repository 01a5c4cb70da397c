//! What the information-governance lead does: re-identify a pseudonym for
//! a lawful reason, review the audit, and see what the national data
//! opt-out keeps out of each table's secondary uses.

use super::*;

impl Governance {
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

    /// The opt-out list, and every identifier it stands for in the tables:
    /// the NHS numbers, and the person ids the patient table gives them
    /// (the other tables name the patient by person id).
    pub(super) async fn opted_out(
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
}

pub(super) async fn person_ids_of(
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
