//! OHDSI ATLAS (Circe) cohort JSON: the subset that maps onto this
//! platform's cohorts.
//!
//! An ATLAS cohort is built around each patient's index event; a cohort
//! here is taken on one reference date. The import reads the index date as
//! the reference date: a primary criterion becomes "has a record of it by
//! the reference date", an inclusion rule's window before the index
//! becomes a window before the reference date, and "exactly 0 on or after
//! the index event" with the latest event as index becomes "not followed
//! by". What has no such reading (windows after the index otherwise,
//! censoring, eras, visits, per-criterion ages, descendants that would need
//! a terminology server to expand) is refused or warned about by name, so
//! nothing is imported meaning something else silently.
//!
//! Supported: `ConceptSets` of SNOMED CT (and dm+d) concepts by their
//! `CONCEPT_CODE`; `PrimaryCriteria` of `ConditionOccurrence`,
//! `Observation`, `Measurement`, `ProcedureOccurrence`, `DrugExposure`
//! with a `CodesetId`; `InclusionRules` and `AdditionalCriteria` groups of
//! type `ALL` or `ANY`, with nested `Groups`, correlated criteria of those
//! types with a `StartWindow` and an `Occurrence` of "at least N" or
//! "exactly 0", and demographic `Age` (on the reference date) and `Gender`
//! (8507 male, 8532 female).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::definition::{AgeRule, Cohort, Criterion, Population, Span, ValueSet};
use crate::CohortError;

/// An imported definition and what the import could not carry exactly.
#[derive(Debug, Clone)]
pub struct Imported {
    pub cohort: Cohort,
    pub warnings: Vec<String>,
}

const EVENT_TYPES: &[&str] = &[
    "ConditionOccurrence",
    "Observation",
    "Measurement",
    "ProcedureOccurrence",
    "DrugExposure",
];

/// Import an ATLAS cohort definition as cohort `name`.
pub fn import(json: &str, name: &str, title: &str) -> Result<Imported, CohortError> {
    let doc: Value =
        serde_json::from_str(json).map_err(|e| CohortError::AtlasSyntax(e.to_string()))?;
    let Some(top) = doc.as_object() else {
        return Err(CohortError::AtlasSyntax("expected a JSON object".into()));
    };
    let mut im = Importer::default();
    for (key, value) in top {
        match key.as_str() {
            "ConceptSets" | "PrimaryCriteria" | "InclusionRules" | "AdditionalCriteria" => {}
            "QualifiedLimit" | "ExpressionLimit" | "CollapseSettings" | "cdmVersionRange"
            | "Title" => {}
            "CensorWindow" if is_empty(value) => {}
            "CensoringCriteria" if is_empty(value) => {}
            "EndStrategy" => im.warnings.push(
                "EndStrategy says when a patient leaves the cohort; a cohort here is taken on one date, so it is not used".into(),
            ),
            other => im.refused.push(format!("{other} (not supported)")),
        }
    }
    for set in top
        .get("ConceptSets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        im.concept_set(set);
    }
    let primary = top.get("PrimaryCriteria");
    let latest_index = primary
        .and_then(|p| p.pointer("/PrimaryCriteriaLimit/Type"))
        .and_then(Value::as_str)
        == Some("Last");
    let mut primary_sets = Vec::new();
    match primary
        .and_then(|p| p.get("CriteriaList"))
        .and_then(Value::as_array)
    {
        Some(list) if !list.is_empty() => {
            for c in list {
                if let Some(set) = im.event_criterion(c, "PrimaryCriteria") {
                    primary_sets.push(set);
                }
            }
        }
        _ => im
            .refused
            .push("PrimaryCriteria has no CriteriaList: nothing says who enters".into()),
    }
    if let Some(p) = primary.and_then(Value::as_object) {
        for key in p.keys() {
            if !matches!(
                key.as_str(),
                "CriteriaList" | "ObservationWindow" | "PrimaryCriteriaLimit"
            ) {
                im.refused.push(format!("PrimaryCriteria.{key}"));
            }
        }
    }
    let mut include = Vec::new();
    let entry = match primary_sets.as_slice() {
        [] => None,
        [one] => Some(Criterion {
            name: Some("index event".into()),
            event: Some(one.clone()),
            ..Criterion::default()
        }),
        many => Some(Criterion {
            name: Some("index event".into()),
            any_of: Some(
                many.iter()
                    .map(|s| Criterion {
                        event: Some(s.clone()),
                        ..Criterion::default()
                    })
                    .collect(),
            ),
            ..Criterion::default()
        }),
    };
    let index = match primary_sets.as_slice() {
        [one] if latest_index => Some(one.clone()),
        _ => None,
    };
    let mut exclude = Vec::new();
    let mut entry = entry;
    if let Some(g) = top.get("AdditionalCriteria").filter(|v| !v.is_null()) {
        im.group(
            g,
            "AdditionalCriteria",
            index.as_deref(),
            &mut entry,
            &mut include,
            &mut exclude,
        );
    }
    for (i, rule) in top
        .get("InclusionRules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = rule
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("InclusionRules[{i}]"));
        match rule.get("expression") {
            Some(g) => im.group(
                g,
                &at,
                index.as_deref(),
                &mut entry,
                &mut include,
                &mut exclude,
            ),
            None => im.refused.push(format!("{at}: no expression")),
        }
    }
    if let Some(e) = entry {
        include.insert(0, e);
    }
    if !im.refused.is_empty() {
        return Err(CohortError::AtlasUnsupported(im.refused));
    }
    let cohort = Cohort {
        name: name.to_string(),
        title: title.to_string(),
        description: "Imported from an OHDSI ATLAS cohort definition; the index date is read as the reference date.".into(),
        sources: vec!["OHDSI ATLAS cohort definition (Circe JSON)".into()],
        reference_date: None,
        population: Population::Everyone,
        value_sets: im.value_sets,
        include,
        exclude,
        outcomes: Vec::new(),
    };
    cohort.check()?;
    Ok(Imported {
        cohort,
        warnings: im.warnings,
    })
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[derive(Default)]
struct Importer {
    value_sets: BTreeMap<String, ValueSet>,
    /// Concept set id → value set name.
    by_id: BTreeMap<i64, String>,
    refused: Vec<String>,
    warnings: Vec<String>,
}

