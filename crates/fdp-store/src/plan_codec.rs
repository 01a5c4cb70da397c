//! Governed physical plans written for another process, and read back.
//!
//! A governed scan leaves rows out of each stored file by a row selection
//! attached to the file (see `masked`). DataFusion's own serialisation
//! writes a Parquet scan's files but not what is attached to them: a
//! governed plan written naively reaches an executor with the opted-out
//! patients' rows back in. So before a plan leaves the instance
//! ([`for_shipping`]) every scan whose files carry a selection is wrapped
//! in a [`SelectedScanExec`], which only [`GovernedPlanCodec`] writes (the
//! scan and each file's selection), and a scan whose files carry anything
//! else is refused. The policy's functions travel through
//! [`fdp_govern::plan_codec`].

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use fdp_govern::plan_codec::GovernedFunctions;
use serde::{Deserialize, Serialize};

fn refused(what: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(what.into())
}

/// The Parquet scan `node` is, if it is one: its file configuration.
fn file_scan(node: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    let any: &dyn Any = node.as_ref();
    let exec = any.downcast_ref::<DataSourceExec>()?;
    let source: &dyn Any = exec.data_source().as_ref();
    source.downcast_ref::<FileScanConfig>()
}

/// `plan` ready to be written with [`GovernedPlanCodec`]: each scan whose
/// files carry row selections wrapped so that they travel with it. A scan
/// whose files carry anything else attached is refused, since it could not
/// travel whole.
pub fn for_shipping(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(config) = file_scan(&node) else {
            return Ok(Transformed::no(node));
        };
        let mut selected = false;
        for file in config.file_groups.iter().flat_map(FileGroup::iter) {
            let ours = usize::from(file.extension::<ParquetRowSelection>().is_some());
            selected |= ours == 1;
            if file.extensions.len() > ours {
                return Err(refused(format!(
                    "{}: the scan carries what this codec cannot write; it runs only on the instance",
                    file.object_meta.location
                )));
            }
        }
        if !selected {
            return Ok(Transformed::no(node));
        }
        Ok(Transformed::yes(Arc::new(SelectedScanExec { inner: node }) as Arc<dyn ExecutionPlan>))
    })
    .map(|t| t.data)
}

/// A Parquet scan with rows left out of its files, as it travels: a leaf
/// whose scan only [`GovernedPlanCodec`] writes. It runs as the scan does.
#[derive(Debug)]
pub struct SelectedScanExec {
    inner: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for SelectedScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SelectedScanExec: ")?;
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for SelectedScanExec {
    fn name(&self) -> &str {
        "SelectedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        // The scan is not a child: a child would be written by DataFusion,
        // without its selections.
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(refused("SelectedScanExec has no children"))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, context)
    }
}

/// One file's selection: runs of rows, each skipped or read.
#[derive(Debug, Serialize, Deserialize)]
struct Runs(Vec<(bool, usize)>);

impl Runs {
    fn of(selection: &ParquetRowSelection) -> Runs {
        Runs(
            selection
                .selection()
                .iter()
                .map(|r| (r.skip, r.row_count))
                .collect(),
        )
    }

    fn into_selection(self) -> ParquetRowSelection {
        let selectors: Vec<RowSelector> = self
            .0
            .into_iter()
            .map(|(skip, n)| {
                if skip {
                    RowSelector::skip(n)
                } else {
                    RowSelector::select(n)
                }
            })
            .collect();
        ParquetRowSelection::new(RowSelection::from(selectors))
    }
}

/// What is written for a [`SelectedScanExec`] beside its scan: each file's
/// selection, in the order of the scan's files.
#[derive(Debug, Serialize, Deserialize)]
struct Selections {
    files: Vec<Option<Runs>>,
}

/// Writes a governed physical plan for an executor and reads it back there:
/// the scans with their row selections, and the policy's functions.
#[derive(Debug, Clone)]
pub struct GovernedPlanCodec {
    functions: GovernedFunctions,
}

impl GovernedPlanCodec {
    pub fn new(functions: GovernedFunctions) -> GovernedPlanCodec {
        GovernedPlanCodec { functions }
    }

    /// `plan` as bytes, ready for an executor ([`for_shipping`] first).
    pub fn write(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Vec<u8>> {
        let plan = for_shipping(plan)?;
        Ok(physical_plan_to_bytes_with_extension_codec(plan, self)?.to_vec())
    }

    /// A plan [`Self::write`] wrote, to run in `ctx`.
    pub fn read(&self, bytes: &[u8], ctx: &TaskContext) -> Result<Arc<dyn ExecutionPlan>> {
        physical_plan_from_bytes_with_extension_codec(bytes, ctx, self)
    }
}

impl PhysicalExtensionCodec for GovernedPlanCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !inputs.is_empty() {
            return Err(refused("a selected scan has no inputs"));
        }
        let (len, rest) = buf
            .split_first_chunk::<8>()
            .ok_or_else(|| refused("not a selected scan"))?;
        let len = u64::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(refused("a selected scan cut short"));
        }
        let (scan, selections) = rest.split_at(len);
        let selections: Selections = serde_json::from_slice(selections)
            .map_err(|e| refused(format!("a selected scan's selections: {e}")))?;
        let scan = physical_plan_from_bytes_with_extension_codec(scan, ctx, self)?;
        let config =
            file_scan(&scan).ok_or_else(|| refused("a selected scan that is not a file scan"))?;
        let count: usize = config.file_groups.iter().map(FileGroup::len).sum();
        if count != selections.files.len() {
            return Err(refused(format!(
                "a selected scan of {count} files with {} selections",
                selections.files.len()
            )));
        }
        // The files come back in the order they were written.
        let mut config = config.clone();
        let mut runs = selections.files.into_iter();
        for group in &mut config.file_groups {
            let mut selected = Vec::new();
            for file in group.iter() {
                selected.push(match runs.next().flatten() {
                    Some(r) => file.clone().with_extension(r.into_selection()),
                    None => file.clone(),
                });
            }
            *group = FileGroup::new(selected);
        }
        Ok(DataSourceExec::from_data_source(config))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let any: &dyn Any = node.as_ref();
        let Some(selected) = any.downcast_ref::<SelectedScanExec>() else {
            return Err(refused(format!(
                "{} cannot leave the instance",
                node.name()
            )));
        };
        let config = file_scan(&selected.inner)
            .ok_or_else(|| refused("a selected scan that is not a file scan"))?;
        let mut files = Vec::new();
        let mut plain = config.clone();
        for group in &mut plain.file_groups {
            let mut stripped = Vec::new();
            for file in group.iter() {
                files.push(file.extension::<ParquetRowSelection>().map(Runs::of));
                let mut file = file.clone();
                file.extensions = Default::default();
                stripped.push(file);
            }
            *group = FileGroup::new(stripped);
        }
        let scan = physical_plan_to_bytes_with_extension_codec(
            DataSourceExec::from_data_source(plain),
            self,
        )?;
        buf.extend_from_slice(&(scan.len() as u64).to_le_bytes());
        buf.extend_from_slice(&scan);
        serde_json::to_writer(buf, &Selections { files }).map_err(|e| refused(e.to_string()))
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.functions.decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.functions.encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.functions.decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.functions.encode_udaf(node, buf)
    }
}
