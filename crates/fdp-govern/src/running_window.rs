//! Running maxima and minima, one pass over each window partition.
//!
//! `max(x) OVER (PARTITION BY … ORDER BY … ROWS BETWEEN UNBOUNDED PRECEDING
//! AND 1 PRECEDING)` is a running maximum: each row's answer is the largest
//! `x` of the rows before it. The PTL asks it of every entry to flag a
//! patient booked ahead of a longer waiter. The engine evaluates an
//! aggregate over a frame a row at a time: for each row it finds the
//! frame, feeds the aggregate the rows that entered it and asks for its
//! value, a quarter of a second over a million rows. Over a frame that
//! starts at the partition's first row and ends a fixed number of rows
//! before the current one (or at it), the answers are one running value,
//! so this rule plans such a window as [`RUNNING_MAX`] or [`RUNNING_MIN`]:
//! a window function that computes a whole partition's answers in one
//! pass over its values.
//!
//! The SQL is unchanged, so it reads the same in any engine. Only orderable
//! whole-number types are rewritten (integers, dates, times, timestamps):
//! floating point has its own order for NaN, and text its own collations,
//! which the engine's `max` keeps.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, ArrowPrimitiveType, PrimitiveArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Field, FieldRef, Int16Type, Int32Type, Int64Type, Int8Type,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionParams};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    lit, Expr, ExprSchemable, LogicalPlan, PartitionEvaluator, Signature, Volatility,
    WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition, WindowUDF, WindowUDFImpl,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The running maximum's name in a plan (and in [`crate::plan_codec`]).
pub(crate) const RUNNING_MAX: &str = "running_max";
/// The running minimum's name in a plan (and in [`crate::plan_codec`]).
pub(crate) const RUNNING_MIN: &str = "running_min";

/// The window function `name` ([`RUNNING_MAX`] or [`RUNNING_MIN`]).
pub(crate) fn running_udwf(name: &str) -> Option<WindowUDF> {
    let largest = match name {
        RUNNING_MAX => true,
        RUNNING_MIN => false,
        _ => return None,
    };
    Some(WindowUDF::new_from_impl(Running {
        largest,
        signature: Signature::any(2, Volatility::Immutable),
    }))
}

/// `running_max(x, lag)` / `running_min(x, lag)`: over a partition in its
/// window order, each row's largest (smallest) non-null `x` among the rows
/// from the first to `lag` rows before it; null where there is none.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Running {
    largest: bool,
    signature: Signature,
}

impl WindowUDFImpl for Running {
    fn name(&self) -> &str {
        if self.largest {
            RUNNING_MAX
        } else {
            RUNNING_MIN
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        let lag = match args.input_exprs().get(1).and_then(|e| {
            e.downcast_ref::<datafusion::physical_expr::expressions::Literal>()
                .map(|l| l.value().clone())
        }) {
            Some(ScalarValue::Int64(Some(lag))) if lag >= 0 => lag as usize,
            other => {
                return plan_err!(
                    "{}: the rows back must be a whole number of at least 0, not {other:?}",
                    self.name()
                )
            }
        };
        Ok(Box::new(RunningEvaluator {
            largest: self.largest,
            lag,
        }))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let Some(input) = field_args.input_fields().first() else {
            return plan_err!("{} takes a value and the rows back", self.name());
        };
        Ok(Arc::new(Field::new(
            field_args.name(),
            input.data_type().clone(),
            true,
        )))
    }
}

#[derive(Debug)]
struct RunningEvaluator {
    largest: bool,
    lag: usize,
}

impl PartitionEvaluator for RunningEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], _num_rows: usize) -> Result<ArrayRef> {
        let (largest, lag) = (self.largest, self.lag);
        let v = &values[0];
        macro_rules! run {
            ($t:ty) => {
                Arc::new(running::<$t>(
                    v.as_any().downcast_ref().expect("typed by its field"),
                    largest,
                    lag,
                )) as ArrayRef
            };
        }
        Ok(match v.data_type() {
            DataType::Int8 => run!(Int8Type),
            DataType::Int16 => run!(Int16Type),
            DataType::Int32 => run!(Int32Type),
            DataType::Int64 => run!(Int64Type),
            DataType::UInt8 => run!(UInt8Type),
            DataType::UInt16 => run!(UInt16Type),
            DataType::UInt32 => run!(UInt32Type),
            DataType::UInt64 => run!(UInt64Type),
            DataType::Date32 => run!(Date32Type),
            DataType::Date64 => run!(Date64Type),
            DataType::Time32(TimeUnit::Second) => run!(Time32SecondType),
            DataType::Time32(TimeUnit::Millisecond) => run!(Time32MillisecondType),
            DataType::Time64(TimeUnit::Microsecond) => run!(Time64MicrosecondType),
            DataType::Time64(TimeUnit::Nanosecond) => run!(Time64NanosecondType),
            DataType::Timestamp(TimeUnit::Second, _) => run!(TimestampSecondType),
            DataType::Timestamp(TimeUnit::Millisecond, _) => run!(TimestampMillisecondType),
            DataType::Timestamp(TimeUnit::Microsecond, _) => run!(TimestampMicrosecondType),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => run!(TimestampNanosecondType),
            other => return exec_err!("a running maximum or minimum of {other} is not planned"),
        })
    }
}

