//! Reads the parts of the CDM OpenAPI document that declare the model: object types
//! (`components.schemas."Osdk.<Type>"`), their properties, and link endpoints.

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::GenError;

/// Properties the API adds to every object; they are transport, not data.
const API_PLUMBING_PREFIX: &str = "__";

#[derive(Debug, Clone)]
pub struct SpecProperty {
    pub name: String,
    pub openapi_type: Option<String>,
    pub format: Option<String>,
    pub items_type: Option<String>,
    pub items_format: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct SpecType {
    pub name: String,
    /// The name used in endpoint paths, when it differs from the schema name.
    pub api_name: Option<String>,
    pub description: String,
    /// In spec order.
    pub properties: Vec<SpecProperty>,
}

#[derive(Debug, Clone)]
pub struct SpecLink {
    pub source: String,
    pub name: String,
    pub target: String,
}

#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Sorted by name.
    pub types: Vec<SpecType>,
    /// Sorted by source, then link name.
    pub links: Vec<SpecLink>,
    /// Things in the spec that could not be read into the model, for the summary.
    pub unmapped: Vec<String>,
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping()?.get(key)
}

fn get_str(v: &Value, key: &str) -> Option<String> {
    get(v, key)?.as_str().map(str::to_string)
}

fn follow<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| get(v, k))
}

pub fn read_spec(text: &str) -> Result<Spec, GenError> {
    let doc: Value = serde_yaml::from_str(text).map_err(GenError::Yaml)?;
    let schemas = follow(&doc, &["components", "schemas"])
        .and_then(Value::as_mapping)
        .ok_or(GenError::SpecShape("no components.schemas"))?;
    let paths = get(&doc, "paths")
        .and_then(Value::as_mapping)
        .ok_or(GenError::SpecShape("no paths"))?;

    let schema_names: Vec<&str> = schemas.keys().filter_map(Value::as_str).collect();
    // An object type is an `Osdk.<Type>` schema that has a matching `Properties` enum;
    // the other `Osdk.*` schemas are list/search responses.
    let mut types: Vec<SpecType> = Vec::new();
    let mut unmapped = Vec::new();
    for name in &schema_names {
        let Some(type_name) = name.strip_prefix("Osdk.") else {
            continue;
        };
        if !schema_names.contains(&format!("Osdk.{type_name}Properties").as_str()) {
            continue;
        }
        let schema = &schemas[*name];
        let Some(props) = get(schema, "properties").and_then(Value::as_mapping) else {
            unmapped.push(format!("{type_name}: schema has no properties"));
            continue;
        };
        let mut properties = Vec::new();
        for (key, value) in props {
            let Some(prop_name) = key.as_str() else {
                continue;
            };
            if prop_name.starts_with(API_PLUMBING_PREFIX) {
                continue;
            }
            let items = get(value, "items");
            properties.push(SpecProperty {
                name: prop_name.to_string(),
                openapi_type: get_str(value, "type"),
                format: get_str(value, "format"),
                items_type: items.and_then(|i| get_str(i, "type")),
                items_format: items.and_then(|i| get_str(i, "format")),
                description: get_str(value, "description").unwrap_or_default(),
            });
        }
        types.push(SpecType {
            name: type_name.to_string(),
            api_name: None,
            description: get_str(schema, "description").unwrap_or_default(),
            properties,
        });
    }
    types.sort_by(|a, b| a.name.cmp(&b.name));

    let lookup: BTreeMap<String, usize> = types
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.to_ascii_lowercase(), i))
        .collect();

    let mut links = Vec::new();
    for (key, item) in paths {
        let Some(path) = key.as_str() else { continue };
        let Some((api_source, rest)) = object_path(path) else {
            continue;
        };
        let Some(&source_index) = lookup.get(&api_source.to_ascii_lowercase()) else {
            unmapped.push(format!("path {path}: unknown object type `{api_source}`"));
            continue;
        };
        if api_source != types[source_index].name {
            types[source_index].api_name = Some(api_source.to_string());
        }
        // `links/<name>` lists the linked objects; `links/<name>/{key}` fetches one.
        let Some(link_name) = rest.strip_prefix("/links/") else {
            continue;
        };
        if link_name.contains('/') {
            continue;
        }
        let reference = follow(
            item,
            &[
                "get",
                "responses",
                "200",
                "content",
                "application/json",
                "schema",
                "$ref",
            ],
        )
        .and_then(Value::as_str);
        let target = reference
            .and_then(|r| r.strip_prefix("#/components/schemas/Osdk.List"))
            .and_then(|r| r.strip_suffix("Response"))
            .and_then(|t| lookup.get(&t.to_ascii_lowercase()));
        match target {
            Some(&t) => links.push(SpecLink {
                source: types[source_index].name.clone(),
                name: link_name.to_string(),
                target: types[t].name.clone(),
            }),
            None => unmapped.push(format!(
                "link {}.{link_name}: cannot tell the target type from {reference:?}",
                types[source_index].name
            )),
        }
    }
    links.sort_by(|a, b| (&a.source, &a.name).cmp(&(&b.source, &b.name)));
    links.dedup_by(|a, b| a.source == b.source && a.name == b.name);

    Ok(Spec {
        types,
        links,
        unmapped,
    })
}

