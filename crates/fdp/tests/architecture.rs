//! There is no way to read a table except through a governed session.
//!
//! The store hands out readable tables only against a `TableAccess`, which
//! only fdp-govern can make. This test keeps it so: it fails if another
//! crate gains a direct path to the rows (a Delta table provider, a
//! DataFusion session of its own over the store's files, Parquet read
//! straight from the data directory), or if the capability becomes
//! something other crates could make.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Ways to reach rows without a governed session.
const DIRECT_PATHS: &[&str] = &[
    "table_provider(",
    "update_datafusion_session",
    "DeltaTableProvider",
    "SessionContext",
    "read_parquet",
    "register_parquet",
    "ListingTable",
    "ParquetRecordBatchReader",
    "ParquetRecordBatchStreamBuilder",
];

/// The only exceptions outside fdp-store and fdp-govern: writers re-reading
/// the raw records they wrote, to recognise a record sent twice; and the
/// benchmarks' ungoverned baselines.
const ALLOWED: &[(&str, &str)] = &[
    ("fdp-ingest/src/lib.rs", "writer_read"),
    ("fdp-ingest/src/fhir.rs", "datafusion_session"),
    ("fdp-ingest/src/extract/mod.rs", "already_loaded"),
    // The governance benchmark's baseline: the same query with no policy,
    // over the table the benchmark generated in its own directory.
    ("fdp/src/bench_governed.rs", "ungoverned_baseline"),
    // The uptake benchmark's judge: the planted truth joined to the files
    // of the ICB the benchmark made in its own directory, so each group's
    // expected uptake is known without the product seeing the truth.
    ("fdp/src/bench_population.rs", "truth_context"),
    ("fdp/src/bench_population.rs", "expected_uptake"),
    ("fdp/src/bench_population.rs", "planted_labels"),
    // The benchmarks' DuckDB peers (elective, cohort, distributed): views
    // over the files of the tables each generated in its own directory.
    ("fdp/src/bench.rs", "duckdb_peer_prelude"),
];

#[test]
fn only_governed_sessions_read_tables() {
    let crates = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("..");
    let mut files = Vec::new();
    for c in std::fs::read_dir(&crates).unwrap() {
        let c = c.unwrap().path();
        let name = c.file_name().unwrap().to_string_lossy().into_owned();
        if name == "fdp-store" || name == "fdp-govern" {
            continue;
        }
        if c.join("src").is_dir() {
            sources(&c.join("src"), &mut files);
        }
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut offences = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(&crates)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(f).unwrap();
        // Which function each line is in, to match the allowed exceptions.
        let mut current_fn = String::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if let Some(rest) = t
                .strip_prefix("pub(crate) async fn ")
                .or_else(|| t.strip_prefix("pub async fn "))
                .or_else(|| t.strip_prefix("async fn "))
                .or_else(|| t.strip_prefix("pub fn "))
                .or_else(|| t.strip_prefix("fn "))
                .or_else(|| t.strip_prefix("pub(crate) fn "))
            {
                current_fn = rest.split(['(', '<']).next().unwrap_or("").to_string();
            }
            if t.starts_with("//") {
                continue;
            }
            for p in DIRECT_PATHS {
                if line.contains(p)
                    && !ALLOWED
                        .iter()
                        .any(|(file, func)| rel.ends_with(file) && current_fn == *func)
                {
                    offences.push(format!("{rel}:{} ({current_fn}): {p}", i + 1));
                }
            }
            if line.contains("derivation_session(") && !rel.ends_with("fdp-reference/src/areas.rs")
            {
                offences.push(format!(
                    "{rel}:{}: derivation_session is for the patient-area derivation alone",
                    i + 1
                ));
            }
            if line.contains("instance_session(")
                && !(rel.ends_with("fdp-ingest/src/runs.rs")
                    || rel.ends_with("fdp-ingest/src/quarantine.rs"))
            {
                offences.push(format!(
                    "{rel}:{}: instance_session is for the instance's own bookkeeping (runs, quarantine)",
                    i + 1
                ));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "direct paths to the tables outside a governed session:\n  {}",
        offences.join("\n  ")
    );
}

#[test]
fn only_the_governance_crate_can_make_table_access() {
    let govern = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../fdp-govern/src/access.rs");
    let text = std::fs::read_to_string(govern).unwrap();
    let def = text
        .split("pub struct TableAccess")
        .nth(1)
        .expect("TableAccess is defined in access.rs");
    let body = def.split('}').next().unwrap();
    assert!(
        body.contains("_sealed: ()") && !body.contains("pub _sealed"),
        "TableAccess must keep a private field: {body}"
    );
    let before = text.split("pub struct TableAccess").next().unwrap();
    let derive = before
        .lines()
        .rev()
        .take(3)
        .filter(|l| l.trim_start().starts_with("#["))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !derive.contains("Clone") && !derive.contains("Default"),
        "TableAccess must not be Clone or Default: {derive}"
    );
    assert!(
        !text.contains("pub fn new() -> TableAccess")
            && text.contains("pub(crate) fn new() -> TableAccess"),
        "only fdp-govern may construct TableAccess"
    );
    // The store's readable tables all ask for it.
    let store = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../fdp-store/src");
    let mut files = Vec::new();
    sources(&store, &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.contains("table_provider(") {
                let name = f.file_name().unwrap().to_string_lossy();
                assert!(
                    name == "query.rs" || name == "lib.rs",
                    "{}:{}: a table provider outside the TableSource implementation",
                    f.display(),
                    i + 1
                );
            }
            if line.contains("pub async fn read_raw") || line.contains("pub fn read_raw") {
                panic!(
                    "{}:{}: read_raw must stay private to the store",
                    f.display(),
                    i + 1
                );
            }
        }
    }
}

