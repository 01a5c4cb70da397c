//! `cdm-gen` owns the translation of NHS England's FDP Canonical Data Model OpenAPI spec
//! into OpenFDP's model declaration, `crates/fdp-model/model/cdm.json`.
//!
//! It reads the spec, the sensitivity rules (`model/sensitivity.toml`) and the reviewed
//! primary-key list (`model/primary_keys.toml`), and writes names, types, keys, links,
//! Data Dictionary URLs and sensitivity tags. It checks the hand-written
//! `model/extensions.json` against the same rules but never writes it.
//!
//! What it must not do: copy prose from the spec into the declaration (descriptions are
//! read only to find keys and Data Dictionary URLs), or emit anything whose bytes depend
//! on more than its inputs, since `--check` compares bytes.

pub mod keys;
pub mod links;
pub mod naming;
pub mod sensitivity;
pub mod spec;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use fdp_model::{
    Model, ModelDocument, ModelError, ObjectType, Property, PropertyType, Sensitivity,
};
use thiserror::Error;

use keys::{KeyList, KeySource};
use links::Evidence;
use naming::snake_case;
use sensitivity::SensitivityRules;
use spec::{data_dictionary_url, read_spec, SpecProperty};

#[derive(Debug, Error)]
pub enum GenError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse the spec: {0}")]
    Yaml(#[source] serde_yaml::Error),
    #[error("cannot parse TOML: {0}")]
    Toml(#[source] toml::de::Error),
    #[error("cannot parse extensions.json: {0}")]
    Json(#[source] serde_json::Error),
    #[error("unexpected spec shape: {0}")]
    SpecShape(&'static str),
    #[error("sensitivity rules: {0}")]
    Rules(String),
    #[error("primary keys: {0}")]
    Keys(String),
    #[error("naming: {0}")]
    Naming(String),
    #[error("extensions.json disagrees with sensitivity.toml:\n  {}", .0.join("\n  "))]
    ExtensionTags(Vec<String>),
    #[error("generated model is inconsistent: {0}")]
    Model(#[from] ModelError),
}

/// Where the generator reads and writes.
#[derive(Debug, Clone)]
pub struct Paths {
    pub spec: PathBuf,
    pub out: PathBuf,
    pub sensitivity: PathBuf,
    pub primary_keys: PathBuf,
    pub extensions: PathBuf,
}

/// The workspace root, found from this package's location so defaults work from any
/// working directory.
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

impl Paths {
    pub fn defaults() -> Paths {
        let root = workspace_root();
        let model = root.join("crates/fdp-model/model");
        Paths {
            spec: root.join("../shared/data/fdp_cdm/canonical-data-model-openapi.yaml"),
            out: model.join("cdm.json"),
            sensitivity: model.join("sensitivity.toml"),
            primary_keys: model.join("primary_keys.toml"),
            extensions: model.join("extensions.json"),
        }
    }
}

/// The generator's inputs as text, so generation itself is a pure function.
pub struct Inputs<'a> {
    pub spec: &'a str,
    pub sensitivity: &'a str,
    pub primary_keys: &'a str,
    pub extensions: &'a str,
}

pub struct Generated {
    pub document: ModelDocument,
    pub summary: Summary,
}

impl Generated {
    pub fn json(&self) -> String {
        self.document.to_pretty_json()
    }
}

#[derive(Debug, Default)]
pub struct Summary {
    pub object_types: usize,
    pub properties: usize,
    pub links: usize,
    pub extension_types: usize,
    pub types: BTreeMap<&'static str, usize>,
    pub sensitivity: BTreeMap<&'static str, usize>,
    /// How each CDM property's tag was decided: override, name, pattern or default.
    pub decided_by: BTreeMap<&'static str, usize>,
    pub keys: BTreeMap<KeySourceLabel, Vec<String>>,
    pub links_by_evidence: BTreeMap<&'static str, usize>,
    pub links_unknown: Vec<String>,
    pub data_dictionary_types: usize,
    pub data_dictionary_properties: usize,
    pub api_names: Vec<String>,
    pub unmapped: Vec<String>,
    pub unused_rules: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeySourceLabel(KeySource);

impl fmt::Display for KeySourceLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            KeySource::Declared => "declared in the spec",
            KeySource::Named => "by <type>Id naming",
            KeySource::Listed => "from primary_keys.toml",
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |m: &BTreeMap<&'static str, usize>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "CDM: {} object types, {} properties, {} links",
            self.object_types, self.properties, self.links
        )?;
        writeln!(f, "  property types: {}", join(&self.types))?;
        writeln!(f, "  sensitivity: {}", join(&self.sensitivity))?;
        writeln!(f, "  sensitivity decided by: {}", join(&self.decided_by))?;
        for (source, types) in &self.keys {
            writeln!(f, "  primary keys {source}: {}", types.len())?;
            if source.0 != KeySource::Declared {
                writeln!(f, "    {}", types.join(", "))?;
            }
        }
        writeln!(f, "  links: {}", join(&self.links_by_evidence))?;
        if !self.links_unknown.is_empty() {
            writeln!(
                f,
                "  links without a clear foreign key: {}",
                self.links_unknown.join(", ")
            )?;
        }
        writeln!(
            f,
            "  data dictionary URLs: {} types, {} properties",
            self.data_dictionary_types, self.data_dictionary_properties
        )?;
        if !self.api_names.is_empty() {
            writeln!(
                f,
                "  API names differing from type names: {}",
                self.api_names.join(", ")
            )?;
        }
        writeln!(
            f,
            "extensions: {} object types (tags agree with sensitivity.toml)",
            self.extension_types
        )?;
        if self.unused_rules.is_empty() {
            writeln!(f, "sensitivity rules: all used")?;
        } else {
            writeln!(
                f,
                "sensitivity rules matching nothing: {}",
                self.unused_rules.join(", ")
            )?;
        }
        if self.unmapped.is_empty() {
            writeln!(f, "unmapped: none")
        } else {
            writeln!(f, "unmapped ({}):", self.unmapped.len())?;
            for u in &self.unmapped {
                writeln!(f, "  {u}")?;
            }
            Ok(())
        }
    }
}

/// OpenAPI type/format to model type; `None` means the spec uses something the model
/// cannot represent yet, which the summary reports.
pub fn map_type(p: &SpecProperty) -> Option<PropertyType> {
    let ty = p.openapi_type.as_deref()?;
    let format = p.format.as_deref();
    Some(match (ty, format) {
        ("string", None) => PropertyType::String,
        ("string", Some("date-time")) => PropertyType::Timestamp,
        ("string", Some("date")) => PropertyType::Date,
        // The API carries 64-bit integers as strings so JavaScript clients do not lose digits.
        ("string", Some("long" | "int64")) => PropertyType::Long,
        ("integer", None | Some("int32" | "integer")) => PropertyType::Integer,
        ("integer", Some("int64" | "long")) => PropertyType::Long,
        ("number", None | Some("double" | "float")) => PropertyType::Double,
        ("boolean", None) => PropertyType::Boolean,
        ("array", None) => match (p.items_type.as_deref(), p.items_format.as_deref()) {
            (Some("string"), None) => PropertyType::StringList,
            _ => return None,
        },
        _ => return None,
    })
}

pub fn generate(inputs: &Inputs<'_>) -> Result<Generated, GenError> {
    let spec = read_spec(inputs.spec)?;
    let rules = SensitivityRules::parse(inputs.sensitivity)?;
    let keys = KeyList::parse(inputs.primary_keys)?;
    let extensions: ModelDocument =
        serde_json::from_str(inputs.extensions).map_err(GenError::Json)?;

    let known: BTreeSet<&str> = spec.types.iter().map(|t| t.name.as_str()).collect();
    if let Some(unknown) = keys.objects().find(|o| !known.contains(o)) {
        return Err(GenError::Keys(format!(
            "`{unknown}` is not an object type in the spec"
        )));
    }

    let mut summary = Summary {
        unmapped: spec.unmapped.clone(),
        ..Summary::default()
    };
    let mut object_types = Vec::new();
    for t in &spec.types {
        let (pk, source) = keys.resolve(t)?;
        summary
            .keys
            .entry(KeySourceLabel(source))
            .or_default()
            .push(format!("{}.{pk}", t.name));
        let mut properties = Vec::new();
        for p in &t.properties {
            let Some(property_type) = map_type(p) else {
                summary.unmapped.push(format!(
                    "{}.{}: OpenAPI type {:?} format {:?} items {:?}",
                    t.name, p.name, p.openapi_type, p.format, p.items_type
                ));
                continue;
            };
            let (sensitivity, rule) = rules.classify(&t.name, &p.name);
            *summary.decided_by.entry(rule.kind()).or_default() += 1;
            properties.push(Property {
                name: p.name.clone(),
                column: snake_case(&p.name),
                property_type,
                nullable: p.name != pk,
                data_dictionary: data_dictionary_url(&p.description),
                sensitivity,
                allowed_values: None,
            });
        }
        // Key first: it is what people look for and what tables are ordered by.
        if let Some(i) = properties.iter().position(|p| p.name == pk) {
            let key = properties.remove(i);
            properties.insert(0, key);
        }
        check_columns(&t.name, &properties)?;
        if let Some(api) = &t.api_name {
            summary.api_names.push(format!("{} ({api})", t.name));
        }
        object_types.push(ObjectType {
            name: t.name.clone(),
            api_name: t.api_name.clone(),
            table: snake_case(&t.name),
            primary_key: pk,
            data_dictionary: data_dictionary_url(&t.description),
            extension: false,
            properties,
            links: Vec::new(),
        });
    }

    add_links(&mut object_types, &spec.links, &mut summary);

    let mut mismatches = Vec::new();
    for t in &extensions.object_types {
        for p in &t.properties {
            let (expected, _) = rules.classify(&t.name, &p.name);
            if p.sensitivity != expected {
                mismatches.push(format!(
                    "{}.{} is tagged {} but the rules say {expected}",
                    t.name, p.name, p.sensitivity
                ));
            }
        }
    }
    if !mismatches.is_empty() {
        return Err(GenError::ExtensionTags(mismatches));
    }

    let document = ModelDocument { object_types };
    let exists = |o: &str, p: &str| {
        document
            .object_types
            .iter()
            .chain(&extensions.object_types)
            .any(|t| t.name == o && t.property(p).is_some())
    };
    let unknown = rules.unknown_overrides(exists);
    if !unknown.is_empty() {
        return Err(GenError::Rules(format!(
            "overrides name properties that do not exist: {}",
            unknown.join(", ")
        )));
    }
    // The same checks every consumer's load runs, so a bad declaration never gets written.
    Model::from_documents(document.clone(), extensions.clone())?;

    let names = document
        .object_types
        .iter()
        .chain(&extensions.object_types)
        .flat_map(|t| t.properties.iter().map(|p| p.name.as_str()));
    summary.unused_rules = rules.unused(names);
    summary.extension_types = extensions.object_types.len();
    summary.object_types = document.object_types.len();
    for t in &document.object_types {
        summary.properties += t.properties.len();
        summary.links += t.links.len();
        summary.data_dictionary_types += usize::from(t.data_dictionary.is_some());
        for p in &t.properties {
            *summary.types.entry(p.property_type.as_str()).or_default() += 1;
            *summary
                .sensitivity
                .entry(p.sensitivity.as_str())
                .or_default() += 1;
            summary.data_dictionary_properties += usize::from(p.data_dictionary.is_some());
        }
    }
    for s in Sensitivity::ALL {
        summary.sensitivity.entry(s.as_str()).or_default();
    }
    Ok(Generated { document, summary })
}

fn check_columns(object: &str, properties: &[Property]) -> Result<(), GenError> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for p in properties {
        if let Some(other) = seen.insert(&p.column, &p.name) {
            return Err(GenError::Naming(format!(
                "{object}: `{other}` and `{}` both become column `{}`",
                p.name, p.column
            )));
        }
    }
    Ok(())
}

