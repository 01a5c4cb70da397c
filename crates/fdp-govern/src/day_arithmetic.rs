//! Dates moved by whole days, in integer arithmetic.
//!
//! `date + INTERVAL '126 days'` is how SQL says "126 days later", and the
//! PTL says it for every breach date of every entry on the list. The engine
//! adds an interval to a date through a calendar type, a row at a time
//! (about 50 ns: a quarter of a second of a million-entry PTL). An interval
//! of whole days alone (no months, no time of day) moves a date by the same
//! number on the day count it is stored as, so this rule rewrites a date
//! plus or minus such an interval into [`date_add_days`](days_after), an
//! integer addition. Months keep the calendar: "3 months" after 31
//! January is not a fixed number of days.
//!
//! The answer is the same for every date the engine's own arithmetic can
//! give; a date beyond the 32-bit day count is refused, as there.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Date32Array};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int32Type, IntervalMonthDayNano};
use datafusion::arrow::error::ArrowError;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    create_udf, lit, BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator,
    ScalarUDF, Volatility,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The function's name in a plan (and in [`crate::plan_codec`]).
pub(crate) const DATE_ADD_DAYS: &str = "date_add_days";

/// `date` moved `days` later (earlier when negative).
pub(crate) fn days_after(date: Expr, days: i32) -> Expr {
    date_add_days_udf().call(vec![date, lit(days)])
}

pub(crate) fn date_add_days_udf() -> ScalarUDF {
    let f = |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let a = ColumnarValue::values_to_arrays(args)?;
        let out: Date32Array = datafusion::arrow::compute::try_binary(
            a[0].as_primitive::<Date32Type>(),
            a[1].as_primitive::<Int32Type>(),
            |date, days| {
                date.checked_add(days).ok_or_else(|| {
                    ArrowError::ComputeError(format!(
                        "{days} days after day {date} of the calendar is beyond the dates a column can hold"
                    ))
                })
            },
        )?;
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    };
    create_udf(
        DATE_ADD_DAYS,
        vec![DataType::Date32, DataType::Int32],
        DataType::Date32,
        Volatility::Immutable,
        Arc::new(f),
    )
}

/// Rewrites `date ± INTERVAL 'n days'` to [`days_after`].
#[derive(Debug, Default)]
pub(crate) struct DaysAsDayCounts;

impl OptimizerRule for DaysAsDayCounts {
    fn name(&self) -> &str {
        "days_as_day_counts"
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
        if plan.inputs().is_empty() {
            return Ok(Transformed::no(plan));
        }
        rewrite_expressions(plan, rewrite)
    }
}

/// `plan` with each of its expressions rewritten bottom up by `rewrite`,
/// which is given the columns the node's expressions read (its inputs').
/// A rewritten expression keeps its name, so the node's output columns are
/// unchanged. Shared by the rules that replace one expression by a cheaper
/// one with the same answer.
pub(crate) fn rewrite_expressions(
    plan: LogicalPlan,
    rewrite: impl Fn(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<Transformed<LogicalPlan>> {
    let schema = merge_schema(&plan.inputs());
    let names = NamePreserver::new(&plan);
    plan.map_expressions(|e| {
        let name = names.save(&e);
        let rewritten = e.transform_up(|e| rewrite(e, &schema))?;
        Ok(if rewritten.transformed {
            Transformed::yes(name.restore(rewritten.data))
        } else {
            rewritten
        })
    })
}

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
        return Ok(Transformed::no(e));
    };
    let (date, days) = match (op, whole_days(left), whole_days(right)) {
        (Operator::Plus, None, Some(days)) => (left, days),
        (Operator::Plus, Some(days), None) => (right, days),
        (Operator::Minus, None, Some(days)) => match days.checked_neg() {
            Some(days) => (left, days),
            None => return Ok(Transformed::no(e)),
        },
        _ => return Ok(Transformed::no(e)),
    };
    // Only a date: a timestamp plus a day keeps its time of day and zone.
    match date.get_type(schema) {
        Ok(DataType::Date32) => Ok(Transformed::yes(days_after(date.as_ref().clone(), days))),
        _ => Ok(Transformed::no(e)),
    }
}

