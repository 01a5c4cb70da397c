//! FHIR R4 resources into the instance: raw first, then the canonical tables.
//!
//! Every resource received — accepted, not mapped or refused — becomes a row
//! of `raw.fhir_resource` with where it came from (file and line, Bundle
//! entry, REST request), its content hash and, when refused, the rule it
//! broke. Accepted resources of the mapped types then update the FHIR parts
//! of the canonical tables (`patient@fhir`, `vaccination@fhir` …) by primary
//! key. Both steps are Delta commits of whole batches, which is what makes a
//! bulk load fast: a million resources are a handful of commits, not a
//! million.
//!
//! Loading is idempotent by resource identity and content: a resource whose
//! content is the same as its current version is counted as unchanged and
//! stored neither in raw nor in canonical again.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::writer_read;
use fdp_fhir::{Issue, IssueCode, OperationOutcome};
use fdp_model::Model;
use fdp_store::arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use fdp_store::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use fdp_store::tables::{self, Layer, Lineage};
use fdp_store::{DeltaTable, RecordBatch, SchemaRef, StoreError};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The raw table of every FHIR resource received.
pub const RAW_TABLE: &str = "fhir_resource";
/// The writer name of the canonical parts this source owns.
pub const WRITER: &str = "fhir";
/// Under this application id each canonical part records the raw version it
/// has applied.
pub const APP_ID: &str = "openfdp-fhir";

/// The schema of `raw.fhir_resource`.
pub fn raw_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("received_at", ts, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("location", DataType::Utf8, false),
        Field::new("resource_type", DataType::Utf8, true),
        Field::new("resource_id", DataType::Utf8, true),
        Field::new("version_id", DataType::Int64, true),
        Field::new("content_sha256", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, true),
        Field::new("payload", DataType::Utf8, false),
    ]))
}

/// One resource to load.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The resource, with Bundle references already resolved; `Null` when
    /// it is still to be parsed from `text` (parsing then runs on every core).
    pub resource: Value,
    /// The logical id to store it under; `None` takes `resource.id`, or a new
    /// id when it has none.
    pub id: Option<String>,
    /// The text as received when it is the resource itself (an NDJSON line),
    /// kept byte for byte; otherwise the resource is serialised.
    pub text: Option<String>,
    /// Where it came from: a file, `rest`, `$import`.
    pub source: String,
    /// Where in the source: `file.ndjson line 12`, `Bundle.entry[3]`.
    pub location: String,
    /// Files and imports are loaded again after a failure or by mistake: a
    /// resource whose content matches any version already held is then
    /// unchanged. A REST update back to an earlier content is a new version.
    pub same_as_any_version: bool,
}

/// A resource that could not be parsed at all, kept with its bytes.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub text: String,
    pub source: String,
    pub location: String,
    pub reason: String,
}

/// What happened to one incoming resource, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Stored as a new version; `created` when it is the first.
    Stored {
        resource_type: String,
        id: String,
        version: i64,
        created: bool,
        mapped: bool,
        last_updated: String,
    },
    /// Same content as the current version: nothing stored.
    Unchanged {
        resource_type: String,
        id: String,
        version: i64,
    },
    /// Refused and quarantined.
    Rejected(OperationOutcome),
}

/// Counts for one resource type.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TypeCounts {
    pub accepted: u64,
    pub unchanged: u64,
    /// Accepted and kept in raw, but not a type the canonical model holds.
    pub not_mapped: u64,
    pub rejected: u64,
}

/// What a load did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub run_id: String,
    pub by_type: BTreeMap<String, TypeCounts>,
    /// Location and reason of each refused resource.
    pub rejected: Vec<(String, String)>,
    pub canonical_rows: BTreeMap<String, u64>,
    pub raw_version: Option<u64>,
}

impl Report {
    pub fn total(&self) -> TypeCounts {
        let mut t = TypeCounts::default();
        for c in self.by_type.values() {
            t.accepted += c.accepted;
            t.unchanged += c.unchanged;
            t.not_mapped += c.not_mapped;
            t.rejected += c.rejected;
        }
        t
    }

    pub fn merge(&mut self, other: Report) {
        for (k, v) in other.by_type {
            let e = self.by_type.entry(k).or_default();
            e.accepted += v.accepted;
            e.unchanged += v.unchanged;
            e.not_mapped += v.not_mapped;
            e.rejected += v.rejected;
        }
        self.rejected.extend(other.rejected);
        for (k, v) in other.canonical_rows {
            *self.canonical_rows.entry(k).or_default() += v;
        }
        self.raw_version = other.raw_version.or(self.raw_version);
    }
}

#[derive(Debug, Clone, Copy)]
struct Current {
    version: i64,
    sha: [u8; 32],
}

/// The FHIR source of one data directory. One per process: it is the only
/// writer of `raw.fhir_resource` and of the `@fhir` canonical parts.
pub struct FhirSource {
    data_dir: PathBuf,
    index: HashMap<(String, String), Current>,
    /// Every (type, id, content) held, for loads of files seen before.
    seen: std::collections::HashSet<[u8; 32]>,
    raw: Option<DeltaTable>,
}

