use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The CDM declaration, produced by `tools/cdm-gen` from NHS England's published spec.
pub const CDM_JSON: &str = include_str!("../model/cdm.json");
/// OpenFDP's own object types, written by hand in the same shape as the CDM declaration.
pub const EXTENSIONS_JSON: &str = include_str!("../model/extensions.json");

/// The value types a property can have. The set is deliberately small: it is what the CDM
/// uses, and every storage layer must be able to hold each of them without loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyType {
    String,
    Integer,
    Long,
    Double,
    Boolean,
    Date,
    Timestamp,
    StringList,
}

impl PropertyType {
    pub const ALL: [PropertyType; 8] = [
        PropertyType::String,
        PropertyType::Integer,
        PropertyType::Long,
        PropertyType::Double,
        PropertyType::Boolean,
        PropertyType::Date,
        PropertyType::Timestamp,
        PropertyType::StringList,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PropertyType::String => "string",
            PropertyType::Integer => "integer",
            PropertyType::Long => "long",
            PropertyType::Double => "double",
            PropertyType::Boolean => "boolean",
            PropertyType::Date => "date",
            PropertyType::Timestamp => "timestamp",
            PropertyType::StringList => "string_list",
        }
    }
}

impl fmt::Display for PropertyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PropertyType {
    type Err = UnknownTag;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PropertyType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTag {
                kind: "property type",
                value: s.to_string(),
            })
    }
}

/// Information-governance tag carried by every property. The tags drive masking and
/// access decisions elsewhere, so they live in the model rather than in each consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// Identifies a person on its own (NHS number, name, address, date of birth...).
    Identifying,
    /// Identifies a person in combination with other data (sex, age, ethnicity, area...).
    QuasiIdentifying,
    /// Describes health or care (diagnoses, procedures, results, assessments...).
    Clinical,
    /// Describes how services run (stays, wards, sessions, ids of non-person objects...).
    Operational,
}

impl Sensitivity {
    /// Ordered from most to least restrictive; rule resolution relies on this order.
    pub const ALL: [Sensitivity; 4] = [
        Sensitivity::Identifying,
        Sensitivity::QuasiIdentifying,
        Sensitivity::Clinical,
        Sensitivity::Operational,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Sensitivity::Identifying => "identifying",
            Sensitivity::QuasiIdentifying => "quasi_identifying",
            Sensitivity::Clinical => "clinical",
            Sensitivity::Operational => "operational",
        }
    }
}

impl fmt::Display for Sensitivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Sensitivity {
    type Err = UnknownTag;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sensitivity::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTag {
                kind: "sensitivity",
                value: s.to_string(),
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownTag {
    pub kind: &'static str,
    pub value: String,
}

/// How many target objects one source object reaches through a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cardinality {
    One,
    Many,
}

impl Cardinality {
    pub fn as_str(self) -> &'static str {
        match self {
            Cardinality::One => "one",
            Cardinality::Many => "many",
        }
    }
}

impl fmt::Display for Cardinality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The property that holds the key joining the two ends of a link. It may sit on either
/// end: on the source for "this ward stay's ward", on the target for "this ward's stays".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignKey {
    /// Object type that holds the key property.
    pub object: String,
    /// Property (CDM name) holding the key of the other end.
    pub property: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub name: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cardinality: Option<Cardinality>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign_key: Option<ForeignKey>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Property {
    /// CDM (camelCase) name.
    pub name: String,
    /// SQL (snake_case) name.
    pub column: String,
    #[serde(rename = "type")]
    pub property_type: PropertyType,
    pub nullable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dictionary: Option<String>,
    pub sensitivity: Sensitivity,
    /// Closed value set, used only by extensions; for `string_list` it constrains elements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_values: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectType {
    /// CDM (PascalCase) name, e.g. `WardStay`.
    pub name: String,
    /// The name the published API uses when it differs from `name` (e.g. `mdtMeeting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_name: Option<String>,
    pub table: String,
    /// CDM name of the primary-key property.
    pub primary_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dictionary: Option<String>,
    pub extension: bool,
    pub properties: Vec<Property>,
    #[serde(default)]
    pub links: Vec<Link>,
}

