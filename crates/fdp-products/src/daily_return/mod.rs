//! The daily operational return (care coordination): what a trust used to
//! key into the daily situation report, as federated questions a collecting
//! instance (an ICB, the national instance) asks of every member for one
//! census instant: beds occupied by type, long stays, discharges by
//! pathway, medically optimised patients not yet discharged, and elective
//! admissions.
//!
//! The questions are declared as data in `return.toml`, as the member's IG
//! lead approves them. Asking them on a schedule, keeping what each member
//! submitted and summing the picture is `fdp-federation::returns`'s; a
//! member computes its own return through its own governed session with
//! the same questions, so it sees what it submitted.

use fdp_govern::Purpose;
use serde::Deserialize;

use crate::platform::{Manifest, Offers, Priority, Product, QuestionSpec, Reads};

/// The product's id.
pub const ID: &str = "daily-return";

const RETURN: &str = include_str!("return.toml");

/// The return as `return.toml` declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnFile {
    /// The return's name, which collected returns are kept under.
    pub name: String,
    pub description: String,
    #[serde(rename = "question")]
    pub questions: Vec<QuestionSpec>,
}

/// The daily operational return as published with this release.
pub fn daily_operational() -> ReturnFile {
    toml::from_str(RETURN).expect("the built-in daily return is valid")
}

/// The daily operational return, as a product.
pub struct DailyReturn;

#[async_trait::async_trait]
impl Product for DailyReturn {
    fn manifest(&self) -> Manifest {
        let definition = daily_operational();
        Manifest {
            id: ID.into(),
            title: "Daily operational return".into(),
            version: "1.0.0".into(),
            priority: Priority::CareCoordination,
            description: definition.description,
            publisher: None,
            purposes: vec![Purpose::Planning],
            reads: vec![
                Reads::new("bed", &["ward_id", "bed_type"]),
                Reads::new(
                    "ward_stay",
                    &["admission_id", "ward_id", "start_timestamp", "end_timestamp"],
                ),
                Reads::new(
                    "admission",
                    &[
                        "admission_id",
                        "admission_status",
                        "admission_timestamp",
                        "discharge_timestamp",
                        "discharge_pathway",
                        "method_of_admission_local_code",
                    ],
                ),
                Reads::new(
                    "discharge_readiness",
                    &["admission_id", "medically_optimised", "updated_timestamp"],
                ),
            ],
            views: Vec::new(),
            actions: Vec::new(),
            offers: Offers {
                questions: definition.questions,
                messages: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_question_reads_only_what_the_manifest_declares() {
        let manifest = DailyReturn.manifest();
        assert_eq!(manifest.offers.questions.len(), 5);
        let model = fdp_model::Model::canonical();
        let declared: BTreeSet<(String, String)> = manifest
            .reads
            .iter()
            .flat_map(|r| r.columns.iter().map(|c| (r.table.clone(), c.clone())))
            .collect();
        for (table, column) in &declared {
            let object = model
                .object_type_by_table(table)
                .unwrap_or_else(|| panic!("{table} is not a table of the model"));
            assert!(object.property_by_column(column).is_some(), "{table}.{column}");
        }
        // Each column the manifest declares is named by some question, and
        // each question names only tables the manifest declares.
        let sql: String = manifest
            .offers
            .questions
            .iter()
            .map(|q| q.sql.to_lowercase())
            .collect();
        for (table, column) in &declared {
            assert!(sql.contains(column.as_str()), "{table}.{column} is read by no question");
        }
        for q in &manifest.offers.questions {
            assert_eq!(q.purpose, Purpose::Planning, "{}", q.name);
            assert!(q.name.starts_with("daily-return/"), "{}", q.name);
            for word in q.sql.split(|c: char| !c.is_alphanumeric() && c != '_') {
                if model.object_type_by_table(word).is_some() {
                    assert!(
                        manifest.reads.iter().any(|r| r.table == word),
                        "{} reads {word}, which the manifest does not declare",
                        q.name
                    );
                }
            }
        }
    }
}