/// The product of the CPU-bound part of a load, per incoming resource.
enum Prepared {
    /// Content already held: neither checked nor mapped again.
    Unchanged {
        resource_type: String,
        id: String,
        version: i64,
    },
    Good {
        resource_type: String,
        id: String,
        payload: String,
        sha: [u8; 32],
        rows: Option<Vec<(&'static str, Map<String, Value>)>>,
        source: String,
        location: String,
        same_as_any_version: bool,
    },
    Bad {
        resource_type: Option<String>,
        id: Option<String>,
        payload: String,
        outcome: OperationOutcome,
        source: String,
        location: String,
    },
}

impl FhirSource {
    /// Open the FHIR source of a data directory, reading which resources and
    /// versions it already holds.
    pub async fn open(data_dir: &Path) -> Result<FhirSource, StoreError> {
        let mut me = FhirSource {
            data_dir: data_dir.to_path_buf(),
            index: HashMap::new(),
            seen: Default::default(),
            raw: None,
        };
        let path = tables::table_location(data_dir, Layer::Raw, RAW_TABLE)?;
        if path.exists().await? {
            let table = tables::open(&path, None).await?;
            me.load_index(&table).await?;
            me.raw = Some(table);
            me.catch_up_canonical().await?;
        }
        Ok(me)
    }

    /// How many resources (current versions) the source holds.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The current version of a resource, if held.
    pub fn current_version(&self, resource_type: &str, id: &str) -> Option<i64> {
        self.index
            .get(&(resource_type.to_string(), id.to_string()))
            .map(|c| c.version)
    }

    async fn load_index(&mut self, table: &DeltaTable) -> Result<(), StoreError> {
        use fdp_store::arrow::array::{Array, AsArray};
        use fdp_store::arrow::datatypes::Int64Type;
        let ctx = datafusion_session(table).await?;
        let batches = writer_read(
            &ctx,
            "SELECT resource_type, resource_id, version_id, content_sha256 FROM t \
             WHERE status <> 'quarantined'",
        )
        .await?;
        for b in batches {
            let (rt, id, sha) = (utf8(b.column(0))?, utf8(b.column(1))?, utf8(b.column(3))?);
            let (rt, id, sha) = (
                rt.as_string::<i32>(),
                id.as_string::<i32>(),
                sha.as_string::<i32>(),
            );
            let v = b.column(2).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                if rt.is_null(i) || id.is_null(i) {
                    continue;
                }
                let key = (rt.value(i).to_string(), id.value(i).to_string());
                let version = v.value(i);
                let mut digest = [0u8; 32];
                unhex(sha.value(i), &mut digest);
                self.seen.insert(identity(&key.0, &key.1, &digest));
                let e = self.index.entry(key).or_insert(Current {
                    version: 0,
                    sha: digest,
                });
                if version >= e.version {
                    *e = Current {
                        version,
                        sha: digest,
                    };
                }
            }
        }
        Ok(())
    }

    /// Bring canonical parts that missed a raw commit (a crash between the
    /// two) up to date by deriving them again from raw.
    async fn catch_up_canonical(&mut self) -> Result<(), StoreError> {
        let Some(raw) = &self.raw else { return Ok(()) };
        let raw_version = raw.version().unwrap_or(0);
        // Only the newest raw commit can have missed its canonical commits:
        // every load after it starts here.
        let last = tables::history(raw, 1).await?;
        let targets: Vec<String> = last
            .first()
            .and_then(|v| v.lineage.clone())
            .and_then(|l| serde_json::from_value::<Lineage>(l).ok())
            .map(|l| l.targets)
            .unwrap_or_default();
        let mut behind = false;
        for name in targets {
            let path = tables::table_location(&self.data_dir, Layer::Canonical, &name)?;
            let reached = match tables::open(&path, None).await {
                Ok(t) => tables::app_watermark(&t, APP_ID).await?.unwrap_or(-1),
                Err(_) => -1,
            };
            behind |= reached < raw_version as i64;
        }
        if behind {
            tracing::warn!(
                "FHIR canonical tables missed the last load; deriving them again from raw"
            );
            self.rebuild_canonical(Model::canonical()).await?;
        }
        Ok(())
    }

