//! The policy written as Spark SQL views, for organisations that already
//! read the canonical Delta tables with Spark or Databricks.
//!
//! Each role's grant for a purpose becomes a schema of views, one per
//! table it covers, carrying what a governed session compiles into its own
//! views: the grant's row filters (sites, wards, restricted-view groups),
//! the national data opt-out for a secondary purpose, and each column's
//! action (shown, masked, removed, reduced to a year, a month, an age band
//! or a postcode district).
//!
//! Two things cannot go with them, and the views fail closed on both:
//! - **Pseudonyms.** A pseudonym is keyed, and the key never leaves the
//!   instance; a column the policy pseudonymises is left out of the view.
//! - **Disclosure control and the audit** happen when an answer leaves the
//!   instance. Spark's answers do not pass through it, so a view schema is
//!   for those the IG lead would let see its rows, and Spark's own access
//!   log is the only record of what they read.
//!
//! The caller lists the stored tables (a canonical table may be stored in
//! parts, one per writer, which a view reads as one) and the opt-out is a
//! table beside them, `national_data_opt_out(nhs_number)`, which whoever
//! runs Spark loads from the list the instance reads.

use std::collections::BTreeMap;
use std::fmt::Write;

use datafusion::arrow::datatypes::{DataType, Schema};
use fdp_model::Model;

use crate::policy::{Action, Policy};
use crate::purpose::Purpose;

/// A stored Delta table (or one part of a canonical table), as Spark is to
/// find it.
#[derive(Debug, Clone)]
pub struct StoredTable {
    /// The canonical table it holds rows of, e.g. `patient`.
    pub table: String,
    /// Its writer, for a part (`patient@fhir` is the FHIR source's).
    pub part: Option<String>,
    /// Where the Delta table is: `s3://…`, `abfss://…` or a local path.
    pub location: String,
    /// Its columns as stored.
    pub schema: Schema,
}

impl StoredTable {
    /// Its name in the source schema: a part's writer follows two
    /// underscores, since a metastore name cannot hold `@`.
    fn source_name(&self) -> String {
        match &self.part {
            Some(p) => format!("{}__{}", self.table, ident_safe(p)),
            None => self.table.clone(),
        }
    }
}

/// What to write and where the views and tables are named.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The schema the stored tables are registered in, e.g. `fdp_canonical`.
    /// No one but the views' owner should be granted it.
    pub source_schema: String,
    /// The views' schemas are `<prefix>_<role>_<purpose>`.
    pub schema_prefix: String,
    /// Only this role's grants (default: every role's).
    pub role: Option<String>,
    /// Only grants for this purpose (default: every purpose).
    pub purpose: Option<Purpose>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the policy has no role `{0}`; its roles are: {1}")]
    NoSuchRole(String, String),
    #[error("the policy grants nothing to export for that role and purpose")]
    NothingGranted,
    #[error("{table}.{column} is stored as {data_type}, which has no Spark SQL equivalent here")]
    Unsupported {
        table: String,
        column: String,
        data_type: DataType,
    },
}

