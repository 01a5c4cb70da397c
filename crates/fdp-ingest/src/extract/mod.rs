//! Flat extracts (CSV and other delimited files) into the canonical model
//! through declared mappings ([`mapping`]).
//!
//! A file is kept as received (a content-addressed copy under
//! `raw_files/`), parsed on every core straight into Arrow columns of its
//! object type, and committed to the mapping's part of the canonical table
//! (`ealentry@csv-<mapping>`) in one Delta commit. Every line that cannot be
//! used goes to `raw.extract_rejected` with its file, line, reason and text;
//! every load is recorded in `raw.extract_file`. Loading the same content
//! with the same mapping again is recognised and skipped; a changed file
//! replaces rows by primary key, so nothing is duplicated.

pub mod csv;
pub mod drop_folder;
pub mod mapping;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fdp_model::Model;
use fdp_store::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use fdp_store::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use fdp_store::tables::{self, Layer, Lineage};
use fdp_store::{RecordBatch, StoreError};
use sha2::{Digest, Sha256};

use crate::fhir::hex;
use crate::writer_read;

pub use mapping::{Encoding, Mapping, Plan};

/// The ledger of loaded files.
pub const FILES_TABLE: &str = "extract_file";
/// Lines that could not be used.
pub const REJECTED_TABLE: &str = "extract_rejected";
const APP_ID: &str = "openfdp-extract";

/// What loading one file did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FileReport {
    pub file: String,
    pub mapping: String,
    pub table: String,
    pub sha256: String,
    pub rows_in: u64,
    pub accepted: u64,
    /// (line, reason) of every line refused.
    pub rejected: Vec<(u64, String)>,
    /// The same content was loaded with this mapping before: nothing done.
    pub already_loaded: bool,
    pub seconds: f64,
}

fn files_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("loaded_at", ts, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("mapping", DataType::Utf8, false),
        Field::new("target_table", DataType::Utf8, false),
        Field::new("content_sha256", DataType::Utf8, false),
        Field::new("raw_copy", DataType::Utf8, false),
        Field::new("rows_in", DataType::Int64, false),
        Field::new("accepted", DataType::Int64, false),
        Field::new("rejected", DataType::Int64, false),
        Field::new("seconds", DataType::Float64, false),
    ]))
}