fn add_links(
    object_types: &mut [ObjectType],
    spec_links: &[spec::SpecLink],
    summary: &mut Summary,
) {
    let index: HashMap<String, usize> = object_types
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let mut pair_counts: HashMap<(&str, &str), usize> = HashMap::new();
    for l in spec_links {
        let (a, b) = if l.source <= l.target {
            (l.source.as_str(), l.target.as_str())
        } else {
            (l.target.as_str(), l.source.as_str())
        };
        *pair_counts.entry((a, b)).or_default() += 1;
    }
    let mut new_links: Vec<(usize, fdp_model::Link)> = Vec::new();
    for l in spec_links {
        let (si, ti) = (index[&l.source], index[&l.target]);
        let (a, b) = if l.source <= l.target {
            (l.source.as_str(), l.target.as_str())
        } else {
            (l.target.as_str(), l.source.as_str())
        };
        // A link pair declares two endpoints (one per direction); more means several
        // relationships between the same types, and qualified key names become ambiguous.
        let limit = if a == b { 1 } else { 2 };
        let only = pair_counts[&(a, b)] <= limit;
        let inferred = links::infer(&object_types[si], &l.name, &object_types[ti], only);
        let label = match inferred.evidence {
            Evidence::SourceKey => "key on source",
            Evidence::TargetKey => "key on target",
            Evidence::Unknown => "no clear key",
        };
        *summary.links_by_evidence.entry(label).or_default() += 1;
        if inferred.evidence == Evidence::Unknown {
            summary
                .links_unknown
                .push(format!("{}.{}", l.source, l.name));
        }
        new_links.push((
            si,
            fdp_model::Link {
                name: l.name.clone(),
                target: l.target.clone(),
                cardinality: inferred.cardinality,
                foreign_key: inferred.foreign_key,
            },
        ));
    }
    for (si, link) in new_links {
        object_types[si].links.push(link);
    }
}

