//! Quarantine across every source: what was received, kept, and not used,
//! with where it came from, where in it the problem is, the rule it broke
//! and its raw content; and putting records through again once the cause
//! is fixed.
//!
//! Each source keeps its refused records in its own raw table
//! (`raw.hl7v2_message`, `raw.fhir_resource`, `raw.extract_rejected`); this
//! module reads them as one list with stable ids:
//!
//! * `hl7v2:<seq>`: an HL7 v2 message, by its sequence number;
//! * `fhir:<sha>`: a FHIR resource, by the first 16 hex digits of its content hash;
//! * `csv:<sha>:<mapping>:<line>`: a line of an extract, by file content, mapping and line.
//!
//! A retry is recorded in `raw.quarantine_resolution`; an entry put through
//! successfully leaves the list but stays in its raw table, so nothing is
//! ever lost. A FHIR resource also leaves the list once a later version of
//! the same resource is accepted (the sender corrected it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use fdp_govern::{Governance, GovernedSession};
use fdp_store::arrow::array::{ArrayRef, StringArray, TimestampMicrosecondBuilder};
use fdp_store::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use fdp_store::tables::{self, Layer, Lineage};
use fdp_store::{RecordBatch, StoreError};

use crate::extract::{self, Mapping};
use crate::fhir::FhirSource;

/// Where a retry is recorded.
pub const RESOLUTION_TABLE: &str = "quarantine_resolution";

/// One record in quarantine.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Entry {
    pub id: String,
    /// `hl7v2`, `fhir` or `csv`.
    pub kind: String,
    pub received_at: String,
    /// The file, connection or API it came from.
    pub source: String,
    /// Where in it: line, Bundle entry, segment and field.
    pub position: String,
    /// The rule it broke.
    pub reason: String,
    /// What it is: message type, resource type, mapping.
    pub what: String,
    /// As received.
    pub raw: String,
}

/// Rows of `table` as text, NULL as empty: what the list shows.
async fn query(
    ctx: &GovernedSession,
    table: &str,
    sql: &str,
) -> Result<Vec<Vec<String>>, StoreError> {
    Ok(ctx
        .text_rows(table, sql)
        .await?
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
        .collect())
}

/// Ids put through successfully by a retry.
async fn resolved(ctx: &GovernedSession) -> Result<HashSet<String>, StoreError> {
    Ok(query(
        ctx,
        "raw.quarantine_resolution",
        "SELECT entry_id FROM raw.quarantine_resolution WHERE outcome = 'accepted'",
    )
    .await?
    .into_iter()
    .map(|r| r[0].clone())
    .collect())
}

/// Everything in quarantine now, newest first.
pub async fn list(gov: &Governance, data_dir: &Path) -> Result<Vec<Entry>, StoreError> {
    let ctx = gov
        .instance_session(&fdp_store::StoredTables::new(data_dir), "quarantine")
        .await?;
    list_in(&ctx).await
}