fn rejected_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("rejected_at", ts, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("mapping", DataType::Utf8, false),
        Field::new("content_sha256", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

/// Has this content been loaded with this mapping already?
async fn already_loaded(data_dir: &Path, mapping: &str, sha: &str) -> Result<bool, StoreError> {
    let path = tables::table_location(data_dir, Layer::Raw, FILES_TABLE)?;
    if !path.exists().await? {
        return Ok(false);
    }
    let table = tables::open(&path, None).await?;
    let ctx = datafusion::prelude::SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("t", table.table_provider().await?)?;
    let sql = format!(
        "SELECT count(*) AS n FROM t WHERE mapping = '{}' AND content_sha256 = '{}'",
        mapping.replace('\'', "''"),
        sha
    );
    let batches = writer_read(&ctx, &sql).await?;
    Ok(batches
        .first()
        .map(|b| {
            b.column(0)
                .as_primitive::<fdp_store::arrow::datatypes::Int64Type>()
                .value(0)
                > 0
        })
        .unwrap_or(false))
}

/// Parse a file's bytes with a mapping: batches of accepted rows (full
/// object-type schema) and the lines refused.
pub fn parse(mapping: &Mapping, bytes: &[u8], file: &str) -> Result<ParsedFile, String> {
    let model = Model::canonical();
    let delim = mapping.delimiter_bytes()?;
    // Skip a UTF-8 byte order mark and the lines before the data.
    let mut data = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    for _ in 0..mapping.skip_lines {
        match data.iter().position(|&b| b == b'\n') {
            Some(i) => data = &data[i + 1..],
            None => data = &[],
        }
    }
    let mut fields = Vec::new();
    let header = if mapping.header {
        let line = line_at(bytes, data);
        let mut r = csv::Records::new(data, &delim, line);
        let Some((_, _)) = r.next_into(&mut fields) else {
            return Err(format!("{file} is empty: expected a header line"));
        };
        let names: Vec<String> = fields
            .iter()
            .map(|f| mapping::decode(f, mapping.encoding).map(|s| s.trim().to_string()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{file} line {line} (the header): {e}"))?;
        // The data starts after the header record.
        data = &data[record_end(data, &delim)..];
        Some(names)
    } else {
        None
    };
    let plan = mapping
        .compile(model, header.as_deref())
        .map_err(|e| format!("mapping {}: {e}", mapping.name))?;
    let first_line = line_at(bytes, data);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let t0 = std::time::Instant::now();
    let run = |points: &[(usize, usize)]| -> Result<Vec<Parsed>, String> {
        let mut chunks = Vec::new();
        for (i, &(start, l)) in points.iter().enumerate() {
            let end = points.get(i + 1).map(|p| p.0).unwrap_or(data.len());
            chunks.push((&data[start..end], first_line + l - 1));
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|&(chunk, first)| {
                    let plan = &plan;
                    let delim = &delim;
                    s.spawn(move || parse_chunk(plan, mapping.encoding, chunk, delim, first))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("parsing does not panic"))
                .collect::<Result<Vec<_>, String>>()
        })
    };
    let points = csv::split_points(data, threads);
    let mut results = run(&points)?;
    let n = results.len();
    if results[..n - 1].iter().any(|p| p.ended_in_quotes) {
        // A piece was cut inside a record (stray quotes misled the split).
        tracing::debug!("extract pieces cut inside a record: reading in one piece");
        results = run(&[(0, 1)])?;
    }
    tracing::debug!(elapsed = ?t0.elapsed(), "extract parsed");
    let rows_in: u64 = results.iter().map(|r| r.rows).sum();
    let repeats = may_repeat_keys(&mut results);
    let mut rejected: Vec<(u64, String, String)> = Vec::new();
    let mut batches = Vec::new();
    let mut lines = Vec::new();
    for p in results {
        batches.push(p.batch);
        lines.push(p.lines);
        rejected.extend(p.rejected);
    }
    // A key given twice: the first line wins, later ones are refused (or,
    // where the mapping says records repeat, folded when the same).
    let (batches, lines) = if repeats {
        let fold = mapping.repeated == mapping::Repeated::OneRecord;
        drop_duplicate_keys(&plan, batches, lines, fold, &mut rejected)
    } else {
        (batches, lines)
    };
    tracing::debug!(elapsed = ?t0.elapsed(), "extract keys checked");
    let full = full_schema(plan.object_type);
    let batches = widen(batches, &full)?;
    rejected.sort_by_key(|r| r.0);
    Ok(ParsedFile {
        plan,
        batches,
        lines,
        rejected,
        rows_in,
    })
}

/// Where the record at the start of `data` ends, line break included.
fn record_end(data: &[u8], delim: &[u8]) -> usize {
    let mut r = csv::Records::new(data, delim, 1);
    let mut f = Vec::new();
    let Some((_, raw)) = r.next_into(&mut f) else {
        return data.len();
    };
    let mut i = raw.as_ptr() as usize - data.as_ptr() as usize + raw.len();
    if i < data.len() && data[i] == b'\r' {
        i += 1;
    }
    if i < data.len() && data[i] == b'\n' {
        i += 1;
    }
    i
}

/// The line number `rest` (a tail of `all`) starts at.
fn line_at(all: &[u8], rest: &[u8]) -> usize {
    let offset = all.len() - rest.len();
    1 + all[..offset].iter().filter(|&&b| b == b'\n').count()
}

/// A refused line: its number, the reason, and its text as received.
pub type RejectedLine = (u64, String, String);

/// One chunk parsed.
struct Parsed {
    batch: RecordBatch,
    /// The line of each accepted row.
    lines: Vec<u64>,
    rejected: Vec<RejectedLine>,
    /// Records read.
    rows: u64,
    /// A hash of each accepted row's key, sorted: proves a file free of
    /// repeated keys without a table of ten million strings.
    key_hashes: Vec<u64>,
    /// The chunk ended inside a quoted field: it was cut inside a record.
    ended_in_quotes: bool,
}

/// A file parsed with a mapping.
pub struct ParsedFile {
    pub plan: Plan,
    /// Accepted rows, with every column of the object type.
    pub batches: Vec<RecordBatch>,
    /// The line of each accepted row, batch by batch.
    pub lines: Vec<Vec<u64>>,
    pub rejected: Vec<RejectedLine>,
    /// Records read (header excluded).
    pub rows_in: u64,
}

/// An empty vector of another lifetime that keeps `v`'s allocation, so the
/// per-record buffers are allocated once per chunk rather than per line.
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    // Same size and alignment: the standard library collects in place.
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

fn key_hash(v: &mapping::Val) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    match v {
        mapping::Val::Text(s) => s.as_bytes().hash(&mut h),
        mapping::Val::Int(n) => n.to_string().as_bytes().hash(&mut h),
        other => format!("{other:?}").hash(&mut h),
    }
    h.finish()
}

fn parse_chunk(
    plan: &Plan,
    encoding: Encoding,
    chunk: &[u8],
    delim: &[u8],
    first_line: usize,
) -> Result<Parsed, String> {
    let estimate = chunk.len() / 64 + 1;
    let mut builders = plan.builders(estimate);
    let mut lines = Vec::with_capacity(estimate);
    let mut key_hashes = Vec::with_capacity(estimate);
    let mut rejected = Vec::new();
    let mut records = csv::Records::new(chunk, delim, first_line);
    let mut fields = Vec::new();
    let mut rows = 0u64;
    let mut decoded_buf: Vec<std::borrow::Cow<str>> = Vec::new();
    let mut strs_buf: Vec<&str> = Vec::new();
    let mut values_buf: Vec<mapping::Val> = Vec::new();
    let per_record = plan.rows_per_record();
    while let Some((line, raw)) = records.next_into(&mut fields) {
        rows += 1;
        let mut decoded = recycle(std::mem::take(&mut decoded_buf));
        let mut strs = recycle(std::mem::take(&mut strs_buf));
        let mut values = recycle(std::mem::take(&mut values_buf));
        let result: Result<usize, String> = 'record: {
            for f in &fields {
                match mapping::decode(f, encoding) {
                    Ok(d) => decoded.push(d),
                    Err(e) => break 'record Err(e),
                }
            }
            strs.extend(decoded.iter().map(|c| c.as_ref()));
            if per_record == 1 {
                if let Err(e) = plan.apply(&strs, &mut values) {
                    break 'record Err(e);
                }
                builders.push(&values);
                key_hashes.push(key_hash(&values[plan.key_index]));
                break 'record Ok(1);
            }
            // An unpivoted line is taken whole or refused whole: every row
            // is checked before any is kept.
            let mut made = Vec::with_capacity(per_record);
            for row in 0..per_record {
                if let Err(e) = plan.apply_row(&strs, row, &mut values) {
                    break 'record Err(e);
                }
                made.push(std::mem::take(&mut values));
            }
            for v in &made {
                builders.push(v);
                key_hashes.push(key_hash(&v[plan.key_index]));
            }
            Ok(per_record)
        };
        match result {
            Ok(n) => lines.extend(std::iter::repeat_n(line as u64, n)),
            Err(reason) => rejected.push((
                line as u64,
                reason,
                String::from_utf8_lossy(raw).into_owned(),
            )),
        }
        values_buf = recycle(values);
        strs_buf = recycle(strs);
        decoded_buf = recycle(decoded);
    }
    key_hashes.sort_unstable();
    Ok(Parsed {
        batch: builders.finish()?,
        lines,
        rejected,
        rows,
        key_hashes,
        ended_in_quotes: records.ended_in_quotes(),
    })
}

/// Whether any two rows might share a key: equal hashes, within a chunk or
/// across chunks. Each chunk's hashes are sorted, so the stable sort of their
/// concatenation is a merge of sorted runs.
fn may_repeat_keys(parsed: &mut [Parsed]) -> bool {
    let mut all: Vec<u64> = Vec::with_capacity(parsed.iter().map(|p| p.key_hashes.len()).sum());
    for p in parsed.iter_mut() {
        all.append(&mut p.key_hashes);
    }
    all.sort();
    all.windows(2).any(|w| w[0] == w[1])
}

fn drop_duplicate_keys(
    plan: &Plan,
    batches: Vec<RecordBatch>,
    lines: Vec<Vec<u64>>,
    fold_same: bool,
    rejected: &mut Vec<(u64, String, String)>,
) -> (Vec<RecordBatch>, Vec<Vec<u64>>) {
    use std::collections::HashMap;
    use std::hash::BuildHasherDefault;
    let keys: Vec<ArrayRef> = batches
        .iter()
        .map(|b| {
            fdp_store::arrow::compute::cast(b.column(plan.key_index), &DataType::Utf8)
                .expect("keys cast to text")
        })
        .collect();
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut first: HashMap<&str, (u64, usize, usize), BuildHasherDefault<FxHasher>> =
        HashMap::with_capacity_and_hasher(total, Default::default());
    let same_row = |(b1, i1): (usize, usize), (b2, i2): (usize, usize)| {
        (0..batches[b1].num_columns()).all(|c| {
            batches[b1].column(c).slice(i1, 1).as_ref()
                == batches[b2].column(c).slice(i2, 1).as_ref()
        })
    };
    let mut keep: Vec<Vec<bool>> = Vec::with_capacity(batches.len());
    let mut any_dup = false;
    for (bi, k) in keys.iter().enumerate() {
        let k = k.as_string::<i32>();
        let mut mask = vec![true; k.len()];
        for (i, m) in mask.iter_mut().enumerate() {
            let key = k.value(i);
            let line = lines[bi][i];
            if let Some(&(at, b0, i0)) = first.get(key) {
                *m = false;
                any_dup = true;
                if !(fold_same && same_row((b0, i0), (bi, i))) {
                    rejected.push((
                        line,
                        format!("duplicate key {key:?}: line {at} has it already"),
                        String::new(),
                    ));
                }
            } else {
                first.insert(key, (line, bi, i));
            }
        }
        keep.push(mask);
    }
    if !any_dup {
        return (batches, lines);
    }
    let lines = lines
        .iter()
        .zip(&keep)
        .map(|(l, m)| {
            l.iter()
                .zip(m)
                .filter(|(_, k)| **k)
                .map(|(l, _)| *l)
                .collect()
        })
        .collect();
    let batches = batches
        .into_iter()
        .zip(keep)
        .map(|(b, m)| {
            let mask = fdp_store::arrow::array::BooleanArray::from(m);
            fdp_store::arrow::compute::filter_record_batch(&b, &mask).expect("mask fits the batch")
        })
        .collect();
    (batches, lines)
}

/// A fast, non-cryptographic hasher (the one rustc uses) for the key check:
/// millions of short keys, no untrusted-input concerns beyond slowness.
#[derive(Default)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn full_schema(ot: &fdp_model::ObjectType) -> SchemaRef {
    Arc::new(Schema::new(
        ot.arrow_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(Default::default()))
            .collect::<Vec<_>>(),
    ))
}

