//! Pseudonymise after the aggregate, where that gives the same answer.
//!
//! A policy view pseudonymises the patient's id in every row it reads, and
//! a keyed hash of every row costs more than the query around it. But
//! distinct ids under one key map one to one onto pseudonyms (null onto
//! null), so grouping by the pseudonym makes the same groups as grouping by
//! the id, and counting distinct pseudonyms counts distinct ids. This
//! optimizer rule therefore moves the pseudonym above an aggregate:
//!
//! - a grouping expression `pseudonym(x)` becomes a grouping by `x`, with
//!   the pseudonym computed once per group in a projection just above, under
//!   the name the rest of the plan reads;
//! - `count(DISTINCT pseudonym(x))` becomes `count(DISTINCT x)`, and
//!   `count(pseudonym(x))` becomes `count(x)`: only null has no pseudonym.
//!
//! Counting distinct patients is both at once: the engine groups by the
//! pseudonym and then counts the groups, so neither step pseudonymises.
//!
//! The id itself never reaches anything but the aggregate and the projection
//! that replaces it, so nothing above sees a value the policy did not allow.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::Column;
use datafusion::error::Result;
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::ExprSchemable;
use datafusion::logical_expr::{Aggregate, Expr, Filter, LogicalPlan, Projection, SubqueryAlias};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::prelude::cast;

use crate::udf::PSEUDONYM;

/// The column an id is carried in before it is pseudonymised; the
/// aggregate above reads it, and the projection above that replaces it.
const BEFORE: &str = "__fdp_before_pseudonym_";

/// Numbers the carried columns, so that two never share a name.
static CARRIED: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Default)]
pub(crate) struct PseudonymiseAfterAggregate;

/// `e`'s pseudonym call and the value it pseudonymises, under any alias.
fn pseudonym_of(e: &Expr) -> Option<(&ScalarFunction, &Expr)> {
    match e {
        Expr::Alias(a) => pseudonym_of(&a.expr),
        Expr::ScalarFunction(f) if f.func.name() == PSEUDONYM && f.args.len() == 1 => {
            Some((f, &f.args[0]))
        }
        _ => None,
    }
}

/// `id` without the cast to text the pseudonym function's signature put
/// on a key stored as another kind of text: the same strings group alike,
/// and copying every row's key to cast it would cost more than the rest.
fn as_stored(id: &Expr, input: &LogicalPlan) -> Expr {
    if let Expr::Cast(c) = id {
        let text =
            |t: &DataType| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8);
        if text(c.field.data_type()) && c.expr.get_type(input.schema()).is_ok_and(|t| text(&t)) {
            return c.expr.as_ref().clone();
        }
    }
    id.clone()
}

/// What an aggregate reads as a pseudonym, found: the call that makes it,
/// the id before it, and the aggregate's input changed to carry that id.
struct Found {
    call: ScalarFunction,
    id: Expr,
    input: LogicalPlan,
}

/// Where `e`, read by a node over `input`, is a pseudonym: made right there
/// (`pseudonym(x)`), or a column a projection below made so, reached
/// through aliases and filters. A view reads as the second.
fn find(e: &Expr, input: &LogicalPlan) -> Result<Option<Found>> {
    if let Some((call, id)) = pseudonym_of(e) {
        return Ok(Some(Found {
            call: call.clone(),
            id: as_stored(id, input),
            input: input.clone(),
        }));
    }
    match e {
        Expr::Alias(a) => find(&a.expr, input),
        Expr::Column(c) => carry(c, input),
        _ => Ok(None),
    }
}