    /// Derive every `@fhir` canonical part again from the current versions in raw.
    pub async fn rebuild_canonical(
        &mut self,
        model: &Model,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        use fdp_store::arrow::array::{Array, AsArray};
        use fdp_store::arrow::datatypes::Int64Type;
        let Some(raw) = &self.raw else {
            return Ok(BTreeMap::new());
        };
        let raw_version = raw.version().unwrap_or(0);
        let ctx = datafusion_session(raw).await?;
        let batches = writer_read(
            &ctx,
            "SELECT resource_type, resource_id, version_id, \
             CASE WHEN status = 'accepted' THEN payload ELSE '' END AS payload \
             FROM t WHERE status <> 'quarantined'",
        )
        .await?;
        let mut latest: HashMap<(String, String), (i64, String)> = HashMap::new();
        for b in batches {
            let (rt, id, p) = (utf8(b.column(0))?, utf8(b.column(1))?, utf8(b.column(3))?);
            let (rt, id, p) = (
                rt.as_string::<i32>(),
                id.as_string::<i32>(),
                p.as_string::<i32>(),
            );
            let v = b.column(2).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                if rt.is_null(i) || id.is_null(i) {
                    continue;
                }
                let key = (rt.value(i).to_string(), id.value(i).to_string());
                let e = latest.entry(key).or_insert((-1, String::new()));
                if v.value(i) > e.0 {
                    *e = (v.value(i), p.value(i).to_string());
                }
            }
        }
        let mut rows: BTreeMap<&'static str, Vec<Map<String, Value>>> = BTreeMap::new();
        for ((_, id), (_, payload)) in latest {
            // Deleted and not-mapped resources have nothing to derive.
            if payload.is_empty() {
                continue;
            }
            let Ok(resource) = serde_json::from_str::<Value>(&payload) else {
                continue;
            };
            if let Some(m) = fdp_fhir::map_resource(&resource, &id) {
                for (t, r) in m.rows {
                    rows.entry(t).or_default().push(r);
                }
            }
        }
        let lineage = Lineage {
            transform: "fhir-r4".into(),
            through_seq: 0,
            raw_versions: [(RAW_TABLE.to_string(), raw_version)].into(),
            run: Some("rebuild".into()),
            targets: Vec::new(),
        };
        let mut counts = BTreeMap::new();
        for (type_name, rows) in rows {
            let ot = model
                .object_type(type_name)
                .expect("mapped types are in the model");
            let schema = plain_schema(ot);
            let batch = fdp_store::rows::batch_from_rows(&schema, &rows)
                .map_err(|e| StoreError::Config(format!("{type_name}: {e}")))?;
            let path = tables::table_location(
                &self.data_dir,
                Layer::Canonical,
                &tables::part_name(&ot.table, WRITER),
            )?;
            let table = tables::open_or_create(&path, schema.clone()).await?;
            tables::replace(
                table,
                vec![batch],
                tables::commit_properties(&lineage, APP_ID, raw_version as i64),
            )
            .await?;
            counts.insert(ot.table.clone(), rows.len() as u64);
        }
        Ok(counts)
    }

    /// Store resources: validate and map them (on every core), append them
    /// all to raw in one commit, then update each canonical part in one
    /// commit. Returns what happened to each, in order, and the report.
    pub async fn load(
        &mut self,
        run_id: &str,
        incoming: Vec<Incoming>,
        unreadable: Vec<Unreadable>,
    ) -> Result<(Vec<Outcome>, Report), StoreError> {
        let staged = self.stage(run_id, incoming, unreadable);
        let raw = self.raw.take();
        match commit(self.data_dir.clone(), raw, staged).await {
            Ok(done) => {
                self.raw = done.raw;
                Ok((done.outcomes, done.report))
            }
            Err(e) => {
                // The index already counts what failed to commit: read it again.
                self.reopen().await?;
                Err(e)
            }
        }
    }

    /// Delete a resource: a `deleted` version in raw, and its rows gone from
    /// the canonical parts. Returns the deleted version, or `None` when there
    /// was nothing to delete.
    pub async fn delete(
        &mut self,
        run_id: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let key = (resource_type.to_string(), id.to_string());
        let empty = sha256(b"");
        let version = match self.index.get(&key) {
            Some(c) if c.sha != empty => c.version + 1,
            _ => return Ok(None),
        };
        let now_us = chrono::Utc::now().timestamp_micros();
        let mut raw = RawRows::default();
        raw.push(
            run_id,
            now_us,
            "rest",
            &format!("DELETE {resource_type}/{id}"),
            Some(resource_type),
            Some(id),
            Some(version),
            &empty,
            "deleted",
            None,
            "",
        );
        let lineage = Lineage {
            transform: "fhir-r4".into(),
            run: Some(run_id.to_string()),
            ..Lineage::default()
        };
        let raw_table = match self.raw.take() {
            Some(t) => t,
            None => {
                tables::open_or_create(
                    &tables::table_location(&self.data_dir, Layer::Raw, RAW_TABLE)?,
                    raw_schema(),
                )
                .await?
            }
        };
        let batch = raw
            .finish()
            .map_err(|e| StoreError::Config(format!("raw FHIR batch: {e}")))?;
        let raw_table = tables::append(
            raw_table,
            vec![batch],
            tables::commit_properties(&lineage, APP_ID, 0),
        )
        .await?;
        let raw_version = raw_table.version().unwrap_or(0);
        self.raw = Some(raw_table);
        self.index.insert(
            key,
            Current {
                version,
                sha: empty,
            },
        );
        let lineage = Lineage {
            raw_versions: [(RAW_TABLE.to_string(), raw_version)].into(),
            ..lineage
        };
        let model = Model::canonical();
        for t in fdp_fhir::map::object_types_of(resource_type) {
            let ot = model.object_type(t).expect("mapped types are in the model");
            let path = tables::table_location(
                &self.data_dir,
                Layer::Canonical,
                &tables::part_name(&ot.table, WRITER),
            )?;
            if !path.exists().await? {
                continue;
            }
            let table = tables::open(&path, None).await?;
            let props = tables::commit_properties(&lineage, APP_ID, raw_version as i64);
            tables::delete_keys(
                table,
                &ot.primary_key_property().column,
                &[id.to_string()],
                props,
            )
            .await?;
        }
        Ok(Some(version))
    }

    /// Every stored version of every resource, oldest first: what a FHIR
    /// server answers reads, searches and history from.
    pub async fn versions(&self) -> Result<Vec<StoredVersion>, StoreError> {
        self.versions_where("true").await
    }

    /// The versions one run stored (a bulk import), oldest first.
    pub async fn versions_of_run(&self, run_id: &str) -> Result<Vec<StoredVersion>, StoreError> {
        self.versions_where(&format!("run_id = '{}'", run_id.replace('\'', "''")))
            .await
    }

    async fn versions_where(&self, filter: &str) -> Result<Vec<StoredVersion>, StoreError> {
        use fdp_store::arrow::array::{Array, AsArray};
        use fdp_store::arrow::datatypes::{Int64Type, TimestampMicrosecondType};
        let Some(raw) = &self.raw else {
            return Ok(Vec::new());
        };
        let ctx = datafusion_session(raw).await?;
        let batches = writer_read(&ctx, &format!(
                "SELECT resource_type, resource_id, version_id, received_at, status, payload FROM t \
                 WHERE status <> 'quarantined' AND ({filter}) ORDER BY version_id"
            ),
        )
        .await?;
        let mut out = Vec::new();
        for b in batches {
            let (rt, id, st, p) = (
                utf8(b.column(0))?,
                utf8(b.column(1))?,
                utf8(b.column(4))?,
                utf8(b.column(5))?,
            );
            let (rt, id, st, p) = (
                rt.as_string::<i32>(),
                id.as_string::<i32>(),
                st.as_string::<i32>(),
                p.as_string::<i32>(),
            );
            let v = b.column(2).as_primitive::<Int64Type>();
            let at = fdp_store::arrow::compute::cast(
                b.column(3),
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            )
            .map_err(|e| StoreError::Config(format!("reading raw.fhir_resource: {e}")))?;
            let at = at.as_primitive::<TimestampMicrosecondType>();
            for i in 0..b.num_rows() {
                if rt.is_null(i) || id.is_null(i) {
                    continue;
                }
                out.push(StoredVersion {
                    resource_type: rt.value(i).to_string(),
                    id: id.value(i).to_string(),
                    version: v.value(i),
                    received_at_us: at.value(i),
                    payload: (st.value(i) != "deleted").then(|| p.value(i).to_string()),
                });
            }
        }
        Ok(out)
    }

    /// The raw table handle, for [`commit`] run alongside the next [`stage`](Self::stage).
    pub fn take_raw(&mut self) -> Option<DeltaTable> {
        self.raw.take()
    }

    /// The raw table handle a [`commit`] returned.
    pub fn set_raw(&mut self, raw: Option<DeltaTable>) {
        self.raw = raw;
    }

    /// Read what the source holds again from raw.
    pub async fn reopen(&mut self) -> Result<(), StoreError> {
        *self = FhirSource::open(&self.data_dir).await?;
        Ok(())
    }

    /// Check, map and version resources (the CPU-bound part of a load, on
    /// every core) and count them as held. The result must then be
    /// committed with [`commit`]; a failed commit must be followed by
    /// [`reopen`](Self::reopen).
    pub fn stage(
        &mut self,
        run_id: &str,
        incoming: Vec<Incoming>,
        unreadable: Vec<Unreadable>,
    ) -> Staged {
        let model = Model::canonical();
        let started = std::time::Instant::now();
        let held = Held {
            index: &self.index,
            seen: &self.seen,
        };
        let prepared = prepare_all(incoming, model, &held);
        tracing::debug!(resources = prepared.len(), elapsed = ?started.elapsed(), "FHIR resources checked and mapped");
        let mut report = Report {
            run_id: run_id.to_string(),
            ..Report::default()
        };
        let now = chrono::Utc::now();
        let now_us = now.timestamp_micros();
        let last_updated = now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();

        let mut raw = RawRows::default();
        let mut outcomes = Vec::with_capacity(prepared.len() + unreadable.len());
        // Canonical rows per object type, keyed so that a later version of the
        // same resource in the same load replaces an earlier one.
        let mut canonical: BTreeMap<&'static str, KeyedRows> = BTreeMap::new();
        let mut touched_existing: BTreeMap<&'static str, bool> = BTreeMap::new();
        let mut new_index: Vec<((String, String), Current)> = Vec::new();
        let mut pending: HashMap<(String, String), Current> = HashMap::new();

        for p in prepared {
            match p {
                Prepared::Bad {
                    resource_type,
                    id,
                    payload,
                    outcome,
                    source,
                    location,
                } => {
                    let rt = resource_type.clone().unwrap_or_else(|| "(unknown)".into());
                    report.by_type.entry(rt).or_default().rejected += 1;
                    report.rejected.push((location.clone(), outcome.summary()));
                    let sha = sha256(payload.as_bytes());
                    raw.push(
                        run_id,
                        now_us,
                        &source,
                        &location,
                        resource_type.as_deref(),
                        id.as_deref(),
                        None,
                        &sha,
                        "quarantined",
                        Some(&outcome.summary()),
                        &payload,
                    );
                    outcomes.push(Outcome::Rejected(outcome));
                }
                Prepared::Unchanged {
                    resource_type,
                    id,
                    version,
                } => {
                    report
                        .by_type
                        .entry(resource_type.clone())
                        .or_default()
                        .unchanged += 1;
                    outcomes.push(Outcome::Unchanged {
                        resource_type,
                        id,
                        version,
                    });
                }
                Prepared::Good {
                    resource_type,
                    id,
                    payload,
                    sha,
                    rows,
                    source,
                    location,
                    same_as_any_version,
                } => {
                    let key = (resource_type.clone(), id.clone());
                    let current = pending.get(&key).or_else(|| self.index.get(&key)).copied();
                    let counts = report.by_type.entry(resource_type.clone()).or_default();
                    let ident = identity(&resource_type, &id, &sha);
                    if let Some(c) = current {
                        if c.sha == sha || (same_as_any_version && self.seen.contains(&ident)) {
                            counts.unchanged += 1;
                            outcomes.push(Outcome::Unchanged {
                                resource_type,
                                id,
                                version: c.version,
                            });
                            continue;
                        }
                    }
                    let version = current.map(|c| c.version + 1).unwrap_or(1);
                    let mapped = rows.is_some();
                    if mapped {
                        counts.accepted += 1;
                    } else {
                        counts.not_mapped += 1;
                    }
                    let status = if mapped { "accepted" } else { "not_mapped" };
                    raw.push(
                        run_id,
                        now_us,
                        &source,
                        &location,
                        Some(&resource_type),
                        Some(&id),
                        Some(version),
                        &sha,
                        status,
                        None,
                        &payload,
                    );
                    if let Some(rows) = rows {
                        let existed = self.index.contains_key(&key);
                        for (t, r) in rows {
                            let (list, by_id) = canonical.entry(t).or_default();
                            match by_id.get(&id) {
                                Some(&i) => list[i] = r,
                                None => {
                                    by_id.insert(id.clone(), list.len());
                                    list.push(r);
                                }
                            }
                            *touched_existing.entry(t).or_default() |= existed;
                        }
                    }
                    let cur = Current { version, sha };
                    self.seen.insert(ident);
                    pending.insert(key.clone(), cur);
                    new_index.push((key, cur));
                    outcomes.push(Outcome::Stored {
                        resource_type,
                        id,
                        version,
                        // Re-creating a deleted resource is a create too.
                        created: current.is_none_or(|c| c.sha == sha256(b"")),
                        mapped,
                        last_updated: last_updated.clone(),
                    });
                }
            }
        }
        for u in unreadable {
            report
                .by_type
                .entry("(unreadable)".into())
                .or_default()
                .rejected += 1;
            report.rejected.push((u.location.clone(), u.reason.clone()));
            let sha = sha256(u.text.as_bytes());
            raw.push(
                run_id,
                now_us,
                &u.source,
                &u.location,
                None,
                None,
                None,
                &sha,
                "quarantined",
                Some(&u.reason),
                &u.text,
            );
            outcomes.push(Outcome::Rejected(OperationOutcome::single(Issue {
                severity: fdp_fhir::Severity::Error,
                code: IssueCode::Structure,
                expression: None,
                diagnostics: u.reason,
            })));
        }
        for (k, c) in new_index {
            self.index.insert(k, c);
        }
        Staged {
            run_id: run_id.to_string(),
            outcomes,
            report,
            raw,
            canonical: canonical
                .into_iter()
                .map(|(t, (rows, _))| (t, rows))
                .collect(),
            touched_existing,
        }
    }
}

