//! How many distinct patients stand behind each row of an answer, computed
//! by the engine from the query's own plan, whatever its columns are called.
//!
//! Disclosure control that looks for counts by name or type can be walked
//! round: a count written as arithmetic, a result with no aggregate at all.
//! So for a secondary purpose the optimised plan is rewritten before it
//! runs:
//!
//! - each scan of a table that names a patient carries that patient's key in
//!   a hidden column, one per scan in the plan (a *component*);
//! - projections, filters, sorts, limits, windows and joins carry every
//!   component through; a union carries each input's, null elsewhere;
//! - an aggregate replaces each component with the set of distinct patients
//!   behind the group (up to the threshold: more is never needed), so the
//!   grouping the query chose is the grouping counted;
//! - counts, sums and distinct estimates are rounded, and those from 1 to
//!   the threshold made null, where the aggregate computes them, so nothing
//!   derived from them later in the query (arithmetic, a cast, a ratio, a
//!   `CASE`) sees the exact figure.
//!
//! A row of the answer stands behind the smallest of its components: a row
//! that joins a ward's total to one patient's record says something about
//! that one patient. A row behind fewer patients than the threshold is
//! withheld from anything that leaves the instance. A row that reads no
//! patient's record (a ward, a bed) has no component and is not withheld.
//!
//! Plans this cannot follow (a recursive query, an unnest, an extension,
//! a subquery left in an expression) are refused rather than guessed.
//!
//! Reading every row's patient key costs more than many questions do
//! themselves. So one aggregate over one table, when the question does not
//! read the key anyway, is first answered *by rows*: each group counts its
//! rows, and since no patient has more than `most_per_patient` rows in the
//! table (see `masks::RowBound`), a group of `r` rows stands behind at least
//! `(r - without_patient) / most_per_patient` patients. When that proves
//! every group stands behind enough, the answer stands; otherwise the
//! question is run again with the keys, as above.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch,
    UInt64Array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, UInt64Type};
use datafusion::common::hash_utils::{create_hashes, RandomState};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef, ExprSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::functions_nested::expr_fn::cardinality;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    Accumulator, Aggregate, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, Expr,
    GroupsAccumulator, JoinType, LogicalPlan, Projection, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Subquery, TableScanBuilder, Union, Volatility, Window,
};
use datafusion::prelude::cast as cast_expr;
use datafusion::prelude::{lit, when};

use crate::policy::Disclosure;

/// The name every hidden component column starts with. A query that names a
/// column so itself is refused, so it can never read or fake one.
pub(crate) const HIDDEN: &str = "__fdp_patients_behind_";

/// Aggregates whose result is a count, or adds counts up: computed, they
/// are rounded and small ones made null before anything else sees them.
pub(crate) const COUNTING: &[&str] = &["count", "sum", "approx_distinct", "regr_count"];

/// Aggregates that return the rows' own values as a list or a string:
/// under a secondary purpose they would release rows, so they are refused.
const LISTING: &[&str] = &["array_agg", "string_agg"];

/// An answer's plan, rewritten: the answer's own columns first, then one
/// hidden column per component.
pub(crate) struct Protected {
    pub plan: LogicalPlan,
    pub visible: usize,
}

/// Every stored table a session may scan, with the column that names the
/// patient in those that do. A scan of a table not listed is refused: the
/// rewrite never guesses that a table holds no patient.
pub(crate) type PatientKeys = HashMap<String, Option<String>>;

fn refused(why: String) -> DataFusionError {
    DataFusionError::Plan(format!(
        "{why}; under planning and research an answer must be one the instance can count the patients behind"
    ))
}

/// Rows that name no patient, kept or dropped by whether patients' records
/// match them (`EXISTS`, `IN`, a semi join): the answer is about those
/// patients, with none of them counted.
fn filtered_by_uncounted_patients() -> DataFusionError {
    refused("a table without patients filtered by whether patients' records match it".into())
}

/// Rewrite an optimised plan so that its answer carries the patients behind
/// each row (see the module's documentation).
///
/// `by_rows` counts each group's rows instead (only for a plan
/// [`answerable_by_rows`] says so of).
pub(crate) fn protect(
    plan: &LogicalPlan,
    keys: &PatientKeys,
    rule: Disclosure,
    by_rows: bool,
) -> Result<Protected> {
    if let LogicalPlan::Explain(_) = plan {
        // A plan's text holds no record; EXPLAIN ANALYZE, which counts
        // rows, is a different node and refused below.
        return Ok(Protected {
            plan: plan.clone(),
            visible: plan.schema().fields().len(),
        });
    }
    let visible = plan.schema().fields().len();
    let rewriter = Rewriter {
        keys,
        rule,
        next: AtomicUsize::new(0),
        by_rows,
    };
    let rewritten = rewriter.rewrite(plan)?;
    // Put the answer's own columns first, in their order, then the hidden.
    let schema = rewritten.schema().clone();
    let mut shown = Vec::new();
    let mut hidden = Vec::new();
    for (q, f) in schema.iter() {
        let e = Expr::Column(Column::new(q.cloned(), f.name()));
        if f.name().starts_with(HIDDEN) {
            hidden.push(e);
        } else {
            shown.push(e);
        }
    }
    if shown.len() != visible {
        return Err(DataFusionError::Internal(format!(
            "protecting the plan changed its columns from {visible} to {}",
            shown.len()
        )));
    }
    shown.extend(hidden);
    let plan = LogicalPlan::Projection(Projection::try_new(shown, Arc::new(rewritten))?);
    Ok(Protected { plan, visible })
}

