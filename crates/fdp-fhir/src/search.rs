//! FHIR R4 search as the REST API answers it: which parameters each
//! resource type takes, what each means, and whether a resource matches.
//!
//! A request is parsed once ([`Search::parse`]): an unknown parameter, a
//! malformed date or a bad `_count` is refused before anything is read,
//! naming the parameter. Matching ([`Search::matches`]) is then infallible.
//!
//! ```
//! use fdp_fhir::search::Search;
//! use serde_json::json;
//!
//! let search = Search::parse(
//!     "Patient",
//!     &[("family".into(), "smi".into()), ("birthdate".into(), "ge1950".into())],
//! )
//! .unwrap();
//! let patient = json!({"resourceType": "Patient", "name": [{"family": "Smith"}], "birthDate": "1961-04-02"});
//! assert!(search.matches("p1", chrono::Utc::now(), &patient));
//! ```

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};

use crate::bundle::reference_id;
use crate::primitives::{parse_date_time, FhirDateTime};

/// What a search parameter compares, after FHIR's search parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Case-insensitive prefix of a string.
    String,
    /// `system|code`, `|code` or `code` against a code, Coding,
    /// CodeableConcept or Identifier.
    Token,
    /// `Type/id` or `id` against a Reference.
    Reference,
    /// A date with an optional prefix (`eq`, `ne`, `gt`, `ge`, `lt`, `le`),
    /// compared over the range its precision covers.
    Date,
}

impl Kind {
    /// The name the CapabilityStatement gives the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Token => "token",
            Kind::Reference => "reference",
            Kind::Date => "date",
        }
    }
}

/// The parameters a resource type can be searched by, in the order the
/// CapabilityStatement lists them.
pub fn parameters(resource_type: &str) -> Vec<(&'static str, Kind)> {
    use Kind::*;
    let mut p = vec![
        ("_id", Token),
        ("_lastUpdated", Date),
        ("identifier", Token),
    ];
    let extra: &[(&str, Kind)] = match resource_type {
        "Patient" => &[
            ("family", String),
            ("given", String),
            ("name", String),
            ("birthdate", Date),
            ("gender", Token),
        ],
        "Practitioner" => &[("family", String), ("given", String), ("name", String)],
        "Organization" | "Location" => &[("name", String)],
        "Appointment" => &[
            ("patient", Reference),
            ("date", Date),
            ("status", Token),
            ("code", Token),
        ],
        _ => &[
            ("patient", Reference),
            ("subject", Reference),
            ("date", Date),
            ("code", Token),
            ("status", Token),
        ],
    };
    p.extend_from_slice(extra);
    p
}

/// Where in a resource of `resource_type` the parameter `param` looks.
fn paths_for(resource_type: &str, param: &str) -> &'static [&'static str] {
    match (resource_type, param) {
        (_, "identifier") => &["identifier"],
        ("Patient" | "Practitioner", "family") => &["name.family"],
        ("Patient" | "Practitioner", "given") => &["name.given"],
        ("Patient" | "Practitioner", "name") => &["name.family", "name.given", "name.text"],
        ("Organization" | "Location", "name") => &["name"],
        ("Patient", "birthdate") => &["birthDate"],
        ("Patient", "gender") => &["gender"],
        ("Immunization" | "EpisodeOfCare", "patient") => &["patient"],
        ("Appointment", "patient") => &["participant.actor"],
        (_, "patient" | "subject") => &["subject"],
        ("Encounter" | "EpisodeOfCare", "date") => &["period.start"],
        ("Condition", "date") => &["recordedDate", "onsetDateTime"],
        ("Observation", "date") => &["effectiveDateTime", "effectivePeriod.start"],
        ("Procedure", "date") => &["performedDateTime", "performedPeriod.start"],
        ("Immunization", "date") => &["occurrenceDateTime"],
        ("Appointment", "date") => &["start"],
        ("ServiceRequest", "date") => &["authoredOn"],
        ("Condition", "status") => &["clinicalStatus"],
        (_, "status") => &["status"],
        ("Immunization", "code") => &["vaccineCode"],
        ("Encounter" | "Appointment", "code") => &["type", "serviceType"],
        (_, "code") => &["code"],
        _ => &[],
    }
}

