//! Statistical disclosure control on results for secondary purposes.
//!
//! Counts from 1 to `suppress_below - 1` are suppressed (NULL), others are
//! rounded to the nearest `round_to`; 0 stays 0. Then secondary suppression:
//! where a result publishes totals beside its cells (a `ROLLUP` or
//! `GROUPING SETS` row, a dimension NULL), a line of cells with exactly one
//! suppressed cell would let the total give it back, so the smallest other
//! cell in that line is suppressed too, until no line has exactly one.
//!
//! Which columns are counts is read from the query plan: the outputs of
//! `count` and `sum` aggregates and window functions, a row's number or
//! rank in a window, and any aggregate of those, followed through
//! projections, casts and aliases.
//! Where an aggregate's output cannot be traced, every integer column of an
//! aggregated result is treated as a count. Row-level results (no
//! aggregate) carry no counts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan};

use crate::behind::COUNTING;
use crate::policy::Disclosure;

/// What disclosure control did to one result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisclosureReport {
    pub count_columns: Vec<String>,
    pub suppressed: usize,
    pub secondary_suppressed: usize,
    pub rounded_to: u64,
    /// Rows withheld because fewer patients than the threshold stand
    /// behind them.
    pub withheld_rows: usize,
}

impl DisclosureReport {
    pub fn summary(&self) -> String {
        let withheld = match self.withheld_rows {
            0 => String::new(),
            n => format!("; {n} rows withheld: fewer patients than the threshold behind each"),
        };
        if self.count_columns.is_empty() {
            return format!("disclosure control: no counts in the result{withheld}");
        }
        format!(
            "disclosure control on {}: {} cells suppressed, {} more to protect them, others rounded to {}{withheld}",
            self.count_columns.join(", "),
            self.suppressed,
            self.secondary_suppressed,
            self.rounded_to
        )
    }
}