/// The batches with every column of the object type, nulls where unmapped.
/// Unmapped columns of a type share one null array, sliced to each batch:
/// an extract fills a handful of an object type's columns, and a fresh null
/// column per batch would be gigabytes of zeroed memory on a big file.
fn widen(batches: Vec<RecordBatch>, full: &SchemaRef) -> Result<Vec<RecordBatch>, String> {
    let longest = batches.iter().map(RecordBatch::num_rows).max().unwrap_or(0);
    let mut nulls: std::collections::HashMap<DataType, ArrayRef> = Default::default();
    batches
        .into_iter()
        .map(|b| {
            let columns: Vec<ArrayRef> = full
                .fields()
                .iter()
                .map(|f| match b.schema().index_of(f.name()) {
                    Ok(i) => b.column(i).clone(),
                    Err(_) => nulls
                        .entry(f.data_type().clone())
                        .or_insert_with(|| new_null_array(f.data_type(), longest))
                        .slice(0, b.num_rows()),
                })
                .collect();
            RecordBatch::try_new(full.clone(), columns).map_err(|e| e.to_string())
        })
        .collect()
}

/// A file's bytes and their SHA-256, hashing each piece on another thread
/// while the next is read.
fn read_hashed(path: &Path) -> std::io::Result<(Vec<u8>, String)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
    let mut bytes = vec![0u8; len];
    let digest = std::thread::scope(|s| -> std::io::Result<_> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<&[u8]>(4);
        let hashing = s.spawn(move || {
            let mut h = Sha256::new();
            for piece in rx {
                h.update(piece);
            }
            h.finalize()
        });
        let mut rest: &mut [u8] = &mut bytes;
        while !rest.is_empty() {
            let (piece, after) = rest.split_at_mut(rest.len().min(16 << 20));
            file.read_exact(piece).map_err(|e| {
                std::io::Error::new(e.kind(), format!("the file changed while it was read: {e}"))
            })?;
            let _ = tx.send(piece);
            rest = after;
        }
        drop(tx);
        Ok(hashing.join().expect("hashing does not panic"))
    })?;
    if file.read(&mut [0u8; 1])? != 0 {
        return Err(std::io::Error::other("the file grew while it was read"));
    }
    Ok((bytes, hex(&digest)))
}

