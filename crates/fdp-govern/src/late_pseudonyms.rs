//! Pseudonymise after the aggregate or the join, where that gives the same
//! answer.
//!
//! A policy view pseudonymises the patient's id in every row it reads, and
//! a keyed hash of every row costs more than the query around it. But
//! under one key, ids with the same pseudonym input (the id trimmed, see
//! [`crate::udf::pseudonym_input`]) are exactly the ids with the same
//! pseudonym, and null has none. So:
//!
//! - grouping by `pseudonym(x)` makes the same groups as grouping by the
//!   input of `x`: the aggregate groups by the input, and a projection just
//!   above computes the pseudonym once per group, under the name the rest
//!   of the plan reads;
//! - `count(DISTINCT pseudonym(x))` counts the same as
//!   `count(DISTINCT input(x))`, and `count(pseudonym(x))` as `count(x)`;
//! - a join on `pseudonym(x) = pseudonym(y)` under the same key matches the
//!   same rows as a join on `input(x) = input(y)`: the join matches on the
//!   inputs, and a projection just above pseudonymises what it passes on.
//!   A pseudonym nothing above reads is then never computed at all, which
//!   is the common case: a cohort joins a patient's records by the id and
//!   counts people.
//!
//! A pseudonymised column is traced down through projections, aliases,
//! filters, joins and unions of views to the projection that makes it.
//! The id itself never reaches anything but the aggregate or join and the
//! projection that replaces it, so nothing above sees a value the policy
//! did not allow, and a filter a user writes on the column still compares
//! pseudonyms.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::Column;
use datafusion::error::Result;
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::ExprSchemable;
use datafusion::logical_expr::{
    Aggregate, Expr, Filter, Join, JoinType, LogicalPlan, Projection, SubqueryAlias, Union,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::prelude::cast;

use crate::udf::{pseudonym_input, pseudonym_key, PSEUDONYM};

/// The column an id is carried in before it is pseudonymised; the
/// aggregate above reads it, and the projection above that replaces it.
const BEFORE: &str = "__fdp_before_pseudonym_";

/// Numbers the carried columns, so that two never share a name.
static CARRIED: AtomicUsize = AtomicUsize::new(0);

/// A name for a carried column that no other column has.
fn fresh() -> String {
    format!("{BEFORE}{}", CARRIED.fetch_add(1, Ordering::Relaxed))
}

/// `call`'s pseudonym of `id`, an input this rule carried.
fn pseudonymised(call: &ScalarFunction, id: Expr) -> Expr {
    Expr::ScalarFunction(ScalarFunction {
        func: call.func.clone(),
        args: vec![cast(id, DataType::Utf8)],
    })
}

/// `j` over new inputs and keys, its kind, filter and null handling kept.
fn rejoined(
    j: &Join,
    left: Arc<LogicalPlan>,
    right: Arc<LogicalPlan>,
    on: Vec<(Expr, Expr)>,
) -> Result<LogicalPlan> {
    Ok(LogicalPlan::Join(Join::try_new(
        left,
        right,
        on,
        j.filter.clone(),
        j.join_type,
        j.join_constraint,
        j.null_equality,
        j.null_aware,
    )?))
}

/// Whether two pseudonym calls hash with the same key.
fn same_key(a: &ScalarFunction, b: &ScalarFunction) -> bool {
    match (pseudonym_key(&a.func), pseudonym_key(&b.func)) {
        (Some(a), Some(b)) => a.same_key(b),
        _ => false,
    }
}

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

/// What `id`, read over `input`, is pseudonymised from: the stored value
/// trimmed as the key trims it. A column this rule carried already is.
fn input_of(id: &Expr, input: &LogicalPlan) -> Expr {
    let stored = as_stored(id, input);
    match &stored {
        Expr::Column(c) if c.name.starts_with(BEFORE) => stored,
        _ => pseudonym_input(stored),
    }
}

/// The column `e` is, under any alias.
fn column_of(e: &Expr) -> Option<&Column> {
    match e {
        Expr::Alias(a) => column_of(&a.expr),
        Expr::Column(c) => Some(c),
        _ => None,
    }
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
            id: input_of(id, input),
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
            let (call, id, input) = if let Some((call, id)) = pseudonym_of(&p.expr[at]) {
                (
                    call.clone(),
                    input_of(id, &p.input),
                    p.input.as_ref().clone(),
                )
            } else if let Some(c) = column_of(&p.expr[at]) {
                let Some(found) = carry(c, &p.input)? else {
                    return Ok(None);
                };
                (found.call, found.id, found.input)
            } else {
                return Ok(None);
            };
            let name = fresh();
            let mut exprs = p.expr.clone();
            exprs.push(id.alias(&name));
            Ok(Some(Found {
                call,
                id: Expr::Column(Column::new_unqualified(name)),
                input: LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input))?),
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
        LogicalPlan::Join(j) => {
            let (left, right) = (
                outputs_left(j.join_type) && j.left.schema().has_column(column),
                outputs_right(j.join_type) && j.right.schema().has_column(column),
            );
            let (side, other) = match (left, right) {
                (true, false) => (&j.left, &j.right),
                (false, true) => (&j.right, &j.left),
                _ => return Ok(None),
            };
            let Some(found) = carry(column, side)? else {
                return Ok(None);
            };
            let (new_left, new_right) = if left {
                (Arc::new(found.input), other.clone())
            } else {
                (other.clone(), Arc::new(found.input))
            };
            Ok(Some(Found {
                input: rejoined(j, new_left, new_right, j.on.clone())?,
                ..found
            }))
        }
        LogicalPlan::Union(u) => {
            // Every part must pseudonymise under the same key, and each
            // carries its id in the same place: last, under one name.
            let mut parts = Vec::with_capacity(u.inputs.len());
            let mut call: Option<ScalarFunction> = None;
            for part in &u.inputs {
                let (q, f) = part.schema().qualified_field(at);
                let Some(found) = carry(&Column::new(q.cloned(), f.name()), part)? else {
                    return Ok(None);
                };
                match &call {
                    Some(c) if !same_key(c, &found.call) => return Ok(None),
                    Some(_) => {}
                    None => call = Some(found.call.clone()),
                }
                let kind = found.id.get_type(found.input.schema())?;
                parts.push((part, found, kind));
            }
            let Some(call) = call else {
                return Ok(None);
            };
            let alike = parts.windows(2).all(|w| w[0].2 == w[1].2);
            let name = fresh();
            let inputs = parts
                .into_iter()
                .map(|(part, found, _)| {
                    let mut exprs: Vec<Expr> = part
                        .schema()
                        .iter()
                        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
                        .collect();
                    let id = if alike {
                        found.id
                    } else {
                        cast(found.id, DataType::Utf8)
                    };
                    exprs.push(id.alias(&name));
                    Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(
                        exprs,
                        Arc::new(found.input),
                    )?)))
                })
                .collect::<Result<Vec<_>>>()?;
            let union = Union::try_new(inputs)?;
            let (q, _) = union
                .schema
                .qualified_field(union.schema.fields().len() - 1);
            Ok(Some(Found {
                call,
                id: Expr::Column(Column::new(q.cloned(), name)),
                input: LogicalPlan::Union(union),
            }))
        }
        _ => Ok(None),
    }
}