/// `column` of `plan` traced down to the projection that pseudonymises it,
/// with `plan` rebuilt to carry the id beside it.
fn carry(column: &Column, plan: &LogicalPlan) -> Result<Option<Found>> {
    let Some(at) = plan.schema().maybe_index_of_column(column) else {
        return Ok(None);
    };
    match plan {
        LogicalPlan::Projection(p) => {
            let Some((call, id)) = pseudonym_of(&p.expr[at]) else {
                return Ok(None);
            };
            let name = format!("{BEFORE}{}", CARRIED.fetch_add(1, Ordering::Relaxed));
            let mut exprs = p.expr.clone();
            exprs.push(as_stored(id, &p.input).alias(&name));
            Ok(Some(Found {
                call: call.clone(),
                id: Expr::Column(Column::new_unqualified(name)),
                input: LogicalPlan::Projection(Projection::try_new(exprs, p.input.clone())?),
            }))
        }
        LogicalPlan::SubqueryAlias(a) => {
            let (q, f) = a.input.schema().qualified_field(at);
            let Some(found) = carry(&Column::new(q.cloned(), f.name()), &a.input)? else {
                return Ok(None);
            };
            let Expr::Column(inner) = &found.id else {
                return Ok(None);
            };
            let name = inner.name.clone();
            Ok(Some(Found {
                id: Expr::Column(Column::new(Some(a.alias.clone()), name)),
                input: LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
                    Arc::new(found.input),
                    a.alias.clone(),
                )?),
                call: found.call,
            }))
        }
        LogicalPlan::Filter(f) => {
            let Some(found) = carry(column, &f.input)? else {
                return Ok(None);
            };
            Ok(Some(Found {
                input: LogicalPlan::Filter(Filter::try_new(
                    f.predicate.clone(),
                    Arc::new(found.input),
                )?),
                ..found
            }))
        }
        _ => Ok(None),
    }
}

/// The argument of `count(…)` or `count(DISTINCT …)`, under any alias.
fn count_argument(e: &Expr) -> Option<&Expr> {
    match e {
        Expr::Alias(a) => count_argument(&a.expr),
        Expr::AggregateFunction(f) if f.func.name() == "count" && f.params.args.len() == 1 => {
            Some(&f.params.args[0])
        }
        _ => None,
    }
}

/// `e` (a count) counting `id` instead.
fn counting(e: &Expr, id: Expr) -> Expr {
    match e {
        Expr::Alias(a) => counting(&a.expr, id).alias_qualified(a.relation.clone(), &a.name),
        Expr::AggregateFunction(f) => {
            let mut params = f.params.clone();
            params.args = vec![id];
            Expr::AggregateFunction(AggregateFunction {
                func: f.func.clone(),
                params,
            })
        }
        e => e.clone(),
    }
}

