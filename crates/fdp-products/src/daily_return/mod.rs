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

use std::collections::{BTreeMap, BTreeSet};

use fdp_govern::{GovernedSession, Purpose};
use serde::Deserialize;

use crate::declared::ColumnToml;
use crate::platform::{
    Answer, Chart, Input, Manifest, Offers, OutputColumn, ParamKind, ParamSpec, Params, Priority,
    Product, ProductError, QuestionSpec, Reads, ViewSpec,
};

/// The product's id.
pub const ID: &str = "daily-return";

/// The parameter every question takes: the instant the return describes.
const CENSUS_AT: &str = "census_at";

const RETURN: &str = include_str!("return.toml");

/// The return as `return.toml` declares it.
#[derive(Debug, Clone)]
pub struct ReturnFile {
    /// The return's name, which collected returns are kept under.
    pub name: String,
    pub description: String,
    pub questions: Vec<QuestionSpec>,
    /// Each question as a view: its spec, and where each column comes from.
    views: Vec<(ViewSpec, Vec<OutputColumn>)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnToml {
    name: String,
    description: String,
    question: Vec<QuestionToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuestionToml {
    name: String,
    version: u32,
    purpose: Purpose,
    description: String,
    parameters: BTreeMap<String, String>,
    column: Vec<ColumnToml>,
    #[serde(default)]
    chart: Option<Chart>,
    sql: String,
}

/// The tables and columns the return's questions read.
fn reads() -> Vec<Reads> {
    vec![
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
    ]
}

/// The daily operational return as published with this release, read
/// once: every manifest, view and schedule asks for it.
pub fn daily_operational() -> &'static ReturnFile {
    static RETURN_FILE: std::sync::OnceLock<ReturnFile> = std::sync::OnceLock::new();
    RETURN_FILE.get_or_init(read_return)
}

fn read_return() -> ReturnFile {
    let declared: ReturnToml = toml::from_str(RETURN).expect("the built-in daily return is valid");
    let read: BTreeMap<String, BTreeSet<String>> = reads()
        .into_iter()
        .map(|r| (r.table, r.columns.into_iter().collect()))
        .collect();
    let mut questions = Vec::new();
    let mut views = Vec::new();
    for q in declared.question {
        let columns = q
            .column
            .iter()
            .map(|c| OutputColumn {
                name: c.name.clone(),
                title: c.title.clone(),
                source: crate::declared::parse_source(&c.source, &read)
                    .unwrap_or_else(|e| panic!("{}, column {}: {e}", q.name, c.name)),
            })
            .collect();
        let view = ViewSpec {
            name: q.name.trim_start_matches("daily-return/").to_string(),
            title: q.description.clone(),
            description: format!("The daily return's question {} (version {})", q.name, q.version),
            params: vec![ParamSpec {
                name: CENSUS_AT.into(),
                kind: ParamKind::Timestamp,
                required: true,
                description: "The census instant, e.g. 2026-11-22T08:00:00Z".into(),
            }],
            input: Input::Tables,
            chart: q.chart.clone(),
            as_of: Some(CENSUS_AT.into()),
            needs: vec![],
        };
        views.push((view, columns));
        questions.push(QuestionSpec {
            name: q.name,
            version: q.version,
            purpose: q.purpose,
            description: q.description,
            parameters: q.parameters,
            sql: q.sql,
        });
    }
    ReturnFile {
        name: declared.name,
        description: declared.description,
        questions,
        views,
    }
}

/// The daily operational return, as a product: each question a view, and
/// every question offered to the federation.
#[derive(Default)]
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
            description: definition.description.clone(),
            publisher: None,
            purposes: vec![Purpose::Planning],
            reads: reads(),
            views: definition.views.iter().map(|(v, _)| v.clone()).collect(),
            actions: Vec::new(),
            offers: Offers {
                questions: definition.questions.clone(),
                messages: Vec::new(),
            },
        }
    }

    /// A view is its question, asked of this instance's own tables (read
    /// as they stood at the census instant: [`ViewSpec::as_of`]).
    async fn view(
        &self,
        view: &str,
        session: &GovernedSession,
        params: &Params,
    ) -> Result<Answer, ProductError> {
        let definition = daily_operational();
        let Some(((_, columns), question)) = definition
            .views
            .iter()
            .zip(&definition.questions)
            .find(|((v, _), _)| v.name == view)
        else {
            return Err(self.no_view(view));
        };
        let sql = fdp_govern::statement::bind_named(&question.sql, |name| {
            params
                .get(name)
                .map(|p| p.sql_literal())
                .ok_or_else(|| format!("{} takes :{name}, which was not given", question.name))
        })
        .map_err(ProductError::Failed)?;
        let result = session.query(&sql).await?;
        Answer::from_query(&result, columns.clone())
    }
}

