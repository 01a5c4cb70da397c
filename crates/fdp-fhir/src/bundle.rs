//! Batch, transaction and collection Bundles: their entries, the ids the
//! server gives new resources, and the `urn:uuid` references between entries.

use std::collections::HashMap;

use serde_json::Value;

use crate::outcome::{Issue, IssueCode};
use crate::primitives::is_valid_id;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// Entries succeed or fail one by one.
    Batch,
    /// All entries succeed or none does.
    Transaction,
    /// Resources to store as given (e.g. a `$import` or a document of results).
    Collection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Get,
    Delete,
    /// A collection entry: store as given.
    None,
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Position in `Bundle.entry`, for error messages.
    pub index: usize,
    pub full_url: Option<String>,
    pub method: Method,
    /// `request.url`: `Patient`, `Patient/123`, `Patient?identifier=…`
    pub url: Option<String>,
    pub resource: Option<Value>,
    /// `Type/id` the resource is stored under, once assigned.
    pub target: Option<(String, String)>,
}

impl Entry {
    pub fn path(&self) -> String {
        format!("Bundle.entry[{}]", self.index)
    }
}

/// The kind of Bundle and its entries, or why it is not one this server takes.
pub fn unpack(bundle: &Value) -> Result<(BundleKind, Vec<Entry>), Issue> {
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("batch") => BundleKind::Batch,
        Some("transaction") => BundleKind::Transaction,
        Some("collection" | "searchset" | "history" | "document" | "message") => {
            BundleKind::Collection
        }
        Some(other) => {
            return Err(Issue::error(
                IssueCode::Value,
                "Bundle.type",
                format!("{other:?} is not a Bundle type"),
            ))
        }
        None => {
            return Err(Issue::error(
                IssueCode::Required,
                "Bundle.type",
                "the Bundle has no type",
            ))
        }
    };
    let empty = Vec::new();
    let raw_entries = match bundle.get("entry") {
        None => &empty,
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(Issue::error(
                IssueCode::Structure,
                "Bundle.entry",
                "Bundle.entry must be an array",
            ))
        }
    };
    let mut entries = Vec::with_capacity(raw_entries.len());
    for (index, e) in raw_entries.iter().enumerate() {
        let at = format!("Bundle.entry[{index}]");
        let request = e.get("request");
        let method = match (
            kind,
            request
                .and_then(|r| r.get("method"))
                .and_then(Value::as_str),
        ) {
            (BundleKind::Collection, _) => Method::None,
            (_, Some("POST")) => Method::Post,
            (_, Some("PUT")) => Method::Put,
            (_, Some("GET")) => Method::Get,
            (_, Some("DELETE")) => Method::Delete,
            (_, Some(m)) => {
                return Err(Issue::error(
                    IssueCode::NotSupported,
                    format!("{at}.request.method"),
                    format!("{m:?} is not supported in a Bundle (POST, PUT, GET, DELETE)"),
                ))
            }
            (_, None) => {
                return Err(Issue::error(
                    IssueCode::Required,
                    format!("{at}.request"),
                    "a batch or transaction entry needs request.method and request.url",
                ))
            }
        };
        entries.push(Entry {
            index,
            full_url: e.get("fullUrl").and_then(Value::as_str).map(str::to_string),
            method,
            url: request
                .and_then(|r| r.get("url"))
                .and_then(Value::as_str)
                .map(str::to_string),
            resource: e.get("resource").cloned(),
            target: None,
        });
    }
    Ok((kind, entries))
}

/// Decide the `Type/id` every writing entry is stored under and return the
/// map from each entry's `fullUrl` to it. A POSTed entry whose fullUrl is a
/// `urn:uuid:` keeps that uuid as its id, so references to it from other
/// Bundles of the same export still resolve; otherwise `new_id` is asked.
pub fn assign_ids(
    entries: &mut [Entry],
    mut new_id: impl FnMut() -> String,
) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for e in entries.iter_mut() {
        let Some(res) = &e.resource else { continue };
        let Some(rt) = res
            .get("resourceType")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            continue;
        };
        let from_url = e
            .full_url
            .as_deref()
            .and_then(|u| u.strip_prefix("urn:uuid:"))
            .filter(|u| is_valid_id(u))
            .map(str::to_string);
        let given = res
            .get("id")
            .and_then(Value::as_str)
            .filter(|i| is_valid_id(i))
            .map(str::to_string);
        let id = match e.method {
            Method::Put => e
                .url
                .as_deref()
                .and_then(|u| u.split('?').next())
                .and_then(|u| u.split_once('/'))
                .map(|(_, id)| id.to_string())
                .filter(|id| is_valid_id(id))
                .or(given),
            Method::Post => from_url.or(given),
            Method::None => given.or(from_url),
            Method::Get | Method::Delete => continue,
        }
        .unwrap_or_else(&mut new_id);
        if let Some(fu) = &e.full_url {
            map.insert(fu.clone(), format!("{rt}/{id}"));
        }
        e.target = Some((rt, id));
    }
    map
}