/// One version of a resource as stored; `payload` is `None` for a deletion.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub received_at_us: i64,
    pub payload: Option<String>,
}

/// A load checked and versioned, ready to commit.
pub struct Staged {
    run_id: String,
    outcomes: Vec<Outcome>,
    report: Report,
    raw: RawRows,
    canonical: Vec<(&'static str, Vec<Map<String, Value>>)>,
    touched_existing: BTreeMap<&'static str, bool>,
}

/// What a commit did, and the raw table handle to give back to the source.
pub struct Committed {
    pub raw: Option<DeltaTable>,
    pub outcomes: Vec<Outcome>,
    pub report: Report,
}

/// Commit a staged load: raw in one commit, then each canonical part in one.
pub async fn commit(
    data_dir: PathBuf,
    raw_table: Option<DeltaTable>,
    staged: Staged,
) -> Result<Committed, StoreError> {
    let Staged {
        run_id,
        outcomes,
        mut report,
        raw,
        canonical,
        touched_existing,
    } = staged;
    let model = Model::canonical();
    if raw.len == 0 {
        return Ok(Committed {
            raw: raw_table,
            outcomes,
            report,
        });
    }
    {
        let targets = canonical
            .iter()
            .map(|(t, _)| {
                let table = &model
                    .object_type(t)
                    .expect("mapped types are in the model")
                    .table;
                tables::part_name(table, WRITER)
            })
            .collect();
        // Encoding the canonical rows is CPU work that can overlap the raw
        // commit; the canonical commits still wait for raw.
        let encoded = tokio::task::spawn_blocking(move || encode_canonical(model, canonical));

        // Raw first: once this commit is in, nothing accepted can be lost.
        let raw_table = match raw_table {
            Some(t) => t,
            None => {
                let path = tables::table_location(&data_dir, Layer::Raw, RAW_TABLE)?;
                tables::open_or_create(&path, raw_schema()).await?
            }
        };

        let lineage = Lineage {
            transform: "fhir-r4".into(),
            through_seq: 0,
            raw_versions: BTreeMap::new(),
            run: Some(run_id.clone()),
            targets,
        };
        let raw_batch = raw
            .finish()
            .map_err(|e| StoreError::Config(format!("raw FHIR batch: {e}")))?;
        let raw_started = std::time::Instant::now();
        let raw_table = tables::append(
            raw_table,
            vec![raw_batch],
            tables::commit_properties(&lineage, APP_ID, 0),
        )
        .await?;
        let raw_version = raw_table.version().unwrap_or(0);
        tracing::debug!(elapsed = ?raw_started.elapsed(), "FHIR raw commit");
        report.raw_version = Some(raw_version);

        let lineage = Lineage {
            raw_versions: [(RAW_TABLE.to_string(), raw_version)].into(),
            targets: Vec::new(),
            ..lineage
        };
        let started = std::time::Instant::now();
        let mut commits = Vec::new();
        for (type_name, rows, batch) in encoded
            .await
            .map_err(|e| StoreError::Config(format!("encoding canonical rows: {e}")))?
        {
            let batch = batch.map_err(|e| StoreError::Config(format!("{type_name}: {e}")))?;
            let ot = model
                .object_type(type_name)
                .expect("mapped types are in the model");
            let path = tables::table_location(
                &data_dir,
                Layer::Canonical,
                &tables::part_name(&ot.table, WRITER),
            )?;
            let props = tables::commit_properties(&lineage, APP_ID, raw_version as i64);
            let merge = touched_existing.get(type_name).copied().unwrap_or(false);
            report.canonical_rows.insert(ot.table.clone(), rows as u64);
            // Each part is its own Delta table: their commits can run together.
            commits.push(async move {
                let table = tables::open_or_create(&path, plain_schema(ot)).await?;
                if merge {
                    tables::upsert(table, batch, &ot.primary_key_property().column, props).await
                } else {
                    tables::append(table, vec![batch], props).await
                }
            });
        }
        futures::future::try_join_all(commits).await?;
        tracing::debug!(elapsed = ?started.elapsed(), "FHIR canonical parts committed");
        Ok(Committed {
            raw: Some(raw_table),
            outcomes,
            report,
        })
    }
}

/// Arrow batches of canonical rows, one per object type, encoded in parallel.
fn encode_canonical(
    model: &'static Model,
    tables: Vec<(&'static str, Vec<Map<String, Value>>)>,
) -> Vec<(&'static str, usize, Result<RecordBatch, String>)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = tables
            .into_iter()
            .map(|(t, rows)| {
                s.spawn(move || {
                    let ot = model.object_type(t).expect("mapped types are in the model");
                    let batch = fdp_store::rows::batch_from_rows(&plain_schema(ot), &rows);
                    (t, rows.len(), batch)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("encoding does not panic"))
            .collect()
    })
}

/// A string column as plain UTF-8, whichever string layout the reader chose.
fn utf8(a: &ArrayRef) -> Result<ArrayRef, StoreError> {
    fdp_store::arrow::compute::cast(a, &DataType::Utf8)
        .map_err(|e| StoreError::Config(format!("reading raw.fhir_resource: {e}")))
}

/// Rows of one object type, and where each resource id's row is, so that a
/// later version of a resource in the same load replaces the earlier one.
type KeyedRows = (Vec<Map<String, Value>>, HashMap<String, usize>);

/// A DataFusion session over one table registered as `t`.
async fn datafusion_session(
    table: &DeltaTable,
) -> Result<datafusion::prelude::SessionContext, StoreError> {
    let ctx = datafusion::prelude::SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("t", table.table_provider().await?)?;
    Ok(ctx)
}

fn plain_schema(ot: &fdp_model::ObjectType) -> SchemaRef {
    let s = ot.arrow_schema();
    Arc::new(Schema::new(
        s.fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(Default::default()))
            .collect::<Vec<_>>(),
    ))
}

/// Validate, serialise, hash and map every resource, spread over the cores.
fn prepare_all(incoming: Vec<Incoming>, model: &Model, held: &Held) -> Vec<Prepared> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if incoming.len() < 256 || threads == 1 {
        return incoming
            .into_iter()
            .map(|i| prepare(i, model, held))
            .collect();
    }
    let chunk = incoming.len().div_ceil(threads);
    let mut chunks: Vec<Vec<Incoming>> = Vec::new();
    let mut it = incoming.into_iter();
    loop {
        let c: Vec<Incoming> = it.by_ref().take(chunk).collect();
        if c.is_empty() {
            break;
        }
        chunks.push(c);
    }
    let work = || {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|c| {
                    s.spawn(move || {
                        c.into_iter()
                            .map(|i| prepare(i, model, held))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("preparing FHIR resources does not panic"))
                .collect()
        })
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// What the source already holds, for telling unchanged resources early.
struct Held<'a> {
    index: &'a HashMap<(String, String), Current>,
    seen: &'a std::collections::HashSet<[u8; 32]>,
}

fn prepare(mut i: Incoming, model: &Model, held: &Held) -> Prepared {
    if i.resource.is_null() {
        if let Some(text) = &i.text {
            match serde_json::from_str::<Value>(text) {
                Ok(v) => i.resource = v,
                Err(e) => {
                    return Prepared::Bad {
                        resource_type: None,
                        id: None,
                        payload: i.text.unwrap_or_default(),
                        outcome: OperationOutcome::single(Issue {
                            severity: fdp_fhir::Severity::Error,
                            code: IssueCode::Structure,
                            expression: None,
                            diagnostics: format!("not JSON: {e}"),
                        }),
                        source: i.source,
                        location: i.location,
                    }
                }
            }
        }
    }
    let resource_type = i
        .resource
        .get("resourceType")
        .and_then(Value::as_str)
        .map(str::to_string);
    let payload = match i.text {
        Some(t) => t,
        None => serde_json::to_string(&i.resource).expect("JSON values serialise"),
    };
    let id =
        i.id.or_else(|| {
            i.resource
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(new_id);
    let sha = sha256(payload.as_bytes());
    if let Some(rt) = &resource_type {
        let key = (rt.clone(), id.clone());
        if let Some(c) = held.index.get(&key) {
            if c.sha == sha
                || (i.same_as_any_version && held.seen.contains(&identity(rt, &id, &sha)))
            {
                return Prepared::Unchanged {
                    resource_type: key.0,
                    id: key.1,
                    version: c.version,
                };
            }
        }
    }
    let mut issues: Vec<Issue> = fdp_fhir::validate::validate(&i.resource)
        .into_iter()
        .filter(Issue::is_error)
        .collect();
    // Who proposed a change and who signed it off is what makes it valid:
    // only the product's actions, which take both from the signed-in
    // principal, may write one.
    if fdp_fhir::change_request::is_change_request(&i.resource)
        && i.source != fdp_fhir::change_request::SOURCE
    {
        issues.push(Issue::error(
            IssueCode::Forbidden,
            "Task",
            fdp_fhir::change_request::WRITTEN_ONLY_BY_ACTIONS,
        ));
    }
    if fdp_fhir::booking_request::is_booking_request(&i.resource)
        && i.source != fdp_fhir::booking_request::SOURCE
    {
        issues.push(Issue::error(
            IssueCode::Forbidden,
            "Task",
            fdp_fhir::booking_request::WRITTEN_ONLY_BY_ACTIONS,
        ));
    }
    if !issues.is_empty() {
        return Prepared::Bad {
            resource_type,
            id: Some(id),
            payload,
            outcome: OperationOutcome::new(issues),
            source: i.source,
            location: i.location,
        };
    }
    let rt = resource_type.clone().unwrap_or_default();
    let rows = fdp_fhir::map_resource(&i.resource, &id).map(|m| m.rows);
    if let Some(rows) = &rows {
        for (t, r) in rows {
            let ot = model.object_type(t).expect("mapped types are in the model");
            if let Err(e) = ot.validate_record(r) {
                issues.push(Issue::error(
                    IssueCode::BusinessRule,
                    rt.clone(),
                    format!("does not fit the canonical {t}: {e}"),
                ));
            }
        }
    }
    if !issues.is_empty() {
        return Prepared::Bad {
            resource_type,
            id: Some(id),
            payload,
            outcome: OperationOutcome::new(issues),
            source: i.source,
            location: i.location,
        };
    }
    Prepared::Good {
        resource_type: rt,
        id,
        payload,
        sha,
        rows,
        source: i.source,
        location: i.location,
        same_as_any_version: i.same_as_any_version,
    }
}

/// A new logical id: a random UUID.
pub fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A resource's identity and content in one digest.
fn identity(resource_type: &str, id: &str, sha: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(resource_type.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    h.update([0]);
    h.update(sha);
    h.finalize().into()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex, as content hashes are written in the raw tables.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str, out: &mut [u8; 32]) {
    let val = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    };
    for (i, pair) in s.as_bytes().chunks(2).take(32).enumerate() {
        if pair.len() == 2 {
            out[i] = (val(pair[0]) << 4) | val(pair[1]);
        }
    }
}

/// Column builders for `raw.fhir_resource`.
struct RawRows {
    len: usize,
    run_id: StringBuilder,
    received_at: TimestampMicrosecondBuilder,
    source: StringBuilder,
    location: StringBuilder,
    resource_type: StringBuilder,
    resource_id: StringBuilder,
    version_id: Int64Builder,
    sha: StringBuilder,
    status: StringBuilder,
    reason: StringBuilder,
    payload: StringBuilder,
}

impl Default for RawRows {
    fn default() -> Self {
        RawRows {
            len: 0,
            run_id: StringBuilder::new(),
            received_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            source: StringBuilder::new(),
            location: StringBuilder::new(),
            resource_type: StringBuilder::new(),
            resource_id: StringBuilder::new(),
            version_id: Int64Builder::new(),
            sha: StringBuilder::new(),
            status: StringBuilder::new(),
            reason: StringBuilder::new(),
            payload: StringBuilder::new(),
        }
    }
}

impl RawRows {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        run_id: &str,
        received_at_us: i64,
        source: &str,
        location: &str,
        resource_type: Option<&str>,
        id: Option<&str>,
        version: Option<i64>,
        sha: &[u8; 32],
        status: &str,
        reason: Option<&str>,
        payload: &str,
    ) {
        self.len += 1;
        self.run_id.append_value(run_id);
        self.received_at.append_value(received_at_us);
        self.source.append_value(source);
        self.location.append_value(location);
        self.resource_type.append_option(resource_type);
        self.resource_id.append_option(id);
        self.version_id.append_option(version);
        self.sha.append_value(hex(sha));
        self.status.append_value(status);
        self.reason.append_option(reason);
        self.payload.append_value(payload);
    }

    fn finish(mut self) -> Result<RecordBatch, fdp_store::arrow::error::ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.run_id.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.location.finish()),
            Arc::new(self.resource_type.finish()),
            Arc::new(self.resource_id.finish()),
            Arc::new(self.version_id.finish()),
            Arc::new(self.sha.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.payload.finish()),
        ];
        RecordBatch::try_new(raw_schema(), columns)
    }
}