/// Whether a join of this type passes on its left input's columns.
fn outputs_left(t: JoinType) -> bool {
    !matches!(
        t,
        JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark
    )
}

/// Whether a join of this type passes on its right input's columns.
fn outputs_right(t: JoinType) -> bool {
    !matches!(
        t,
        JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark
    )
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
                    Some((_, call)) => pseudonymised(call, c),
                    None => c,
                };
                e.alias_qualified(q.cloned(), f.name())
            })
            .collect::<Vec<_>>();
        let projection = Projection::try_new(exprs, Arc::new(LogicalPlan::Aggregate(inner)))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}

/// The join half of the rule: see the module's documentation.
#[derive(Debug, Default)]
pub(crate) struct PseudonymiseAfterJoin;

impl OptimizerRule for PseudonymiseAfterJoin {
    fn name(&self) -> &str {
        "pseudonymise_after_join"
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
        let LogicalPlan::Join(j) = plan else {
            return Ok(Transformed::no(plan));
        };
        let mut left = j.left.as_ref().clone();
        let mut right = j.right.as_ref().clone();
        let mut on = Vec::with_capacity(j.on.len());
        // Each output column the join now matches by its input, with the
        // call that pseudonymises it and that input.
        let mut lifted: Vec<(usize, ScalarFunction, Expr)> = Vec::new();
        for (l, r) in &j.on {
            let pair = match (find(l, &left)?, find(r, &right)?) {
                (Some(fl), Some(fr)) if same_key(&fl.call, &fr.call) => Some((fl, fr)),
                _ => None,
            };
            let Some((fl, fr)) = pair else {
                on.push((l.clone(), r.clone()));
                continue;
            };
            for (key, found) in [(l, &fl), (r, &fr)] {
                if let Some(at) = column_of(key).and_then(|c| j.schema.maybe_index_of_column(c)) {
                    lifted.push((at, found.call.clone(), found.id.clone()));
                }
            }
            left = fl.input;
            right = fr.input;
            let kinds = (
                fl.id.get_type(left.schema())?,
                fr.id.get_type(right.schema())?,
            );
            on.push(if kinds.0 == kinds.1 {
                (fl.id, fr.id)
            } else {
                (cast(fl.id, DataType::Utf8), cast(fr.id, DataType::Utf8))
            });
        }
        if on == j.on {
            return Ok(Transformed::no(LogicalPlan::Join(j)));
        }
        let join = rejoined(&j, Arc::new(left), Arc::new(right), on)?;
        // The join's outputs in their order and names, each key it now
        // matches by input pseudonymised here from that input.
        let exprs = j
            .schema
            .iter()
            .enumerate()
            .map(|(i, (q, f))| {
                let c = Expr::Column(Column::new(q.cloned(), f.name()));
                match lifted.iter().find(|(at, ..)| *at == i) {
                    Some((_, call, id)) => {
                        pseudonymised(call, id.clone()).alias_qualified(q.cloned(), f.name())
                    }
                    None => c,
                }
            })
            .collect::<Vec<_>>();
        let projection = Projection::try_new(exprs, Arc::new(join))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}

/// `pseudonym(x) IS NULL` is `x IS NULL`, and so for `IS NOT NULL`: only
/// null has no pseudonym. An outer join asks this of every row it passes
/// on ("was a record found?"), and the answer needs no hash.
#[derive(Debug, Default)]
pub(crate) struct NullnessWithoutPseudonym;

impl OptimizerRule for NullnessWithoutPseudonym {
    fn name(&self) -> &str {
        "nullness_without_pseudonym"
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
        use datafusion::common::tree_node::TreeNode;
        plan.map_expressions(|e| {
            e.transform_up(|e| {
                Ok(match e {
                    Expr::IsNull(inner) => match pseudonym_of(&inner) {
                        Some((_, id)) => Transformed::yes(Expr::IsNull(Box::new(id.clone()))),
                        None => Transformed::no(Expr::IsNull(inner)),
                    },
                    Expr::IsNotNull(inner) => match pseudonym_of(&inner) {
                        Some((_, id)) => Transformed::yes(Expr::IsNotNull(Box::new(id.clone()))),
                        None => Transformed::no(Expr::IsNotNull(inner)),
                    },
                    e => Transformed::no(e),
                })
            })
        })
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

    fn table(columns: &[(&str, Vec<Option<String>>)]) -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, _)| Field::new(*n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let arrays = columns
            .iter()
            .map(|(_, v)| Arc::new(StringArray::from(v.clone())) as _)
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
    }