/// A file's raw copy being written on its own thread, under a temporary
/// name until the content hash that names it is known.
struct RawCopy {
    thread: std::thread::JoinHandle<std::io::Result<u64>>,
    cancel: Arc<std::sync::atomic::AtomicBool>,
    partial: PathBuf,
    source: PathBuf,
    /// The source's size and modification time when the copy started.
    before: Option<(u64, std::time::SystemTime)>,
}

impl RawCopy {
    /// Copy `source` in the kernel (no pass through this process), from the
    /// moment the load starts, while the file is also read and hashed.
    fn start(dir: &Path, source: &Path) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let partial = dir.join(format!(
            ".incoming-{}-{}.partial",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let cancel = Arc::new(AtomicBool::new(false));
        let before = std::fs::metadata(source).and_then(|m| Ok((m.len(), m.modified()?)));
        let thread = {
            let (partial, cancel, source) = (partial.clone(), cancel.clone(), source.to_path_buf());
            std::thread::spawn(move || -> std::io::Result<u64> {
                use std::io::Read;
                let mut from = std::fs::File::open(&source)?;
                let mut out = std::fs::File::create(&partial)?;
                let mut copied = 0;
                loop {
                    if cancel.load(Ordering::Relaxed) {
                        return Ok(copied);
                    }
                    let n = std::io::copy(&mut (&mut from).take(64 << 20), &mut out)?;
                    if n == 0 {
                        return Ok(copied);
                    }
                    copied += n;
                }
            })
        };
        RawCopy {
            thread,
            cancel,
            partial,
            source: source.to_path_buf(),
            before: before.ok(),
        }
    }

    /// Not needed after all (the content was loaded before, or unreadable).
    fn abandon(self) {
        self.cancel
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.join();
        let _ = std::fs::remove_file(&self.partial);
    }

    /// Wait for the copy and give it its name (the same content may be kept
    /// already). If the file changed while it was copied, the copy is written
    /// again from `bytes`, the content that was hashed and loaded.
    fn finish(self, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let copied = self
            .thread
            .join()
            .map_err(|_| std::io::Error::other("the thread keeping the raw copy panicked"))?;
        let after = std::fs::metadata(&self.source).and_then(|m| Ok((m.len(), m.modified()?)));
        let faithful = matches!(&copied, Ok(n) if *n == bytes.len() as u64)
            && self.before.is_some()
            && after.ok() == self.before;
        if !faithful {
            std::fs::write(&self.partial, bytes)?;
        }
        if dest.exists() {
            std::fs::remove_file(&self.partial)
        } else {
            std::fs::rename(&self.partial, dest)
        }
    }
}

/// Load one file with a mapping into the data directory.
pub async fn load_file(
    data_dir: &Path,
    mapping: &Mapping,
    path: &Path,
    run_id: &str,
) -> Result<FileReport, StoreError> {
    let started = std::time::Instant::now();
    let copy_dir = data_dir.join("raw_files");
    std::fs::create_dir_all(&copy_dir).map_err(|e| StoreError::io(&copy_dir, e))?;
    // Keeping the file as received is I/O: it runs while the file is read,
    // hashed and parsed, under a temporary name until it is known to be needed.
    let copying = RawCopy::start(&copy_dir, path);
    let (bytes, sha) = match read_hashed(path) {
        Ok(read) => read,
        Err(e) => {
            copying.abandon();
            return Err(StoreError::io(path, e));
        }
    };
    let bytes = Arc::new(bytes);
    tracing::debug!(elapsed = ?started.elapsed(), "extract read and hashed");
    let file = path.display().to_string();
    let mut report = FileReport {
        file: file.clone(),
        mapping: mapping.name.clone(),
        sha256: sha.clone(),
        ..Default::default()
    };
    if already_loaded(data_dir, &mapping.name, &sha).await? {
        copying.abandon();
        report.already_loaded = true;
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("dat");
    let copy = copy_dir.join(format!("{sha}.{ext}"));
    let m = mapping.clone();
    let name = file.clone();
    let kept = bytes.clone();
    let parsed = tokio::task::spawn_blocking(move || parse(&m, bytes.as_slice(), &name))
        .await
        .map_err(|e| StoreError::Config(format!("parsing {file}: {e}")));
    tracing::debug!(elapsed = ?started.elapsed(), "extract parsed, raw copy awaited");
    let parsed = match parsed {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            copying.abandon();
            return Err(StoreError::Config(e));
        }
        Err(e) => {
            copying.abandon();
            return Err(e);
        }
    };
    copying
        .finish(&copy, kept.as_slice())
        .map_err(|e| StoreError::io(&copy, e))?;
    drop(kept);
    let ParsedFile {
        plan,
        batches,
        rejected,
        rows_in,
        ..
    } = parsed;
    let accepted: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let ot = plan.object_type;
    let part = tables::part_name(&ot.table, &format!("csv-{}", mapping.name));
    report.table = ot.table.clone();
    report.rows_in = rows_in;
    report.accepted = accepted;
    report.rejected = rejected.iter().map(|(l, r, _)| (*l, r.clone())).collect();

    let lineage = Lineage {
        transform: format!("extract:{}", mapping.name),
        run: Some(run_id.to_string()),
        ..Lineage::default()
    };
    let props = || tables::commit_properties(&lineage, APP_ID, 0);
    tracing::debug!(elapsed = ?started.elapsed(), "extract read and parsed");
    if accepted > 0 {
        commit_rows(data_dir, ot, &part, batches, &lineage).await?;
    }
    tracing::debug!(elapsed = ?started.elapsed(), "extract committed");
    let now = chrono::Utc::now().timestamp_micros();
    let refused = Refused {
        run_id,
        file: &file,
        mapping: &mapping.name,
        sha: &sha,
    };
    refused.write(data_dir, &rejected, props()).await?;
    report.seconds = started.elapsed().as_secs_f64();
    // The ledger last: a file counts as loaded only once its rows are in.
    let mut at = TimestampMicrosecondBuilder::with_capacity(1).with_timezone("UTC");
    at.append_value(now);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(fdp_store::arrow::array::StringArray::from(vec![run_id])),
        Arc::new(at.finish()),
        Arc::new(fdp_store::arrow::array::StringArray::from(vec![
            file.as_str()
        ])),
        Arc::new(fdp_store::arrow::array::StringArray::from(vec![mapping
            .name
            .as_str()])),
        Arc::new(fdp_store::arrow::array::StringArray::from(vec![
            part.as_str()
        ])),
        Arc::new(fdp_store::arrow::array::StringArray::from(vec![
            sha.as_str()
        ])),
        Arc::new(fdp_store::arrow::array::StringArray::from(vec![copy
            .display()
            .to_string()])),
        Arc::new(fdp_store::arrow::array::Int64Array::from(vec![
            rows_in as i64,
        ])),
        Arc::new(fdp_store::arrow::array::Int64Array::from(vec![
            accepted as i64,
        ])),
        Arc::new(fdp_store::arrow::array::Int64Array::from(vec![
            rejected.len() as i64,
        ])),
        Arc::new(fdp_store::arrow::array::Float64Array::from(vec![
            report.seconds,
        ])),
    ];
    let batch = RecordBatch::try_new(files_schema(), columns)
        .map_err(|e| StoreError::Config(e.to_string()))?;
    let path = tables::table_location(data_dir, Layer::Raw, FILES_TABLE)?;
    let table = tables::open_or_create(&path, files_schema()).await?;
    tables::append(table, vec![batch], props()).await?;
    Ok(report)
}

