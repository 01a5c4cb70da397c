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
pub mod mapping;

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Has this content been loaded with this mapping already?
async fn already_loaded(data_dir: &Path, mapping: &str, sha: &str) -> Result<bool, StoreError> {
    let path = tables::table_path(data_dir, Layer::Raw, FILES_TABLE);
    if !path.join("_delta_log").is_dir() {
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
    let batches = fdp_store::query::run(&ctx, &sql).await?;
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
    let points = csv::split_points(data, threads);
    let mut chunks = Vec::new();
    for (i, &(start, l)) in points.iter().enumerate() {
        let end = points.get(i + 1).map(|p| p.0).unwrap_or(data.len());
        chunks.push((&data[start..end], first_line + l - 1));
    }
    let results: Vec<Parsed> = std::thread::scope(|s| {
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
    })?;
    let rows_in: u64 = results.iter().map(|r| r.3).sum();
    let mut rejected: Vec<(u64, String, String)> = Vec::new();
    let mut batches = Vec::new();
    let mut lines = Vec::new();
    for (b, l, r, _) in results {
        batches.push(b);
        lines.push(l);
        rejected.extend(r);
    }
    // A key given twice: the first line wins, later ones are refused.
    let batches = drop_duplicate_keys(&plan, batches, &lines, &mut rejected);
    let full = full_schema(plan.object_type);
    let batches = batches
        .into_iter()
        .map(|b| widen(&b, &full))
        .collect::<Result<Vec<_>, _>>()?;
    rejected.sort_by_key(|r| r.0);
    Ok(ParsedFile {
        plan,
        batches,
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

/// One chunk parsed: its rows, the line of each, the lines refused, lines read.
type Parsed = (RecordBatch, Vec<u64>, Vec<RejectedLine>, u64);

/// A file parsed with a mapping.
pub struct ParsedFile {
    pub plan: Plan,
    /// Accepted rows, with every column of the object type.
    pub batches: Vec<RecordBatch>,
    pub rejected: Vec<RejectedLine>,
    /// Records read (header excluded).
    pub rows_in: u64,
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
    let mut rejected = Vec::new();
    let mut records = csv::Records::new(chunk, delim, first_line);
    let mut fields = Vec::new();
    let mut values = Vec::new();
    let mut rows = 0u64;
    while let Some((line, raw)) = records.next_into(&mut fields) {
        rows += 1;
        let decoded: Result<Vec<std::borrow::Cow<str>>, String> = fields
            .iter()
            .map(|f| mapping::decode(f, encoding))
            .collect();
        let result = decoded.and_then(|d| {
            let strs: Vec<&str> = d.iter().map(|c| c.as_ref()).collect();
            plan.apply(&strs, &mut values)
        });
        match result {
            Ok(()) => {
                builders.push(&values);
                lines.push(line as u64);
            }
            Err(reason) => rejected.push((
                line as u64,
                reason,
                String::from_utf8_lossy(raw).into_owned(),
            )),
        }
    }
    Ok((builders.finish()?, lines, rejected, rows))
}

fn drop_duplicate_keys(
    plan: &Plan,
    batches: Vec<RecordBatch>,
    lines: &[Vec<u64>],
    rejected: &mut Vec<(u64, String, String)>,
) -> Vec<RecordBatch> {
    use std::collections::HashMap;
    let keys: Vec<ArrayRef> = batches
        .iter()
        .map(|b| {
            fdp_store::arrow::compute::cast(b.column(plan.key_index), &DataType::Utf8)
                .expect("keys cast to text")
        })
        .collect();
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut first: HashMap<&str, u64> = HashMap::with_capacity(total);
    let mut keep: Vec<Vec<bool>> = Vec::with_capacity(batches.len());
    let mut any_dup = false;
    for (bi, k) in keys.iter().enumerate() {
        let k = k.as_string::<i32>();
        let mut mask = vec![true; k.len()];
        for (i, m) in mask.iter_mut().enumerate() {
            let key = k.value(i);
            let line = lines[bi][i];
            if let Some(&at) = first.get(key) {
                *m = false;
                any_dup = true;
                rejected.push((
                    line,
                    format!("duplicate key {key:?}: line {at} has it already"),
                    String::new(),
                ));
            } else {
                first.insert(key, line);
            }
        }
        keep.push(mask);
    }
    if !any_dup {
        return batches;
    }
    batches
        .into_iter()
        .zip(keep)
        .map(|(b, m)| {
            let mask = fdp_store::arrow::array::BooleanArray::from(m);
            fdp_store::arrow::compute::filter_record_batch(&b, &mask).expect("mask fits the batch")
        })
        .collect()
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

/// The batch with every column of the object type, nulls where unmapped.
fn widen(b: &RecordBatch, full: &SchemaRef) -> Result<RecordBatch, String> {
    let columns: Vec<ArrayRef> = full
        .fields()
        .iter()
        .map(|f| match b.schema().index_of(f.name()) {
            Ok(i) => b.column(i).clone(),
            Err(_) => new_null_array(f.data_type(), b.num_rows()),
        })
        .collect();
    RecordBatch::try_new(full.clone(), columns).map_err(|e| e.to_string())
}

/// Load one file with a mapping into the data directory.
pub async fn load_file(
    data_dir: &Path,
    mapping: &Mapping,
    path: &Path,
    run_id: &str,
) -> Result<FileReport, StoreError> {
    let started = std::time::Instant::now();
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let sha = hex(&Sha256::digest(&bytes));
    let file = path.display().to_string();
    let mut report = FileReport {
        file: file.clone(),
        mapping: mapping.name.clone(),
        sha256: sha.clone(),
        ..Default::default()
    };
    if already_loaded(data_dir, &mapping.name, &sha).await? {
        report.already_loaded = true;
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    // Keep the file as received.
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("dat");
    let copy_dir = data_dir.join("raw_files");
    std::fs::create_dir_all(&copy_dir).map_err(|e| StoreError::io(&copy_dir, e))?;
    let copy = copy_dir.join(format!("{sha}.{ext}"));
    if !copy.exists() {
        std::fs::write(&copy, &bytes).map_err(|e| StoreError::io(&copy, e))?;
    }
    let m = mapping.clone();
    let name = file.clone();
    let ParsedFile {
        plan,
        batches,
        rejected,
        rows_in,
    } = tokio::task::spawn_blocking(move || parse(&m, &bytes, &name))
        .await
        .map_err(|e| StoreError::Config(format!("parsing {file}: {e}")))?
        .map_err(StoreError::Config)?;
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
    if accepted > 0 {
        let path = tables::table_path(data_dir, Layer::Canonical, &part);
        let existed = path.join("_delta_log").is_dir();
        let table = tables::open_or_create(&path, full_schema(ot)).await?;
        let has_rows = existed && table.get_file_uris()?.next().is_some();
        if has_rows {
            let batch = fdp_store::arrow::compute::concat_batches(&full_schema(ot), &batches)
                .map_err(|e| StoreError::Config(e.to_string()))?;
            tables::upsert(table, batch, &ot.primary_key_property().column, props()).await?;
        } else {
            tables::append(table, batches, props()).await?;
        }
    }
    let now = chrono::Utc::now().timestamp_micros();
    if !rejected.is_empty() {
        let n = rejected.len();
        let mut b = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            Int64Builder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        for (line, reason, raw) in &rejected {
            b.0.append_value(run_id);
            at.append_value(now);
            b.1.append_value(&file);
            b.2.append_value(&mapping.name);
            b.3.append_value(&sha);
            b.4.append_value(*line as i64);
            b.5.append_value(reason);
            b.6.append_value(raw);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(b.0.finish()),
            Arc::new(at.finish()),
            Arc::new(b.1.finish()),
            Arc::new(b.2.finish()),
            Arc::new(b.3.finish()),
            Arc::new(b.4.finish()),
            Arc::new(b.5.finish()),
            Arc::new(b.6.finish()),
        ];
        let batch = RecordBatch::try_new(rejected_schema(), columns)
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let path = tables::table_path(data_dir, Layer::Raw, REJECTED_TABLE);
        let table = tables::open_or_create(&path, rejected_schema()).await?;
        tables::append(table, vec![batch], props()).await?;
    }
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
    let path = tables::table_path(data_dir, Layer::Raw, FILES_TABLE);
    let table = tables::open_or_create(&path, files_schema()).await?;
    tables::append(table, vec![batch], props()).await?;
    Ok(report)
}

/// Which of `mappings` applies to a file, by its name.
pub fn mapping_for<'a>(mappings: &'a [Mapping], path: &Path) -> Option<&'a Mapping> {
    let name = path.file_name()?.to_str()?;
    mappings.iter().find(|m| m.matches_file(name))
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