    /// People, their stays and their vaccinations, each seen through a view
    /// that pseudonymises the id under the planning key; `elsewhere` is the
    /// people again under another project's key. Some ids are stored with
    /// white space around them, which the pseudonym ignores.
    async fn records(with_rules: bool, dir: &std::path::Path) -> SessionContext {
        let keys = Keystore::open(dir);
        let key = keys.pseudonym_key(Purpose::Planning, "national").unwrap();
        let other = keys.pseudonym_key(Purpose::Planning, "elsewhere").unwrap();
        let id = |i: usize| match i % 13 {
            0 => None,
            5 => Some(format!(" p{} ", i % 17)),
            _ => Some(format!("p{}", i % 17)),
        };
        let ctx = SessionContext::new();
        if with_rules {
            ctx.add_optimizer_rule(Arc::new(PseudonymiseAfterAggregate));
            ctx.add_optimizer_rule(Arc::new(PseudonymiseAfterJoin));
            ctx.add_optimizer_rule(Arc::new(NullnessWithoutPseudonym));
        }
        let people: Vec<Option<String>> = (0..20).map(|i| Some(format!("p{i}"))).collect();
        let sexes = (0..20)
            .map(|i| Some(["female", "male"][i % 2].to_string()))
            .collect();
        ctx.register_table(
            "stored_person",
            table(&[("person_id", people), ("sex", sexes)]),
        )
        .unwrap();
        ctx.register_table(
            "stored_stay",
            table(&[
                ("patient_id", (0..60).map(id).collect()),
                (
                    "ward",
                    (0..60)
                        .map(|i| Some(["A", "B", "C"][i % 3].into()))
                        .collect(),
                ),
            ]),
        )
        .unwrap();
        ctx.register_table(
            "stored_vaccination",
            table(&[
                ("patient_id", (7..30).map(id).collect()),
                (
                    "code",
                    (7..30).map(|i| Some(format!("v{}", i % 4))).collect(),
                ),
            ]),
        )
        .unwrap();
        for (view, stored, id_col, rest, key) in [
            ("person", "stored_person", "person_id", "sex", &key),
            ("elsewhere", "stored_person", "person_id", "sex", &other),
            ("stay", "stored_stay", "patient_id", "ward", &key),
            (
                "vaccination",
                "stored_vaccination",
                "patient_id",
                "code",
                &key,
            ),
        ] {
            let plan = ctx
                .table(stored)
                .await
                .unwrap()
                .select(vec![
                    crate::udf::pseudonym(key.clone(), col(id_col)).alias(id_col),
                    col(rest),
                ])
                .unwrap()
                .into_unoptimized_plan();
            ctx.register_table(view, Arc::new(ViewTable::new(plan, None)))
                .unwrap();
        }
        ctx
    }

