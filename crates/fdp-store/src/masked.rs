//! Scanning a canonical table with rows left out of each stored file.
//!
//! A governed session decides, once per immutable Parquet file, which of
//! its rows a purpose may see (the national data opt-out, restricted-view
//! groups); this module reads the columns it decides on, in stored order,
//! and scans the table with each file's kept rows selected, so that the
//! Parquet reader skips the rest and no query has to read those columns
//! again. Tables on the local file system and in object stores alike are
//! offered this way, where their files carry no partition values, deletion
//! vectors or mapped column names; others are governed with plan filters.
//! The same scan reads a table's every row where nothing is masked: unlike
//! the Delta provider's, it leaves a query's filters to the plan unless
//! the session asks the Parquet reader to apply them (which `fdp bench
//! cohort` measured slower).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::TableParquetOptions;
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, Result, Statistics};
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::TableType;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::object_store::path::Path as ObjectPath;
use datafusion::object_store::ObjectMeta;
use datafusion::parquet::arrow::arrow_reader::RowSelection;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;
use datafusion_datasource::compute_all_files_statistics;
use deltalake::DeltaTable;
use fdp_govern::{RowMasking, StoredFile};
use futures::future::BoxFuture;

/// One Delta table part's files, as its own provider would scan them.
struct Part {
    /// The stored table's name, which scans of it are planned under.
    name: String,
    /// Where its files are read from.
    store: ObjectStoreUrl,
    schema: SchemaRef,
    /// Each file, where it is and how many rows its log entry says it holds.
    files: Vec<(StoredFile, ObjectMeta, Option<usize>)>,
}

/// A canonical table (all its parts) that can be scanned with rows left out.
pub(crate) struct MaskableTable {
    parts: Vec<Part>,
    ctx: SessionContext,
}

impl MaskableTable {
    /// The parts' files, or `None` when one of them cannot be masked
    /// (partitioned, or with deletion vectors).
    /// `tables` are the parts with the schemas their Delta providers give
    /// (the masked scan must produce the same columns and types).
    pub(crate) fn new(
        tables: &[(String, DeltaTable, SchemaRef)],
        ctx: &SessionContext,
    ) -> Result<Option<MaskableTable>> {
        let mut parts = Vec::new();
        for (name, table, schema) in tables {
            let url = table.table_url();
            // The table's store, as its Delta provider registered it with
            // the session: the local file system, or the bucket.
            let store = match url.scheme() {
                "file" => ObjectStoreUrl::local_filesystem(),
                _ => ObjectStoreUrl::parse(format!("{}://{}", url.scheme(), url.authority()))?,
            };
            let snapshot = table.snapshot().map_err(to_df)?;
            if !snapshot.metadata().partition_columns().is_empty() {
                return Ok(None);
            }
            // Columns stored under physical names of their own (column
            // mapping, as other engines may write) are left to the Delta
            // provider, which maps them; this scan reads by name.
            if snapshot.schema().fields().any(|f| {
                f.metadata()
                    .contains_key("delta.columnMapping.physicalName")
            }) {
                return Ok(None);
            }
            let root = ObjectPath::from_url_path(url.path()).map_err(to_df)?;
            let mut files = Vec::new();
            for view in snapshot.log_data().iter() {
                if view.deletion_vector_descriptor().is_some() {
                    return Ok(None);
                }
                let location = root
                    .parts()
                    .chain(view.object_store_path().parts())
                    .collect();
                files.push((
                    StoredFile {
                        id: format!("{}/{}", url.as_str().trim_end_matches('/'), view.path()),
                    },
                    ObjectMeta {
                        location,
                        last_modified: view.modification_datetime().map_err(to_df)?,
                        size: view.size().max(0) as u64,
                        e_tag: None,
                        version: None,
                    },
                    view.num_records(),
                ));
            }
            parts.push(Part {
                name: name.clone(),
                store,
                schema: schema.clone(),
                files,
            });
        }
        Ok(Some(MaskableTable {
            parts,
            ctx: ctx.clone(),
        }))
    }

    fn part_of(&self, file: &StoredFile) -> Option<(&Part, &ObjectMeta)> {
        self.parts.iter().find_map(|p| {
            p.files
                .iter()
                .find(|(f, _, _)| f == file)
                .map(|(_, meta, _)| (p, meta))
        })
    }
}