struct Rewriter<'a> {
    keys: &'a PatientKeys,
    rule: Disclosure,
    next: AtomicUsize,
    by_rows: bool,
}

/// Whether any expression of `plan`'s own nodes holds a subquery or a
/// reference to an outer query.
fn has_subquery(plan: &LogicalPlan) -> bool {
    plan.exists(|n| {
        Ok(n.expressions().iter().any(|e| {
            e.exists(|x| {
                Ok(matches!(
                    x,
                    Expr::ScalarSubquery(_)
                        | Expr::Exists(_)
                        | Expr::InSubquery(_)
                        | Expr::SetComparison(_)
                        | Expr::OuterReferenceColumn(..)
                ))
            })
            .unwrap_or(true)
        }))
    })
    .unwrap_or(true)
}

/// The table a plan can be answered from by rows, if it can: one aggregate
/// over one scan of a table that names a patient, through nothing that
/// repeats a row (a projection, a filter, an alias), with nothing above it
/// but projections, filters, sorts and limits, and with the patient key not
/// read otherwise (if it is, counting keys costs nothing more).
pub(crate) fn answerable_by_rows(plan: &LogicalPlan, keys: &PatientKeys) -> Option<String> {
    if has_subquery(plan) {
        return None;
    }
    let mut node = plan;
    let mut aggregated = false;
    loop {
        match node {
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Repartition(_) => {}
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) if !aggregated => {}
            LogicalPlan::Aggregate(a) if !aggregated => {
                let lists = a.aggr_expr.iter().any(|e| {
                    matches!(unalias(e), Expr::AggregateFunction(f) if LISTING.contains(&f.func.name()))
                });
                if lists {
                    return None;
                }
                aggregated = true;
            }
            LogicalPlan::TableScan(scan) if aggregated => {
                let name = scan.table_name.table();
                let Some(Some(key)) = keys.get(name) else {
                    return None;
                };
                let at = scan.source.schema().index_of(key).ok()?;
                let reads_key = scan.projection.as_ref().is_none_or(|p| p.contains(&at));
                return (!reads_key).then(|| name.to_string());
            }
            _ => return None,
        }
        let inputs = node.inputs();
        if inputs.len() != 1 {
            return None;
        }
        node = inputs[0];
    }
}

/// Whether every row of an answer protected by rows is proven to stand
/// behind at least `k` patients (or behind no row at all).
pub(crate) fn proven_by_rows(
    batches: &[RecordBatch],
    visible: usize,
    bound: crate::masks::RowBound,
    k: u64,
) -> bool {
    batches.iter().all(|b| {
        (visible..b.num_columns()).all(|c| {
            let Some(rows) = b.column(c).as_primitive_opt::<Int64Type>() else {
                return false;
            };
            rows.iter().all(|r| {
                let r = r.unwrap_or(0).max(0) as u64;
                if r == 0 {
                    return true;
                }
                bound.most_per_patient > 0
                    && r.saturating_sub(bound.without_patient)
                        .div_ceil(bound.most_per_patient)
                        >= k
            })
        })
    })
}

fn hidden_columns(schema: &DFSchemaRef) -> Vec<Column> {
    schema
        .iter()
        .filter(|(_, f)| f.name().starts_with(HIDDEN))
        .map(|(q, f)| Column::new(q.cloned(), f.name()))
        .collect()
}

fn columns(schema: &DFSchemaRef) -> Vec<Expr> {
    schema
        .iter()
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
        .collect()
}