    /// The one value of a one-cell answer.
    fn count(text: String) -> String {
        let line = text.lines().nth(3).unwrap_or_default();
        line.trim_matches(|c| c == '|' || c == ' ').to_string()
    }

    async fn plan(ctx: &SessionContext, sql: &str) -> String {
        ctx.sql(sql)
            .await
            .unwrap()
            .into_optimized_plan()
            .unwrap()
            .display_indent()
            .to_string()
    }

    const QUERIES: &[&str] = &[
        // A cohort's shape: people, what they had, counted.
        "SELECT p.sex, count(*) AS n FROM person p JOIN stay s ON s.patient_id = p.person_id \
         GROUP BY p.sex ORDER BY 1",
        "SELECT p.sex, count(*) AS n FROM person p \
         LEFT JOIN (SELECT patient_id, count(*) AS stays FROM stay GROUP BY patient_id) f \
           ON f.patient_id = p.person_id WHERE f.stays IS NULL OR f.stays > 3 \
         GROUP BY p.sex ORDER BY 1",
        "SELECT count(*) FROM person WHERE person_id IN (SELECT patient_id FROM vaccination)",
        "SELECT count(*) FROM person p WHERE NOT EXISTS \
           (SELECT 1 FROM vaccination v WHERE v.patient_id = p.person_id)",
        "SELECT count(*) FROM person WHERE person_id NOT IN (SELECT patient_id FROM vaccination)",
        // Pseudonyms shown after the join, including null on the outer side.
        "SELECT p.person_id, s.patient_id, s.ward FROM person p \
         FULL JOIN stay s ON s.patient_id = p.person_id ORDER BY 1, 2, 3",
        // Records of several kinds, unioned, then joined and grouped.
        "SELECT e.patient_id, count(*) AS n FROM \
           (SELECT patient_id, ward AS what FROM stay UNION ALL SELECT patient_id, code FROM vaccination) e \
           JOIN person p ON p.person_id = e.patient_id GROUP BY e.patient_id ORDER BY 1",
        // Pseudonyms under different keys never match, with or without the rule.
        "SELECT count(*) FROM elsewhere e JOIN stay s ON s.patient_id = e.person_id",
        // A filter on the column compares pseudonyms, never the stored id.
        "SELECT count(*) FROM person p JOIN stay s ON s.patient_id = p.person_id \
         WHERE p.person_id = 'p3'",
        "SELECT count(*) FROM person p JOIN stay s ON s.patient_id = p.person_id \
         WHERE s.patient_id LIKE 'p%'",
        "SELECT count(*) FROM person WHERE person_id NOT IN \
           (SELECT patient_id FROM vaccination WHERE patient_id IS NOT NULL)",
        "SELECT count(*) FROM person p LEFT JOIN vaccination v ON v.patient_id = p.person_id \
         WHERE v.patient_id IS NULL",
    ];