/// The days of an interval literal of whole days alone.
fn whole_days(e: &Expr) -> Option<i32> {
    match e {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(i)), _) => {
            let IntervalMonthDayNano {
                months,
                days,
                nanoseconds,
            } = *i;
            (months == 0 && nanoseconds == 0).then_some(days)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(i)), _) => {
            (i.milliseconds == 0).then_some(i.days)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Date32Array, RecordBatch};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;

    const SQL: &str = "SELECT d + INTERVAL '126 days' AS breach, \
                              d - INTERVAL '3 days', \
                              INTERVAL '1 day' + d AS next_day, \
                              d + INTERVAL '3 months' AS months, \
                              d + INTERVAL '1 day 2 hours' AS with_time, \
                              CASE WHEN d > DATE '2000-01-01' THEN d + INTERVAL '28 days' END AS due \
                       FROM t ORDER BY d";

    fn context(with_rule: bool) -> Result<SessionContext> {
        let ctx = SessionContext::new();
        if with_rule {
            ctx.add_optimizer_rule(Arc::new(DaysAsDayCounts));
        }
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, true)]));
        // Leap days, the ends of months and years, the epoch, and dates far
        // on either side of it.
        let days = [
            Some(0),
            Some(-1),
            Some(11_016),    // 2000-02-29
            Some(19_782),    // 2024-02-29
            Some(20_819),    // 2026-12-31
            Some(20_513),    // 2026-03-01
            Some(-719_162),  // 0001-01-01
            Some(2_932_896), // 9999-12-31
            None,
        ];
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Date32Array::from(days.to_vec()))])?;
        ctx.register_batch("t", batch)?;
        Ok(ctx)
    }

    #[tokio::test]
    async fn whole_days_are_added_as_day_counts_with_the_calendars_answer() -> Result<()> {
        let plain = context(false)?.sql(SQL).await?.collect().await?;
        let df = context(true)?.sql(SQL).await?;
        let plan = df
            .clone()
            .into_optimized_plan()?
            .display_indent()
            .to_string();
        let fast = df.collect().await?;
        assert_eq!(
            pretty_format_batches(&plain)?.to_string(),
            pretty_format_batches(&fast)?.to_string(),
            "the rule changed an answer"
        );
        assert_eq!(
            plain[0].schema(),
            fast[0].schema(),
            "the rule changed a column"
        );
        // Four of the six are whole days; months and hours keep the calendar.
        assert_eq!(plan.matches(DATE_ADD_DAYS).count(), 4, "{plan}");
        assert!(plan.contains("months: 3"), "{plan}");
        assert!(plan.contains("nanoseconds: 7200000000000"), "{plan}");
        Ok(())
    }

    #[tokio::test]
    async fn a_timestamp_keeps_the_calendar() -> Result<()> {
        let ctx = SessionContext::new();
        ctx.add_optimizer_rule(Arc::new(DaysAsDayCounts));
        let df = ctx
            .sql("SELECT TIMESTAMP '2026-03-28 01:30:00' + INTERVAL '1 day' AS t")
            .await?;
        let plan = df
            .clone()
            .into_optimized_plan()?
            .display_indent()
            .to_string();
        assert!(!plan.contains(DATE_ADD_DAYS), "{plan}");
        let out = df.collect().await?;
        assert!(pretty_format_batches(&out)?
            .to_string()
            .contains("2026-03-29T01:30:00"));
        Ok(())
    }

    #[tokio::test]
    async fn a_date_beyond_what_a_column_holds_is_refused_not_wrapped() -> Result<()> {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, false)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Date32Array::from(vec![i32::MAX - 1]))],
        )?;
        ctx.register_batch("t", batch)?;
        let plan = ctx
            .table("t")
            .await?
            .select(vec![days_after(datafusion::prelude::col("d"), 5)])?;
        let err = plan.collect().await.unwrap_err().to_string();
        assert!(err.contains("beyond the dates a column can hold"), "{err}");
        Ok(())
    }
}