/// Whether any scan under `plan` reads a table that names a patient.
fn reads_patients(plan: &LogicalPlan, keys: &PatientKeys) -> bool {
    let mut found = false;
    let _ = plan.apply(|n| {
        if let LogicalPlan::TableScan(s) = n {
            let catalog = matches!(
                s.table_name.schema(),
                Some("information_schema" | "pg_catalog")
            );
            if !catalog && !matches!(keys.get(s.table_name.table()), Some(None)) {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

impl Rewriter<'_> {
    fn name(&self) -> String {
        format!("{HIDDEN}{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn rewrite(&self, plan: &LogicalPlan) -> Result<LogicalPlan> {
        // Subqueries the optimiser left in expressions: a scalar one is an
        // answer of its own, protected as one; one that only filters (IN,
        // EXISTS) is noted, for a node whose rows name no patient.
        let mut filtered_by_patients = false;
        let mut correlated = false;
        let plan = plan
            .clone()
            .map_expressions(|e| {
                e.transform_up(|x| match x {
                    Expr::ScalarSubquery(sq) => {
                        let inner = self.scalar(&sq.subquery)?;
                        Ok(Transformed::yes(Expr::ScalarSubquery(Subquery {
                            subquery: Arc::new(inner),
                            ..sq
                        })))
                    }
                    Expr::Exists(ref ex) => {
                        filtered_by_patients |= reads_patients(&ex.subquery.subquery, self.keys);
                        Ok(Transformed::no(x))
                    }
                    Expr::InSubquery(ref i) => {
                        filtered_by_patients |= reads_patients(&i.subquery.subquery, self.keys);
                        Ok(Transformed::no(x))
                    }
                    Expr::SetComparison(ref c) => {
                        filtered_by_patients |= reads_patients(&c.subquery.subquery, self.keys);
                        Ok(Transformed::no(x))
                    }
                    Expr::OuterReferenceColumn(..) => {
                        correlated = true;
                        Ok(Transformed::no(x))
                    }
                    _ => Ok(Transformed::no(x)),
                })
            })?
            .data;
        if correlated {
            return Err(refused(
                "a correlated subquery the engine could not turn into a join".into(),
            ));
        }
        let rewritten = self.rewrite_node(&plan)?;
        if filtered_by_patients && hidden_columns(rewritten.schema()).is_empty() {
            return Err(filtered_by_uncounted_patients());
        }
        Ok(rewritten)
    }

    /// A scalar subquery's plan, its one value made null where fewer
    /// patients than the threshold stand behind it.
    fn scalar(&self, plan: &LogicalPlan) -> Result<LogicalPlan> {
        let rewritten = self.rewrite(plan)?;
        let schema = rewritten.schema().clone();
        let mut enough: Option<Expr> = None;
        for h in hidden_columns(&schema) {
            let t = schema.field_from_column(&h)?.data_type().clone();
            let c = Expr::Column(h);
            let ok = match t {
                DataType::List(_) => c
                    .clone()
                    .is_null()
                    .or(cardinality(c).gt_eq(lit(self.rule.suppress_below))),
                _ => c.is_null(),
            };
            enough = Some(match enough {
                Some(e) => e.and(ok),
                None => ok,
            });
        }
        let Some(enough) = enough else {
            return Ok(rewritten);
        };
        let exprs = schema
            .iter()
            .filter(|(_, f)| !f.name().starts_with(HIDDEN))
            .map(|(q, f)| {
                Ok(when(
                    enough.clone(),
                    Expr::Column(Column::new(q.cloned(), f.name())),
                )
                .end()?
                .alias_qualified(q.cloned(), f.name()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LogicalPlan::Projection(Projection::try_new(
            exprs,
            Arc::new(rewritten),
        )?))
    }

    fn rewrite_node(&self, plan: &LogicalPlan) -> Result<LogicalPlan> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                // The catalog describes tables; it holds no record.
                if matches!(
                    scan.table_name.schema(),
                    Some("information_schema" | "pg_catalog")
                ) {
                    return Ok(plan.clone());
                }
                let key = match self.keys.get(scan.table_name.table()) {
                    Some(Some(key)) => key,
                    Some(None) => return Ok(plan.clone()),
                    None => {
                        return Err(refused(format!(
                            "{} is not a table the session knows whether patients stand behind",
                            scan.table_name
                        )))
                    }
                };
                if self.by_rows {
                    return Ok(plan.clone());
                }
                let source_schema = scan.source.schema();
                let Ok(at) = source_schema.index_of(key) else {
                    return Err(refused(format!(
                        "{} has no {key} column to count its patients by",
                        scan.table_name
                    )));
                };
                let projection = scan.projection.clone().map(|mut p| {
                    if !p.contains(&at) {
                        p.push(at);
                    }
                    p
                });
                let wider = TableScanBuilder::new(scan.table_name.clone(), scan.source.clone())
                    .with_projection(projection)
                    .with_filters(scan.filters.clone())
                    .with_fetch(scan.fetch)
                    .build()?;
                let mut exprs = columns(&scan.projected_schema);
                // The key as stored: a cast would copy every row's key,
                // and the aggregate reads each kind of string as it is.
                exprs.push(
                    Expr::Column(Column::new(Some(scan.table_name.clone()), key))
                        .alias(self.name()),
                );
                Ok(LogicalPlan::Projection(Projection::try_new(
                    exprs,
                    Arc::new(LogicalPlan::TableScan(wider)),
                )?))
            }
            LogicalPlan::Projection(p) => {
                let input = self.rewrite(&p.input)?;
                let mut exprs = p.expr.clone();
                exprs.extend(hidden_columns(input.schema()).into_iter().map(Expr::Column));
                Ok(LogicalPlan::Projection(Projection::try_new(
                    exprs,
                    Arc::new(input),
                )?))
            }
            LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Repartition(_) => {
                let input = self.rewrite(plan.inputs()[0])?;
                plan.with_new_exprs(plan.expressions(), vec![input])?
                    .recompute_schema()
            }
            LogicalPlan::Window(w) => {
                let input = self.rewrite(&w.input)?;
                let window = Window::try_new(w.window_expr.clone(), Arc::new(input))?;
                // A count over a window is a count like any other; a row's
                // position (row_number, rank) is not, and stays exact so
                // that `WHERE rank = 1` still picks each patient's first.
                let counting = counting_outputs(&window.schema, &window.window_expr);
                self.disclose_outputs(LogicalPlan::Window(window), &counting)
            }
            LogicalPlan::Aggregate(a) => self.aggregate(a),
            LogicalPlan::Join(j) => {
                let keeps_left_only = matches!(
                    j.join_type,
                    JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark
                );
                let keeps_right_only = matches!(
                    j.join_type,
                    JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark
                );
                let (left, right) = if keeps_left_only {
                    (self.rewrite(&j.left)?, j.right.as_ref().clone())
                } else if keeps_right_only {
                    (j.left.as_ref().clone(), self.rewrite(&j.right)?)
                } else {
                    (self.rewrite(&j.left)?, self.rewrite(&j.right)?)
                };
                // A semi or anti join keeps one side's rows for whether the
                // other side matched. Where the kept side names no patient,
                // the answer would be about the other side's patients with
                // none of them counted: refused.
                let (kept, other) = if keeps_left_only {
                    (Some(&left), &j.right)
                } else if keeps_right_only {
                    (Some(&right), &j.left)
                } else {
                    (None, &j.left)
                };
                if let Some(kept) = kept {
                    if hidden_columns(kept.schema()).is_empty() && reads_patients(other, self.keys)
                    {
                        return Err(filtered_by_uncounted_patients());
                    }
                }
                plan.with_new_exprs(plan.expressions(), vec![left, right])?
                    .recompute_schema()
            }
            LogicalPlan::Union(u) => {
                let inputs: Vec<LogicalPlan> = u
                    .inputs
                    .iter()
                    .map(|i| self.rewrite(i))
                    .collect::<Result<_>>()?;
                let mut slots: Vec<(String, DataType)> = Vec::new();
                for i in &inputs {
                    for (_, f) in i.schema().iter() {
                        if f.name().starts_with(HIDDEN) {
                            slots.push((f.name().clone(), f.data_type().clone()));
                        }
                    }
                }
                let aligned = inputs
                    .into_iter()
                    .map(|i| {
                        let schema = i.schema().clone();
                        let mut exprs: Vec<Expr> = schema
                            .iter()
                            .filter(|(_, f)| !f.name().starts_with(HIDDEN))
                            .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
                            .collect();
                        for (name, t) in &slots {
                            let own = schema
                                .iter()
                                .find(|(_, f)| f.name() == name)
                                .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())));
                            exprs.push(match own {
                                Some(c) => c,
                                None => Expr::Literal(ScalarValue::try_from(t)?, None)
                                    .alias(name.as_str()),
                            });
                        }
                        Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(
                            exprs,
                            Arc::new(i),
                        )?)))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(LogicalPlan::Union(Union::try_new(aligned)?))
            }
            LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => Ok(plan.clone()),
            LogicalPlan::Analyze(_) => Err(refused(
                "EXPLAIN ANALYZE reports how many rows each step found".into(),
            )),
            other => Err(refused(format!(
                "a plan step the instance cannot count patients through ({})",
                other.display()
            ))),
        }
    }

    fn aggregate(&self, a: &Aggregate) -> Result<LogicalPlan> {
        for e in &a.aggr_expr {
            if let Expr::AggregateFunction(f) = unalias(e) {
                if LISTING.contains(&f.func.name()) {
                    return Err(refused(format!(
                        "{} returns the rows' own values",
                        f.func.name()
                    )));
                }
            }
        }
        let input = self.rewrite(&a.input)?;
        let mut aggr = a.aggr_expr.clone();
        if self.by_rows {
            aggr.push(count(lit(1i64)).alias(self.name()));
        }
        let union = patients_behind(self.rule.suppress_below);
        for c in hidden_columns(input.schema()) {
            let name = c.name.clone();
            aggr.push(union.call(vec![Expr::Column(c)]).alias(name));
        }
        let aggregate = Aggregate::try_new(Arc::new(input), a.group_expr.clone(), aggr)?;
        // Round the counts where they are computed.
        let counting = counting_outputs(&aggregate.schema, &aggregate.aggr_expr);
        self.disclose_outputs(LogicalPlan::Aggregate(aggregate), &counting)
    }

    /// `plan` with the rule applied to its outputs at `counting`, under the
    /// same names, so that what reads them reads the disclosed figure.
    fn disclose_outputs(
        &self,
        plan: LogicalPlan,
        counting: &BTreeSet<usize>,
    ) -> Result<LogicalPlan> {
        if counting.is_empty() {
            return Ok(plan);
        }
        let schema = plan.schema().clone();
        let exprs = schema
            .iter()
            .enumerate()
            .map(|(i, (q, f))| {
                let c = Expr::Column(Column::new(q.cloned(), f.name()));
                if counting.contains(&i) {
                    Ok(disclosed(c, f.data_type(), self.rule)?
                        .alias_qualified(q.cloned(), f.name()))
                } else {
                    Ok(c)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LogicalPlan::Projection(Projection::try_new(
            exprs,
            Arc::new(plan),
        )?))
    }
}

/// The positions, in a node's output, of those of its last `exprs`
/// (aggregates or window functions, which come after the node's other
/// outputs) that count.
fn counting_outputs(schema: &DFSchemaRef, exprs: &[Expr]) -> BTreeSet<usize> {
    let first = schema.fields().len() - exprs.len();
    exprs
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            // A group's own rows, counted to prove how many patients stand
            // behind it, are never released.
            if matches!(e, Expr::Alias(a) if a.name.starts_with(HIDDEN)) {
                return false;
            }
            let name = match unalias(e) {
                Expr::AggregateFunction(f) => f.func.name(),
                Expr::WindowFunction(f) => f.fun.name(),
                _ => return false,
            };
            COUNTING.contains(&name)
        })
        .map(|(k, _)| first + k)
        .collect()
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}

/// `c` with the rule applied: 1 to `suppress_below - 1` null, others
/// rounded to `round_to`, in `c`'s own type.
fn disclosed(c: Expr, t: &DataType, rule: Disclosure) -> Result<Expr> {
    let float = matches!(t, DataType::Float16 | DataType::Float32 | DataType::Float64);
    let udf = disclosed_udf(rule, float);
    let inner = if float {
        DataType::Float64
    } else {
        DataType::Int64
    };
    Ok(cast_expr(udf.call(vec![cast_expr(c, inner)]), t.clone()))
}

/// The function that applies `rule` to counts (`float`: to sums and
/// averages).
pub(crate) fn disclosed_udf(rule: Disclosure, float: bool) -> ScalarUDF {
    let inner = if float {
        DataType::Float64
    } else {
        DataType::Int64
    };
    ScalarUDF::new_from_impl(Disclosed {
        rule,
        float,
        signature: Signature::exact(vec![inner], Volatility::Immutable),
    })
}

/// The rule and kind of a disclosure function, if `func` is one.
pub(crate) fn disclosed_rule(func: &ScalarUDF) -> Option<(Disclosure, bool)> {
    let any: &dyn std::any::Any = func.inner().as_ref();
    any.downcast_ref::<Disclosed>().map(|d| (d.rule, d.float))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Disclosed {
    rule: Disclosure,
    float: bool,
    signature: Signature,
}

impl ScalarUDFImpl for Disclosed {
    fn name(&self) -> &str {
        if self.float {
            "disclosed_float"
        } else {
            "disclosed"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(if self.float {
            DataType::Float64
        } else {
            DataType::Int64
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rule = self.rule;
        let a = ColumnarValue::values_to_arrays(&args.args)?;
        let out: ArrayRef = if self.float {
            let v = a[0].as_primitive::<Float64Type>();
            Arc::new(
                v.iter()
                    .map(|x| x.and_then(|x| disclose_f64(x, rule)))
                    .collect::<Float64Array>(),
            )
        } else {
            let v = a[0].as_primitive::<Int64Type>();
            Arc::new(
                v.iter()
                    .map(|x| x.and_then(|x| disclose_i64(x, rule)))
                    .collect::<Int64Array>(),
            )
        };
        Ok(ColumnarValue::Array(out))
    }
}

pub(crate) fn disclose_i64(x: i64, rule: Disclosure) -> Option<i64> {
    if x >= 1 && (x as u64) < rule.suppress_below {
        return None;
    }
    Some(crate::disclosure::round(x, rule.round_to))
}

fn disclose_f64(x: f64, rule: Disclosure) -> Option<f64> {
    if x > 0.0 && x < rule.suppress_below as f64 {
        return None;
    }
    let to = rule.round_to.max(1) as f64;
    Some((x / to).round() * to)
}

/// The cap of a patients-behind aggregate, if `func` is one.
pub(crate) fn patients_behind_cap(func: &AggregateUDF) -> Option<u64> {
    let any: &dyn std::any::Any = func.inner().as_ref();
    any.downcast_ref::<PatientsBehind>().map(|p| p.cap as u64)
}

/// The aggregate that unions the patients behind a group's rows, keeping at
/// most `cap`: its input is a patient's key (a scan's component) or a set
/// (an aggregate's).
pub(crate) fn patients_behind(cap: u64) -> AggregateUDF {
    AggregateUDF::from(PatientsBehind {
        signature: Signature::any(1, Volatility::Immutable),
        cap: cap.max(1) as usize,
    })
}

/// A set of patients: each patient's key reduced to 64 bits. Two patients
/// whose keys hash alike count as one, which can only make a group look
/// smaller than it is: the safe direction.
fn set_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::UInt64, true)))
}

/// The hash a patient's key is counted by. Fixed, so that every partition
/// of one query hashes a key alike; sets never leave the instance.
const KEY_HASH: RandomState = RandomState::with_seed(0x6f70_656e_6664_7021);

#[derive(Debug, PartialEq, Eq, Hash)]
struct PatientsBehind {
    signature: Signature,
    cap: usize,
}

impl AggregateUDFImpl for PatientsBehind {
    fn name(&self) -> &str {
        "patients_behind"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(set_type())
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Behind(Sets::new(self.cap))))
    }

    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(BehindGroups(Sets::new(self.cap))))
    }
}