/// Rows into a mapping's part of a canonical table: appended when the part
/// is empty, else replacing rows with the same key.
async fn commit_rows(
    data_dir: &Path,
    ot: &fdp_model::ObjectType,
    part: &str,
    batches: Vec<RecordBatch>,
    lineage: &Lineage,
) -> Result<(), StoreError> {
    let props = tables::commit_properties(lineage, APP_ID, 0);
    let path = tables::table_location(data_dir, Layer::Canonical, part)?;
    let existed = path.exists().await?;
    let table = tables::open_or_create(&path, full_schema(ot)).await?;
    let has_rows = existed && table.get_file_uris()?.next().is_some();
    if has_rows {
        let batch = fdp_store::arrow::compute::concat_batches(&full_schema(ot), &batches)
            .map_err(|e| StoreError::Config(e.to_string()))?;
        tables::upsert(table, batch, &ot.primary_key_property().column, props).await?;
    } else {
        tables::append_parallel(table, batches, lineage, APP_ID).await?;
    }
    Ok(())
}

/// Where refused lines came from, for `raw.extract_rejected`.
struct Refused<'a> {
    run_id: &'a str,
    file: &'a str,
    mapping: &'a str,
    sha: &'a str,
}

impl Refused<'_> {
    async fn write(
        &self,
        data_dir: &Path,
        rejected: &[RejectedLine],
        props: fdp_store::CommitProperties,
    ) -> Result<(), StoreError> {
        if rejected.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp_micros();
        let n = rejected.len();
        let mut at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut lines = Int64Builder::with_capacity(n);
        let (mut reasons, mut raws) = (StringBuilder::new(), StringBuilder::new());
        for (line, reason, raw) in rejected {
            at.append_value(now);
            lines.append_value(*line as i64);
            reasons.append_value(reason);
            raws.append_value(raw);
        }
        let same = |v: &str| -> ArrayRef {
            Arc::new(fdp_store::arrow::array::StringArray::from(vec![v; n]))
        };
        let columns: Vec<ArrayRef> = vec![
            same(self.run_id),
            Arc::new(at.finish()),
            same(self.file),
            same(self.mapping),
            same(self.sha),
            Arc::new(lines.finish()),
            Arc::new(reasons.finish()),
            Arc::new(raws.finish()),
        ];
        let batch = RecordBatch::try_new(rejected_schema(), columns)
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let path = tables::table_location(data_dir, Layer::Raw, REJECTED_TABLE)?;
        let table = tables::open_or_create(&path, rejected_schema()).await?;
        tables::append(table, vec![batch], props).await?;
        Ok(())
    }
}

