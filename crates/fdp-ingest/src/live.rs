//! The live census: committed records applied as they arrive, and the
//! canonical tables written from it, as the rows that changed, in the
//! background.
//!
//! Two other streams besides HL7 feed the census:
//! - `bed_register`: a bed register extract (CSV), which declares the sites,
//!   wards and beds of the trust so that empty beds show too;
//! - `ui_event`: what staff record on the bed board (discharge readiness,
//!   closing a bed). These are raw records like any other, so they are
//!   durable, replayed after a restart, and are themselves the audit trail of
//!   who changed what and when.

use std::sync::Arc;
use std::time::Duration;

use fdp_model::Model;
pub use fdp_store::RawRecord;
use fdp_store::{Lineage, RecordStatus, Store, Submission};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, RwLock};

use crate::adt::canonical;
use crate::adt::census::{Bed, BedStatus, Census, DischargeReadiness};
use crate::hl7v2;

/// Raw stream of staff actions.
pub const UI_STREAM: &str = "ui_event";
/// Raw stream of bed register extracts.
pub const BED_REGISTER_STREAM: &str = "bed_register";

/// A staff action recorded from the UI or API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum StaffAction {
    DischargeReadiness {
        readiness: DischargeReadiness,
    },
    BedStatus {
        bed_id: String,
        closed: bool,
        reason: Option<String>,
        by: String,
        at_us: i64,
    },
}

/// The live census's progress through the feed (see [`Live::status`]).
#[derive(Debug, Clone, Serialize)]
pub struct FeedStatus {
    /// The last record applied.
    pub applied_seq: u64,
    /// ADT events applied, by trigger.
    pub events: std::collections::BTreeMap<String, u64>,
    /// Warnings ever raised.
    pub warnings: u64,
    pub recent_warnings: Vec<crate::adt::census::Warning>,
}

/// The census shared between the applier, the canonical writer and readers.
pub struct Live {
    census: RwLock<Census>,
    /// The sequence number applied so far; changes wake the bed board.
    applied: watch::Sender<u64>,
}

impl Live {
    pub fn new(census: Census) -> Arc<Self> {
        let seq = census.applied_seq;
        Arc::new(Live {
            census: RwLock::new(census),
            applied: watch::channel(seq).0,
        })
    }

    pub async fn read(&self) -> tokio::sync::RwLockReadGuard<'_, Census> {
        self.census.read().await
    }

    /// How the feed is going, for the people who look after it: what has
    /// been applied and what did not fit (the newest 50 warnings first).
    pub async fn status(&self) -> FeedStatus {
        let census = self.census.read().await;
        FeedStatus {
            applied_seq: census.applied_seq,
            events: census.events.clone(),
            warnings: census.warning_count,
            recent_warnings: census
                .recent_warnings
                .iter()
                .rev()
                .take(50)
                .cloned()
                .collect(),
        }
    }

    /// A receiver that changes whenever a record has been applied.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Wait until the census reflects every record through `seq`.
    pub async fn applied_through(&self, seq: u64) {
        let mut rx = self.applied.subscribe();
        let _ = rx.wait_for(|s| *s >= seq).await;
    }
}

/// Apply one committed record to a census.
pub fn apply(census: &mut Census, rec: &RawRecord) {
    if rec.status != RecordStatus::Accepted {
        census.applied_seq = census.applied_seq.max(rec.seq);
        return;
    }
    match rec.stream.as_str() {
        hl7v2::STREAM => match hl7v2::event_of(rec) {
            Some(ev) => {
                // The store's note on an accepted record: its control id
                // was reused by a different message.
                if !rec.reason.is_empty() {
                    census.note(
                        rec.seq,
                        &ev.trigger,
                        format!("control id {}: {}", rec.control_id, rec.reason),
                    );
                }
                census.advance_clock(ev.occurred_at_us, rec.received_at_us);
                census.apply(rec.seq, &ev)
            }
            None => tracing::error!(
                seq = rec.seq,
                "an accepted HL7 message no longer parses; the parser changed incompatibly"
            ),
        },
        UI_STREAM => match serde_json::from_slice::<StaffAction>(&rec.payload) {
            Ok(StaffAction::DischargeReadiness { readiness }) => census.set_readiness(readiness),
            Ok(StaffAction::BedStatus {
                bed_id,
                closed,
                reason,
                ..
            }) => {
                let status = if closed {
                    BedStatus::Closed
                } else {
                    BedStatus::Open
                };
                census.set_bed_status(&bed_id, status, reason);
            }
            Err(e) => tracing::error!(seq = rec.seq, error = %e, "unreadable staff action"),
        },
        BED_REGISTER_STREAM => match parse_bed_register(&rec.payload) {
            Ok(beds) => beds.into_iter().for_each(|b| census.register_bed(b)),
            Err(e) => tracing::error!(seq = rec.seq, error = %e, "unreadable bed register"),
        },
        _ => {}
    }
    census.applied_seq = census.applied_seq.max(rec.seq);
}