/// Call `f(row, patient)` for every patient in `values`: one per row for a
/// scan's keys (hashed), several for an aggregate's sets. Rows with none,
/// and rows `skip(row)` says need not be read (their group has enough), are
/// passed over; a batch whose every row is skipped is not hashed at all.
fn each_patient(
    values: &ArrayRef,
    skip: impl Fn(usize) -> bool,
    mut f: impl FnMut(usize, u64),
) -> Result<()> {
    let wanted = |row: usize| !values.is_null(row) && !skip(row);
    if let DataType::List(_) = values.data_type() {
        let lists = values.as_list::<i32>();
        let offsets = lists.value_offsets();
        let keys = lists.values().as_primitive::<UInt64Type>().values();
        for row in 0..lists.len() {
            if wanted(row) {
                for &k in &keys[offsets[row] as usize..offsets[row + 1] as usize] {
                    f(row, k);
                }
            }
        }
        return Ok(());
    }
    let Some(first) = (0..values.len()).find(|&row| wanted(row)) else {
        return Ok(());
    };
    let mut hashes = vec![0u64; values.len()];
    create_hashes([values], &KEY_HASH, &mut hashes)?;
    for (row, &h) in hashes.iter().enumerate().skip(first) {
        if wanted(row) {
            f(row, h);
        }
    }
    Ok(())
}

