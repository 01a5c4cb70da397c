//! # fdp-store: the instance's versioned tables
//!
//! Owns everything that is written to the data directory:
//!
//! - the **write-ahead log** ([`wal`]), where a received record becomes
//!   durable and after which, and only after which, a source may be
//!   acknowledged; re-sent records (same dedup key) are recognised here;
//! - the **raw** Delta tables, filled from the WAL in batches, one row per
//!   record as received, each append tagged with the WAL sequence it reached
//!   so that recovery never appends twice;
//! - the **canonical** Delta tables, derived states written as the rows that
//!   changed ([`keyed`]) with their lineage (which raw sequence and raw
//!   versions they came from);
//! - table history, compaction, and SQL through DataFusion ([`query`]).
//!
//! It must not know what a record means: parsing, mapping and the model's
//! rules belong to `fdp-ingest`; who may read what belongs to `fdp-govern`.
//!
//! ```text
//! data-dir/
//!   instance.lock        held by the one process that writes
//!   wal/                 <first seq>.wal segments
//!   tables/raw/<name>/   Delta tables, one per stream (hl7v2_message, ui_event)
//!   tables/canonical/<name>/
//!   tables.url           where the tables are instead, in an object store
//!                        (s3://bucket/prefix/raw/<name>/ ...), if anywhere
//! ```

pub mod dedup;
pub mod keyed;
pub mod location;
mod masked;
pub mod plan_codec;
pub mod query;
pub mod raw;
pub mod rows;
pub mod tables;
pub mod wal;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch, Notify};

pub use dedup::DEDUP_CONTENT_SEPARATOR;
pub use deltalake::arrow;
pub use deltalake::arrow::array::RecordBatch;
pub use deltalake::arrow::datatypes::{Schema, SchemaRef};
pub use deltalake::kernel::transaction::CommitProperties;
pub use deltalake::DeltaTable;
pub use fdp_govern::AsOf;
pub use location::TableLocation;
pub use query::StoredTables;
pub use raw::{RawRecord, RecordStatus};
pub use tables::{Layer, Lineage, TableVersion};

/// Errors from the store. Each says which file or table was involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the data directory {0} is in use by another running instance; stop it first, or query it with `fdp sql`, which does not need the lock")]
    Locked(PathBuf),
    #[error("data directory damaged: {0}")]
    Corrupt(String),
    #[error("no table at {0}")]
    NoSuchTable(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("Delta Lake: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    #[error("query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Governed(#[from] fdp_govern::GovernError),
    #[error("the store has stopped accepting writes: {0}")]
    Stopped(String),
}

impl StoreError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Tunables of the store. The defaults suit a trust's live feed.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// How often committed records are appended to the raw Delta tables.
    pub raw_flush_interval: Duration,
    /// Append early once this many records are waiting.
    pub raw_flush_rows: usize,
    /// Compact a table once it has more active files than this.
    pub compact_max_files: usize,
    /// How often to look for tables that need compacting.
    pub compact_interval: Duration,
    /// How long a record's dedup key is remembered: a re-send arriving
    /// later than this is stored again.
    pub dedup_window: Duration,
    /// Committed records not yet in the raw tables may hold at most this
    /// many payload bytes; past it the committer stops taking records (and
    /// so sources stop being read) until the flusher catches up.
    pub max_unflushed_bytes: u64,
    /// The history handed back by [`Store::open`] starts after this
    /// sequence number (a census snapshot already holds what came before).
    pub history_after_seq: u64,
    /// Keep the raw and canonical tables in this object store location
    /// (`s3://bucket/prefix`) rather than under the data directory; see
    /// [`location`]. Fixed when the directory is first opened.
    pub tables_url: Option<url::Url>,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            raw_flush_interval: Duration::from_millis(1000),
            raw_flush_rows: 50_000,
            compact_max_files: 32,
            compact_interval: Duration::from_secs(60),
            dedup_window: Duration::from_secs(7 * 24 * 3600),
            max_unflushed_bytes: 256 << 20,
            history_after_seq: 0,
            tables_url: None,
        }
    }
}

