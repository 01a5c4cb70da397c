//! Governed physical plans written for another process, and read back.
//!
//! A governed scan leaves rows out of each stored file by a row selection
//! attached to the file (see `masked`). DataFusion's own serialisation
//! writes a Parquet scan's files but not what is attached to them: a
//! governed plan written naively reaches an executor with the opted-out
//! patients' rows back in. So before a plan leaves the instance
//! ([`for_shipping`]) every Parquet scan reads through a
//! [`SelectedParquetSource`], which DataFusion cannot write and
//! [`GovernedPlanCodec`] can: the scan, and each file's selection. A scan
//! whose files carry anything else is refused. The scan stays a plain
//! `DataSourceExec`, so an engine that splits a scan's files among its
//! tasks (a Ballista scheduler does) splits this one too, selections and
//! all. The policy's functions travel through [`fdp_govern::plan_codec`].

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::{
    FileGroup, FileOpener, FileScanConfig, FileScanConfigBuilder, FileSource, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use datafusion::physical_expr::projection::ProjectionExprs;
use datafusion::physical_expr::{LexOrdering, PhysicalExpr};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::{DisplayFormatType, ExecutionPlan};
use datafusion_datasource::morsel::Morselizer;
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use fdp_govern::plan_codec::GovernedFunctions;
use object_store::ObjectStore;

fn refused(what: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(what.into())
}

/// The file scan `node` is, if it is one: its file configuration.
fn file_scan(node: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    let any: &dyn Any = node.as_ref();
    let exec = any.downcast_ref::<DataSourceExec>()?;
    let source: &dyn Any = exec.data_source().as_ref();
    source.downcast_ref::<FileScanConfig>()
}

fn source_of<T: 'static>(config: &FileScanConfig) -> Option<&T> {
    let source: &dyn Any = config.file_source().as_ref();
    source.downcast_ref::<T>()
}

/// Whether `node` is a scan only [`GovernedPlanCodec`] writes.
pub fn is_selected_scan(node: &Arc<dyn ExecutionPlan>) -> bool {
    file_scan(node).is_some_and(|c| source_of::<SelectedParquetSource>(c).is_some())
}

/// How many of the files `plan`'s scans read carry a row selection: after
/// [`GovernedPlanCodec`] has read a plan back, the selections that travelled.
pub fn row_selected_files(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let mut n = 0;
    let _ = plan.apply(|node| {
        if let Some(config) = file_scan(node) {
            n += config
                .file_groups
                .iter()
                .flat_map(|g| g.iter())
                .filter(|f| f.extension::<ParquetRowSelection>().is_some())
                .count();
        }
        Ok(TreeNodeRecursion::Continue)
    });
    n
}

/// `plan` ready to be written with [`GovernedPlanCodec`]: each Parquet scan
/// reading through a [`SelectedParquetSource`], so that it travels with its
/// files' row selections (every scan, so that each travels one way and
/// says where it read). A scan whose files carry anything else attached is
/// refused, since it could not travel whole.
pub fn for_shipping(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(config) = file_scan(&node) else {
            return Ok(Transformed::no(node));
        };
        if source_of::<ParquetSource>(config).is_none() {
            return Ok(Transformed::no(node));
        }
        for file in config.file_groups.iter().flat_map(FileGroup::iter) {
            let ours = usize::from(file.extension::<ParquetRowSelection>().is_some());
            if file.extensions.len() > ours {
                return Err(refused(format!(
                    "{}: the scan carries what this codec cannot write; it runs only on the instance",
                    file.object_meta.location
                )));
            }
        }
        let source = SelectedParquetSource::over(config.file_source().clone());
        let config = FileScanConfigBuilder::from(config.clone())
            .with_source(source)
            .build();
        Ok(Transformed::yes(
            DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>
        ))
    })
    .map(|t| t.data)
}