/// Up to `cap` distinct patients for each of many groups. Most groups of a
/// fine grouping stand behind one patient, so the first is kept inline and
/// only a second allocates.
struct Sets {
    cap: usize,
    first: Vec<u64>,
    len: Vec<u32>,
    more: Vec<Vec<u64>>,
    /// How many patients `more` holds, for the engine's memory accounting.
    more_keys: usize,
    /// Whether any row of the group carried a patient at all: a group of
    /// rows with none stands behind no patient, and is not withheld.
    seen: Vec<bool>,
}

impl Sets {
    fn new(cap: usize) -> Sets {
        Sets {
            cap,
            first: Vec::new(),
            len: Vec::new(),
            more: Vec::new(),
            more_keys: 0,
            seen: Vec::new(),
        }
    }

    fn grow(&mut self, groups: usize) {
        if groups > self.len.len() {
            self.first.resize(groups, 0);
            self.len.resize(groups, 0);
            self.more.resize_with(groups, Vec::new);
            self.seen.resize(groups, false);
        }
    }

    fn full(&self, g: usize) -> bool {
        self.len[g] as usize >= self.cap
    }

    fn insert(&mut self, g: usize, patient: u64) {
        self.seen[g] = true;
        match self.len[g] {
            0 => {
                self.first[g] = patient;
                self.len[g] = 1;
            }
            n if (n as usize) < self.cap
                && self.first[g] != patient
                && !self.more[g].contains(&patient) =>
            {
                self.more[g].push(patient);
                self.more_keys += 1;
                self.len[g] += 1;
            }
            _ => {}
        }
    }