/// A record handed to the store for commit; the store assigns its sequence.
#[derive(Debug, Clone)]
pub struct Submission {
    pub received_at_us: i64,
    pub status: RecordStatus,
    pub stream: String,
    pub source: String,
    pub message_type: String,
    pub control_id: String,
    pub dedup_key: Option<String>,
    pub reason: String,
    pub location: String,
    pub payload: Vec<u8>,
}

impl Submission {
    /// The record this submission becomes under sequence number `seq`.
    pub fn into_record(self, seq: u64) -> RawRecord {
        RawRecord {
            seq,
            received_at_us: self.received_at_us,
            status: self.status,
            stream: self.stream,
            source: self.source,
            message_type: self.message_type,
            control_id: self.control_id,
            dedup_key: self.dedup_key,
            reason: self.reason,
            location: self.location,
            payload: self.payload,
        }
    }
}

/// The outcome of a commit. Both variants mean "durable": acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Newly committed under this sequence number.
    New(u64),
    /// Already committed earlier under this sequence number; not stored again.
    Duplicate(u64),
}

enum Request {
    Commit(
        Box<Submission>,
        oneshot::Sender<Result<Committed, StoreError>>,
    ),
    /// Raw tables hold everything through this sequence.
    Flushed(u64),
    Shutdown,
}

/// Cheap, cloneable handle through which sources commit records.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Request>,
    committed: Arc<AtomicU64>,
}

impl Committer {
    /// The highest sequence number made durable so far.
    pub fn committed_through(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Make a record durable. Returns once it is fsynced in the WAL.
    pub async fn commit(&self, sub: Submission) -> Result<Committed, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Commit(Box::new(sub), reply))
            .map_err(|_| StoreError::Stopped("the store is shutting down".into()))?;
        rx.await
            .map_err(|_| StoreError::Stopped("the WAL committer ended".into()))?
    }
}

/// Where the raw tables have reached: the last sequence appended and the
/// Delta version of each raw table after that append.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawProgress {
    pub through_seq: u64,
    pub versions: BTreeMap<String, u64>,
}

/// An open, writable store.
pub struct Store {
    config: StoreConfig,
    committer: Committer,
    progress: watch::Receiver<RawProgress>,
    flush_now: Arc<Notify>,
    wal_thread: Option<std::thread::JoinHandle<()>>,
    flusher: Option<tokio::task::JoinHandle<()>>,
    compactor: Option<tokio::task::JoinHandle<()>>,
    /// Where each canonical table's writer left its files, so that the next
    /// state is written as changes.
    layouts: tokio::sync::Mutex<HashMap<String, Option<keyed::Layout>>>,
    /// For tables appended to and deleted from by key (archive parts).
    file_keys: tokio::sync::Mutex<HashMap<String, keyed::FileKeys>>,
    _lock: File,
}

/// Records committed but not yet taken from [`Opened::feed`]. Past this
/// many the committer waits, and with it every acknowledgement: a census
/// that falls behind the feed slows the senders rather than filling memory.
pub const FEED_CAPACITY: usize = 32_768;

/// The application id under which appends of numbered batches to canonical
/// tables record how far they reached.
const CANONICAL_BATCH_APP: &str = "openfdp-canonical-batch";

/// What [`Store::open`] hands back besides the store.
pub struct Opened {
    pub store: Store,
    /// Accepted records committed before this start and after
    /// `StoreConfig::history_after_seq`, in sequence order, to rebuild
    /// derived state from.
    pub history: Vec<RawRecord>,
    /// Every record committed from now on, in sequence order. It must be
    /// read (or dropped): with [`FEED_CAPACITY`] records unread the
    /// committer waits.
    pub feed: mpsc::Receiver<Arc<RawRecord>>,
}