/// Bring a census (empty, or a snapshot) up to date with the records
/// committed after it.
pub fn replay(mut census: Census, history: &[RawRecord]) -> Census {
    for rec in history {
        apply(&mut census, rec);
    }
    census
}

/// Apply records from the store's feed as they are committed.
pub async fn run_applier(live: Arc<Live>, mut feed: mpsc::Receiver<Arc<RawRecord>>) {
    let mut batch = Vec::with_capacity(1024);
    while let Some(first) = feed.recv().await {
        batch.push(first);
        while batch.len() < 4096 {
            match feed.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let last = {
            let mut census = live.census.write().await;
            for rec in batch.drain(..) {
                apply(&mut census, &rec);
            }
            census.applied_seq
        };
        live.applied.send_replace(last);
    }
}

/// Write the canonical tables whenever the census has moved on, at most
/// once per `interval`. Each version records the raw sequence and raw table
/// versions it was derived from. With `snapshot_every`, the census is also
/// saved (at most that often, and once more on stop) so that a restart
/// replays only what came after it.
pub async fn run_canonical_writer(
    live: Arc<Live>,
    store: Arc<Store>,
    interval: Duration,
    snapshot_every: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Snapshots keep their own time: a long canonical write (the first
    // after a start, a month's retirements) must not leave a restart with
    // a whole history to replay.
    let snapshots = snapshot_every.map(|every| {
        tokio::spawn(run_snapshots(
            live.clone(),
            store.data_dir().to_path_buf(),
            every,
            shutdown.clone(),
        ))
    });
    let mut written = 0u64;
    let mut pause = interval;
    loop {
        let stop = tokio::select! {
            _ = tokio::time::sleep(pause) => false,
            _ = shutdown.changed() => true,
        };
        let work = match write_canonical(&live, &store, &mut written).await {
            Ok(work) => work,
            Err(e) => {
                tracing::error!(error = %e, "writing canonical tables failed; will retry");
                Duration::ZERO
            }
        };
        if stop || *shutdown.borrow() {
            if let Some(h) = snapshots {
                let _ = h.await;
            }
            return;
        }
        // A large census takes a while to encode: keep rewriting it from
        // taking more than a tenth of the machine away from the feed. One
        // long write (the first after a start, whole) must not stop the
        // next ones for minutes while retired rows wait in the census; and
        // while retired rows wait at all, the next write comes after the
        // plain interval, for they are held in memory until it.
        let retiring = !live.read().await.retired.pending.is_empty();
        pause = if retiring {
            interval
        } else {
            interval.max((work * 9).min(interval * 6))
        };
    }
}

/// Save the census every `every` when it has moved on, and once more on
/// stop.
async fn run_snapshots(
    live: Arc<Live>,
    data_dir: std::path::PathBuf,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut snapshotted = live.read().await.applied_seq;
    loop {
        let stop = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = shutdown.changed() => true,
        };
        let stopping = stop || *shutdown.borrow();
        if live.read().await.applied_seq > snapshotted {
            match save_snapshot(&live, &data_dir).await {
                Ok(seq) => snapshotted = seq,
                Err(e) => tracing::warn!(error = %e, "saving the census snapshot failed"),
            }
        }
        if stopping {
            return;
        }
    }
}

/// Save the census as it stands now; returns the sequence it reflects.
pub async fn save_snapshot(live: &Live, data_dir: &std::path::Path) -> Result<u64, String> {
    let census = live.read().await.clone();
    let seq = census.applied_seq;
    let dir = data_dir.to_path_buf();
    let started = std::time::Instant::now();
    let bytes = tokio::task::spawn_blocking(move || snapshot::save(&dir, &census))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    tracing::debug!(
        seq,
        bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "census snapshot saved"
    );
    Ok(seq)
}

/// Write the canonical tables once if the census has changed since `written`.
/// Returns the time it worked (copying, deriving, comparing, encoding and
/// committing; not waiting for the raw tables), which paces the next write.
pub async fn write_canonical(
    live: &Live,
    store: &Store,
    written: &mut u64,
) -> Result<Duration, String> {
    let started = std::time::Instant::now();
    // Hold the census only for as long as a copy takes: the applier (and so
    // the bed board) must not wait for the tables to be encoded.
    let snapshot = {
        let census = live.read().await;
        if census.applied_seq == *written {
            return Ok(Duration::ZERO);
        }
        census.clone()
    };
    let through = snapshot.applied_seq;
    let retired = (
        snapshot.retired.pending.clone(),
        snapshot.retired.revived_patients.clone(),
        snapshot.retired.revived_spells.clone(),
    );
    let refreshed_at = chrono::Utc::now().timestamp_micros();
    // Deriving and encoding rows is CPU work: keep it off the async workers
    // that answer the feed.
    let tables = tokio::task::spawn_blocking(move || canonical_batches(&snapshot, refreshed_at))
        .await
        .map_err(|e| format!("deriving canonical tables: {e}"))??;
    let derived = started.elapsed();
    let progress = store.raw_flushed_through(through).await;
    // Waiting for the raw tables is not work; comparing and encoding is.
    let writing = std::time::Instant::now();
    let waited = writing.duration_since(started) - derived;
    let lineage = Lineage {
        transform: "hl7v2-adt-census".into(),
        through_seq: through,
        raw_versions: progress.versions,
        run: None,
        targets: Vec::new(),
    };
    // The archive first: a retired row is in the archive part before the
    // live part drops it, so no reader ever misses it.
    write_archive(live, store, &retired.0, &retired.1, &retired.2, &lineage).await?;
    let archived = writing.elapsed();
    let mut changed = 0;
    for (table, schema, key, batch) in tables {
        let summary = store
            .write_canonical(&table, schema, &key, batch, &lineage)
            .await
            .map_err(|e| format!("{table}: {e}"))?;
        if summary.version.is_some() {
            changed += 1;
            tracing::debug!(
                table,
                whole = summary.whole,
                inserted = summary.inserted,
                updated = summary.updated,
                deleted = summary.deleted,
                rows_written = summary.rows_written,
                "canonical table written"
            );
        }
    }
    let took = started.elapsed();
    if took > Duration::from_secs(5) {
        // Retired rows wait in the census until this is done: say where the
        // time went.
        tracing::info!(
            through,
            changed,
            seconds = took.as_secs_f64(),
            deriving = derived.as_secs_f64(),
            waiting_for_raw = waited.as_secs_f64(),
            archive = archived.as_secs_f64(),
            tables = (writing.elapsed() - archived).as_secs_f64(),
            "a slow canonical write"
        );
    }
    tracing::trace!(through, changed, "canonical tables up to date");
    *written = through;
    Ok(derived + writing.elapsed())
}

/// The part of each canonical table that holds rows retired from the live
/// census (see [`Census::retire`]).
pub const ARCHIVE_PART: &str = "adt-archive";

/// Write what the census retired to the archive parts, and take out of them
/// the rows of patients and spells that came back; then let the census
/// forget what has been done.
async fn write_archive(
    live: &Live,
    store: &Store,
    pending: &[Arc<crate::adt::census::RetiredBatch>],
    revived_patients: &[String],
    revived_spells: &[String],
    lineage: &Lineage,
) -> Result<(), String> {
    if pending.is_empty() && revived_patients.is_empty() && revived_spells.is_empty() {
        return Ok(());
    }
    let model = Model::canonical();
    let part = |type_name: &str| -> Result<(String, Arc<fdp_store::Schema>), String> {
        let ot = model
            .object_type(type_name)
            .ok_or_else(|| format!("the model has no object type {type_name}"))?;
        Ok((
            fdp_store::tables::part_name(&ot.table, ARCHIVE_PART),
            Arc::new(ot.arrow_schema()),
        ))
    };
    for (type_name, column, keys) in [
        ("Patient", "person_id", revived_patients),
        ("Admission", "admission_id", revived_spells),
        ("WardStay", "admission_id", revived_spells),
        ("DischargeReadiness", "admission_id", revived_spells),
    ] {
        let (table, _) = part(type_name)?;
        let deleted = store
            .delete_canonical_keys(&table, column, keys, lineage)
            .await
            .map_err(|e| format!("{table}: {e}"))?;
        if deleted.version.is_some() {
            tracing::debug!(
                table,
                rows = deleted.deleted,
                files_rewritten = deleted.files_removed,
                "came back to the live census; taken out of the archive"
            );
        }
    }
    // One commit per archive part for all the batches waiting, each part
    // taking the batches it does not hold yet (a crash may have left one
    // part ahead of another).
    if let Some(last) = pending.last() {
        // One table at a time, so only one table's rows are held as JSON.
        for type_name in canonical::ARCHIVE_TABLES {
            let (table, schema) = part(type_name)?;
            let held = store
                .canonical_batch_watermark(&table)
                .await
                .map_err(|e| format!("{table}: {e}"))?;
            let rows: Vec<_> = pending
                .iter()
                .filter(|b| b.id >= held)
                .flat_map(|b| canonical::archive_table_rows(b, type_name))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let arrow = fdp_store::rows::batch_from_rows(&schema, &rows)
                .map_err(|e| format!("{table}: {e}"))?;
            drop(rows);
            store
                .append_canonical_once(&table, schema, arrow, last.id, lineage)
                .await
                .map_err(|e| format!("{table}: {e}"))?;
        }
        tracing::info!(
            batches = pending.len(),
            spells = pending.iter().map(|b| b.spells.len()).sum::<usize>(),
            patients = pending.iter().map(|b| b.patients.len()).sum::<usize>(),
            "retired from the live census to the archive"
        );
    }
    let mut census = live.census.write().await;
    if let Some(last) = pending.last() {
        census.retired.pending.retain(|b| b.id > last.id);
    }
    census
        .retired
        .revived_patients
        .drain(..revived_patients.len());
    census.retired.revived_spells.drain(..revived_spells.len());
    Ok(())
}

/// A table's name, schema, primary key column and whole derived state.
type CanonicalTable = (String, fdp_store::SchemaRef, String, fdp_store::RecordBatch);

/// Every canonical table as one Arrow batch, `dataset_refresh_time` last
/// so that a reader who sees its new rows sees the tables it describes.
fn canonical_batches(census: &Census, refreshed_at: i64) -> Result<Vec<CanonicalTable>, String> {
    let model = Model::canonical();
    let mut out = Vec::new();
    let mut refresh_rows = Vec::new();
    // One table at a time: a table's rows as JSON take many times the
    // memory of the Arrow batch they become.
    for type_name in canonical::TABLES {
        let rows = canonical::table_rows(census, type_name);
        let ot = model
            .object_type(type_name)
            .ok_or_else(|| format!("the model has no object type {type_name}"))?;
        let schema = Arc::new(ot.arrow_schema());
        let batch = fdp_store::rows::batch_from_rows(&schema, &rows)
            .map_err(|e| format!("{type_name}: {e}"))?;
        refresh_rows.push(
            serde_json::json!({
                "dataset_name": ot.table,
                "last_refresh_source": "hl7v2-adt-census",
                "last_refresh_timestamp": refreshed_at,
            })
            .as_object()
            .expect("object")
            .clone(),
        );
        out.push((
            ot.table.clone(),
            schema,
            ot.primary_key_property().column.clone(),
            batch,
        ));
    }
    let ot = model
        .object_type("DatasetRefreshTime")
        .ok_or("the model has no DatasetRefreshTime")?;
    let schema = Arc::new(ot.arrow_schema());
    let batch = fdp_store::rows::batch_from_rows(&schema, &refresh_rows)?;
    out.push((
        ot.table.clone(),
        schema,
        ot.primary_key_property().column.clone(),
        batch,
    ));
    Ok(out)
}

/// A staff action as the record the store keeps of it (stream `ui`).
pub fn staff_submission(action: &StaffAction, by: &str) -> Submission {
    let (message_type, control_id) = match action {
        StaffAction::DischargeReadiness { readiness } => {
            ("DischargeReadiness", readiness.admission_id.clone())
        }
        StaffAction::BedStatus { bed_id, .. } => ("Bed", bed_id.clone()),
    };
    Submission {
        received_at_us: chrono::Utc::now().timestamp_micros(),
        status: RecordStatus::Accepted,
        stream: UI_STREAM.into(),
        source: format!("user:{by}"),
        message_type: message_type.into(),
        control_id,
        dedup_key: None,
        reason: String::new(),
        location: String::new(),
        payload: serde_json::to_vec(action).expect("actions serialise"),
    }
}

/// Record a staff action durably and wait until the census shows it.
pub async fn record_action(
    store: &fdp_store::Committer,
    live: &Live,
    action: &StaffAction,
    by: &str,
) -> Result<u64, fdp_store::StoreError> {
    let committed = store.commit(staff_submission(action, by)).await?;
    let seq = match committed {
        fdp_store::Committed::New(s) | fdp_store::Committed::Duplicate(s) => s,
    };
    live.applied_through(seq).await;
    Ok(seq)
}

/// Columns of a bed register extract.
pub const BED_REGISTER_HEADER: &str =
    "site_code,site_name,ward_code,ward_name,specialty,bay,bed_id,bed_label,bed_type,status";

/// Read a bed register CSV (with the header above, in any column order).
pub fn parse_bed_register(bytes: &[u8]) -> Result<Vec<Bed>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or("empty bed register")?;
    let cols: Vec<String> = split_csv(header)
        .into_iter()
        .map(|c| c.trim().to_string())
        .collect();
    let col = |name: &str| -> Result<usize, String> {
        cols.iter().position(|c| c == name).ok_or_else(|| {
            format!("bed register has no column {name} (expected {BED_REGISTER_HEADER})")
        })
    };
    let (site, ward, bay, label) = (
        col("site_code")?,
        col("ward_code")?,
        col("bay")?,
        col("bed_label")?,
    );
    let bed_type = col("bed_type").ok();
    let ward_name = col("ward_name").ok();
    let status = col("status").ok();
    let mut beds = Vec::new();
    for (n, line) in lines {
        let f = split_csv(line);
        if f.len() != cols.len() {
            return Err(format!(
                "line {}: {} columns, the header has {}",
                n + 1,
                f.len(),
                cols.len()
            ));
        }
        let get = |i: usize| f[i].trim().to_string();
        let closed = status
            .map(|i| get(i).eq_ignore_ascii_case("closed"))
            .unwrap_or(false);
        beds.push(Bed {
            bed_id: crate::adt::event::bed_id(&get(site), &get(ward), &get(bay), &get(label)),
            site: get(site),
            ward: get(ward),
            ward_name: ward_name.map(get).unwrap_or_default(),
            room: get(bay),
            label: get(label),
            bed_type: bed_type.map(get).unwrap_or_else(|| "general".into()),
            status: if closed {
                BedStatus::Closed
            } else {
                BedStatus::Open
            },
            closed_reason: None,
            occupant: None,
        });
    }
    Ok(beds)
}