    /// Add `values` (keys or sets), row by row into `groups[row]`, leaving
    /// out rows `filter` drops.
    fn add(
        &mut self,
        values: &ArrayRef,
        groups: &[usize],
        filter: Option<&BooleanArray>,
        total: usize,
    ) -> Result<()> {
        self.grow(total);
        let dropped = |row: usize| filter.is_some_and(|f| !(f.is_valid(row) && f.value(row)));
        // A group with enough patients is not read again: most rows of a
        // large group cost one comparison, and a batch of them no hashing.
        let mut inserts = Vec::new();
        each_patient(
            values,
            |row| dropped(row) || self.full(groups[row]),
            |row, p| inserts.push((groups[row], p)),
        )?;
        for (g, p) in inserts {
            self.insert(g, p);
        }
        // A non-null empty set (a group whose rows carried no patient in a
        // join's unmatched side) still says the group was seen.
        for (row, &g) in groups.iter().enumerate() {
            if !self.seen[g] && !dropped(row) && !values.is_null(row) {
                self.seen[g] = true;
            }
        }
        Ok(())
    }

    /// The sets of the groups `emit_to` names, taken out.
    fn emit(&mut self, emit_to: EmitTo) -> ArrayRef {
        let first = emit_to.take_needed(&mut self.first);
        let len = emit_to.take_needed(&mut self.len);
        let more = emit_to.take_needed(&mut self.more);
        let seen = emit_to.take_needed(&mut self.seen);
        let mut keys = Vec::with_capacity(len.iter().map(|&n| n as usize).sum());
        for g in 0..len.len() {
            if len[g] > 0 {
                keys.push(first[g]);
                keys.extend_from_slice(&more[g]);
                self.more_keys -= more[g].len();
            }
        }
        Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(DataType::UInt64, true)),
            OffsetBuffer::from_lengths(len.iter().map(|&n| n as usize)),
            Arc::new(UInt64Array::from(keys)),
            Some(NullBuffer::from(seen)),
        ))
    }

    fn size(&self) -> usize {
        self.first.capacity() * 8
            + self.len.capacity() * 4
            + self.seen.capacity()
            + self.more.capacity() * std::mem::size_of::<Vec<u64>>()
            + self.more_keys * 8
    }
}

/// The patients behind each group, the way the engine aggregates.
struct BehindGroups(Sets);

impl GroupsAccumulator for BehindGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.0
            .add(&values[0], group_indices, opt_filter, total_num_groups)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.0
            .add(&values[0], group_indices, None, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.0.emit(emit_to))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.0.emit(emit_to)])
    }

    /// Each row as a group of its own: the engine does this when a
    /// grouping is so fine that aggregating before the shuffle saves
    /// nothing.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows = values[0].len();
        let mut sets = Sets::new(self.0.cap);
        let groups: Vec<usize> = (0..rows).collect();
        sets.add(&values[0], &groups, opt_filter, rows)?;
        Ok(vec![sets.emit(EmitTo::All)])
    }

    fn size(&self) -> usize {
        self.0.size()
    }
}