/// The running extreme of `values`, each row's over the rows up to `lag`
/// before it, in the values' own type (a timestamp keeps its zone).
fn running<T: ArrowPrimitiveType>(
    values: &PrimitiveArray<T>,
    largest: bool,
    lag: usize,
) -> PrimitiveArray<T>
where
    T::Native: Ord,
{
    let mut best: Option<T::Native> = None;
    let out: PrimitiveArray<T> = (0..values.len())
        .map(|i| {
            // Row i's frame gains row i - lag, once.
            if let Some(j) = i.checked_sub(lag) {
                if values.is_valid(j) {
                    let v = values.value(j);
                    best = Some(match best {
                        Some(b) if largest => b.max(v),
                        Some(b) => b.min(v),
                        None => v,
                    });
                }
            }
            best
        })
        .collect();
    out.with_data_type(values.data_type().clone())
}

/// Plans `max`/`min` over a rows frame from the partition's first row to
/// `n PRECEDING` or `CURRENT ROW` as [`running_udwf`].
#[derive(Debug, Default)]
pub(crate) struct RunningExtremes;

impl OptimizerRule for RunningExtremes {
    fn name(&self) -> &str {
        "running_extremes"
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
        if !matches!(plan, LogicalPlan::Window(_)) {
            return Ok(Transformed::no(plan));
        }
        crate::day_arithmetic::rewrite_expressions(plan, rewrite)
    }
}

fn rewrite(e: Expr, schema: &datafusion::common::DFSchema) -> Result<Transformed<Expr>> {
    let Expr::WindowFunction(w) = &e else {
        return Ok(Transformed::no(e));
    };
    let WindowFunctionDefinition::AggregateUDF(f) = &w.fun else {
        return Ok(Transformed::no(e));
    };
    let name = match f.name() {
        "max" => RUNNING_MAX,
        "min" => RUNNING_MIN,
        _ => return Ok(Transformed::no(e)),
    };
    let p = &w.params;
    let frame = &p.window_frame;
    let lag = match (&frame.units, &frame.start_bound, &frame.end_bound) {
        (WindowFrameUnits::Rows, WindowFrameBound::Preceding(start), end) if start.is_null() => {
            match end {
                WindowFrameBound::CurrentRow => 0,
                WindowFrameBound::Preceding(n) => match n {
                    ScalarValue::UInt64(Some(n)) => *n,
                    _ => return Ok(Transformed::no(e)),
                },
                WindowFrameBound::Following(_) => return Ok(Transformed::no(e)),
            }
        }
        _ => return Ok(Transformed::no(e)),
    };
    let Ok(lag) = i64::try_from(lag) else {
        return Ok(Transformed::no(e));
    };
    // Unordered, the frame is the whole partition in no set order, which
    // the engine answers as one aggregate; a filter, DISTINCT or IGNORE
    // NULLS each change what enters the frame.
    if p.order_by.is_empty()
        || p.filter.is_some()
        || p.distinct
        || p.null_treatment.is_some()
        || p.args.len() != 1
        || !whole_number(&p.args[0].get_type(schema)?)
    {
        return Ok(Transformed::no(e));
    }
    let udwf = running_udwf(name).expect("named above");
    Ok(Transformed::yes(Expr::WindowFunction(Box::new(
        WindowFunction {
            fun: WindowFunctionDefinition::WindowUDF(Arc::new(udwf)),
            params: WindowFunctionParams {
                args: vec![p.args[0].clone(), lit(lag)],
                partition_by: p.partition_by.clone(),
                order_by: p.order_by.clone(),
                window_frame: p.window_frame.clone(),
                filter: None,
                null_treatment: None,
                distinct: false,
            },
        },
    ))))
}