impl Importer {
    fn concept_set(&mut self, set: &Value) {
        let Some(id) = set.get("id").and_then(Value::as_i64) else {
            self.refused
                .push("a concept set without a numeric id".into());
            return;
        };
        let title = set
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("concept set")
            .to_string();
        let name = format!("CS{id}");
        let mut codes = Vec::new();
        for item in set
            .pointer("/expression/items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let flag = |k: &str| item.get(k).and_then(Value::as_bool).unwrap_or(false);
            let concept = item.get("concept");
            let code = concept
                .and_then(|c| c.get("CONCEPT_CODE"))
                .and_then(Value::as_str);
            let vocabulary = concept
                .and_then(|c| c.get("VOCABULARY_ID"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let Some(code) = code else {
                self.refused.push(format!(
                    "concept set {id} ({title}): an item without its CONCEPT_CODE (export the definition with its concepts)"
                ));
                continue;
            };
            if !matches!(vocabulary, "SNOMED" | "dm+d" | "dmd") {
                self.refused.push(format!(
                    "concept set {id} ({title}): {code} is from vocabulary {vocabulary:?}; only SNOMED CT and dm+d codes are recorded here"
                ));
                continue;
            }
            if flag("isExcluded") {
                self.refused.push(format!(
                    "concept set {id} ({title}): {code} is excluded from the set; list the codes wanted instead"
                ));
                continue;
            }
            if flag("includeDescendants") {
                self.warnings.push(format!(
                    "concept set {id} ({title}): {code}'s descendants are not added (no terminology server): list them, or use the published refset"
                ));
            }
            if flag("includeMapped") {
                self.warnings.push(format!(
                    "concept set {id} ({title}): {code}'s mapped source codes are not added"
                ));
            }
            if !codes.contains(&code.to_string()) {
                codes.push(code.to_string());
            }
        }
        self.by_id.insert(id, name.clone());
        self.value_sets.insert(
            name,
            ValueSet {
                title,
                source: Some(format!("ATLAS concept set {id}")),
                codes,
            },
        );
    }

    /// A criterion of a supported type with only a `CodesetId`: its value set.
    fn event_criterion(&mut self, c: &Value, at: &str) -> Option<String> {
        let Some(obj) = c.as_object() else {
            self.refused
                .push(format!("{at}: a criterion that is not an object"));
            return None;
        };
        let Some((kind, body)) = obj.iter().next().filter(|_| obj.len() == 1) else {
            self.refused
                .push(format!("{at}: a criterion must be one type"));
            return None;
        };
        if !EVENT_TYPES.contains(&kind.as_str()) {
            self.refused.push(format!("{at}: {kind} criteria"));
            return None;
        }
        if let Some(b) = body.as_object() {
            for k in b.keys() {
                if k != "CodesetId" {
                    self.refused.push(format!("{at}: {kind}.{k}"));
                }
            }
        }
        let Some(id) = body.get("CodesetId").and_then(Value::as_i64) else {
            self.refused.push(format!(
                "{at}: {kind} without a CodesetId (any record at all)"
            ));
            return None;
        };
        match self.by_id.get(&id) {
            Some(n) => Some(n.clone()),
            None => {
                self.refused.push(format!(
                    "{at}: {kind} names concept set {id}, which is not defined"
                ));
                None
            }
        }
    }

    /// A criteria group: its rules go into `include` and `exclude` (type
    /// ALL at the top), or become one `any_of` / `all_of`.
    fn group(
        &mut self,
        g: &Value,
        at: &str,
        index: Option<&str>,
        entry: &mut Option<Criterion>,
        include: &mut Vec<Criterion>,
        exclude: &mut Vec<Criterion>,
    ) {
        let kind = g.get("Type").and_then(Value::as_str).unwrap_or("ALL");
        let mut positives = Vec::new();
        let mut negatives = Vec::new();
        for (i, cc) in g
            .get("CriteriaList")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let here = format!("{at}, criterion {}", i + 1);
            let Some(set) = cc
                .get("Criteria")
                .and_then(|c| self.event_criterion(c, &here))
            else {
                continue;
            };
            for (k, v) in cc.as_object().into_iter().flatten() {
                // Flags that are off, and a window that is not there, say nothing.
                let harmless = match k.as_str() {
                    "Criteria" | "StartWindow" | "Occurrence" => true,
                    "RestrictVisit" | "IgnoreObservationPeriod" => v.as_bool() != Some(true),
                    "EndWindow" => v.is_null(),
                    _ => false,
                };
                if !harmless {
                    self.refused.push(format!("{here}: {k}"));
                }
            }
            let occ_type = cc
                .pointer("/Occurrence/Type")
                .and_then(Value::as_i64)
                .unwrap_or(2);
            let count = cc
                .pointer("/Occurrence/Count")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let start = cc.pointer("/StartWindow/Start");
            let end = cc.pointer("/StartWindow/End");
            let offset = |w: Option<&Value>| -> Option<i64> {
                let w = w?;
                let days = w.get("Days").and_then(Value::as_i64)?;
                Some(days * w.get("Coeff").and_then(Value::as_i64).unwrap_or(1))
            };
            let (from, to) = (offset(start), offset(end));
            // After the index event: only "none on or after the latest".
            if from.is_some_and(|d| d >= 0) {
                match (index, occ_type, count, to) {
                    (Some(latest), 0, 0, None) => {
                        let not_followed = Criterion {
                            name: Some(format!("{here}: latest {latest} not followed by {set}")),
                            latest: Some(latest.to_string()),
                            not_followed_by: Some(set),
                            ..Criterion::default()
                        };
                        // It replaces the plain index event.
                        *entry = None;
                        positives.push(not_followed);
                    }
                    _ => self.refused.push(format!(
                        "{here}: a window after the index event (the reference date here has no after)"
                    )),
                }
                continue;
            }
            if to.is_some_and(|d| d > 0) {
                self.refused
                    .push(format!("{here}: a window reaching past the index event"));
                continue;
            }
            if to.is_some_and(|d| d < 0) {
                self.refused.push(format!(
                    "{here}: a window ending {} days before the index event",
                    -to.unwrap_or(0)
                ));
                continue;
            }
            let within = from.map(|d| Span::Days((-d) as u32));
            let rule = |min_count: Option<u32>| Criterion {
                name: Some(here.clone()),
                event: Some(set.clone()),
                min_count,
                within,
                ..Criterion::default()
            };
            match (occ_type, count) {
                (2, n) if n >= 1 => positives.push(rule((n > 1).then_some(n as u32))),
                (0, 0) | (1, 0) => negatives.push(rule(None)),
                _ => self.refused.push(format!(
                    "{here}: occurrence type {occ_type} count {count} (only \"at least N\" and \"exactly 0\")"
                )),
            }
        }
        for (i, d) in g
            .get("DemographicCriteriaList")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let here = format!("{at}, demographic {}", i + 1);
            for (k, v) in d.as_object().into_iter().flatten() {
                match k.as_str() {
                    "Age" => {
                        if let Some(rule) = self.age(v, &here) {
                            positives.push(rule);
                        }
                    }
                    "Gender" => {
                        let sexes: Vec<String> = v
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|c| match c.get("CONCEPT_ID").and_then(Value::as_i64) {
                                Some(8507) => Some("male".to_string()),
                                Some(8532) => Some("female".to_string()),
                                other => {
                                    self.refused
                                        .push(format!("{here}: gender concept {other:?}"));
                                    None
                                }
                            })
                            .collect();
                        if !sexes.is_empty() {
                            positives.push(Criterion {
                                name: Some(here.clone()),
                                sex: Some(sexes),
                                ..Criterion::default()
                            });
                        }
                    }
                    other => self.refused.push(format!("{here}: {other}")),
                }
            }
        }
        for (i, sub) in g
            .get("Groups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let here = format!("{at}, group {}", i + 1);
            let mut inc = Vec::new();
            let mut exc = Vec::new();
            self.group(sub, &here, index, entry, &mut inc, &mut exc);
            if !exc.is_empty() {
                self.refused
                    .push(format!("{here}: \"exactly 0\" inside a nested group"));
            }
            let sub_kind = sub.get("Type").and_then(Value::as_str).unwrap_or("ALL");
            match inc.len() {
                0 => {}
                1 => positives.extend(inc),
                _ => positives.push(Criterion {
                    name: Some(here.clone()),
                    any_of: (sub_kind == "ANY").then(|| inc.clone()),
                    all_of: (sub_kind != "ANY").then_some(inc),
                    ..Criterion::default()
                }),
            }
        }
        match kind {
            "ALL" => {
                include.extend(positives);
                exclude.extend(negatives);
            }
            "ANY" => {
                if !negatives.is_empty() {
                    self.refused
                        .push(format!("{at}: \"exactly 0\" inside an ANY group"));
                }
                match positives.len() {
                    0 => {}
                    1 => include.extend(positives),
                    _ => include.push(Criterion {
                        name: Some(at.to_string()),
                        any_of: Some(positives),
                        ..Criterion::default()
                    }),
                }
            }
            other => self.refused.push(format!("{at}: group type {other}")),
        }
    }

    fn age(&mut self, v: &Value, at: &str) -> Option<Criterion> {
        let op = v.get("Op").and_then(Value::as_str).unwrap_or("");
        let value = v.get("Value").and_then(Value::as_i64)?;
        let extent = v.get("Extent").and_then(Value::as_i64);
        let years = |n: i64| Span::Months((n.max(0) as u32) * 12);
        let rule = match (op, extent) {
            ("gte", _) => AgeRule {
                at_least: Some(years(value)),
                ..AgeRule::default()
            },
            ("gt", _) => AgeRule {
                at_least: Some(years(value + 1)),
                ..AgeRule::default()
            },
            ("lt", _) => AgeRule {
                under: Some(years(value)),
                ..AgeRule::default()
            },
            ("lte", _) => AgeRule {
                under: Some(years(value + 1)),
                ..AgeRule::default()
            },
            ("eq", _) => AgeRule {
                at_least: Some(years(value)),
                under: Some(years(value + 1)),
                on: None,
            },
            ("bt", Some(hi)) => AgeRule {
                at_least: Some(years(value)),
                under: Some(years(hi + 1)),
                on: None,
            },
            _ => {
                self.refused.push(format!("{at}: age {op}"));
                return None;
            }
        };
        self.warnings.push(format!(
            "{at}: age is taken in whole years on the reference date (Circe takes the calendar year of the event less the year of birth)"
        ));
        Some(Criterion {
            name: Some(at.to_string()),
            age: Some(rule),
            ..Criterion::default()
        })
    }
}