impl Store {
    /// Open (creating if needed) the data directory for writing: take the
    /// lock, bring the raw tables up to date with the WAL, load the dedup
    /// keys and start the committer and the background flusher.
    pub async fn open(config: StoreConfig) -> Result<Opened, StoreError> {
        let data_dir = std::path::absolute(&config.data_dir)
            .map_err(|e| StoreError::io(&config.data_dir, e))?;
        let config = StoreConfig {
            data_dir: data_dir.clone(),
            ..config
        };
        std::fs::create_dir_all(&data_dir).map_err(|e| StoreError::io(&data_dir, e))?;
        let lock_path = data_dir.join("instance.lock");
        let lock = File::create(&lock_path).map_err(|e| StoreError::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(data_dir));
        }

        location::bind_tables_root(&data_dir, config.tables_url.as_ref())?;

        let wal_dir = data_dir.join("wal");
        let recovered = wal::Wal::recover(&wal_dir)?;

        // Bring every raw table up to date with what the WAL holds. Raw
        // tables written by other sources (FHIR, extracts) have their own
        // schemas and no WAL: they are not streams.
        let mut streams: Vec<String> = Vec::new();
        let mut opened: HashMap<String, DeltaTable> = HashMap::new();
        for name in tables::list_tables(&data_dir, Layer::Raw).await? {
            let path = tables::table_location(&data_dir, Layer::Raw, &name)?;
            let table = tables::open(&path, None).await?;
            let schema = table.snapshot()?.schema();
            let has = |column: &str| schema.fields().any(|f| f.name() == column);
            if has("seq") && has("dedup_key") {
                streams.push(name.clone());
                opened.insert(name, table);
            }
        }
        for r in &recovered.records {
            if !streams.contains(&r.stream) {
                streams.push(r.stream.clone());
            }
        }
        let mut raw_tables: HashMap<String, DeltaTable> = HashMap::new();
        let mut last_seq = recovered.last_seq;
        let mut versions = BTreeMap::new();
        for stream in &streams {
            let mut table = match opened.remove(stream) {
                Some(t) => t,
                // A stream so far only in the WAL.
                None => {
                    let path = tables::table_location(&data_dir, Layer::Raw, stream)?;
                    tables::open_or_create(&path, raw::raw_schema()).await?
                }
            };
            let watermark = tables::raw_watermark(&table).await?;
            let pending: Vec<&RawRecord> = recovered
                .records
                .iter()
                .filter(|r| &r.stream == stream && r.seq > watermark)
                .collect();
            if let Some(max) = pending.iter().map(|r| r.seq).max() {
                tracing::info!(
                    stream,
                    records = pending.len(),
                    "replaying WAL into raw table"
                );
                table = tables::append_raw(table, raw::to_batch(&pending), max).await?;
            }
            last_seq = last_seq.max(tables::raw_watermark(&table).await?);
            versions.insert(stream.clone(), table.version().unwrap_or(0));
            raw_tables.insert(stream.clone(), table);
        }

        // Everything up to last_seq is now in Delta: read the history a
        // snapshot does not already hold, and the window's dedup keys.
        let mut history = Vec::new();
        let mut keys: Vec<(String, u64, i64)> = Vec::new();
        let mut newest_us = i64::MIN;
        for table in raw_tables.values() {
            newest_us = newest_us.max(newest_received(table).await?);
        }
        let window_us = i64::try_from(config.dedup_window.as_micros()).unwrap_or(i64::MAX);
        let horizon = newest_us.saturating_sub(window_us).max(0);
        for (stream, table) in &raw_tables {
            history.extend(read_history(stream, table, config.history_after_seq).await?);
            keys.extend(read_keys(table, horizon).await?);
        }
        history.sort_by_key(|r| r.seq);
        keys.sort_by_key(|k| k.1);
        let mut dedup = dedup::DedupWindow::new(config.dedup_window);
        for (key, seq, at) in &keys {
            dedup.insert(key, *seq, *at);
        }
        drop(keys);
        tracing::info!(
            history = history.len(),
            dedup_keys = dedup.len(),
            "raw tables read"
        );