impl RowMasking for MaskableTable {
    fn files(&self) -> Vec<StoredFile> {
        self.parts
            .iter()
            .flat_map(|p| p.files.iter().map(|(f, _, _)| f.clone()))
            .collect()
    }

    fn read_file<'a>(
        &'a self,
        file: &'a StoredFile,
        columns: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<RecordBatch>>> {
        Box::pin(async move {
            let Some((part, meta)) = self.part_of(file) else {
                return Err(datafusion::error::DataFusionError::Plan(format!(
                    "{} is not a file of this table",
                    file.id
                )));
            };
            let projection = columns
                .iter()
                .map(|c| part.schema.index_of(c))
                .collect::<Result<Vec<_>, _>>()?;
            let source = ParquetSource::new(part.schema.clone());
            // One file in one group, and the plan executed as built (no
            // optimizer to split it into byte ranges): rows in stored order.
            let config = FileScanConfigBuilder::new(part.store.clone(), Arc::new(source))
                .with_file_group(FileGroup::new(vec![meta.clone().into()]))
                .with_projection_indices(Some(projection))?
                .build();
            let plan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
            let task: Arc<TaskContext> = self.ctx.task_ctx();
            collect(plan, task).await
        })
    }

    fn keeping(
        &self,
        keep: &HashMap<StoredFile, Arc<BooleanArray>>,
    ) -> Result<Arc<dyn TableProvider>> {
        let mut frames = Vec::new();
        for part in &self.parts {
            let mut files = Vec::new();
            for (file, meta, rows) in &part.files {
                let mut pf: datafusion::datasource::listing::PartitionedFile = meta.clone().into();
                let mut rows = *rows;
                if let Some(mask) = keep.get(file) {
                    if mask.true_count() == 0 {
                        continue;
                    }
                    if mask.true_count() < mask.len() {
                        let selection = RowSelection::from_filters(&[mask.as_ref().clone()]);
                        pf = pf.with_extension(ParquetRowSelection::new(selection));
                        rows = Some(mask.true_count());
                    }
                }
                // The log's counts, as the Delta provider gives them, so
                // that joins are planned the same way whichever scan reads.
                let mut stats = Statistics::new_unknown(&part.schema);
                stats.num_rows = rows.map_or(Precision::Absent, Precision::Exact);
                stats.total_byte_size = Precision::Inexact(meta.size as usize);
                files.push(pf.with_statistics(Arc::new(stats)));
            }
            let provider = Arc::new(SelectedFiles {
                store: part.store.clone(),
                schema: part.schema.clone(),
                files,
            });
            frames.push(crate::query::scan_named(&self.ctx, &part.name, provider)?);
        }
        crate::query::parts_as_one(frames)
    }
}

/// One part's files, each with the rows to read where not all of them.
struct SelectedFiles {
    store: ObjectStoreUrl,
    schema: SchemaRef,
    files: Vec<datafusion::datasource::listing::PartitionedFile>,
}

impl fmt::Debug for SelectedFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectedFiles")
            .field("files", &self.files.len())
            .finish()
    }
}

#[async_trait::async_trait]
impl TableProvider for SelectedFiles {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Used to prune row groups and pages; the filter stays in the plan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut source = ParquetSource::new(self.schema.clone()).with_table_parquet_options(
            TableParquetOptions {
                global: state.config_options().execution.parquet.clone(),
                ..Default::default()
            },
        );
        if let Some(predicate) = conjunction(filters.to_vec()) {
            let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
        }
        // Spread the files over the session's partitions; the optimizer may
        // split large ones further, which the row selections allow.
        let partitions = state.config_options().execution.target_partitions.max(1);
        let mut groups: Vec<Vec<_>> = vec![Vec::new(); partitions.min(self.files.len().max(1))];
        for (i, f) in self.files.iter().enumerate() {
            let n = groups.len();
            groups[i % n].push(f.clone());
        }
        let (groups, statistics) = compute_all_files_statistics(
            groups.into_iter().map(FileGroup::new).collect(),
            self.schema.clone(),
            true,
            false,
        )?;
        let config = FileScanConfigBuilder::new(self.store.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

fn to_df(e: impl std::error::Error + Send + Sync + 'static) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}