/// The SQL script: the stored tables registered, the opt-out's table and
/// the identifiers it excludes, then a schema of views per grant.
pub fn spark_views(
    policy: &Policy,
    model: &Model,
    stored: &[StoredTable],
    options: &ExportOptions,
) -> Result<String, ExportError> {
    if let Some(role) = &options.role {
        if !policy.roles.contains_key(role) {
            let known: Vec<&str> = policy.roles.keys().map(String::as_str).collect();
            return Err(ExportError::NoSuchRole(role.clone(), known.join(", ")));
        }
    }
    let src = ident_safe(&options.source_schema);
    let mut by_table: BTreeMap<&str, Vec<&StoredTable>> = BTreeMap::new();
    for t in stored {
        by_table.entry(t.table.as_str()).or_default().push(t);
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- OpenFDP policy `{}` (sha256 {}) as Spark SQL views.\n\
         -- Pseudonymised columns are left out (the key stays in the instance), and\n\
         -- answers read here pass no disclosure control and no OpenFDP audit.\n\
         -- Grant users a view schema, never `{src}`.\n",
        policy.source, policy.digest
    );
    let _ = writeln!(out, "CREATE SCHEMA IF NOT EXISTS {src};");
    for t in stored {
        let _ = writeln!(
            out,
            "CREATE TABLE IF NOT EXISTS {src}.{} USING DELTA LOCATION '{}';",
            t.source_name(),
            t.location.replace('\'', "''")
        );
    }
    let _ = writeln!(
        out,
        "-- Load from the list the instance reads (its opt_out_file), replacing the rows at each refresh.\n\
         CREATE TABLE IF NOT EXISTS {src}.national_data_opt_out (nhs_number STRING) USING DELTA;"
    );
    // What the opt-out excludes: the NHS numbers, and the person ids the
    // patient table gives them (other tables name a patient by that id).
    let mut opted_out = format!(
        "CREATE OR REPLACE VIEW {src}.opted_out_ids AS\n  \
         SELECT nhs_number AS id FROM {src}.national_data_opt_out WHERE nhs_number IS NOT NULL"
    );
    if let Some(parts) = by_table.get("patient") {
        if let Some(person) = model
            .object_type_by_table("patient")
            .map(|o| o.primary_key_property().column.clone())
        {
            for p in parts {
                if has(&p.schema, &person) && has(&p.schema, "nhs_number") {
                    let _ = write!(
                        opted_out,
                        "\n  UNION SELECT {person} FROM {src}.{} \
                         WHERE {person} IS NOT NULL AND nhs_number IN \
                         (SELECT nhs_number FROM {src}.national_data_opt_out)",
                        p.source_name()
                    );
                }
            }
        }
    }
    let _ = writeln!(out, "{opted_out};\n");

    let mut wrote = 0;
    for (role_name, role) in &policy.roles {
        if options.role.as_ref().is_some_and(|r| r != role_name) {
            continue;
        }
        for (purpose, grant) in &role.grants {
            if options.purpose.is_some_and(|p| p != *purpose) {
                continue;
            }
            let schema = ident_safe(&format!(
                "{}_{}_{}",
                options.schema_prefix,
                role_name,
                purpose.as_str()
            ));
            let _ = writeln!(
                out,
                "-- role `{role_name}` for {purpose}{}",
                if purpose.is_secondary() {
                    ": a secondary use, so the national data opt-out applies"
                } else {
                    ""
                }
            );
            if grant.rows.own_organisation_only {
                let _ = writeln!(
                    out,
                    "-- rows of this organisation only: grant this schema to its own staff alone"
                );
            }
            let _ = writeln!(out, "CREATE SCHEMA IF NOT EXISTS {schema};");
            for (table, parts) in &by_table {
                if !grant.objects.covers(table) {
                    continue;
                }
                let Some(object) = model.object_type_by_table(table) else {
                    continue;
                };
                // The columns of every part, in the order first stored.
                let mut columns: Vec<(String, DataType)> = Vec::new();
                for p in parts {
                    for f in p.schema.fields() {
                        if !columns.iter().any(|(c, _)| c == f.name()) {
                            columns.push((f.name().clone(), f.data_type().clone()));
                        }
                    }
                }
                let mut select = Vec::new();
                let mut left_out = Vec::new();
                for (column, data_type) in &columns {
                    let action = match object.property_by_column(column) {
                        Some(p) => grant.action(table, column, p.sensitivity),
                        None => Action::Remove,
                    };
                    let c = format!("`{column}`");
                    let spark = spark_type(table, column, data_type)?;
                    let e = match action {
                        Action::Show => Some(c),
                        Action::Remove => None,
                        Action::Pseudonymise => {
                            left_out.push(column.clone());
                            None
                        }
                        Action::Mask if spark == "STRING" => Some(format!(
                            "CASE WHEN {c} IS NULL THEN CAST(NULL AS STRING) ELSE '[masked]' END"
                        )),
                        Action::Mask => Some(format!("CAST(NULL AS {spark})")),
                        Action::Year => Some(format!("year({c})")),
                        Action::Month => Some(format!("trunc(CAST({c} AS DATE), 'MM')")),
                        Action::AgeBand => Some(age_band(&c, &spark)),
                        Action::District => Some(district(&c)),
                    };
                    if let Some(e) = e {
                        select.push(format!("{e} AS `{column}`"));
                    }
                }
                if select.is_empty() {
                    continue;
                }
                let from = parts
                    .iter()
                    .map(|p| {
                        let cols: Vec<String> = columns
                            .iter()
                            .map(|(c, t)| {
                                if has(&p.schema, c) {
                                    format!("`{c}`")
                                } else {
                                    // Checked above: every column has a type.
                                    let spark = spark_type(table, c, t).unwrap_or_default();
                                    format!("CAST(NULL AS {spark}) AS `{c}`")
                                }
                            })
                            .collect();
                        format!("SELECT {} FROM {src}.{}", cols.join(", "), p.source_name())
                    })
                    .collect::<Vec<_>>()
                    .join("\n    UNION ALL ");
                let mut filters = Vec::new();
                let has_column = |c: &str| columns.iter().any(|(name, _)| name == c);
                if let (Some(sites), true) = (&grant.rows.sites, has_column("site_name")) {
                    filters.push(format!("`site_name` IN ({})", quoted(sites)));
                }
                if let (Some(wards), true) = (&grant.rows.wards, has_column("ward")) {
                    filters.push(format!("`ward` IN ({})", quoted(wards)));
                }
                if has_column("rv_group_ids") {
                    let mut rule = "`rv_group_ids` IS NULL OR size(`rv_group_ids`) = 0".to_string();
                    if !grant.rows.rv_groups.is_empty() {
                        let _ = write!(
                            rule,
                            " OR arrays_overlap(`rv_group_ids`, array({}))",
                            quoted(&grant.rows.rv_groups)
                        );
                    }
                    filters.push(format!("({rule})"));
                }
                if purpose.is_secondary() {
                    for c in crate::session::patient_columns(object) {
                        if has_column(&c) {
                            filters.push(format!(
                                "(`{c}` IS NULL OR `{c}` NOT IN (SELECT id FROM {src}.opted_out_ids))"
                            ));
                        }
                    }
                }
                if !left_out.is_empty() {
                    let _ = writeln!(
                        out,
                        "-- {table}: pseudonymised in OpenFDP, so left out here: {}",
                        left_out.join(", ")
                    );
                }
                let _ = write!(
                    out,
                    "CREATE OR REPLACE VIEW {schema}.{table} AS\nSELECT {}\nFROM (\n    {from}\n) AS stored",
                    select.join(",\n       ")
                );
                if !filters.is_empty() {
                    let _ = write!(out, "\nWHERE {}", filters.join("\n  AND "));
                }
                let _ = writeln!(out, ";");
                wrote += 1;
            }
            let _ = writeln!(out);
        }
    }
    if wrote == 0 {
        return Err(ExportError::NothingGranted);
    }
    Ok(out)
}