/// Every value at a dotted path, arrays flattened.
fn values_at<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut cur = vec![v];
    for part in path.split('.') {
        let mut next = Vec::new();
        for c in cur {
            match c.get(part) {
                Some(Value::Array(a)) => next.extend(a.iter()),
                Some(x) => next.push(x),
                None => {}
            }
        }
        cur = next;
    }
    cur
}

/// Parameters that shape the answer rather than choose what is in it.
const RESULT_PARAMETERS: &[&str] = &["_count", "_offset", "_format", "_sort", "_total"];

/// How many entries a page holds unless `_count` says otherwise, and at most.
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 1000;

/// One value of a criterion, parsed.
#[derive(Debug, Clone)]
enum Wanted {
    Text(String),
    Date {
        prefix: &'static str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

#[derive(Debug, Clone)]
struct Criterion {
    name: String,
    kind: Kind,
    /// Any of these (the values a comma separates).
    any_of: Vec<Wanted>,
}

/// A search of one resource type, parsed from its query parameters.
#[derive(Debug, Clone)]
pub struct Search {
    resource_type: String,
    criteria: Vec<Criterion>,
    /// The criteria as asked, for the paging links.
    asked: Vec<(String, String)>,
    pub count: usize,
    pub offset: usize,
}

impl Search {
    /// Parse the query parameters of a search of `resource_type`. The
    /// error names the parameter and what was wrong with it.
    pub fn parse(resource_type: &str, params: &[(String, String)]) -> Result<Search, String> {
        let known = parameters(resource_type);
        let mut search = Search {
            resource_type: resource_type.to_string(),
            criteria: Vec::new(),
            asked: Vec::new(),
            count: DEFAULT_COUNT,
            offset: 0,
        };
        for (key, value) in params {
            match key.as_str() {
                "_count" => {
                    search.count = value
                        .parse::<usize>()
                        .map_err(|_| "_count must be a whole number".to_string())?
                        .min(MAX_COUNT)
                }
                "_offset" => {
                    search.offset = value
                        .parse::<usize>()
                        .map_err(|_| "_offset must be a whole number".to_string())?
                }
                k if RESULT_PARAMETERS.contains(&k) => {}
                k => {
                    // A modifier (`name:exact`) is taken as the plain parameter.
                    let name = k.split(':').next().unwrap_or(k);
                    let kind = known
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, kind)| *kind)
                        .ok_or_else(|| {
                            format!("{resource_type} has no search parameter {name:?}")
                        })?;
                    let any_of = value
                        .split(',')
                        .map(|alt| match kind {
                            Kind::Date => date_range(alt),
                            _ => Ok(Wanted::Text(alt.to_string())),
                        })
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("{name}: {e}"))?;
                    search.criteria.push(Criterion {
                        name: name.to_string(),
                        kind,
                        any_of,
                    });
                    search.asked.push((key.clone(), value.clone()));
                }
            }
        }
        Ok(search)
    }

    /// Does the resource `id`, last updated at `last_updated`, match every
    /// criterion?
    pub fn matches(&self, id: &str, last_updated: DateTime<Utc>, body: &Value) -> bool {
        self.criteria
            .iter()
            .all(|c| self.criterion_matches(c, id, last_updated, body))
    }

    fn criterion_matches(
        &self,
        c: &Criterion,
        id: &str,
        last_updated: DateTime<Utc>,
        body: &Value,
    ) -> bool {
        match c.name.as_str() {
            "_id" => c
                .any_of
                .iter()
                .any(|w| matches!(w, Wanted::Text(t) if t == id)),
            "_lastUpdated" => c.any_of.iter().any(|w| date_matches(last_updated, w)),
            _ => {
                let values: Vec<&Value> = paths_for(&self.resource_type, &c.name)
                    .iter()
                    .flat_map(|p| values_at(body, p))
                    .collect();
                c.any_of.iter().any(|w| match (c.kind, w) {
                    (Kind::Date, w) => values.iter().any(|v| {
                        v.as_str()
                            .and_then(|s| parse_date_time(s).ok())
                            .and_then(|d| d.instant())
                            .is_some_and(|at| date_matches(at, w))
                    }),
                    (Kind::String, Wanted::Text(t)) => {
                        let t = t.to_lowercase();
                        values
                            .iter()
                            .any(|v| v.as_str().is_some_and(|s| s.to_lowercase().starts_with(&t)))
                    }
                    (Kind::Reference, Wanted::Text(t)) => {
                        let want = t.rsplit('/').next().unwrap_or(t);
                        values.iter().any(|v| {
                            v.get("reference")
                                .and_then(Value::as_str)
                                .and_then(reference_id)
                                == Some(want)
                        })
                    }
                    (_, Wanted::Text(t)) => values.iter().any(|v| token_matches(v, t)),
                    (_, Wanted::Date { .. }) => false,
                })
            }
        }
    }

    /// The `link` array of a searchset page: self, first, next and
    /// previous where there are such pages, and last, each the same
    /// criteria at `base/ResourceType`.
    pub fn links(&self, base: &str, total: usize) -> Vec<Value> {
        let (count, offset) = (self.count, self.offset);
        let page_url = |off: usize| {
            let mut q: Vec<String> = self.asked.iter().map(|(k, v)| format!("{k}={v}")).collect();
            q.push(format!("_count={count}"));
            q.push(format!("_offset={off}"));
            format!("{base}/{}?{}", self.resource_type, q.join("&"))
        };
        let mut links = vec![
            json!({"relation": "self", "url": page_url(offset)}),
            json!({"relation": "first", "url": page_url(0)}),
        ];
        if offset + count < total {
            links.push(json!({"relation": "next", "url": page_url(offset + count)}));
        }
        if offset > 0 {
            links.push(
                json!({"relation": "previous", "url": page_url(offset.saturating_sub(count))}),
            );
        }
        let last = if total == 0 || count == 0 {
            0
        } else {
            (total - 1) / count * count
        };
        links.push(json!({"relation": "last", "url": page_url(last)}));
        links
    }
}

