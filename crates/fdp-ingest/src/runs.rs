//! Source runs and lineage, read back from the raw tables and the Delta
//! commit log: what each source sent and when, how much was accepted, and
//! which canonical tables each source feeds. This is what the sources,
//! tables and lineage pages show.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use fdp_govern::Governance;
use fdp_store::tables::{self, Layer};
use fdp_store::StoreError;
use serde::Serialize;

/// One run of a source: a file load, a bulk import, a REST call, a feed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Run {
    /// `hl7v2`, `fhir` or `csv`.
    pub kind: String,
    /// The source within the kind: a mapping, a drop folder, `REST`, `$import`.
    pub source: String,
    pub run_id: String,
    pub started: String,
    pub records_in: i64,
    pub accepted: i64,
    pub rejected: i64,
    /// Seconds the load took, where it is recorded.
    pub seconds: Option<f64>,
}

impl Run {
    pub fn per_second(&self) -> Option<f64> {
        self.seconds
            .filter(|s| *s > 0.0)
            .map(|s| self.records_in as f64 / s)
    }
}

fn int(v: &Option<String>) -> i64 {
    v.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn fhir_source(run_id: &str) -> &'static str {
    match run_id.split('-').next().unwrap_or_default() {
        "rest" => "REST API",
        "import" => "$import",
        "retry" => "quarantine retry",
        _ => "files (fdp ingest fhir)",
    }
}

/// The newest runs of every source, newest first.
pub async fn recent(
    gov: &Governance,
    data_dir: &Path,
    limit: usize,
) -> Result<Vec<Run>, StoreError> {
    let ctx = gov
        .instance_session(&fdp_store::StoredTables::new(data_dir), "runs")
        .await?;
    let mut out = Vec::new();
    for r in ctx.text_rows(
        "raw.extract_file",
        "SELECT run_id, mapping, CAST(min(loaded_at) AS VARCHAR) AS started, sum(rows_in) AS rows_in, \
         sum(accepted) AS accepted, sum(rejected) AS rejected, sum(seconds) AS seconds \
         FROM raw.extract_file GROUP BY run_id, mapping",
    )
    .await?
    {
        let run_id = r[0].clone().unwrap_or_default();
        let mapping = r[1].clone().unwrap_or_default();
        // Drop-folder runs are named `drop:<folder>:<time>`.
        let source = match run_id.strip_prefix("drop:").and_then(|r| r.split(':').next()) {
            Some(folder) => format!("{mapping} (drop folder {folder})"),
            None => mapping,
        };
        out.push(Run {
            kind: "csv".into(),
            source,
            run_id,
            started: r[2].clone().unwrap_or_default(),
            records_in: int(&r[3]),
            accepted: int(&r[4]),
            rejected: int(&r[5]),
            seconds: r[6].as_deref().and_then(|s| s.parse().ok()),
        });
    }
    for r in ctx.text_rows(
        "raw.fhir_resource",
        "SELECT run_id, CAST(min(received_at) AS VARCHAR) AS started, count(*) AS n, \
         sum(CASE WHEN status IN ('accepted', 'not_mapped', 'deleted') THEN 1 ELSE 0 END) AS accepted, \
         sum(CASE WHEN status = 'quarantined' THEN 1 ELSE 0 END) AS rejected, \
         (CAST(max(received_at) AS BIGINT) - CAST(min(received_at) AS BIGINT)) / 1000000.0 AS seconds \
         FROM raw.fhir_resource GROUP BY run_id",
    )
    .await?
    {
        let run_id = r[0].clone().unwrap_or_default();
        out.push(Run {
            kind: "fhir".into(),
            source: fhir_source(&run_id).into(),
            run_id,
            started: r[1].clone().unwrap_or_default(),
            records_in: int(&r[2]),
            accepted: int(&r[3]),
            rejected: int(&r[4]),
            // From the first commit to the last: none for a run of one commit.
            seconds: r[5].as_deref().and_then(|s| s.parse().ok()).filter(|s| *s > 0.0),
        });
    }
    // The HL7 v2 feed is continuous: a run is a connection's messages by hour.
    for r in ctx.text_rows(
        "raw.hl7v2_message",
        "SELECT source, CAST(date_trunc('hour', received_at) AS VARCHAR) AS hour, count(*) AS n, \
         sum(CASE WHEN status = 'quarantined' THEN 1 ELSE 0 END) AS rejected \
         FROM raw.hl7v2_message GROUP BY source, date_trunc('hour', received_at)",
    )
    .await?
    {
        let n = int(&r[2]);
        let rejected = int(&r[3]);
        let hour = r[1].clone().unwrap_or_default();
        out.push(Run {
            kind: "hl7v2".into(),
            source: format!("MLLP {}", r[0].clone().unwrap_or_default()),
            run_id: format!("hour from {hour}"),
            started: hour,
            records_in: n,
            accepted: n - rejected,
            rejected,
            seconds: None,
        });
    }
    out.sort_by(|a, b| b.started.cmp(&a.started));
    out.truncate(limit);
    Ok(out)
}