/// The patients behind an aggregate with no grouping: one set.
#[derive(Debug)]
struct Behind(Sets);

impl std::fmt::Debug for Sets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sets")
            .field("cap", &self.cap)
            .field("groups", &self.len.len())
            .finish()
    }
}

impl Accumulator for Behind {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let groups = vec![0; values[0].len()];
        self.0.add(&values[0], &groups, None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.0.grow(1);
        // Read without emptying: the engine may ask for the state and
        // then go on adding.
        let list = Sets {
            cap: self.0.cap,
            first: self.0.first.clone(),
            len: self.0.len.clone(),
            more: self.0.more.clone(),
            more_keys: self.0.more_keys,
            seen: self.0.seen.clone(),
        }
        .emit(EmitTo::All);
        Ok(ScalarValue::List(Arc::new(list.as_list::<i32>().clone())))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.0.size()
    }
}

/// How many patients stand behind each row of `batch`, from its hidden
/// columns (from `visible` on): the smallest component, or `None` where the
/// row reads no patient's record.
fn behind(batch: &RecordBatch, visible: usize) -> Vec<Option<usize>> {
    let mut out: Vec<Option<usize>> = vec![None; batch.num_rows()];
    for c in visible..batch.num_columns() {
        let column = batch.column(c);
        let sizes: Vec<Option<usize>> = match column.data_type() {
            DataType::List(_) => {
                let l = column.as_list::<i32>();
                (0..l.len())
                    .map(|i| (!l.is_null(i)).then(|| l.value_length(i) as usize))
                    .collect()
            }
            _ => (0..column.len())
                .map(|i| (!column.is_null(i)).then_some(1))
                .collect(),
        };
        for (o, s) in out.iter_mut().zip(sizes) {
            if let Some(s) = s {
                *o = Some(o.map_or(s, |m| m.min(s)));
            }
        }
    }
    out
}