/// Rewrite `urn:uuid:` (and other fullUrl) references to `Type/id` using
/// `map`; returns the references that did not resolve, with their paths.
pub fn resolve_references(
    resource: &mut Value,
    map: &HashMap<String, String>,
) -> Vec<(String, String)> {
    let mut unresolved = Vec::new();
    let rt = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource")
        .to_string();
    walk(resource, &rt, map, &mut unresolved);
    unresolved
}

fn walk(
    v: &mut Value,
    path: &str,
    map: &HashMap<String, String>,
    unresolved: &mut Vec<(String, String)>,
) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("reference") {
                if let Some(target) = map.get(r.as_str()) {
                    *r = target.clone();
                } else if r.starts_with("urn:uuid:") || r.starts_with("urn:oid:") {
                    unresolved.push((format!("{path}.reference"), r.clone()));
                }
            }
            // Contained resources refer to the Bundle's entries too.
            for (k, child) in o.iter_mut() {
                if k != "text" {
                    walk(child, &format!("{path}.{k}"), map, unresolved);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{i}]"), map, unresolved);
            }
        }
        _ => {}
    }
}

/// The logical id a reference points at: `Patient/123`, a URL ending in
/// `Patient/123` (or `Patient/123/_history/2`), or `urn:uuid:123` all give
/// `123`. Contained (`#x`) and conditional references give `None`.
pub fn reference_id(r: &str) -> Option<&str> {
    if r.starts_with('#') || r.contains('?') {
        return None;
    }
    if let Some(u) = r.strip_prefix("urn:uuid:") {
        return Some(u);
    }
    let r = match r.find("/_history/") {
        Some(i) => &r[..i],
        None => r,
    };
    r.rsplit('/').next().filter(|s| is_valid_id(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn posted_entries_keep_their_uuid_and_references_resolve() {
        let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:aaaa-1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:bbbb-2", "resource": {"resourceType": "Encounter", "subject": {"reference": "urn:uuid:aaaa-1"},
              "participant": [{"individual": {"reference": "urn:uuid:elsewhere"}}]}, "request": {"method": "POST", "url": "Encounter"}},
            {"resource": {"resourceType": "Patient", "id": "x"}, "request": {"method": "PUT", "url": "Patient/p9"}}
        ]});
        let (kind, mut entries) = unpack(&b).unwrap();
        assert_eq!(kind, BundleKind::Transaction);
        let map = assign_ids(&mut entries, || "new".into());
        assert_eq!(map["urn:uuid:aaaa-1"], "Patient/aaaa-1");
        assert_eq!(entries[2].target, Some(("Patient".into(), "p9".into())));
        let mut enc = entries[1].resource.clone().unwrap();
        let unresolved = resolve_references(&mut enc, &map);
        assert_eq!(enc["subject"]["reference"], "Patient/aaaa-1");
        assert_eq!(
            unresolved,
            vec![(
                "Encounter.participant[0].individual.reference".to_string(),
                "urn:uuid:elsewhere".to_string()
            )]
        );
    }

    #[test]
    fn reference_ids() {
        assert_eq!(reference_id("Patient/123"), Some("123"));
        assert_eq!(reference_id("urn:uuid:abc"), Some("abc"));
        assert_eq!(
            reference_id("https://x.nhs.uk/fhir/Patient/9/_history/2"),
            Some("9")
        );
        assert_eq!(reference_id("#referral"), None);
        assert_eq!(reference_id("Patient?identifier=x|1"), None);
    }

    #[test]
    fn entries_without_request_in_a_batch_are_refused_by_position() {
        let b = json!({"type": "batch", "entry": [{"resource": {"resourceType": "Patient"}}]});
        let e = unpack(&b).unwrap_err();
        assert_eq!(e.expression.as_deref(), Some("Bundle.entry[0].request"));
    }
}