    #[tokio::test]
    async fn joins_on_pseudonyms_give_the_same_answers_without_computing_them() {
        let dir = tempfile::tempdir().unwrap();
        let plain = records(false, dir.path()).await;
        let lifted = records(true, dir.path()).await;
        for sql in QUERIES {
            let (a, b) = (answer(&plain, sql).await, answer(&lifted, sql).await);
            assert_eq!(a, b, "{sql}");
        }
        // Every stay with an id meets its person, the five stored with
        // white space around the id too.
        let all = "SELECT count(*) AS n FROM person p JOIN stay s ON s.patient_id = p.person_id";
        assert_eq!(count(answer(&lifted, all).await), "55");
        // Counting people joined to their stays computes no pseudonym.
        for sql in &QUERIES[..5] {
            let shown = plan(&lifted, sql).await;
            assert!(!shown.contains("pseudonym("), "{sql}\n{shown}");
            assert!(plan(&plain, sql).await.contains("pseudonym("), "{sql}");
        }
        // Asking whether a pseudonym is there needs none.
        for sql in &QUERIES[QUERIES.len() - 2..] {
            let shown = plan(&lifted, sql).await;
            assert!(!shown.contains("pseudonym("), "{sql}\n{shown}");
        }
        // Under two keys the join is left on the pseudonyms.
        let shown = plan(&lifted, QUERIES[7]).await;
        assert!(shown.contains("pseudonym("), "{shown}");
    }

    #[tokio::test]
    async fn a_stored_id_finds_nothing_and_its_pseudonym_finds_the_patient() {
        let dir = tempfile::tempdir().unwrap();
        let lifted = records(true, dir.path()).await;
        let key = Keystore::open(dir.path())
            .pseudonym_key(Purpose::Planning, "national")
            .unwrap();
        let by = |id: &str| {
            format!(
                "SELECT count(*) AS n FROM person p JOIN stay s ON s.patient_id = p.person_id \
                 WHERE p.person_id = '{id}'"
            )
        };
        assert_eq!(count(answer(&lifted, &by("p3")).await), "0");
        let stays_of_p3 = (0..60).filter(|i| i % 13 != 0 && i % 17 == 3).count();
        assert_eq!(
            count(answer(&lifted, &by(&key.pseudonym("p3"))).await),
            stays_of_p3.to_string()
        );
    }
}