async fn list_in(ctx: &GovernedSession) -> Result<Vec<Entry>, StoreError> {
    let done = resolved(ctx).await?;
    let mut out = Vec::new();
    for r in query(
        ctx,
        "raw.hl7v2_message",
        "SELECT seq, CAST(received_at AS VARCHAR) AS received, source, message_type, control_id, reason, location, payload \
         FROM raw.hl7v2_message WHERE status = 'quarantined'",
    )
    .await?
    {
        out.push(Entry {
            id: format!("hl7v2:{}", r[0]),
            kind: "hl7v2".into(),
            received_at: r[1].clone(),
            source: r[2].clone(),
            position: r[6].clone(),
            reason: r[5].clone(),
            what: if r[3].is_empty() {
                "unreadable message".into()
            } else {
                format!("{} (control id {})", r[3], r[4])
            },
            raw: r[7].replace('\r', "\n"),
        });
    }
    // The latest refusal of each content, unless the resource was accepted since.
    let mut fhir: BTreeMap<String, Entry> = BTreeMap::new();
    for r in query(
        ctx,
        "raw.fhir_resource",
        "SELECT q.content_sha256, CAST(q.received_at AS VARCHAR) AS received, q.source, q.location, q.reason, \
                q.resource_type, q.resource_id, q.payload \
         FROM raw.fhir_resource q WHERE q.status = 'quarantined' AND NOT EXISTS ( \
           SELECT 1 FROM raw.fhir_resource a WHERE a.status IN ('accepted', 'not_mapped') \
           AND a.resource_type = q.resource_type AND a.resource_id = q.resource_id \
           AND a.received_at > q.received_at) \
         ORDER BY received",
    )
    .await?
    {
        let id = format!("fhir:{}", &r[0][..16.min(r[0].len())]);
        let what = match (r[5].as_str(), r[6].as_str()) {
            ("", _) => "unreadable resource".to_string(),
            (rt, "") => rt.to_string(),
            (rt, rid) => format!("{rt}/{rid}"),
        };
        fhir.insert(
            id.clone(),
            Entry {
                id,
                kind: "fhir".into(),
                received_at: r[1].clone(),
                source: r[2].clone(),
                position: r[3].clone(),
                reason: r[4].clone(),
                what,
                raw: r[7].clone(),
            },
        );
    }
    out.extend(fhir.into_values());
    let mut csv: BTreeMap<String, Entry> = BTreeMap::new();
    for r in query(
        ctx,
        "raw.extract_rejected",
        "SELECT content_sha256, mapping, line, file, CAST(rejected_at AS VARCHAR) AS rejected, reason, raw \
         FROM raw.extract_rejected ORDER BY rejected_at",
    )
    .await?
    {
        let id = format!("csv:{}:{}:{}", &r[0][..16.min(r[0].len())], r[1], r[2]);
        let previous_raw = csv.get(&id).map(|e| e.raw.clone()).unwrap_or_default();
        csv.insert(
            id.clone(),
            Entry {
                id,
                kind: "csv".into(),
                received_at: r[4].clone(),
                source: r[3].clone(),
                position: format!("line {}", r[2]),
                reason: r[5].clone(),
                what: format!("mapping {}", r[1]),
                // A retry refused again keeps the line as first received.
                raw: if r[6].is_empty() { previous_raw } else { r[6].clone() },
            },
        );
    }
    out.extend(csv.into_values());
    out.retain(|e| !done.contains(&e.id));
    out.sort_by(|a, b| b.received_at.cmp(&a.received_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// One entry by id.
pub async fn show(
    gov: &Governance,
    data_dir: &Path,
    id: &str,
) -> Result<Option<Entry>, StoreError> {
    Ok(list(gov, data_dir).await?.into_iter().find(|e| e.id == id))
}

/// What a retry did to one entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Retried {
    pub id: String,
    pub accepted: bool,
    /// Why it is still refused, or where it went.
    pub detail: String,
}

fn resolution_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("entry_id", DataType::Utf8, false),
        Field::new("resolved_at", ts, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
    ]))
}

async fn record(data_dir: &Path, run_id: &str, results: &[Retried]) -> Result<(), StoreError> {
    if results.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp_micros();
    let mut at = TimestampMicrosecondBuilder::with_capacity(results.len()).with_timezone("UTC");
    results.iter().for_each(|_| at.append_value(now));
    let col = |f: &dyn Fn(&Retried) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(results.iter().map(f)))
    };
    let batch = RecordBatch::try_new(
        resolution_schema(),
        vec![
            col(&|r| r.id.clone()),
            Arc::new(at.finish()),
            col(&|_| run_id.to_string()),
            col(&|r| {
                if r.accepted {
                    "accepted"
                } else {
                    "refused again"
                }
                .to_string()
            }),
            col(&|r| r.detail.clone()),
        ],
    )
    .map_err(|e| StoreError::Config(e.to_string()))?;
    let path = tables::table_location(data_dir, Layer::Raw, RESOLUTION_TABLE)?;
    let table = tables::open_or_create(&path, resolution_schema()).await?;
    let lineage = Lineage {
        transform: "quarantine:retry".into(),
        run: Some(run_id.to_string()),
        ..Lineage::default()
    };
    tables::append(
        table,
        vec![batch],
        tables::commit_properties(&lineage, "openfdp-quarantine", 0),
    )
    .await?;
    Ok(())
}