/// Types the running extremes are computed for: a total order on whole
/// numbers, the same as the engine's `max` and `min`.
fn whole_number(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Timestamp(_, _)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;

    fn context(with_rule: bool) -> SessionContext {
        let ctx = SessionContext::new();
        if with_rule {
            ctx.add_optimizer_rule(Arc::new(RunningExtremes));
        }
        ctx
    }

    /// A table of groups, orders and values, with nulls, ties and a group
    /// of one row, made by the engine from a seeded series.
    async fn table(ctx: &SessionContext) -> Result<()> {
        ctx.sql(
            "CREATE TABLE t AS SELECT
                 value % 7 AS g,
                 (value * 37) % 101 AS o,
                 CASE WHEN value % 5 = 0 THEN NULL ELSE (value * 7919) % 1009 - 500 END AS v,
                 CAST(CASE WHEN value % 3 = 0 THEN NULL
                           ELSE DATE '2026-01-01' + CAST((value * 13) % 400 AS INT) END AS DATE) AS d
             FROM generate_series(1, 5000)
             UNION ALL SELECT 99, 1, 5, CAST(NULL AS DATE)",
        )
        .await?
        .collect()
        .await?;
        Ok(())
    }

    const QUERIES: &[&str] = &[
        "SELECT g, o, v, max(v) OVER (PARTITION BY g ORDER BY o, v ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS w FROM t",
        "SELECT g, o, v, min(v) OVER (PARTITION BY g ORDER BY o, v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS w FROM t",
        "SELECT g, o, v, max(v) OVER (PARTITION BY g ORDER BY o, v ROWS BETWEEN UNBOUNDED PRECEDING AND 3 PRECEDING) AS w FROM t",
        "SELECT g, o, d, max(d) OVER (PARTITION BY g ORDER BY o, d ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS w FROM t",
        "SELECT g, o, v, max(v) OVER (ORDER BY g, o, v ROWS BETWEEN UNBOUNDED PRECEDING AND 10000 PRECEDING) AS w FROM t",
    ];

    async fn answer(ctx: &SessionContext, sql: &str) -> Result<String> {
        let ordered = format!("SELECT * FROM ({sql}) ORDER BY 1, 2, 3, 4");
        let batches = ctx.sql(&ordered).await?.collect().await?;
        Ok(pretty_format_batches(&batches)?.to_string())
    }

    #[tokio::test]
    async fn running_extremes_give_the_engines_own_answers_in_one_pass() -> Result<()> {
        let (ours, theirs) = (context(true), context(false));
        table(&ours).await?;
        table(&theirs).await?;
        for sql in QUERIES {
            let plan = ours.sql(&format!("EXPLAIN {sql}")).await?.collect().await?;
            let plan = pretty_format_batches(&plan)?.to_string();
            assert!(plan.contains("running_m"), "not rewritten: {sql}\n{plan}");
            assert_eq!(
                answer(&ours, sql).await?,
                answer(&theirs, sql).await?,
                "{sql}"
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn other_frames_and_types_are_left_to_the_engine() -> Result<()> {
        let ctx = context(true);
        table(&ctx).await?;
        for sql in [
            // A range frame takes peers; a frame that ends after the row
            // or starts after the first is not a running value.
            "SELECT max(v) OVER (PARTITION BY g ORDER BY o RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM t",
            "SELECT max(v) OVER (PARTITION BY g ORDER BY o ROWS BETWEEN UNBOUNDED PRECEDING AND 1 FOLLOWING) FROM t",
            "SELECT max(v) OVER (PARTITION BY g ORDER BY o ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM t",
            // Unordered: the whole partition.
            "SELECT max(v) OVER (PARTITION BY g) FROM t",
            // Floating point and text keep the engine's own order.
            "SELECT max(CAST(v AS DOUBLE)) OVER (PARTITION BY g ORDER BY o ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM t",
            "SELECT max(CAST(v AS VARCHAR)) OVER (PARTITION BY g ORDER BY o ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM t",
            // A filter changes what enters the frame.
            "SELECT max(v) FILTER (WHERE v > 0) OVER (PARTITION BY g ORDER BY o ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM t",
            "SELECT sum(v) OVER (PARTITION BY g ORDER BY o ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM t",
        ] {
            let plan = ctx.sql(&format!("EXPLAIN {sql}")).await?.collect().await?;
            let plan = pretty_format_batches(&plan)?.to_string();
            assert!(!plan.contains("running_m"), "rewritten: {sql}\n{plan}");
        }
        Ok(())
    }

    #[test]
    fn a_running_value_counts_the_rows_back_from_each_row() {
        let v = Int64Array::from(vec![Some(3), None, Some(1), Some(7), Some(2)]);
        let max = |lag| running(&v, true, lag).iter().collect::<Vec<_>>();
        assert_eq!(max(0), vec![Some(3), Some(3), Some(3), Some(7), Some(7)]);
        assert_eq!(max(1), vec![None, Some(3), Some(3), Some(3), Some(7)]);
        assert_eq!(max(9), vec![None; 5]);
        let min = running(&v, false, 1).iter().collect::<Vec<_>>();
        assert_eq!(min, vec![None, Some(3), Some(3), Some(1), Some(1)]);
    }
}