/// A Parquet source whose files may carry row selections, as a governed
/// scan travels: it reads as the Parquet source it wraps, and DataFusion's
/// own serialisation, which would drop the selections, refuses it.
#[derive(Clone)]
pub struct SelectedParquetSource {
    inner: Arc<dyn FileSource>,
}

impl fmt::Debug for SelectedParquetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SelectedParquetSource({})", self.inner.file_type())
    }
}

impl SelectedParquetSource {
    fn over(inner: Arc<dyn FileSource>) -> Arc<dyn FileSource> {
        Arc::new(SelectedParquetSource { inner })
    }
}

impl FileSource for SelectedParquetSource {
    fn create_file_opener(
        &self,
        object_store: Arc<dyn ObjectStore>,
        base_config: &FileScanConfig,
        partition: usize,
    ) -> Result<Arc<dyn FileOpener>> {
        self.inner
            .create_file_opener(object_store, base_config, partition)
    }

    fn create_morselizer(
        &self,
        object_store: Arc<dyn ObjectStore>,
        base_config: &FileScanConfig,
        partition: usize,
    ) -> Result<Box<dyn Morselizer>> {
        // Where a plan runs far from the instance, its log is the record of
        // which files each process read.
        if let Some(group) = base_config.file_groups.get(partition) {
            let files: Vec<String> = group
                .iter()
                .map(|f| f.object_meta.location.to_string())
                .collect();
            tracing::info!(target: "fdp_scan", partition, files = %files.join(","), "scanning");
        }
        self.inner
            .create_morselizer(object_store, base_config, partition)
    }

    fn table_schema(&self) -> &TableSchema {
        self.inner.table_schema()
    }

    fn with_batch_size(&self, batch_size: usize) -> Arc<dyn FileSource> {
        SelectedParquetSource::over(self.inner.with_batch_size(batch_size))
    }

    fn filter(&self) -> Option<Arc<dyn PhysicalExpr>> {
        self.inner.filter()
    }

    fn projection(&self) -> Option<&ProjectionExprs> {
        self.inner.projection()
    }

    fn metrics(&self) -> &ExecutionPlanMetricsSet {
        self.inner.metrics()
    }

    fn file_type(&self) -> &str {
        self.inner.file_type()
    }

    fn fmt_extra(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, ", selected")?;
        self.inner.fmt_extra(t, f)
    }

    fn supports_repartitioning(&self) -> bool {
        self.inner.supports_repartitioning()
    }

    fn repartitioned(
        &self,
        target_partitions: usize,
        repartition_file_min_size: usize,
        output_ordering: Option<LexOrdering>,
        config: &FileScanConfig,
    ) -> Result<Option<FileScanConfig>> {
        self.inner.repartitioned(
            target_partitions,
            repartition_file_min_size,
            output_ordering,
            config,
        )
    }

    fn reorder_files(
        &self,
        files: Vec<datafusion::datasource::listing::PartitionedFile>,
    ) -> Vec<datafusion::datasource::listing::PartitionedFile> {
        self.inner.reorder_files(files)
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.inner.apply_expressions(f)
    }
}

/// One file's selection: runs of rows, each skipped or read.
#[derive(Debug, PartialEq, Eq)]
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

/// Each file's selection, in the order of the scan's files, as bytes. A
/// national table's opt-out leaves millions of short runs, so each run is
/// a varint of its length with its kind in the lowest bit (a byte or two
/// a run, where text took fourteen and overflowed the scheduler's
/// messages). Per file: a byte 0 (no selection) or 1, then the count of
/// runs, then the runs.
fn write_selections(files: &[Option<Runs>], buf: &mut Vec<u8>) {
    write_varint(files.len() as u64, buf);
    for file in files {
        match file {
            None => buf.push(0),
            Some(runs) => {
                buf.push(1);
                write_varint(runs.0.len() as u64, buf);
                for &(skip, n) in &runs.0 {
                    write_varint(((n as u64) << 1) | u64::from(skip), buf);
                }
            }
        }
    }
}