/// NDJSON by its extension, as the Bulk Data convention names files.
pub fn is_ndjson(path: &Path) -> bool {
    path.extension()
        .is_some_and(|x| x == "ndjson" || x == "jsonl")
}

/// One NDJSON line to load; it is parsed on every core in [`FhirSource::load`].
pub fn ndjson_line(line: &str, source: &str, line_number: usize) -> Incoming {
    Incoming {
        resource: Value::Null,
        id: None,
        text: Some(line.to_string()),
        source: source.to_string(),
        location: format!("{source} line {line_number}"),
        same_as_any_version: true,
    }
}

/// Resources read from files: NDJSON (one resource per line) or JSON (a
/// resource or a Bundle), with `urn:uuid` references resolved across every
/// Bundle given, as a FHIR export's Bundles refer to each other.
pub struct FileBatch {
    pub incoming: Vec<Incoming>,
    pub unreadable: Vec<Unreadable>,
    /// References to nothing in the files given, with where they are.
    pub unresolved: Vec<(String, String)>,
}

/// Read FHIR files. Transactions are all-or-nothing: one bad entry refuses
/// the whole Bundle, each entry kept in quarantine with the bad one named.
pub fn read_files(paths: &[PathBuf]) -> std::io::Result<FileBatch> {
    let mut incoming = Vec::new();
    let mut unreadable = Vec::new();
    let mut unresolved = Vec::new();
    let mut bundles: Vec<(
        String,
        Vec<fdp_fhir::bundle::Entry>,
        fdp_fhir::bundle::BundleKind,
    )> = Vec::new();
    let mut urls: HashMap<String, String> = HashMap::new();
    for path in paths {
        let name = path.display().to_string();
        let bytes = std::fs::read(path)?;
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                unreadable.push(Unreadable {
                    text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    source: name.clone(),
                    location: name.clone(),
                    reason: format!(
                        "not UTF-8 (byte {}); FHIR JSON must be UTF-8",
                        e.utf8_error().valid_up_to()
                    ),
                });
                continue;
            }
        };
        if is_ndjson(path) {
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                incoming.push(ndjson_line(line, &name, n + 1));
            }
            continue;
        }
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                unreadable.push(Unreadable {
                    text,
                    source: name.clone(),
                    location: format!("{name} line {} column {}", e.line(), e.column()),
                    reason: format!("not JSON: {e}"),
                });
                continue;
            }
        };
        if v.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            match fdp_fhir::bundle::unpack(&v) {
                Ok((kind, mut entries)) => {
                    urls.extend(fdp_fhir::bundle::assign_ids(&mut entries, new_id));
                    bundles.push((name, entries, kind));
                }
                Err(issue) => unreadable.push(Unreadable {
                    text,
                    source: name.clone(),
                    location: name.clone(),
                    reason: issue.one_line(),
                }),
            }
        } else {
            incoming.push(Incoming {
                resource: v,
                id: None,
                text: Some(text),
                source: name.clone(),
                location: name,
                same_as_any_version: true,
            });
        }
    }
    for (name, entries, kind) in bundles {
        let mut resolved = Vec::new();
        for mut e in entries {
            let Some(mut r) = e.resource.take() else {
                continue;
            };
            unresolved.extend(
                fdp_fhir::bundle::resolve_references(&mut r, &urls)
                    .into_iter()
                    .map(|(p, r)| (format!("{name} {}: {p}", e.path()), r)),
            );
            let location = format!("{name} {}", e.path());
            resolved.push(Incoming {
                resource: r,
                id: e.target.map(|t| t.1),
                text: None,
                source: name.clone(),
                location,
                same_as_any_version: true,
            });
        }
        if kind == fdp_fhir::bundle::BundleKind::Transaction {
            // All or nothing: check every entry first.
            let bad: Vec<String> = resolved
                .iter()
                .filter_map(|i| {
                    let errs: Vec<_> = fdp_fhir::validate::validate(&i.resource)
                        .into_iter()
                        .filter(Issue::is_error)
                        .collect();
                    (!errs.is_empty()).then(|| {
                        format!("{}: {}", i.location, OperationOutcome::new(errs).summary())
                    })
                })
                .collect();
            if !bad.is_empty() {
                for i in resolved {
                    unreadable.push(Unreadable {
                        text: serde_json::to_string(&i.resource).unwrap_or_default(),
                        source: i.source,
                        location: i.location,
                        reason: format!("transaction refused as a whole: {}", bad.join("; ")),
                    });
                }
                continue;
            }
        }
        incoming.extend(resolved);
    }
    Ok(FileBatch {
        incoming,
        unreadable,
        unresolved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdp_fhir::change_request::{removal_reason, ChangeKind, ChangeProposal, SOURCE};

    fn incoming(resource: Value, source: &str) -> Incoming {
        Incoming {
            resource,
            id: Some("chg-1".into()),
            text: None,
            source: source.into(),
            location: "test".into(),
            same_as_any_version: false,
        }
    }

    /// A waiting-list change names who proposed it and who signed it off;
    /// from anywhere but the product's actions it is quarantined, never
    /// mapped to the tables the PTL reads.
    #[tokio::test]
    async fn a_change_request_is_taken_only_from_the_waiting_lists_actions() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = FhirSource::open(dir.path()).await.unwrap();
        let task = ChangeProposal {
            id: "chg-1".into(),
            eal_id: "EAL1".into(),
            patient_id: "P1".into(),
            kind: ChangeKind::Remove(removal_reason("deceased").unwrap()),
            old_value: "on the list".into(),
            evidence: "x".into(),
            rule: None,
            comments: None,
            requested_by: "someone".into(),
            at: chrono::Utc::now(),
        }
        .to_task();
        for from in ["rest", "import", "federation:RYY"] {
            let (outcomes, _) = source
                .load("run-1", vec![incoming(task.clone(), from)], Vec::new())
                .await
                .unwrap();
            match &outcomes[0] {
                Outcome::Rejected(oo) => {
                    assert!(
                        oo.summary().contains("waiting list's actions"),
                        "{}",
                        oo.summary()
                    )
                }
                other => panic!("taken from {from}: {other:?}"),
            }
        }
        let (outcomes, _) = source
            .load("run-2", vec![incoming(task, SOURCE)], Vec::new())
            .await
            .unwrap();
        assert!(
            matches!(&outcomes[0], Outcome::Stored { mapped: true, .. }),
            "{:?}",
            outcomes[0]
        );
    }

    /// A theatre booking request names who accepted it: from anywhere but
    /// the theatre planner's action it is quarantined, and the waiting
    /// list's own source may not write one either.
    #[tokio::test]
    async fn a_booking_request_is_taken_only_from_the_theatre_planners_action() {
        use fdp_fhir::booking_request::{BookingRequest, SOURCE as PLANNER};
        let dir = tempfile::tempdir().unwrap();
        let mut source = FhirSource::open(dir.path()).await.unwrap();
        let task = BookingRequest {
            id: "chg-1".into(),
            eal_id: "EAL1".into(),
            patient_id: "P1".into(),
            session_id: "S1".into(),
            date: chrono::NaiveDate::from_ymd_opt(2026, 12, 21).unwrap(),
            am_pm: "AM".into(),
            theatre: "Main Theatre 1".into(),
            consultant: "C1".into(),
            minutes: 60,
            session_minutes: 240,
            reason: "P4".into(),
            team: "Theatre booking team".into(),
            requested_by: "someone".into(),
            at: chrono::Utc::now(),
        }
        .to_task();
        for from in ["rest", "import", "federation:RYY", SOURCE] {
            let (outcomes, _) = source
                .load("run-1", vec![incoming(task.clone(), from)], Vec::new())
                .await
                .unwrap();
            match &outcomes[0] {
                Outcome::Rejected(oo) => {
                    assert!(oo.summary().contains("theatre planner"), "{}", oo.summary())
                }
                other => panic!("taken from {from}: {other:?}"),
            }
        }
        let (outcomes, _) = source
            .load("run-2", vec![incoming(task, PLANNER)], Vec::new())
            .await
            .unwrap();
        assert!(
            matches!(&outcomes[0], Outcome::Stored { mapped: true, .. }),
            "{:?}",
            outcomes[0]
        );
    }
}