/// A node of the lineage picture.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Node {
    /// 0 sources, 1 raw tables, 2 canonical parts, 3 canonical tables.
    pub column: u8,
    pub name: String,
}

/// Sources through raw tables and the writers' parts to canonical tables.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lineage {
    pub nodes: Vec<Node>,
    pub edges: Vec<(usize, usize)>,
}

/// The lineage of the data directory as it stands.
pub async fn lineage(gov: &Governance, data_dir: &Path) -> Result<Lineage, StoreError> {
    let mut edges: BTreeSet<(Node, Node)> = BTreeSet::new();
    let node = |column: u8, name: &str| Node {
        column,
        name: name.to_string(),
    };
    let raw_tables = tables::list_tables(data_dir, Layer::Raw).await?;
    let ctx = gov
        .instance_session(&fdp_store::StoredTables::new(data_dir), "runs")
        .await?;
    if raw_tables.iter().any(|t| t == "hl7v2_message") {
        edges.insert((node(0, "HL7 v2 ADT (MLLP)"), node(1, "raw.hl7v2_message")));
    }
    if raw_tables.iter().any(|t| t == "fhir_resource") {
        let sources: BTreeSet<&str> = ctx
            .text_rows(
                "raw.fhir_resource",
                "SELECT DISTINCT run_id FROM raw.fhir_resource",
            )
            .await?
            .iter()
            .map(|r| fhir_source(r[0].as_deref().unwrap_or_default()))
            .collect();
        for s in sources {
            edges.insert((node(0, &format!("FHIR {s}")), node(1, "raw.fhir_resource")));
        }
    }
    let mut mappings: BTreeSet<String> = BTreeSet::new();
    for r in ctx
        .text_rows(
            "raw.extract_file",
            "SELECT DISTINCT mapping FROM raw.extract_file",
        )
        .await?
    {
        let m = r[0].clone().unwrap_or_default();
        edges.insert((
            node(0, &format!("extract: {m}")),
            node(1, "raw.extract_file"),
        ));
        mappings.insert(m);
    }
    for name in tables::list_tables(data_dir, Layer::Canonical).await? {
        match tables::split_part(&name) {
            (table, Some(writer)) => {
                let raw = if writer == "fhir" {
                    "raw.fhir_resource".to_string()
                } else if writer.starts_with("csv-") {
                    "raw.extract_file".to_string()
                } else if writer == crate::live::ARCHIVE_PART {
                    // Rows the census retired: derived from the ADT feed.
                    format!("raw.{}", crate::hl7v2::STREAM)
                } else {
                    format!("raw.{writer}")
                };
                edges.insert((node(1, &raw), node(2, &name)));
                edges.insert((node(2, &name), node(3, table)));
            }
            (table, None) => {
                // A table written whole: its last commit names its raw tables.
                let path = tables::table_location(data_dir, Layer::Canonical, &name)?;
                let mut from: Vec<String> = Vec::new();
                if let Ok(t) = tables::open(&path, None).await {
                    if let Ok(h) = tables::history(&t, 1).await {
                        if let Some(l) = h.first().and_then(|v| v.lineage.clone()) {
                            if let Ok(l) = serde_json::from_value::<tables::Lineage>(l) {
                                from = l.raw_versions.keys().map(|k| format!("raw.{k}")).collect();
                            }
                        }
                    }
                }
                for raw in from {
                    edges.insert((node(1, &raw), node(3, table)));
                }
            }
        }
    }
    let nodes: Vec<Node> = edges
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let index: BTreeMap<&Node, usize> = nodes.iter().enumerate().map(|(i, n)| (n, i)).collect();
    let edges = edges.iter().map(|(a, b)| (index[a], index[b])).collect();
    Ok(Lineage { nodes, edges })
}