/// A date value and the range its precision covers.
fn date_range(want: &str) -> Result<Wanted, String> {
    let (prefix, rest) = match want.get(..2) {
        Some(p @ ("eq" | "ne" | "gt" | "ge" | "lt" | "le")) => {
            let p: &'static str = match p {
                "eq" => "eq",
                "ne" => "ne",
                "gt" => "gt",
                "ge" => "ge",
                "lt" => "lt",
                _ => "le",
            };
            (p, &want[2..])
        }
        _ => ("eq", want),
    };
    let w = parse_date_time(rest)?;
    let from = w
        .instant()
        .ok_or_else(|| format!("{rest:?} is not a date this server can compare"))?;
    let to = match w {
        FhirDateTime::Year(y) => Utc.with_ymd_and_hms(y + 1, 1, 1, 0, 0, 0).single(),
        FhirDateTime::Month(y, m) => {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            Utc.with_ymd_and_hms(ny, nm, 1, 0, 0, 0).single()
        }
        FhirDateTime::Date(_) => Some(from + Duration::days(1)),
        FhirDateTime::DateTime(_) => Some(from + Duration::seconds(1)),
    }
    .unwrap_or(from);
    Ok(Wanted::Date { prefix, from, to })
}

fn date_matches(have: DateTime<Utc>, want: &Wanted) -> bool {
    let Wanted::Date { prefix, from, to } = want else {
        return false;
    };
    let within = have >= *from && have < *to;
    match *prefix {
        "eq" => within,
        "ne" => !within,
        "gt" => have >= *to,
        "ge" => have >= *from,
        "lt" => have < *from,
        _ => have < *to,
    }
}

fn field<'a>(o: &'a serde_json::Map<String, Value>, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Value::as_str)
}

