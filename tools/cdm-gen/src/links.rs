//! Foreign keys and cardinality of links. The spec lists link endpoints but not which
//! property joins them, so this infers it from naming, and only where naming is clear:
//! a link's source holding `<link>Id`, `<target>Id` or the target's key name, or its
//! target holding `<source>Id` or the source's key name (the spec's "A foreign key to
//! ..." properties all follow these names). Anything else is left unknown.

use fdp_model::{Cardinality, ForeignKey, ObjectType, PropertyType};

use crate::naming::{lower_first, singular, upper_first};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Evidence {
    /// The source holds the target's key: many-to-one (or many-to-many for a list).
    SourceKey,
    /// The target holds the source's key: one-to-many (or many-to-many for a list).
    TargetKey,
    Unknown,
}

/// Key names too generic to identify which type they refer to.
fn generic_key(name: &str) -> bool {
    matches!(name, "id" | "uniqueId")
}

fn key_like(t: &ObjectType, name: &str) -> Option<PropertyType> {
    if name == t.primary_key {
        return None;
    }
    t.property(name).map(|p| p.property_type).filter(|ty| {
        matches!(
            ty,
            PropertyType::String
                | PropertyType::Long
                | PropertyType::Integer
                | PropertyType::StringList
        )
    })
}

fn unique_suffix<'a>(t: &'a ObjectType, suffix: &str) -> Option<&'a str> {
    let mut found = t
        .properties
        .iter()
        .filter(|p| p.name != t.primary_key && p.name.ends_with(suffix))
        .map(|p| p.name.as_str());
    match (found.next(), found.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

pub struct Inferred {
    pub cardinality: Option<Cardinality>,
    pub foreign_key: Option<ForeignKey>,
    pub evidence: Evidence,
}

/// `only_link_between` says the two types are joined by this link pair alone, which is
/// what makes a qualified key name such as `babyPatientId` unambiguous.
pub fn infer(
    source: &ObjectType,
    link_name: &str,
    target: &ObjectType,
    only_link_between: bool,
) -> Inferred {
    let on = |holder: &ObjectType, property: &str, ty: PropertyType, evidence: Evidence| {
        let cardinality = match (evidence, ty) {
            (Evidence::SourceKey, t) if t != PropertyType::StringList => Cardinality::One,
            _ => Cardinality::Many,
        };
        Inferred {
            cardinality: Some(cardinality),
            foreign_key: Some(ForeignKey {
                object: holder.name.clone(),
                property: property.to_string(),
            }),
            evidence,
        }
    };

    let mut source_names = vec![
        format!("{link_name}Id"),
        format!("{}Id", singular(link_name)),
        format!("{}Id", lower_first(&target.name)),
        format!("{}Ids", singular(link_name)),
        format!("{}Ids", lower_first(&target.name)),
    ];
    if !generic_key(&target.primary_key) {
        source_names.push(target.primary_key.clone());
    }
    for name in &source_names {
        if let Some(ty) = key_like(source, name) {
            return on(source, name, ty, Evidence::SourceKey);
        }
    }

    let mut target_names = vec![
        format!("{}Id", lower_first(&source.name)),
        format!("{}Ids", lower_first(&source.name)),
    ];
    if !generic_key(&source.primary_key) {
        target_names.push(source.primary_key.clone());
    }
    for name in &target_names {
        if let Some(ty) = key_like(target, name) {
            return on(target, name, ty, Evidence::TargetKey);
        }
    }

    if only_link_between {
        let suffix = format!("{}Id", upper_first(&target.name));
        if let Some(name) = unique_suffix(source, &suffix) {
            if let Some(ty) = key_like(source, name) {
                return on(source, name, ty, Evidence::SourceKey);
            }
        }
        let suffix = format!("{}Id", upper_first(&source.name));
        if let Some(name) = unique_suffix(target, &suffix) {
            if let Some(ty) = key_like(target, name) {
                return on(target, name, ty, Evidence::TargetKey);
            }
        }
    }

    Inferred {
        cardinality: None,
        foreign_key: None,
        evidence: Evidence::Unknown,
    }
}