fn has(schema: &Schema, column: &str) -> bool {
    schema.index_of(column).is_ok()
}

/// A name Spark takes unquoted: letters, digits and underscores.
fn ident_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn quoted(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("'{}'", v.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn spark_type(table: &str, column: &str, t: &DataType) -> Result<String, ExportError> {
    Ok(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 | DataType::Float64 => "DOUBLE".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(..) => "TIMESTAMP".into(),
        DataType::List(f) | DataType::LargeList(f) => {
            format!("ARRAY<{}>", spark_type(table, column, f.data_type())?)
        }
        other => {
            return Err(ExportError::Unsupported {
                table: table.into(),
                column: column.into(),
                data_type: other.clone(),
            })
        }
    })
}

/// The ten-year band (`40-49`, `90+`) of an age, or of a date of birth as
/// of the day the view is read, as OpenFDP bands it.
fn age_band(c: &str, spark: &str) -> String {
    let age = if spark == "DATE" || spark == "TIMESTAMP" {
        format!("CAST(floor(months_between(current_date(), CAST({c} AS DATE)) / 12) AS BIGINT)")
    } else {
        format!("CAST({c} AS BIGINT)")
    };
    format!(
        "CASE WHEN {age} IS NULL THEN CAST(NULL AS STRING) \
         WHEN {age} >= 90 THEN '90+' \
         ELSE concat(CAST(floor(greatest({age}, 0) / 10) * 10 AS STRING), '-', \
         CAST(floor(greatest({age}, 0) / 10) * 10 + 9 AS STRING)) END"
    )
}

/// A postcode's outward code (`LS1 4AP` → `LS1`); a value not shaped like
/// a postcode gives NULL, as in OpenFDP.
fn district(c: &str) -> String {
    let compact = format!("upper(regexp_replace({c}, '\\\\s', ''))");
    format!(
        "CASE WHEN {compact} RLIKE '^[A-Z0-9]{{2,4}}[0-9][A-Z]{{2}}$' \
         THEN substring({compact}, 1, length({compact}) - 3) END"
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::Field;

    use super::*;

    fn stored(table: &str, part: Option<&str>, columns: &[(&str, DataType)]) -> StoredTable {
        StoredTable {
            table: table.into(),
            part: part.map(str::to_string),
            location: format!("s3://bucket/canonical/{table}"),
            schema: Schema::new(
                columns
                    .iter()
                    .map(|(c, t)| Arc::new(Field::new(*c, t.clone(), true)))
                    .collect::<Vec<_>>(),
            ),
        }
    }

    fn options(role: &str, purpose: Purpose) -> ExportOptions {
        ExportOptions {
            source_schema: "fdp_canonical".into(),
            schema_prefix: "fdp".into(),
            role: Some(role.into()),
            purpose: Some(purpose),
        }
    }

    #[test]
    fn an_analysts_views_leave_out_pseudonymised_identifiers_and_apply_the_opt_out() {
        let model = Model::canonical();
        let policy = Policy::demo(model);
        let tables = [
            stored(
                "patient",
                None,
                &[
                    ("person_id", DataType::Utf8),
                    ("nhs_number", DataType::Utf8),
                    ("postcode", DataType::Utf8),
                ],
            ),
            stored(
                "patient",
                Some("fhir"),
                &[
                    ("person_id", DataType::Utf8),
                    ("nhs_number", DataType::Utf8),
                ],
            ),
            stored(
                "encounter",
                None,
                &[
                    ("encounter_id", DataType::Utf8),
                    ("patient_id", DataType::Utf8),
                    ("specialty_name", DataType::Utf8),
                ],
            ),
        ];
        let sql = spark_views(
            &policy,
            model,
            &tables,
            &options("analyst", Purpose::Planning),
        )
        .unwrap();
        assert!(sql.contains("CREATE OR REPLACE VIEW fdp_analyst_planning.encounter"));
        let encounter = sql
            .split("CREATE OR REPLACE VIEW fdp_analyst_planning.encounter")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        // The patient id is pseudonymised in the instance: not in the view,
        // but still the column the opt-out is applied by.
        assert!(!encounter.contains("`patient_id` AS"), "{encounter}");
        assert!(encounter.contains("NOT IN (SELECT id FROM fdp_canonical.opted_out_ids)"));
        assert!(sql.contains("FROM fdp_canonical.patient__fhir"), "{sql}");
        assert!(!sql.contains("`nhs_number` AS"), "{sql}");
    }

    #[test]
    fn direct_care_has_no_opt_out_and_an_unknown_role_is_named() {
        let model = Model::canonical();
        let policy = Policy::demo(model);
        let tables = [stored(
            "encounter",
            None,
            &[
                ("encounter_id", DataType::Utf8),
                ("patient_id", DataType::Utf8),
            ],
        )];
        let sql = spark_views(
            &policy,
            model,
            &tables,
            &options("clinician", Purpose::DirectCare),
        )
        .unwrap();
        assert!(sql.contains("`patient_id` AS `patient_id`"));
        let views = sql.split("-- role").nth(1).unwrap();
        assert!(!views.contains("opted_out_ids"), "{views}");
        let err = spark_views(
            &policy,
            model,
            &tables,
            &options("janitor", Purpose::DirectCare),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no role `janitor`"), "{err}");
    }
}