/// Products reach data only through governance: the products crate
/// depends on no store, query engine or file format, and names none, so
/// the only rows a product can see are those a governed session or a
/// governed product view gives it.
#[test]
fn products_reach_data_only_through_governance() {
    let products = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../fdp-products");
    let manifest = std::fs::read_to_string(products.join("Cargo.toml")).unwrap();
    let dependencies: Vec<&str> = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] table")
        .split("\n[")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split(['.', '=', ' ']).next())
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .collect();
    const STORAGE: &[&str] = &[
        "fdp-store",
        "datafusion",
        "deltalake",
        "parquet",
        "arrow",
        "object_store",
    ];
    for d in &dependencies {
        assert!(
            !STORAGE.contains(d),
            "fdp-products depends on {d}: a product reads through fdp-govern only"
        );
    }
    assert!(dependencies.contains(&"fdp-govern"), "{dependencies:?}");
    let mut files = Vec::new();
    sources(&products.join("src"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            for name in ["fdp_store", "datafusion", "deltalake", "parquet"] {
                assert!(
                    !line.contains(name),
                    "{}:{}: {name} in a product",
                    f.display(),
                    i + 1
                );
            }
        }
    }
}

/// The server's modules form no cycle: each page, API or facade module may
/// use the UI kit (`ui`), the pieces it is built on and the modules before
/// it, and nothing that uses it back, so any one can be read, moved or
/// replaced alone. A module's own submodules (`fhir/import.rs`) count as
/// that module.
#[test]
fn no_module_cycle_in_the_server() {
    let src = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../fdp-server/src");
    let mut uses: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            sources(&path, &mut files);
        } else {
            files.push(path.clone());
        }
        let deps = uses.entry(name.clone()).or_default();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            // A module's tests may reach anywhere.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    let group = group.split('}').next().unwrap_or("");
                    deps.extend(
                        group
                            .split(',')
                            .map(|item| item.trim().split("::").next().unwrap_or("").to_string()),
                    );
                } else {
                    let ident: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    deps.insert(ident);
                }
            }
        }
        deps.remove(&name);
    }
    let modules: std::collections::BTreeSet<String> = uses.keys().cloned().collect();
    for deps in uses.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    assert!(
        uses.len() > 15 && uses["routes"].len() > 10,
        "the module graph was not read: {uses:?}"
    );
    // Depth-first, keeping the path: a module met again on it is a cycle.
    fn visit(
        m: &str,
        uses: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in &uses[m] {
            if let Some(c) = visit(d, uses, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = Default::default();
    for m in uses.keys() {
        if let Some(cycle) = visit(m, &uses, &mut Vec::new(), &mut done) {
            panic!(
                "a module cycle in fdp-server: {} (move what both need into a module both use, such as the UI kit `ui`)",
                cycle.join(" → ")
            );
        }
    }
}

/// The server holds no product logic: it routes requests to products and
/// renders what they answer. It never reads the live census (a product
/// reads it through a governed snapshot), never records a staff action
/// except as the platform's recorder, never matches patients to places
/// itself, and never decides row by row or field by field what a policy
/// lets be seen (a product does, through its `ProductView`).
#[test]
fn the_server_holds_no_product_logic() {
    const PRODUCT_LOGIC: &[&str] = &[
        "live.read()",
        "adt::census",
        "record_action",
        "StaffAction",
        "places_for",
        "kinds_for_pathway",
        "RowFacts",
        ".admits(",
    ];
    /// The platform's recorder: where a product's change is committed.
    const RECORDER: (&str, &[&str]) = ("products.rs", &["record_action", "StaffAction"]);
    let src = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../fdp-server/src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    for f in &files {
        let name = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for pattern in PRODUCT_LOGIC {
                assert!(
                    !code.contains(pattern)
                        || (name == RECORDER.0 && RECORDER.1.contains(pattern)),
                    "fdp-server/src/{name}:{}: `{pattern}` is product logic: put it in a product (fdp-products) and call it through the platform",
                    i + 1
                );
            }
        }
    }
}