fn read_selections(mut buf: &[u8]) -> Result<Vec<Option<Runs>>> {
    let cut = || refused("a selected scan's selections cut short");
    let files = read_varint(&mut buf).ok_or_else(cut)?;
    // Never trust a count to size memory: each file takes a byte at least.
    let mut out = Vec::with_capacity((files as usize).min(buf.len()));
    for _ in 0..files {
        let (&kind, rest) = buf.split_first().ok_or_else(cut)?;
        buf = rest;
        out.push(match kind {
            0 => None,
            1 => {
                let count = read_varint(&mut buf).ok_or_else(cut)?;
                let mut runs = Vec::with_capacity((count as usize).min(buf.len()));
                for _ in 0..count {
                    let v = read_varint(&mut buf).ok_or_else(cut)?;
                    runs.push((v & 1 == 1, (v >> 1) as usize));
                }
                Some(Runs(runs))
            }
            other => {
                return Err(refused(format!(
                    "a selected scan's selection of unknown kind {other}"
                )))
            }
        });
    }
    if !buf.is_empty() {
        return Err(refused(
            "a selected scan's selections run on past their end",
        ));
    }
    Ok(out)
}

fn write_varint(mut v: u64, buf: &mut Vec<u8>) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
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
        let selections = read_selections(selections)?;
        let scan = physical_plan_from_bytes_with_extension_codec(scan, ctx, self)?;
        let config =
            file_scan(&scan).ok_or_else(|| refused("a selected scan that is not a file scan"))?;
        let count: usize = config.file_groups.iter().map(FileGroup::len).sum();
        if count != selections.len() {
            return Err(refused(format!(
                "a selected scan of {count} files with {} selections",
                selections.len()
            )));
        }
        // The files come back in the order they were written.
        let mut config = FileScanConfigBuilder::from(config.clone())
            .with_source(SelectedParquetSource::over(config.file_source().clone()))
            .build();
        let mut runs = selections.into_iter();
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
        // Still selected: a process that passes the plan on (a cluster's
        // scheduler) writes it again with the selections.
        Ok(DataSourceExec::from_data_source(config))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some((config, source)) =
            file_scan(&node).and_then(|c| Some((c, source_of::<SelectedParquetSource>(c)?)))
        else {
            return Err(refused(format!(
                "{} cannot leave the instance",
                node.name()
            )));
        };
        let mut files = Vec::new();
        let mut plain = FileScanConfigBuilder::from(config.clone())
            .with_source(source.inner.clone())
            .build();
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
        write_selections(&files, buf);
        Ok(())
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.functions.decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.functions.encode_udf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.functions.decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.functions.encode_udwf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.functions.decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.functions.encode_udaf(node, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_round_trip_and_stay_small() {
        // A file of a million rows with every fiftieth left out, as an
        // opt-out leaves a national table.
        let mut runs = Vec::new();
        for _ in 0..20_000 {
            runs.push((false, 49));
            runs.push((true, 1));
        }
        runs.push((false, usize::MAX >> 2));
        let files = vec![None, Some(Runs(runs)), Some(Runs(Vec::new()))];
        let mut buf = Vec::new();
        write_selections(&files, &mut buf);
        assert!(buf.len() < 41_000, "{} bytes", buf.len());
        assert_eq!(read_selections(&buf).unwrap(), files);
    }

    #[test]
    fn damaged_selections_are_refused_not_trusted() {
        let files = vec![Some(Runs(vec![(false, 300), (true, 2)]))];
        let mut buf = Vec::new();
        write_selections(&files, &mut buf);
        for cut in 0..buf.len() {
            assert!(read_selections(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = buf.clone();
        longer.push(0);
        assert!(read_selections(&longer).is_err());
        // A count of files far beyond the bytes that follow.
        let mut huge = Vec::new();
        write_varint(u64::MAX, &mut huge);
        assert!(read_selections(&huge).is_err());
        assert!(read_selections(&[1, 7]).is_err());
        assert!(read_selections(&[0xff; 12]).is_err());
    }
}