/// `system|code`, `|code`, `code`; against a code, Coding, CodeableConcept
/// or Identifier.
fn token_matches(v: &Value, want: &str) -> bool {
    let (system, code) = match want.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, want),
    };
    let one = |sys: Option<&str>, c: Option<&str>| {
        c == Some(code)
            && match system {
                None => true,
                Some("") => sys.is_none(),
                Some(s) => sys == Some(s),
            }
    };
    match v {
        Value::String(s) => system.is_none() && s == code,
        Value::Object(o) => {
            if let Some(codings) = o.get("coding").and_then(Value::as_array) {
                return codings.iter().any(|c| {
                    c.as_object()
                        .is_some_and(|c| one(field(c, "system"), field(c, "code")))
                });
            }
            if o.contains_key("value") {
                return one(field(o, "system"), field(o, "value"));
            }
            one(field(o, "system"), field(o, "code"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn an_unknown_parameter_or_a_bad_value_is_refused_naming_it() {
        let e = Search::parse("Patient", &params(&[("colour", "red")])).unwrap_err();
        assert!(e.contains("\"colour\""), "{e}");
        let e = Search::parse("Patient", &params(&[("birthdate", "ge19x0")])).unwrap_err();
        assert!(e.starts_with("birthdate:"), "{e}");
        let e = Search::parse("Patient", &params(&[("_count", "many")])).unwrap_err();
        assert_eq!(e, "_count must be a whole number");
        let s = Search::parse("Patient", &params(&[("_count", "5000")])).unwrap();
        assert_eq!(s.count, MAX_COUNT);
    }

    #[test]
    fn strings_match_by_prefix_ignoring_case_and_commas_mean_any_of() {
        let p = json!({"name": [{"family": "Smith", "given": ["Ann"]}]});
        let s = |q: &str| Search::parse("Patient", &params(&[("name", q)])).unwrap();
        assert!(s("smi").matches("1", Utc::now(), &p));
        assert!(s("jones,AN").matches("1", Utc::now(), &p));
        assert!(!s("jones").matches("1", Utc::now(), &p));
    }

    #[test]
    fn tokens_honour_the_system_and_references_the_id() {
        let c = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}});
        let s = |k: &str, q: &str| Search::parse("Condition", &params(&[(k, q)])).unwrap();
        assert!(s("code", "http://snomed.info/sct|44054006").matches("c", Utc::now(), &c));
        assert!(s("code", "44054006").matches("c", Utc::now(), &c));
        assert!(!s("code", "|44054006").matches("c", Utc::now(), &c));
        assert!(!s("code", "http://loinc.org|44054006").matches("c", Utc::now(), &c));
        assert!(s("patient", "Patient/p1").matches("c", Utc::now(), &c));
        assert!(s("subject", "p1").matches("c", Utc::now(), &c));
        assert!(!s("patient", "p2").matches("c", Utc::now(), &c));
        let patient = json!({"identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}]});
        let by_number = Search::parse(
            "Patient",
            &params(&[("identifier", "https://fhir.nhs.uk/Id/nhs-number|9434765919")]),
        )
        .unwrap();
        assert!(by_number.matches("p", Utc::now(), &patient));
    }

    #[test]
    fn dates_compare_over_the_range_their_precision_covers() {
        let p = json!({"birthDate": "1961-04-02"});
        let s = |q: &str| Search::parse("Patient", &params(&[("birthdate", q)])).unwrap();
        let now = Utc::now();
        assert!(s("1961").matches("1", now, &p));
        assert!(s("1961-04").matches("1", now, &p));
        assert!(!s("ne1961-04").matches("1", now, &p));
        assert!(s("gt1960").matches("1", now, &p));
        assert!(!s("gt1961").matches("1", now, &p));
        assert!(s("le1961").matches("1", now, &p));
        assert!(!s("lt1961").matches("1", now, &p));
        let updated =
            Search::parse("Patient", &params(&[("_lastUpdated", "ge2026-12-01")])).unwrap();
        assert!(updated.matches("1", at("2026-12-03T10:00:00Z"), &p));
        assert!(!updated.matches("1", at("2026-11-30T23:59:59Z"), &p));
    }

    #[test]
    fn links_page_through_the_same_criteria() {
        let s = Search::parse(
            "Patient",
            &params(&[("family", "smith"), ("_count", "10"), ("_offset", "10")]),
        )
        .unwrap();
        let links = s.links("http://x/fhir", 35);
        let url = |rel: &str| {
            links
                .iter()
                .find(|l| l["relation"] == rel)
                .map(|l| l["url"].as_str().unwrap().to_string())
        };
        assert_eq!(
            url("next").unwrap(),
            "http://x/fhir/Patient?family=smith&_count=10&_offset=20"
        );
        assert_eq!(
            url("previous").unwrap(),
            "http://x/fhir/Patient?family=smith&_count=10&_offset=0"
        );
        assert_eq!(
            url("last").unwrap(),
            "http://x/fhir/Patient?family=smith&_count=10&_offset=30"
        );
    }
}