/// Which rows to withhold, those behind fewer than `k` patients (none when
/// the rows stay inside the instance), and the answer without its hidden
/// columns.
pub(crate) fn withhold(
    batches: Vec<RecordBatch>,
    visible: usize,
    k: u64,
    release_rows: bool,
) -> Result<(Vec<RecordBatch>, Vec<bool>)> {
    let mut withheld = Vec::new();
    let mut out = Vec::with_capacity(batches.len());
    let shown: Vec<usize> = (0..visible).collect();
    for b in batches {
        withheld.extend(
            behind(&b, visible)
                .into_iter()
                .map(|n| !release_rows && n.is_some_and(|n| (n as u64) < k)),
        );
        out.push(b.project(&shown)?);
    }
    Ok((out, withheld))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Schema;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    const RULE: Disclosure = Disclosure {
        suppress_below: 8,
        round_to: 5,
    };

    /// Stays: ward A has 10 patients, ward B one patient with 12 stays.
    async fn context() -> SessionContext {
        let mut patients = Vec::new();
        let mut wards = Vec::new();
        let mut days = Vec::new();
        for p in 0..10 {
            patients.push(format!("p{p}"));
            wards.push("A".to_string());
            days.push(p as i64);
        }
        for d in 0..12 {
            patients.push("lonely".to_string());
            wards.push("B".to_string());
            days.push(d);
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("patient_id", DataType::Utf8, true),
            Field::new("ward", DataType::Utf8, true),
            Field::new("days", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(patients)),
                Arc::new(StringArray::from(wards)),
                Arc::new(Int64Array::from(days)),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_table(
            "stay",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
        ctx
    }

    /// The answer to `sql` with the patients behind each row: (rows as
    /// text, patients behind each).
    async fn answer(sql: &str) -> Vec<(String, Option<usize>)> {
        let ctx = context().await;
        let keys: PatientKeys = [("stay".to_string(), Some("patient_id".to_string()))].into();
        let state = ctx.state();
        let plan = state
            .optimize(&ctx.sql(sql).await.unwrap().into_unoptimized_plan())
            .unwrap();
        let protected = protect(&plan, &keys, RULE, false).unwrap();
        let physical = state
            .query_planner()
            .create_physical_plan(&protected.plan, &state)
            .await
            .unwrap();
        let batches = datafusion::physical_plan::collect(physical, state.task_ctx())
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in batches {
            let n = behind(&b, protected.visible);
            let shown = b
                .project(&(0..protected.visible).collect::<Vec<_>>())
                .unwrap();
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&[shown])
                .unwrap()
                .to_string();
            let lines: Vec<&str> = text
                .lines()
                .skip(3)
                .filter(|l| !l.starts_with('+'))
                .collect();
            out.extend(lines.iter().map(|l| l.to_string()).zip(n));
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_group_counts_its_distinct_patients_not_its_rows() {
        let got = answer("SELECT ward, count(*) AS n FROM stay GROUP BY ward").await;
        assert_eq!(got.len(), 2);
        // Ward A: ten patients, ten stays, rounded. Ward B: twelve stays of
        // one patient, so one patient behind it.
        assert!(got[0].0.contains("| A    | 10 |"), "{got:?}");
        assert_eq!(got[0].1, Some(8));
        assert!(got[1].0.contains("| B    | 10 |"), "{got:?}");
        assert_eq!(got[1].1, Some(1));
    }

    #[tokio::test]
    async fn a_count_is_rounded_before_the_query_does_arithmetic_with_it() {
        let got = answer(
            "SELECT count(*) FILTER (WHERE ward = 'A' AND days < 3) * 1000 + 7 AS n FROM stay",
        )
        .await;
        // Three stays: null where counted, so null after the arithmetic.
        assert!(got[0].0.contains("|   |"), "{got:?}");
        assert_eq!(got[0].1, Some(8));
    }

    #[tokio::test]
    async fn a_row_joined_to_a_total_stands_behind_its_own_patient() {
        let got = answer(
            "SELECT s.ward, t.total FROM stay s CROSS JOIN (SELECT count(*) AS total FROM stay) t",
        )
        .await;
        assert_eq!(got.len(), 22);
        assert!(got.iter().all(|(_, n)| *n == Some(1)), "{got:?}");
    }

    #[tokio::test]
    async fn a_scalar_subquery_behind_one_patient_answers_null() {
        let got = answer(
            "SELECT (SELECT max(days) FROM stay WHERE patient_id = 'lonely') AS d, \
             (SELECT max(days) FROM stay) AS all_days",
        )
        .await;
        assert!(got[0].0.contains("|   | 11       |"), "{got:?}");
    }

    #[tokio::test]
    async fn only_one_aggregate_over_one_table_not_reading_its_key_is_answered_by_rows() {
        let ctx = context().await;
        let keys: PatientKeys = [("stay".to_string(), Some("patient_id".to_string()))].into();
        for (sql, by_rows) in [
            ("SELECT ward, count(*), avg(days) FROM stay GROUP BY ward ORDER BY 1", true),
            ("SELECT ward, n FROM (SELECT ward, count(*) AS n FROM stay WHERE days > 2 GROUP BY ward) WHERE n > 1", true),
            ("SELECT count(DISTINCT patient_id) FROM stay", false),
            ("SELECT ward, count(*) FROM stay WHERE patient_id <> 'lonely' GROUP BY ward", false),
            ("SELECT ward, days FROM stay", false),
            ("SELECT a.ward, count(*) FROM stay a JOIN stay b ON a.ward = b.ward GROUP BY a.ward", false),
            ("SELECT ward, count(*) FROM (SELECT ward FROM stay UNION ALL SELECT ward FROM stay) GROUP BY ward", false),
            ("SELECT n, count(*) FROM (SELECT ward, count(*) AS n FROM stay GROUP BY ward) GROUP BY n", false),
            ("SELECT ward, count(*) OVER () FROM stay", false),
            ("SELECT ward, count(*) FROM stay WHERE days < (SELECT avg(days) FROM stay) GROUP BY ward", false),
            ("SELECT ward, array_agg(days) FROM stay GROUP BY ward", false),
        ] {
            let plan = ctx
                .state()
                .optimize(&ctx.sql(sql).await.unwrap().into_unoptimized_plan())
                .unwrap();
            assert_eq!(answerable_by_rows(&plan, &keys).is_some(), by_rows, "{sql}\n{plan}");
        }
    }

    #[test]
    fn rows_prove_patients_only_past_the_most_one_patient_has() {
        use crate::masks::RowBound;
        let rows = |n: Vec<i64>| {
            let schema = Arc::new(Schema::new(vec![
                Field::new("n", DataType::Int64, true),
                Field::new("__fdp_patients_behind_0", DataType::Int64, true),
            ]));
            let behind = Int64Array::from(n);
            vec![
                RecordBatch::try_new(schema, vec![Arc::new(behind.clone()), Arc::new(behind)])
                    .unwrap(),
            ]
        };
        let bound = RowBound {
            most_per_patient: 12,
            without_patient: 3,
        };
        // 8 patients of at most 12 rows each need more than 7 * 12 rows, and
        // 3 of the rows may name no one.
        assert!(proven_by_rows(&rows(vec![88, 1000]), 1, bound, 8));
        assert!(!proven_by_rows(&rows(vec![87, 1000]), 1, bound, 8));
        // No row at all (a total over nothing) stands behind no patient.
        assert!(proven_by_rows(&rows(vec![0]), 1, bound, 8));
        // A table of no patient's rows proves nothing.
        let nobody = RowBound {
            most_per_patient: 0,
            without_patient: 100,
        };
        assert!(!proven_by_rows(&rows(vec![50]), 1, nobody, 8));
    }

    #[tokio::test]
    async fn listing_aggregates_and_row_counting_explains_are_refused() {
        let ctx = context().await;
        let keys: PatientKeys = [("stay".to_string(), Some("patient_id".to_string()))].into();
        for sql in [
            "SELECT ward, array_agg(patient_id) FROM stay GROUP BY ward",
            "SELECT string_agg(patient_id, ',') FROM stay",
            "EXPLAIN ANALYZE SELECT count(*) FROM stay",
        ] {
            let plan = ctx
                .state()
                .optimize(&ctx.sql(sql).await.unwrap().into_unoptimized_plan());
            let refused = plan.and_then(|p| protect(&p, &keys, RULE, false).map(|_| ()));
            assert!(refused.is_err(), "{sql}");
        }
    }
}