/// Put entries through again: extract lines with the current version of
/// their mapping (from `mappings`), FHIR resources through today's
/// validation. Lines and resources already accepted are not touched, and
/// extract rows replace by key, so nothing is duplicated. HL7 v2 messages
/// are not retried here: the feed refused them with a negative ACK, and the
/// sending system re-sends the corrected message.
pub async fn retry(
    gov: &Governance,
    data_dir: &Path,
    ids: &[String],
    mappings: &[Mapping],
) -> Result<Vec<Retried>, StoreError> {
    let ctx = gov
        .instance_session(&fdp_store::StoredTables::new(data_dir), "quarantine")
        .await?;
    let entries = list_in(&ctx).await?;
    let by_id: HashMap<&str, &Entry> = entries.iter().map(|e| (e.id.as_str(), e)).collect();
    let run_id = format!("retry-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    let mut results = Vec::new();
    let mut fhir = Vec::new();
    // (sha prefix, mapping) -> lines
    let mut csv: BTreeMap<(String, String), Vec<(u64, String)>> = BTreeMap::new();
    for id in ids {
        let Some(e) = by_id.get(id.as_str()) else {
            results.push(Retried {
                id: id.clone(),
                accepted: false,
                detail: "not in quarantine (see `fdp quarantine list`)".into(),
            });
            continue;
        };
        match e.kind.as_str() {
            "fhir" => fhir.push(*e),
            "csv" => {
                let mut parts = id.splitn(4, ':').skip(1);
                let (sha, rest) = (parts.next().unwrap_or_default(), parts.collect::<Vec<_>>());
                // The mapping name may itself hold colons: the line is last.
                let joined = rest.join(":");
                let (mapping, line) = joined.rsplit_once(':').unwrap_or((&joined, "0"));
                csv.entry((sha.to_string(), mapping.to_string()))
                    .or_default()
                    .push((line.parse().unwrap_or(0), id.clone()));
            }
            _ => results.push(Retried {
                id: id.clone(),
                accepted: false,
                detail: "HL7 v2 messages were refused to their sender with a negative ACK: \
                         the sending system re-sends the corrected message"
                    .into(),
            }),
        }
    }
    for ((sha, mapping_name), lines) in csv {
        results.extend(
            retry_lines(
                data_dir,
                &ctx,
                &run_id,
                &sha,
                &mapping_name,
                &lines,
                mappings,
            )
            .await?,
        );
    }
    if !fhir.is_empty() {
        results.extend(retry_fhir(data_dir, &run_id, &fhir).await?);
    }
    record(data_dir, &run_id, &results).await?;
    Ok(results)
}

async fn retry_fhir(
    data_dir: &Path,
    run_id: &str,
    entries: &[&Entry],
) -> Result<Vec<Retried>, StoreError> {
    let mut source = FhirSource::open(data_dir).await?;
    let incoming = entries
        .iter()
        .map(|e| {
            let mut i = crate::fhir::ndjson_line(&e.raw, &e.source, 0);
            i.location = e.position.clone();
            i
        })
        .collect();
    let (outcomes, _) = source.load(run_id, incoming, Vec::new()).await?;
    Ok(entries
        .iter()
        .zip(outcomes)
        .map(|(e, o)| match o {
            crate::fhir::Outcome::Rejected(oo) => Retried {
                id: e.id.clone(),
                accepted: false,
                detail: oo
                    .issues
                    .iter()
                    .map(|i| i.diagnostics.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            },
            crate::fhir::Outcome::Stored {
                resource_type,
                id,
                version,
                ..
            } => Retried {
                id: e.id.clone(),
                accepted: true,
                detail: format!("stored as {resource_type}/{id} version {version}"),
            },
            crate::fhir::Outcome::Unchanged {
                resource_type, id, ..
            } => Retried {
                id: e.id.clone(),
                accepted: true,
                detail: format!("{resource_type}/{id} already holds this content"),
            },
        })
        .collect())
}

async fn retry_lines(
    data_dir: &Path,
    ctx: &GovernedSession,
    run_id: &str,
    sha_prefix: &str,
    mapping_name: &str,
    lines: &[(u64, String)],
    mappings: &[Mapping],
) -> Result<Vec<Retried>, StoreError> {
    let refuse = |why: String| -> Vec<Retried> {
        lines
            .iter()
            .map(|(_, id)| Retried {
                id: id.clone(),
                accepted: false,
                detail: why.clone(),
            })
            .collect()
    };
    let Some(mapping) = mappings.iter().find(|m| m.name == mapping_name) else {
        return Ok(refuse(format!(
            "no mapping named {mapping_name} among those given (pass --mapping with the corrected mapping)"
        )));
    };
    let files = query(
        ctx,
        "raw.extract_file",
        &format!(
            "SELECT content_sha256, raw_copy, file FROM raw.extract_file WHERE starts_with(content_sha256, '{}') LIMIT 1",
            sha_prefix.replace('\'', "")
        ),
    )
    .await?;
    let Some(f) = files.first() else {
        return Ok(refuse(
            "the file's record in raw.extract_file is missing".into(),
        ));
    };
    let (sha, copy, file) = (f[0].clone(), f[1].clone(), f[2].clone());
    let bytes = std::fs::read(&copy).map_err(|e| StoreError::io(Path::new(&copy), e))?;
    let actual = extract::sha256_hex(&bytes);
    if actual != sha {
        return Ok(refuse(format!(
            "the raw copy {copy} no longer has the content received (SHA-256 {actual}, recorded {sha})"
        )));
    }
    let report = extract::reload_lines(
        data_dir,
        mapping,
        &bytes,
        &file,
        &sha,
        run_id,
        lines.iter().map(|l| l.0).collect(),
    )
    .await?;
    Ok(lines
        .iter()
        .map(|(line, id)| match report.get(line) {
            Some(Ok(())) => Retried {
                id: id.clone(),
                accepted: true,
                detail: format!("line {line} of {file} loaded with mapping {mapping_name}"),
            },
            Some(Err(why)) => Retried {
                id: id.clone(),
                accepted: false,
                detail: why.clone(),
            },
            None => Retried {
                id: id.clone(),
                accepted: false,
                detail: format!("line {line} is not a record of the file"),
            },
        })
        .collect())
}