#[cfg(test)]
mod tests {
    use fdp_govern::memory::MemoryTables;
    use serde_json::{json, Value};

    use super::*;
    use crate::testing::DemoInstance;

    /// At 08:00 on 22 November: twenty patients in general ward G and ten
    /// in critical care ward C; three on maternity ward M (too few to
    /// show outside the instance). Not counted: one who left G at 07:00,
    /// one who arrived on G at 09:00.
    fn tables() -> MemoryTables {
        let (mut beds, mut admissions, mut stays) = (Vec::new(), Vec::new(), Vec::new());
        for (ward, bed_type) in [("G", "general"), ("C", "critical_care"), ("M", "maternity")] {
            beds.push(json!({"bed_id": format!("{ward}-1"), "ward_id": ward, "bed_type": bed_type}));
        }
        let mut stay = |id: String, ward: &str, start: &str, end: Option<&str>| {
            admissions.push(json!({"admission_id": id, "patient_id": format!("P-{id}"),
                "admission_status": if end.is_some() { "discharged" } else { "admitted" },
                "admission_timestamp": start, "discharge_timestamp": end}));
            stays.push(json!({"ward_stay_id": format!("S-{id}"), "admission_id": id,
                "patient_id": format!("P-{id}"), "ward_id": ward,
                "start_timestamp": start, "end_timestamp": end}));
        };
        for (ward, n) in [("G", 20), ("C", 10), ("M", 3)] {
            for i in 0..n {
                stay(format!("{ward}{i}"), ward, "2026-11-20T10:00:00Z", None);
            }
        }
        stay("X1".into(), "G", "2026-11-20T10:00:00Z", Some("2026-11-22T07:00:00Z"));
        stay("X2".into(), "G", "2026-11-22T09:00:00Z", None);
        MemoryTables::new()
            .with_rows("bed", &beds)
            .unwrap()
            .with_rows("admission", &admissions)
            .unwrap()
            .with_rows("ward_stay", &stays)
            .unwrap()
    }

    const CENSUS: &[(&str, &str)] = &[("census_at", "2026-11-22T08:00:00Z")];

    #[tokio::test]
    async fn a_view_is_its_question_answered_under_disclosure_control() {
        let instance = DemoInstance::new(tables());
        let out = instance
            .view(ID, "analyst", Purpose::Planning, "http", "beds-occupied", CENSUS)
            .await
            .unwrap();
        let names: Vec<&str> = out.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["bed_type", "beds_occupied"]);
        let by_type: BTreeMap<String, Value> = out
            .rows
            .iter()
            .map(|r| (r[0].as_str().unwrap_or_default().to_string(), r[1].clone()))
            .collect();
        assert_eq!(by_type["general and acute"], json!(20), "{by_type:?}");
        assert_eq!(by_type["critical care"], json!(10), "{by_type:?}");
        // Three is too few to leave the instance: withheld or nulled.
        assert!(
            by_type.get("maternity").is_none_or(Value::is_null),
            "{by_type:?}"
        );
    }

    #[tokio::test]
    async fn it_is_refused_beyond_its_purpose_and_without_its_instant() {
        let instance = DemoInstance::new(tables());
        let e = instance
            .view(ID, "bed-manager", Purpose::Operations, "ui", "beds-occupied", CENSUS)
            .await
            .unwrap_err();
        assert!(e.is_refusal(), "{e}");
        let e = instance
            .view(ID, "analyst", Purpose::Planning, "http", "beds-occupied", &[])
            .await
            .unwrap_err();
        assert!(matches!(e, ProductError::Param { .. }), "{e}");
        let views: Vec<String> = DailyReturn.manifest().views.into_iter().map(|v| v.name).collect();
        assert_eq!(
            views,
            [
                "beds-occupied",
                "length-of-stay",
                "discharges-by-pathway",
                "medically-optimised",
                "elective-activity"
            ]
        );
    }

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