/// Splits `/api/v2/ontologies/<ontology>/objects/<Type>/{primaryKey}<rest>` into the
/// type's API name and `<rest>`; `None` for paths that are not about one object.
fn object_path(path: &str) -> Option<(&str, &str)> {
    let (_, after) = path.split_once("/objects/")?;
    let (api_name, rest) = after.split_once('/')?;
    let rest = rest.strip_prefix("{primaryKey}")?;
    Some((api_name, rest))
}

/// The NHS Data Dictionary page a description points at, if any. Trailing punctuation
/// and search-highlight queries are dropped; when a description cites several pages the
/// first definition page wins over general "supporting information" pages.
pub fn data_dictionary_url(description: &str) -> Option<String> {
    let mut urls = Vec::new();
    let mut rest = description;
    while let Some(pos) = rest.find("datadictionary.nhs.uk") {
        let start = rest[..pos].rfind("http").filter(|&s| {
            let prefix = &rest[s..pos];
            prefix == "https://www."
                || prefix == "http://www."
                || prefix == "https://"
                || prefix == "http://"
        });
        let end = rest[pos..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, ')' | ']' | '>' | '<' | '"' | '\'' | ',')
            })
            .map_or(rest.len(), |e| pos + e);
        if let Some(start) = start {
            let mut url = &rest[start..end];
            if let Some(q) = url.find(['?', '#']) {
                url = &url[..q];
            }
            let url = url.trim_end_matches(['.', ':', ';']);
            urls.push(url.to_string());
        }
        rest = &rest[end..];
    }
    urls.iter()
        .find(|u| !u.contains("/supporting_information/"))
        .or_else(|| urls.first())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            data_dictionary_url("Start. https://www.datadictionary.nhs.uk/data_elements/start_date__ward_stay_.html"),
            Some("https://www.datadictionary.nhs.uk/data_elements/start_date__ward_stay_.html".into())
        );
        assert_eq!(
            data_dictionary_url("See https://www.datadictionary.nhs.uk/classes/referral.html."),
            Some("https://www.datadictionary.nhs.uk/classes/referral.html".into())
        );
        assert_eq!(
            data_dictionary_url("Site: https://www.datadictionary.nhs.uk/nhs_business_definitions/hospital_site.html?hl=hospital%2Csite"),
            Some("https://www.datadictionary.nhs.uk/nhs_business_definitions/hospital_site.html".into())
        );
        assert_eq!(
            data_dictionary_url("(https://www.datadictionary.nhs.uk/supporting_information/reasonable_offer.html) and https://www.datadictionary.nhs.uk/data_elements/earliest_reasonable_offer_date.html"),
            Some("https://www.datadictionary.nhs.uk/data_elements/earliest_reasonable_offer_date.html".into())
        );
        assert_eq!(data_dictionary_url("Primary key."), None);
    }

    #[test]
    fn paths() {
        assert_eq!(
            object_path("/api/v2/ontologies/o/objects/WardStay/{primaryKey}/links/ward"),
            Some(("WardStay", "/links/ward"))
        );
        assert_eq!(
            object_path("/api/v2/ontologies/o/objects/WardStay/search"),
            None
        );
        assert_eq!(object_path("/api/v2/ontologies/o/objects/WardStay"), None);
    }
}