impl OptimizerRule for PseudonymiseAfterAggregate {
    fn name(&self) -> &str {
        "pseudonymise_after_aggregate"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(a) = plan else {
            return Ok(Transformed::no(plan));
        };
        // A grouping set repeats a group column under several groupings;
        // left as it is.
        if a.group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return Ok(Transformed::no(LogicalPlan::Aggregate(a)));
        }
        let mut input = a.input.as_ref().clone();
        let mut group = Vec::with_capacity(a.group_expr.len());
        let mut lifted = Vec::new();
        for (i, e) in a.group_expr.iter().enumerate() {
            match find(e, &input)? {
                Some(found) => {
                    group.push(found.id.alias(format!("{BEFORE}group_{i}")));
                    lifted.push((i, found.call));
                    input = found.input;
                }
                None => group.push(e.clone()),
            }
        }
        let mut aggr = Vec::with_capacity(a.aggr_expr.len());
        let mut counted = false;
        for (k, e) in a.aggr_expr.iter().enumerate() {
            let found = match count_argument(e) {
                Some(arg) => find(arg, &input)?,
                None => None,
            };
            match found {
                Some(found) => {
                    counted = true;
                    input = found.input;
                    // Under the name the plan above reads.
                    let (q, f) = a.schema.qualified_field(a.group_expr.len() + k);
                    aggr.push(match counting(e, found.id) {
                        c @ Expr::Alias(_) => c,
                        c => c.alias_qualified(q.cloned(), f.name()),
                    });
                }
                None => aggr.push(e.clone()),
            }
        }
        if lifted.is_empty() && !counted {
            return Ok(Transformed::no(LogicalPlan::Aggregate(a)));
        }
        let inner = Aggregate::try_new(Arc::new(input), group, aggr)?;
        let inner_schema = inner.schema.clone();
        // The outputs in the original order and names, each group column
        // that was lifted pseudonymised here, once per group.
        let exprs = a
            .schema
            .iter()
            .enumerate()
            .map(|(i, (q, f))| {
                let (iq, inf) = inner_schema.qualified_field(i);
                let c = Expr::Column(Column::new(iq.cloned(), inf.name()));
                let e = match lifted.iter().find(|(at, _)| *at == i) {
                    Some((_, call)) => Expr::ScalarFunction(ScalarFunction {
                        func: call.func.clone(),
                        args: vec![cast(c, DataType::Utf8)],
                    }),
                    None => c,
                };
                e.alias_qualified(q.cloned(), f.name())
            })
            .collect::<Vec<_>>();
        let projection = Projection::try_new(exprs, Arc::new(LogicalPlan::Aggregate(inner)))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::Keystore;
    use crate::purpose::Purpose;
    use datafusion::arrow::array::{RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::{MemTable, ViewTable};
    use datafusion::prelude::{col, SessionContext};

    /// Stays of nine patients on two wards, seen through a view that
    /// pseudonymises the patient, with the rule or without it.
    async fn context(with_rule: bool, dir: &std::path::Path) -> SessionContext {
        let key = Keystore::open(dir)
            .pseudonym_key(Purpose::Planning, "national")
            .unwrap();
        let (mut patients, mut wards) = (Vec::new(), Vec::new());
        for i in 0..40 {
            patients.push(if i % 11 == 0 {
                None
            } else {
                Some(format!("p{}", i % 9))
            });
            wards.push(if i % 3 == 0 { "A" } else { "B" });
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("patient_id", DataType::Utf8, true),
            Field::new("ward", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(patients)),
                Arc::new(StringArray::from(wards)),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        if with_rule {
            ctx.add_optimizer_rule(Arc::new(PseudonymiseAfterAggregate));
        }
        ctx.register_table(
            "stored",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
        let view = ctx
            .table("stored")
            .await
            .unwrap()
            .select(vec![
                crate::udf::pseudonym(key, col("patient_id")).alias("patient_id"),
                col("ward"),
            ])
            .unwrap()
            .into_unoptimized_plan();
        ctx.register_table("stay", Arc::new(ViewTable::new(view, None)))
            .unwrap();
        ctx
    }

    async fn answer(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    }

    #[tokio::test]
    async fn the_answer_is_the_same_and_each_group_is_pseudonymised_once() {
        let dir = tempfile::tempdir().unwrap();
        let queries = [
            "SELECT ward, count(DISTINCT patient_id) AS n FROM stay GROUP BY ward ORDER BY 1",
            "SELECT patient_id, ward, count(*) AS n FROM stay GROUP BY patient_id, ward ORDER BY 1, 2",
            "SELECT count(DISTINCT patient_id), count(DISTINCT ward) FROM stay",
            "SELECT count(DISTINCT patient_id) AS n, count(patient_id) AS m FROM stay",
            "SELECT ward, patient_id FROM stay GROUP BY ROLLUP (ward, patient_id) ORDER BY 1, 2",
        ];
        let plain = context(false, dir.path()).await;
        let lifted = context(true, dir.path()).await;
        for sql in queries {
            assert_eq!(
                answer(&plain, sql).await,
                answer(&lifted, sql).await,
                "{sql}"
            );
        }
        // The aggregates group and count by the id: no row below them is
        // pseudonymised, only a group the answer shows, above them.
        for sql in &queries[..2] {
            let plan = lifted
                .sql(sql)
                .await
                .unwrap()
                .into_optimized_plan()
                .unwrap()
                .display_indent()
                .to_string();
            let lines: Vec<&str> = plan.lines().collect();
            let innermost = lines
                .iter()
                .rposition(|l| l.contains("Aggregate:"))
                .unwrap();
            assert!(
                lines[innermost..].iter().all(|l| !l.contains("pseudonym(")),
                "{sql}\n{plan}"
            );
            assert_eq!(
                sql.contains("GROUP BY patient_id"),
                plan.contains("pseudonym("),
                "{plan}"
            );
        }
    }
}