/// Split one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Census snapshots: the whole census as it stood at one sequence number,
/// so that a restart replays only the records after it instead of the
/// whole raw history.
///
/// A snapshot is derived state, never the only copy of anything: the raw
/// tables (and the WAL) hold every record it was made from. One that cannot
/// be read is set aside and the census rebuilt from the raw tables.
pub mod snapshot {
    use std::io::{BufReader, BufWriter, Write};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Serialize};

    use crate::adt::census::Census;

    /// Bumped when the census's shape changes incompatibly; an older
    /// snapshot is then ignored and the census replayed in full.
    const FORMAT: u32 = 1;

    #[derive(Serialize, Deserialize)]
    struct Snapshot {
        format: u32,
        census: Census,
    }

    /// Where the snapshot lives in a data directory.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("census").join("snapshot.json")
    }

    /// Write `census` durably: to a temporary file, synced, then renamed
    /// over the last snapshot, so a crash leaves one or the other whole.
    pub fn save(data_dir: &Path, census: &Census) -> std::io::Result<u64> {
        let path = path(data_dir);
        let dir = path.parent().expect("the snapshot has a directory");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("snapshot.json.tmp");
        let file = std::fs::File::create(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        serde_json::to_writer(
            &mut out,
            &SnapshotRef {
                format: FORMAT,
                census,
            },
        )?;
        out.flush()?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(bytes)
    }

    #[derive(Serialize)]
    struct SnapshotRef<'a> {
        format: u32,
        census: &'a Census,
    }

    /// The last snapshot, or `None` when there is none or it cannot be used
    /// (then the census is rebuilt from the raw tables).
    pub fn load(data_dir: &Path) -> Option<Census> {
        let path = path(data_dir);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "census snapshot unreadable; replaying the raw tables");
                return None;
            }
        };
        match serde_json::from_reader::<_, Snapshot>(BufReader::with_capacity(1 << 20, file)) {
            Ok(s) if s.format == FORMAT => Some(s.census),
            Ok(s) => {
                tracing::info!(
                    format = s.format,
                    "census snapshot from another version; replaying the raw tables"
                );
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "census snapshot damaged; replaying the raw tables");
                let _ = std::fs::rename(&path, path.with_extension("json.damaged"));
                None
            }
        }
    }
}