fn read(path: &Path) -> Result<String, GenError> {
    std::fs::read_to_string(path).map_err(|source| GenError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub fn generate_from_files(paths: &Paths) -> Result<Generated, GenError> {
    let spec = read(&paths.spec)?;
    let sensitivity = read(&paths.sensitivity)?;
    let primary_keys = read(&paths.primary_keys)?;
    let extensions = read(&paths.extensions)?;
    generate(&Inputs {
        spec: &spec,
        sensitivity: &sensitivity,
        primary_keys: &primary_keys,
        extensions: &extensions,
    })
}

/// Writes `paths.out`; returns whether its bytes changed.
pub fn write(paths: &Paths, generated: &Generated) -> Result<bool, GenError> {
    let json = generated.json();
    let before = std::fs::read_to_string(&paths.out).ok();
    if before.as_deref() == Some(json.as_str()) {
        return Ok(false);
    }
    std::fs::write(&paths.out, json).map_err(|source| GenError::Io {
        path: paths.out.clone(),
        source,
    })?;
    Ok(true)
}

#[derive(Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    UpToDate,
    /// The committed file differs; `line` is the first differing line (1-based).
    Differs {
        line: usize,
    },
}

/// Compares what would be generated with the file at `paths.out`.
pub fn check(paths: &Paths, generated: &Generated) -> Result<CheckOutcome, GenError> {
    let committed = read(&paths.out)?;
    let fresh = generated.json();
    if committed == fresh {
        return Ok(CheckOutcome::UpToDate);
    }
    let line = committed
        .lines()
        .zip(fresh.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()))
        + 1;
    Ok(CheckOutcome::Differs { line })
}