impl ObjectType {
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }

    pub fn property_by_column(&self, column: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.column == column)
    }

    /// Looks a property up by CDM name first, then by column, so callers can use either.
    pub fn find_property(&self, name_or_column: &str) -> Option<&Property> {
        self.property(name_or_column)
            .or_else(|| self.property_by_column(name_or_column))
    }

    pub fn primary_key_property(&self) -> &Property {
        // Model loading refuses a type whose key is not one of its properties.
        self.property(&self.primary_key)
            .expect("primary key checked when the model was loaded")
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    pub fn properties_with(&self, sensitivity: Sensitivity) -> impl Iterator<Item = &Property> {
        self.properties
            .iter()
            .filter(move |p| p.sensitivity == sensitivity)
    }
}

/// The JSON document shape shared by `cdm.json` and `extensions.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDocument {
    pub object_types: Vec<ObjectType>,
}

impl ModelDocument {
    /// The exact bytes written to disk: regeneration must be byte-for-byte stable.
    pub fn to_pretty_json(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(self).expect("model document always serialises");
        text.push('\n');
        text
    }
}

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("cannot parse {document}: {source}")]
    Parse {
        document: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{document}: object type `{object}` must have extension = {expected}")]
    ExtensionFlag {
        document: &'static str,
        object: String,
        expected: bool,
    },
    #[error("object type name `{0}` is declared more than once")]
    DuplicateType(String),
    #[error("table `{table}` is used by both `{first}` and `{second}`")]
    DuplicateTable {
        table: String,
        first: String,
        second: String,
    },
    #[error("{object}: property name `{property}` is declared more than once")]
    DuplicateProperty { object: String, property: String },
    #[error("{object}: column `{column}` is declared more than once")]
    DuplicateColumn { object: String, column: String },
    #[error("{object}: primary key `{property}` is not one of its properties")]
    MissingPrimaryKey { object: String, property: String },
    #[error("{object}: primary key `{property}` must not be nullable")]
    NullablePrimaryKey { object: String, property: String },
    #[error("{object}.{link}: target `{target}` is not an object type")]
    UnknownLinkTarget {
        object: String,
        link: String,
        target: String,
    },
    #[error(
        "{object}.{link}: foreign key {key_object}.{key_property} does not exist on either end"
    )]
    BadForeignKey {
        object: String,
        link: String,
        key_object: String,
        key_property: String,
    },
    #[error("{object}: link `{link}` is declared more than once")]
    DuplicateLink { object: String, link: String },
}

/// The loaded model: CDM object types followed by extensions, with lookup indexes.
#[derive(Debug, Clone)]
pub struct Model {
    object_types: Vec<ObjectType>,
    by_name: HashMap<String, usize>,
    by_table: HashMap<String, usize>,
}