/// The SHA-256 of content, as the ledger records it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Put some lines of a file already received through a mapping again (a
/// quarantine retry after the mapping was corrected): the lines that now
/// pass replace rows by key in the mapping's part; those still refused are
/// recorded again with today's reason. Returns each line's result.
pub async fn reload_lines(
    data_dir: &Path,
    mapping: &Mapping,
    bytes: &[u8],
    file: &str,
    sha: &str,
    run_id: &str,
    wanted: Vec<u64>,
) -> Result<HashMap<u64, Result<(), String>>, StoreError> {
    let wanted: std::collections::HashSet<u64> = wanted.into_iter().collect();
    let parsed = parse(mapping, bytes, file).map_err(StoreError::Config)?;
    let mut results = HashMap::new();
    let mut batches = Vec::new();
    for (b, lines) in parsed.batches.iter().zip(&parsed.lines) {
        let mask: Vec<bool> = lines.iter().map(|l| wanted.contains(l)).collect();
        for l in lines.iter().filter(|l| wanted.contains(l)) {
            results.insert(*l, Ok(()));
        }
        if mask.iter().any(|m| *m) {
            let mask = fdp_store::arrow::array::BooleanArray::from(mask);
            batches.push(
                fdp_store::arrow::compute::filter_record_batch(b, &mask)
                    .map_err(|e| StoreError::Config(e.to_string()))?,
            );
        }
    }
    let still: Vec<RejectedLine> = parsed
        .rejected
        .into_iter()
        .filter(|r| wanted.contains(&r.0))
        .collect();
    for r in &still {
        results.insert(r.0, Err(r.1.clone()));
    }
    let lineage = Lineage {
        transform: format!("extract:{}", mapping.name),
        run: Some(run_id.to_string()),
        ..Lineage::default()
    };
    let props = || tables::commit_properties(&lineage, APP_ID, 0);
    if !batches.is_empty() {
        let ot = parsed.plan.object_type;
        let part = tables::part_name(&ot.table, &format!("csv-{}", mapping.name));
        commit_rows(data_dir, ot, &part, batches, &lineage).await?;
    }
    let refused = Refused {
        run_id,
        file,
        mapping: &mapping.name,
        sha,
    };
    refused.write(data_dir, &still, props()).await?;
    Ok(results)
}