        let next_seq = last_seq + 1;
        let wal = wal::Wal::open(&wal_dir, next_seq)?;
        wal.truncate_through(last_seq)?;

        let (tx, rx) = mpsc::unbounded_channel();
        let (feed_tx, feed_rx) = mpsc::channel(FEED_CAPACITY);
        let (flush_tx, flush_rx) = mpsc::unbounded_channel();
        let committed = Arc::new(AtomicU64::new(last_seq));
        let backlog = Arc::new(Backlog::new(config.max_unflushed_bytes));
        let committer = Committer {
            tx: tx.clone(),
            committed: committed.clone(),
        };
        let committer_backlog = backlog.clone();
        let wal_thread = std::thread::Builder::new()
            .name("fdp-wal".into())
            .spawn(move || {
                run_committer(
                    wal,
                    next_seq,
                    dedup,
                    rx,
                    flush_tx,
                    feed_tx,
                    committed,
                    committer_backlog,
                )
            })
            .map_err(|e| StoreError::io(&wal_dir, e))?;

        let (progress_tx, progress_rx) = watch::channel(RawProgress {
            through_seq: last_seq,
            versions,
        });
        let flush_now = Arc::new(Notify::new());
        let flusher = tokio::spawn(run_flusher(
            data_dir.clone(),
            raw_tables,
            flush_rx,
            tx,
            progress_tx,
            flush_now.clone(),
            config.raw_flush_interval,
            config.raw_flush_rows,
            backlog,
        ));
        let compactor = tokio::spawn(run_compactor(
            data_dir.clone(),
            config.compact_interval,
            config.compact_max_files,
        ));
        Ok(Opened {
            store: Store {
                config,
                committer,
                progress: progress_rx,
                flush_now,
                wal_thread: Some(wal_thread),
                flusher: Some(flusher),
                compactor: Some(compactor),
                layouts: Default::default(),
                file_keys: Default::default(),
                _lock: lock,
            },
            history,
            feed: feed_rx,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    pub fn committer(&self) -> Committer {
        self.committer.clone()
    }

    /// Where the raw tables have reached.
    pub fn raw_progress(&self) -> RawProgress {
        self.progress.borrow().clone()
    }

    /// Wait until the raw tables hold every record through `seq`, asking the
    /// flusher not to wait for its next tick.
    pub async fn raw_flushed_through(&self, seq: u64) -> RawProgress {
        let mut rx = self.progress.clone();
        loop {
            {
                let p = rx.borrow_and_update();
                if p.through_seq >= seq {
                    return p.clone();
                }
            }
            self.flush_now.notify_one();
            if rx.changed().await.is_err() {
                return rx.borrow().clone();
            }
        }
    }

    /// Write a canonical table's newly derived state: the rows that differ
    /// from what this store last wrote to it, merged by `key` in one Delta
    /// version (see [`keyed`]). Nothing is committed when nothing changed.
    pub async fn write_canonical(
        &self,
        name: &str,
        schema: deltalake::arrow::datatypes::SchemaRef,
        key: &str,
        state: RecordBatch,
        lineage: &Lineage,
    ) -> Result<keyed::ChangeSummary, StoreError> {
        let path = tables::table_location(&self.config.data_dir, Layer::Canonical, name)?;
        let table = tables::open_or_create(&path, keyed::plain_schema(&schema)).await?;
        let mut layouts = self.layouts.lock().await;
        let layout = layouts.entry(name.to_string()).or_default();
        let result = keyed::write_state(table, layout, state, key, lineage).await;
        if result.is_err() {
            // The commit may or may not have happened: start again whole.
            *layout = None;
        }
        result
    }

    /// Append rows to a canonical table (an archive part, say) once: `batch_id`
    /// is recorded with the commit, and a batch at or below the table's last
    /// one is skipped, so a writer that repeats itself after a crash does
    /// not add the rows twice. Returns whether it appended.
    pub async fn append_canonical_once(
        &self,
        name: &str,
        schema: deltalake::arrow::datatypes::SchemaRef,
        batch: RecordBatch,
        batch_id: u64,
        lineage: &Lineage,
    ) -> Result<bool, StoreError> {
        let path = tables::table_location(&self.config.data_dir, Layer::Canonical, name)?;
        let table = tables::open_or_create(&path, keyed::plain_schema(&schema)).await?;
        // Batch ids start at 0; the watermark is one past the last written.
        let done = tables::app_watermark(&table, CANONICAL_BATCH_APP)
            .await?
            .unwrap_or(0);
        if (batch_id as i64) < done {
            return Ok(false);
        }
        let props = tables::commit_properties(lineage, CANONICAL_BATCH_APP, batch_id as i64 + 1);
        tables::append(table, vec![batch], props).await?;
        Ok(true)
    }

    /// The first batch id [`Store::append_canonical_once`] has not yet
    /// appended to a table (0 for a table not written yet).
    pub async fn canonical_batch_watermark(&self, name: &str) -> Result<u64, StoreError> {
        let path = tables::table_location(&self.config.data_dir, Layer::Canonical, name)?;
        if !path.exists().await? {
            return Ok(0);
        }
        let table = tables::open(&path, None).await?;
        let done = tables::app_watermark(&table, CANONICAL_BATCH_APP).await?;
        Ok(done.unwrap_or(0).max(0) as u64)
    }

    /// Delete the rows of a canonical table whose `column` is one of `keys`,
    /// rewriting only the files that hold them, in one commit; nothing is
    /// committed when none match or the table does not exist.
    pub async fn delete_canonical_keys(
        &self,
        name: &str,
        column: &str,
        keys: &[String],
        lineage: &Lineage,
    ) -> Result<keyed::DeleteSummary, StoreError> {
        let path = tables::table_location(&self.config.data_dir, Layer::Canonical, name)?;
        if keys.is_empty() || !path.exists().await? {
            return Ok(Default::default());
        }
        let table = tables::open(&path, None).await?;
        // Keep the batch watermark: Delta keeps the latest per application.
        let reached = tables::app_watermark(&table, CANONICAL_BATCH_APP)
            .await?
            .unwrap_or(0);
        let mut indexes = self.file_keys.lock().await;
        let index = indexes.entry(name.to_string()).or_default();
        keyed::delete_keys(
            table,
            index,
            column,
            keys,
            lineage,
            (CANONICAL_BATCH_APP, reached),
        )
        .await
    }

    /// Stop accepting records, flush everything to the raw tables and wait.
    pub async fn shutdown(mut self) {
        let _ = self.committer.tx.send(Request::Shutdown);
        if let Some(h) = self.wal_thread.take() {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        if let Some(h) = self.flusher.take() {
            // The flusher retries while Delta cannot be written; the WAL
            // keeps those records for the next start, so stop waiting.
            let abort = h.abort_handle();
            if tokio::time::timeout(Duration::from_secs(60), h)
                .await
                .is_err()
            {
                tracing::warn!("raw tables not up to date at shutdown; the WAL holds the rest");
                abort.abort();
            }
        }
        if let Some(h) = self.compactor.take() {
            h.abort();
        }
    }
}

async fn raw_context(
    table: &DeltaTable,
) -> Result<datafusion::prelude::SessionContext, StoreError> {
    let ctx = datafusion::prelude::SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("t", table.table_provider().await?)?;
    Ok(ctx)
}

/// Accepted records after `after_seq`: what derived state has yet to see.
/// The filter on `seq` lets the scan skip whole files by their statistics.
async fn read_history(
    stream: &str,
    table: &DeltaTable,
    after_seq: u64,
) -> Result<Vec<RawRecord>, StoreError> {
    let ctx = raw_context(table).await?;
    let sql = format!(
        "SELECT * FROM t WHERE seq > {after_seq} AND status = '{}' ORDER BY seq",
        RecordStatus::Accepted.as_str()
    );
    let mut out = Vec::new();
    for b in &query::run(&ctx, &sql).await? {
        out.extend(raw::from_batch(stream, b).map_err(StoreError::Corrupt)?);
    }
    Ok(out)
}

/// The newest arrival time in a raw table (its statistics answer this).
async fn newest_received(table: &DeltaTable) -> Result<i64, StoreError> {
    use deltalake::arrow::array::AsArray;
    let ctx = raw_context(table).await?;
    let batches = query::run(
        &ctx,
        "SELECT CAST(max(received_at) AS BIGINT) AS newest FROM t",
    )
    .await?;
    Ok(batches
        .first()
        .filter(|b| b.num_rows() > 0 && !b.column(0).is_null(0))
        .map(|b| {
            b.column(0)
                .as_primitive::<deltalake::arrow::datatypes::Int64Type>()
                .value(0)
        })
        .unwrap_or(i64::MIN))
}

/// Dedup keys of the records received at or after `horizon_us`: only the
/// key columns are read, never the payloads.
async fn read_keys(
    table: &DeltaTable,
    horizon_us: i64,
) -> Result<Vec<(String, u64, i64)>, StoreError> {
    use deltalake::arrow::array::AsArray;
    use deltalake::arrow::datatypes::{DataType, Int64Type};
    let ctx = raw_context(table).await?;
    let sql = format!(
        "SELECT dedup_key, seq, CAST(received_at AS BIGINT) AS at FROM t \
         WHERE dedup_key IS NOT NULL AND received_at >= to_timestamp_micros({horizon_us})"
    );
    let mut out = Vec::new();
    for b in &query::run(&ctx, &sql).await? {
        let key = deltalake::arrow::compute::cast(b.column(0), &DataType::Utf8)
            .map_err(|e| StoreError::Corrupt(format!("dedup_key: {e}")))?;
        let key = key.as_string::<i32>();
        let seq = b.column(1).as_primitive::<Int64Type>();
        let at = b.column(2).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push((key.value(i).to_string(), seq.value(i) as u64, at.value(i)));
        }
    }
    Ok(out)
}

/// Payload bytes committed but not yet in the raw tables, shared by the
/// committer (which adds and, past the limit, waits) and the flusher (which
/// takes away and wakes it).
struct Backlog {
    bytes: std::sync::Mutex<u64>,
    drained: std::sync::Condvar,
    limit: u64,
}

impl Backlog {
    fn new(limit: u64) -> Self {
        Backlog {
            bytes: std::sync::Mutex::new(0),
            drained: std::sync::Condvar::new(),
            limit,
        }
    }

    /// What a record weighs while it waits: its payload and a little for
    /// the rest of it.
    fn weight(rec: &RawRecord) -> u64 {
        rec.payload.len() as u64 + 256
    }

    fn add(&self, n: u64) {
        *self.bytes.lock().unwrap_or_else(|e| e.into_inner()) += n;
    }

    fn sub(&self, n: u64) {
        let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        *b = b.saturating_sub(n);
        self.drained.notify_all();
    }

    /// Block the committer while the backlog is over its limit. Sources
    /// waiting for their commits stop being read meanwhile: backpressure,
    /// never a dropped record.
    fn wait_below_limit(&self) {
        let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let mut warned = false;
        while *b > self.limit {
            let (next, _) = self
                .drained
                .wait_timeout(b, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner());
            b = next;
            if !warned && started.elapsed() > Duration::from_secs(5) {
                tracing::warn!(
                    unflushed_bytes = *b,
                    limit = self.limit,
                    "the raw tables are behind; holding new records until they catch up"
                );
                warned = true;
            }
        }
    }
}

/// The committer: the only writer of the WAL. Group commit: take whatever is
/// queued, stage it, one fsync, then answer everyone.
#[allow(clippy::too_many_arguments)]
fn run_committer(
    mut wal: wal::Wal,
    mut next_seq: u64,
    mut dedup: dedup::DedupWindow,
    mut rx: mpsc::UnboundedReceiver<Request>,
    flusher: mpsc::UnboundedSender<Arc<RawRecord>>,
    feed: mpsc::Sender<Arc<RawRecord>>,
    committed_seq: Arc<AtomicU64>,
    backlog: Arc<Backlog>,
) {
    const MAX_GROUP: usize = 8192;
    let mut broken: Option<String> = None;
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut replies = Vec::with_capacity(MAX_GROUP);
    let mut committed: Vec<Arc<RawRecord>> = Vec::with_capacity(MAX_GROUP);
    let mut new_keys = Vec::new();
    let mut shutdown = false;
    let mut since_prune = 0usize;
    while !shutdown {
        backlog.wait_below_limit();
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        for req in group.drain(..) {
            match req {
                Request::Shutdown => shutdown = true,
                Request::Flushed(seq) => {
                    if let Err(e) = wal.truncate_through(seq) {
                        tracing::warn!(error = %e, "could not remove flushed WAL segments");
                    }
                }
                Request::Commit(sub, reply) => {
                    if let Some(msg) = &broken {
                        let _ = reply.send(Err(StoreError::Stopped(msg.clone())));
                        continue;
                    }
                    let mut sub = sub;
                    if let Some(key) = &sub.dedup_key {
                        match dedup.check(key) {
                            dedup::Seen::New => {}
                            dedup::Seen::Duplicate(seq) => {
                                replies.push((reply, Committed::Duplicate(seq)));
                                continue;
                            }
                            dedup::Seen::Reused(first) => {
                                // Kept with the record, so the note survives
                                // restarts and reaches whoever reads it.
                                let note = format!(
                                    "{} was already used by record {first} with other content; \
                                     stored as a new record",
                                    dedup::describe_identity(key)
                                );
                                tracing::warn!(first, "{note}");
                                if sub.reason.is_empty() {
                                    sub.reason = note;
                                }
                            }
                        }
                    }
                    let seq = next_seq;
                    next_seq += 1;
                    let rec = sub.into_record(seq);
                    wal.stage(&rec);
                    if let Some(k) = &rec.dedup_key {
                        dedup.insert(k, seq, rec.received_at_us);
                        new_keys.push((k.clone(), seq));
                    }
                    committed.push(Arc::new(rec));
                    replies.push((reply, Committed::New(seq)));
                }
            }
        }
        // A broken WAL is not written again; the replies below say so.
        let synced = if broken.is_some() && committed.is_empty() {
            Ok(())
        } else {
            wal.sync(next_seq)
        };
        match synced {
            Ok(()) => {
                committed_seq.store(next_seq - 1, Ordering::Release);
                backlog.add(committed.iter().map(|r| Backlog::weight(r)).sum());
                since_prune += committed.len();
                if since_prune >= 4096 {
                    dedup.prune();
                    since_prune = 0;
                }
                for rec in committed.drain(..) {
                    let _ = flusher.send(rec.clone());
                    // Blocks while the feed is full: the answers below wait
                    // with it, and so do the senders.
                    let _ = feed.blocking_send(rec);
                }
                for (reply, c) in replies.drain(..) {
                    let _ = reply.send(Ok(c));
                }
            }
            Err(e) => {
                // Nothing staged in this group may be acknowledged, and the
                // WAL's state on disk is now unknown: refuse further writes.
                let msg = format!("WAL write failed: {e}");
                tracing::error!("{msg}");
                for (k, seq) in new_keys.drain(..) {
                    dedup.remove(&k, seq);
                }
                committed.clear();
                for (reply, _) in replies.drain(..) {
                    let _ = reply.send(Err(StoreError::Stopped(msg.clone())));
                }
                broken = Some(msg);
            }
        }
        new_keys.clear();
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_flusher(
    data_dir: PathBuf,
    mut tables_by_stream: HashMap<String, DeltaTable>,
    mut rx: mpsc::UnboundedReceiver<Arc<RawRecord>>,
    committer: mpsc::UnboundedSender<Request>,
    progress: watch::Sender<RawProgress>,
    flush_now: Arc<Notify>,
    interval: Duration,
    max_rows: usize,
    backlog: Arc<Backlog>,
) {
    let mut pending: Vec<Arc<RawRecord>> = Vec::new();
    let mut last_flush = Instant::now();
    let mut closed = false;
    while !closed {
        let deadline = last_flush + interval;
        tokio::select! {
            rec = rx.recv() => match rec {
                Some(r) => {
                    pending.push(r);
                    while pending.len() < max_rows {
                        match rx.try_recv() {
                            Ok(r) => pending.push(r),
                            Err(_) => break,
                        }
                    }
                    if pending.len() < max_rows && Instant::now() < deadline {
                        continue;
                    }
                }
                None => closed = true,
            },
            _ = tokio::time::sleep_until(deadline.into()) => {},
            _ = flush_now.notified() => {},
        }
        last_flush = Instant::now();
        if pending.is_empty() {
            continue;
        }
        // Retry until it lands: the records are safe in the WAL meanwhile.
        loop {
            match flush(&data_dir, &mut tables_by_stream, &pending).await {
                Ok(p) => {
                    let through = p.through_seq;
                    progress.send_replace(p);
                    let _ = committer.send(Request::Flushed(through));
                    backlog.sub(pending.iter().map(|r| Backlog::weight(r)).sum());
                    pending.clear();
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "appending to raw tables failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

async fn flush(
    data_dir: &Path,
    tables_by_stream: &mut HashMap<String, DeltaTable>,
    pending: &[Arc<RawRecord>],
) -> Result<RawProgress, StoreError> {
    let mut by_stream: BTreeMap<&str, Vec<&RawRecord>> = BTreeMap::new();
    for r in pending {
        by_stream.entry(r.stream.as_str()).or_default().push(r);
    }
    for (stream, recs) in by_stream {
        let table = match tables_by_stream.remove(stream) {
            Some(t) => t,
            None => {
                let path = tables::table_location(data_dir, Layer::Raw, stream)?;
                tables::open_or_create(&path, raw::raw_schema()).await?
            }
        };
        // A retry after a failure that did land must not append again.
        let watermark = tables::raw_watermark(&table).await?;
        let recs: Vec<&RawRecord> = recs.into_iter().filter(|r| r.seq > watermark).collect();
        let table = match recs.last() {
            Some(last) => {
                let seq = last.seq;
                match tables::append_raw(table.clone(), raw::to_batch(&recs), seq).await {
                    Ok(t) => t,
                    Err(e) => {
                        tables_by_stream.insert(stream.to_string(), reload(table).await);
                        return Err(e);
                    }
                }
            }
            None => table,
        };
        tables_by_stream.insert(stream.to_string(), table);
    }
    let through_seq = pending.iter().map(|r| r.seq).max().unwrap_or(0);
    let versions = tables_by_stream
        .iter()
        .map(|(k, t)| (k.clone(), t.version().unwrap_or(0)))
        .collect();
    Ok(RawProgress {
        through_seq,
        versions,
    })
}

async fn reload(mut table: DeltaTable) -> DeltaTable {
    let _ = table.update_state().await;
    table
}

async fn run_compactor(data_dir: PathBuf, every: Duration, max_files: usize) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        // Canonical tables gather their own small files as they are written
        // (see `keyed`); only the raw tables accumulate small appends.
        for layer in [Layer::Raw] {
            let names = match tables::list_tables(&data_dir, layer).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "the tables could not be listed for compaction");
                    continue;
                }
            };
            for name in names {
                let result = async {
                    let path = tables::table_location(&data_dir, layer, &name)?;
                    let table = tables::open(&path, None).await?;
                    tables::compact(table, max_files).await
                }
                .await;
                match result {
                    Ok((_, 0)) => {}
                    Ok((_, n)) => tracing::info!(table = %name, files = n, "compacted"),
                    Err(e) => tracing::warn!(table = %name, error = %e, "compaction failed"),
                }
            }
        }
    }
}