/// Indices of the plan's output columns that hold counts.
pub fn count_columns(plan: &LogicalPlan) -> BTreeSet<usize> {
    let mut aggregated = false;
    let _ = plan.apply(|n| {
        if matches!(n, LogicalPlan::Aggregate(_) | LogicalPlan::Window(_)) {
            aggregated = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if !aggregated {
        return BTreeSet::new();
    }
    let schema = plan.schema();
    (0..schema.fields().len())
        .filter(|&i| match trace(plan, i) {
            Traced::Count => true,
            Traced::NotCount => false,
            Traced::Unknown => is_integer(schema.field(i).data_type()),
        })
        .collect()
}

enum Traced {
    Count,
    NotCount,
    Unknown,
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..))
}

fn trace(plan: &LogicalPlan, i: usize) -> Traced {
    match plan {
        LogicalPlan::Projection(p) => trace_expr(&p.input, &p.expr[i]),
        LogicalPlan::Aggregate(a) => {
            // The aggregates are the last outputs; before them come the
            // group columns (several for one ROLLUP or GROUPING SETS) and,
            // for grouping sets, the internal grouping id.
            let first_aggregate = a.schema.fields().len() - a.aggr_expr.len();
            let Some(e) = i.checked_sub(first_aggregate).map(|k| &a.aggr_expr[k]) else {
                // A group column: a count when it groups by one (how many
                // wards had each count of admissions).
                return match a.group_expr.get(i) {
                    Some(g) if a.group_expr.len() == first_aggregate => {
                        match trace_expr(&a.input, g) {
                            Traced::Count => Traced::Count,
                            _ => Traced::NotCount,
                        }
                    }
                    _ => Traced::NotCount,
                };
            };
            match unalias(e) {
                Expr::AggregateFunction(f) if COUNTING.contains(&f.func.name()) => Traced::Count,
                // The largest of several counts is a count.
                Expr::AggregateFunction(f) if any_count(&a.input, &f.params.args) => Traced::Count,
                Expr::AggregateFunction(_) => Traced::NotCount,
                _ => Traced::Unknown,
            }
        }
        LogicalPlan::Window(w) => {
            let first = w.schema.fields().len() - w.window_expr.len();
            let Some(e) = i.checked_sub(first).map(|k| &w.window_expr[k]) else {
                return trace(&w.input, i);
            };
            match unalias(e) {
                // A count over a window, and a row's place in one (its
                // number is how many rows came before it).
                Expr::WindowFunction(f)
                    if COUNTING.contains(&f.fun.name())
                        || matches!(
                            f.fun.name(),
                            "row_number" | "rank" | "dense_rank" | "ntile"
                        ) =>
                {
                    Traced::Count
                }
                Expr::WindowFunction(f) if any_count(&w.input, &f.params.args) => Traced::Count,
                Expr::WindowFunction(_) => Traced::NotCount,
                _ => Traced::Unknown,
            }
        }
        LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Distinct(_) => match plan.inputs().first() {
            Some(input) => trace(input, i),
            None => Traced::Unknown,
        },
        _ => Traced::Unknown,
    }
}

/// Whether any of a function's arguments, read over `input`, is a count.
fn any_count(input: &LogicalPlan, args: &[Expr]) -> bool {
    args.iter()
        .any(|a| matches!(trace_expr(input, a), Traced::Count))
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}

fn trace_expr(input: &LogicalPlan, e: &Expr) -> Traced {
    match unalias(e) {
        Expr::Column(c) => match input.schema().index_of_column(c) {
            Ok(j) => trace(input, j),
            Err(_) => Traced::Unknown,
        },
        Expr::Cast(c) => trace_expr(input, &c.expr),
        Expr::TryCast(c) => trace_expr(input, &c.expr),
        Expr::Literal(..) => Traced::NotCount,
        _ => Traced::Unknown,
    }
}

/// Apply the rule to the count columns of a result, and leave out the rows
/// `withheld` marks (fewer patients than the threshold behind them). A
/// withheld row is a hidden cell for secondary suppression too: a total
/// beside it must not give it back.
pub fn apply(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    counts: &BTreeSet<usize>,
    rule: Disclosure,
    withheld: &[bool],
) -> Result<(Vec<RecordBatch>, DisclosureReport)> {
    let mut report = DisclosureReport {
        count_columns: counts
            .iter()
            .map(|&i| schema.field(i).name().clone())
            .collect(),
        rounded_to: rule.round_to,
        withheld_rows: withheld.iter().filter(|w| **w).count(),
        ..Default::default()
    };
    let all = concat_batches(schema, &batches)?;
    let withheld: Vec<bool> = (0..all.num_rows())
        .map(|r| withheld.get(r).copied().unwrap_or(false))
        .collect();
    let keep: datafusion::arrow::array::BooleanArray = withheld.iter().map(|w| Some(!w)).collect();
    if counts.is_empty() {
        let kept = datafusion::arrow::compute::filter_record_batch(&all, &keep)?;
        return Ok((vec![kept], report));
    }
    let dims: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !counts.contains(i))
        .collect();
    let dim_text: Vec<Vec<Option<String>>> = dims
        .iter()
        .map(|&d| crate::session::column_text(all.column(d)))
        .collect::<std::result::Result<_, _>>()?;
    let mut columns: Vec<ArrayRef> = all.columns().to_vec();
    for &c in counts {
        let values = cast(all.column(c), &DataType::Int64)?;
        let values = values.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let raw: Vec<Option<i64>> = values.iter().collect();
        let small: Vec<bool> = raw
            .iter()
            .map(|v| matches!(v, Some(x) if *x >= 1 && (*x as u64) < rule.suppress_below))
            .collect();
        report.suppressed += small
            .iter()
            .zip(&withheld)
            .filter(|(s, w)| **s && !**w)
            .count();
        let mut suppressed: Vec<bool> =
            small.iter().zip(&withheld).map(|(s, w)| *s || *w).collect();
        report.secondary_suppressed += secondary(&dim_text, &raw, &mut suppressed);
        let out: Int64Array = raw
            .iter()
            .zip(&suppressed)
            .map(|(v, s)| match (v, s) {
                (_, true) | (None, _) => None,
                (Some(x), false) => Some(round(*x, rule.round_to)),
            })
            .collect();
        columns[c] = cast(&(Arc::new(out) as ArrayRef), schema.field(c).data_type())?;
    }
    // Suppressed counts become NULL, so the column must allow them.
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if counts.contains(&i) {
                Arc::new(f.as_ref().clone().with_nullable(true))
            } else {
                f.clone()
            }
        })
        .collect();
    let out_schema = Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ));
    let batch = RecordBatch::try_new(out_schema, columns)?;
    let kept = datafusion::arrow::compute::filter_record_batch(&batch, &keep)?;
    Ok((vec![kept], report))
}

pub(crate) fn round(x: i64, to: u64) -> i64 {
    let to = to as i64;
    if to <= 1 {
        return x;
    }
    ((x + to / 2).div_euclid(to)) * to
}