/// Which of `mappings` apply to a file, by its name. One extract can fill
/// several object types (a waiting list fills EalEntry and Encounter).
pub fn mappings_for<'a>(mappings: &'a [Mapping], path: &Path) -> Vec<&'a Mapping> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    mappings.iter().filter(|m| m.matches_file(name)).collect()
}

/// The mappings to load a file with, or why there are none: what a person
/// sending the file needs to rename it, or which mapping to add.
pub fn mappings_to_load<'a>(
    mappings: &'a [Mapping],
    path: &Path,
) -> Result<Vec<&'a Mapping>, String> {
    let applying = mappings_for(mappings, path);
    if applying.is_empty() {
        let patterns: Vec<String> = mappings
            .iter()
            .map(|m| format!("{} ({})", m.name, m.file_pattern))
            .collect();
        return Err(format!(
            "no mapping applies to {}: the mappings are {}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            patterns.join(", ")
        ));
    }
    Ok(applying)
}

/// Read mapping files (a file, or every `.toml` in a directory).
pub fn read_mappings(path: &Path) -> Result<Vec<Mapping>, String> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            Mapping::from_toml(&text).map_err(|e| format!("{}: {e}", f.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPPING: &str = r#"
name = "t"
file_pattern = "t*.csv"
object_type = "EalEntry"
header = true
[columns]
eal_id = { from = "id" }
rtt_period_start_date = { from = "start", format = "%d/%m/%Y" }
"#;

    #[test]
    fn where_records_repeat_by_design_an_exact_repeat_is_one_record_and_a_different_one_refused() {
        let mapping = Mapping::from_toml(
            &MAPPING.replace("header = true", "header = true\nrepeated = \"one-record\""),
        )
        .unwrap();
        let mut text = String::from("id,start\n");
        for i in 0..100_000 {
            text.push_str(&format!("E{i},01/02/2024\n"));
        }
        // E5 again the same, far away; E9 again with another start.
        text.push_str("E5,01/02/2024\nE9,02/02/2024\n");
        let parsed = parse(&mapping, text.as_bytes(), "t.csv").unwrap();
        let accepted: usize = parsed.batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(accepted, 100_000);
        let reasons: Vec<_> = parsed
            .rejected
            .iter()
            .map(|r| (r.0, r.1.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [(100_003, "duplicate key \"E9\": line 11 has it already")]
        );
        // Without it, the exact repeat is refused too.
        let strict = Mapping::from_toml(MAPPING).unwrap();
        let parsed = parse(&strict, text.as_bytes(), "t.csv").unwrap();
        assert_eq!(parsed.rejected.len(), 2);
    }

    #[test]
    fn a_key_repeated_far_apart_is_refused_whichever_chunks_hold_it() {
        let mapping = Mapping::from_toml(MAPPING).unwrap();
        let mut text = String::from("id,start\n");
        for i in 0..200_000 {
            text.push_str(&format!("E{i},01/02/2024\n"));
        }
        // Near the start and at the very end: different chunks on any machine
        // with more than one core, the same chunk on one.
        text.push_str("E7,03/04/2024\nE199999,05/06/2024\n");
        let parsed = parse(&mapping, text.as_bytes(), "t.csv").unwrap();
        assert_eq!(parsed.rows_in, 200_002);
        let accepted: usize = parsed.batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(accepted, 200_000);
        let reasons: Vec<_> = parsed
            .rejected
            .iter()
            .map(|r| (r.0, r.1.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (200_002, "duplicate key \"E7\": line 9 has it already"),
                (
                    200_003,
                    "duplicate key \"E199999\": line 200001 has it already"
                )
            ]
        );
    }

    #[test]
    fn a_headerless_file_declares_its_width_and_a_line_with_more_is_refused() {
        let mapping = Mapping::from_toml(
            r#"
name = "t"
file_pattern = "t*.csv"
object_type = "EalEntry"
header = false
fields = 3
[columns]
eal_id = { from = 1 }
rtt_period_start_date = { from = 3, format = "%d/%m/%Y" }
"#,
        )
        .unwrap();
        let text = "A,x,01/02/2024\nB,x,01/02/2024,extra\nC,x\n";
        let parsed = parse(&mapping, text.as_bytes(), "t.csv").unwrap();
        let reasons: Vec<_> = parsed
            .rejected
            .iter()
            .map(|r| (r.0, r.1.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (2, "expected 3 fields, found 4"),
                (3, "expected 3 fields, found 2")
            ]
        );
        let mut header_too = mapping.clone();
        header_too.header = true;
        let e = parse(&header_too, b"id,start\nA,01/02/2024\n", "t.csv")
            .err()
            .unwrap();
        assert!(e.contains("fields = 3, but the header has 2"), "{e}");
    }

    #[test]
    fn a_stray_quote_that_misleads_the_split_does_not_cut_records() {
        // `12" monitor` is a stray quote in an unquoted field: counting quotes
        // from there on sees every quoted line break as outside quotes, so the
        // file would be split inside a record.
        let mapping = Mapping::from_toml(
            r#"
name = "t"
file_pattern = "t*.csv"
object_type = "EalEntry"
[columns]
eal_id = { from = "id" }
patient_name = { from = "note" }
"#,
        )
        .unwrap();
        let mut text = String::from("id,note\nS0,\"12\"\" monitor\"\nS1,12\" monitor\n");
        let rows = 60_000;
        for i in 2..rows {
            text.push_str(&format!("S{i},\"first line\nsecond line {i}\"\n"));
        }
        assert!(text.len() > 2 << 20);
        let parsed = parse(&mapping, text.as_bytes(), "t.csv").unwrap();
        assert!(
            parsed.rejected.is_empty(),
            "{:?}",
            &parsed.rejected[..3.min(parsed.rejected.len())]
        );
        assert_eq!(parsed.rows_in, rows as u64);
        let notes: Vec<String> = parsed
            .batches
            .iter()
            .flat_map(|b| {
                let c = b
                    .column(b.schema().index_of("patient_name").unwrap())
                    .as_string::<i32>()
                    .clone();
                (0..c.len())
                    .map(move |i| c.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(notes[0], "12\" monitor");
        assert_eq!(notes[1], "12\" monitor");
        assert_eq!(
            notes[rows - 1],
            format!("first line\nsecond line {}", rows - 1)
        );
        // Line numbers count the line breaks inside quotes.
        let lines: Vec<u64> = parsed.lines.concat();
        assert_eq!(lines[rows - 1], 4 + 2 * (rows as u64 - 3));
    }

    #[test]
    fn day_first_dates_read_fast_and_slow_alike() {
        let mapping = Mapping::from_toml(MAPPING).unwrap();
        let text = "id,start\nA,29/02/2024\nB,1/3/2024\nC,30/02/2024\nD,2024-03-01\n";
        let parsed = parse(&mapping, text.as_bytes(), "t.csv").unwrap();
        let b = &parsed.batches[0];
        let days = b
            .column(b.schema().index_of("rtt_period_start_date").unwrap())
            .as_primitive::<fdp_store::arrow::datatypes::Date32Type>();
        // 2024-02-29 and 2024-03-01 as days since 1970.
        assert_eq!(days.values().to_vec(), vec![19782, 19783]);
        let reasons: Vec<_> = parsed.rejected.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "rtt_period_start_date: \"30/02/2024\" is not a date in the format %d/%m/%Y",
                "rtt_period_start_date: \"2024-03-01\" is not a date in the format %d/%m/%Y"
            ]
        );
    }
}