impl Model {
    /// The model compiled into this crate. Panics only if the embedded files are
    /// inconsistent, which the crate's own tests rule out.
    pub fn canonical() -> &'static Model {
        static MODEL: OnceLock<Model> = OnceLock::new();
        MODEL.get_or_init(|| {
            Model::from_json(CDM_JSON, EXTENSIONS_JSON)
                .unwrap_or_else(|e| panic!("embedded model is invalid: {e}"))
        })
    }

    /// Builds a model from the two documents, checking the invariants every consumer
    /// relies on (unique names and tables, keys present and non-null, links resolvable).
    pub fn from_json(cdm: &str, extensions: &str) -> Result<Model, ModelError> {
        let cdm: ModelDocument = serde_json::from_str(cdm).map_err(|source| ModelError::Parse {
            document: "cdm.json",
            source,
        })?;
        let ext: ModelDocument =
            serde_json::from_str(extensions).map_err(|source| ModelError::Parse {
                document: "extensions.json",
                source,
            })?;
        Model::from_documents(cdm, ext)
    }

    pub fn from_documents(cdm: ModelDocument, ext: ModelDocument) -> Result<Model, ModelError> {
        for (document, doc, expected) in
            [("cdm.json", &cdm, false), ("extensions.json", &ext, true)]
        {
            if let Some(t) = doc.object_types.iter().find(|t| t.extension != expected) {
                return Err(ModelError::ExtensionFlag {
                    document,
                    object: t.name.clone(),
                    expected,
                });
            }
        }
        let object_types: Vec<ObjectType> = cdm
            .object_types
            .into_iter()
            .chain(ext.object_types)
            .collect();

        let mut by_name = HashMap::new();
        let mut by_table: HashMap<String, usize> = HashMap::new();
        for (i, t) in object_types.iter().enumerate() {
            if by_name.insert(t.name.clone(), i).is_some() {
                return Err(ModelError::DuplicateType(t.name.clone()));
            }
            if let Some(&j) = by_table.get(&t.table) {
                return Err(ModelError::DuplicateTable {
                    table: t.table.clone(),
                    first: object_types[j].name.clone(),
                    second: t.name.clone(),
                });
            }
            by_table.insert(t.table.clone(), i);
            check_type(t)?;
        }
        let model = Model {
            object_types,
            by_name,
            by_table,
        };
        for t in &model.object_types {
            model.check_links(t)?;
        }
        Ok(model)
    }

    fn check_links(&self, t: &ObjectType) -> Result<(), ModelError> {
        let mut seen = HashSet::new();
        for link in &t.links {
            if !seen.insert(link.name.as_str()) {
                return Err(ModelError::DuplicateLink {
                    object: t.name.clone(),
                    link: link.name.clone(),
                });
            }
            let Some(target) = self.object_type(&link.target) else {
                return Err(ModelError::UnknownLinkTarget {
                    object: t.name.clone(),
                    link: link.name.clone(),
                    target: link.target.clone(),
                });
            };
            if let Some(fk) = &link.foreign_key {
                let holder = [t, target].into_iter().find(|o| o.name == fk.object);
                if holder.and_then(|o| o.property(&fk.property)).is_none() {
                    return Err(ModelError::BadForeignKey {
                        object: t.name.clone(),
                        link: link.name.clone(),
                        key_object: fk.object.clone(),
                        key_property: fk.property.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// All object types: the CDM's (by name) then the extensions.
    pub fn object_types(&self) -> &[ObjectType] {
        &self.object_types
    }

    pub fn cdm_types(&self) -> impl Iterator<Item = &ObjectType> {
        self.object_types.iter().filter(|t| !t.extension)
    }

    pub fn extension_types(&self) -> impl Iterator<Item = &ObjectType> {
        self.object_types.iter().filter(|t| t.extension)
    }

    pub fn object_type(&self, name: &str) -> Option<&ObjectType> {
        self.by_name.get(name).map(|&i| &self.object_types[i])
    }

    pub fn object_type_by_table(&self, table: &str) -> Option<&ObjectType> {
        self.by_table.get(table).map(|&i| &self.object_types[i])
    }

    /// Lenient lookup for people typing at a prompt: name, API name or table, any case.
    pub fn find(&self, query: &str) -> Option<&ObjectType> {
        self.object_type(query)
            .or_else(|| self.object_type_by_table(query))
            .or_else(|| {
                self.object_types.iter().find(|t| {
                    t.name.eq_ignore_ascii_case(query)
                        || t.table.eq_ignore_ascii_case(query)
                        || t.api_name
                            .as_deref()
                            .is_some_and(|a| a.eq_ignore_ascii_case(query))
                })
            })
    }

    /// Links from any object type that point at `target`, for navigating "backwards",
    /// including from extensions to CDM types that cannot declare links to them.
    pub fn links_to<'a>(
        &'a self,
        target: &'a str,
    ) -> impl Iterator<Item = (&'a ObjectType, &'a Link)> + 'a {
        self.object_types
            .iter()
            .flat_map(|t| t.links.iter().map(move |l| (t, l)))
            .filter(move |(_, l)| l.target == target)
    }
}

fn check_type(t: &ObjectType) -> Result<(), ModelError> {
    let mut names = HashSet::new();
    let mut columns = HashSet::new();
    for p in &t.properties {
        if !names.insert(p.name.as_str()) {
            return Err(ModelError::DuplicateProperty {
                object: t.name.clone(),
                property: p.name.clone(),
            });
        }
        if !columns.insert(p.column.as_str()) {
            return Err(ModelError::DuplicateColumn {
                object: t.name.clone(),
                column: p.column.clone(),
            });
        }
    }
    match t.property(&t.primary_key) {
        None => Err(ModelError::MissingPrimaryKey {
            object: t.name.clone(),
            property: t.primary_key.clone(),
        }),
        Some(p) if p.nullable => Err(ModelError::NullablePrimaryKey {
            object: t.name.clone(),
            property: t.primary_key.clone(),
        }),
        Some(_) => Ok(()),
    }
}