/// Secondary suppression. A "line" is the set of rows that agree on every
/// dimension but one and have a value in it; the row with NULL in that
/// dimension (and the same others) is the line's published total.
fn secondary(dims: &[Vec<Option<String>>], raw: &[Option<i64>], suppressed: &mut [bool]) -> usize {
    let n = raw.len();
    let mut added = 0;
    loop {
        let mut changed = false;
        for d in 0..dims.len() {
            let key = |r: usize| -> Vec<Option<&str>> {
                (0..dims.len())
                    .filter(|&o| o != d)
                    .map(|o| dims[o][r].as_deref())
                    .collect()
            };
            let mut totals: BTreeSet<Vec<Option<&str>>> = BTreeSet::new();
            let mut lines: BTreeMap<Vec<Option<&str>>, Vec<usize>> = BTreeMap::new();
            for (r, value) in dims[d].iter().enumerate() {
                if value.is_none() {
                    totals.insert(key(r));
                } else {
                    lines.entry(key(r)).or_default().push(r);
                }
            }
            for (k, rows) in lines {
                if !totals.contains(&k) {
                    continue;
                }
                let hidden = rows.iter().filter(|&&r| suppressed[r]).count();
                if hidden != 1 {
                    continue;
                }
                let partner = rows
                    .iter()
                    .copied()
                    .filter(|&r| !suppressed[r] && raw[r].is_some())
                    .min_by_key(|&r| raw[r].unwrap_or(i64::MAX));
                match partner {
                    Some(r) => {
                        suppressed[r] = true;
                        added += 1;
                        changed = true;
                    }
                    // The only other cell is the total itself: hide that,
                    // once.
                    None => {
                        for t in 0..n {
                            if dims[d][t].is_none() && key(t) == k && !suppressed[t] {
                                suppressed[t] = true;
                                added += 1;
                                changed = true;
                            }
                        }
                    }
                }
            }
        }
        if !changed {
            return added;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(v: &[&[Option<&str>]]) -> Vec<Vec<Option<String>>> {
        v.iter()
            .map(|c| c.iter().map(|x| x.map(str::to_string)).collect())
            .collect()
    }

    #[tokio::test]
    async fn counts_are_found_after_every_group_column_of_a_rollup() {
        use datafusion::arrow::array::StringArray;
        use datafusion::arrow::datatypes::{Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new("ward", DataType::Utf8, true),
            Field::new("sex", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["A", "B"])),
                Arc::new(StringArray::from(vec!["f", "m"])),
            ],
        )
        .unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_batch("t", batch).unwrap();
        let plan = |sql: &'static str| {
            let ctx = ctx.clone();
            async move { ctx.sql(sql).await.unwrap().logical_plan().clone() }
        };
        let rollup = plan(
            "SELECT ward, sex, count(*) AS n, max(ward) AS m FROM t GROUP BY ROLLUP(ward, sex)",
        )
        .await;
        assert_eq!(count_columns(&rollup), BTreeSet::from([2]));
        let plain = plan("SELECT sex, ward, count(*) AS n FROM t GROUP BY ward, sex").await;
        assert_eq!(count_columns(&plain), BTreeSet::from([2]));
        assert!(count_columns(&plan("SELECT ward FROM t").await).is_empty());
    }

    #[test]
    fn rounding() {
        assert_eq!(round(0, 5), 0);
        assert_eq!(round(8, 5), 10);
        assert_eq!(round(12, 5), 10);
        assert_eq!(round(13, 5), 15);
        assert_eq!(round(13, 1), 13);
    }

    #[test]
    fn a_lone_suppressed_cell_beside_a_total_takes_a_partner() {
        // wards A, B, C and the total: A = 3 would be total - B - C.
        let d = dims(&[&[Some("A"), Some("B"), Some("C"), None]]);
        let raw = [Some(3), Some(20), Some(25), Some(48)];
        let mut s = [true, false, false, false];
        assert_eq!(secondary(&d, &raw, &mut s), 1);
        assert_eq!(s, [true, true, false, false]);
        // Without a total published beside them nothing more is hidden.
        let d = dims(&[&[Some("A"), Some("B"), Some("C")]]);
        let mut s = [true, false, false];
        assert_eq!(secondary(&d, &raw[..3], &mut s), 0);
    }

    #[test]
    fn a_lone_group_beside_its_total_hides_the_total_once() {
        // One ward and its total: the total is the ward.
        let d = dims(&[&[Some("A"), None]]);
        let raw = [Some(3), Some(3)];
        let mut s = [true, false];
        assert_eq!(secondary(&d, &raw, &mut s), 1);
        assert_eq!(s, [true, true]);
    }
}
