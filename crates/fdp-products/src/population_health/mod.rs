//! Population health and vaccination: cohorts as data, their size and
//! uptake by every demographic cut and pair of cuts, the groups falling
//! behind, and invitation lists for direct care.
//!
//! The cohorts are the shipped definitions in `cohorts/` (built in) and
//! compile through `fdp-cohort` to SQL over the caller's governed session,
//! so under planning every figure has already passed the policy (opt-out
//! applied, dates of birth to the month, postcodes to the district) and
//! leaves through disclosure control. A person's area and deprivation come
//! from `patient_area`, derived from the full postcode before the policy
//! generalised it; a patient it has no row for yet is counted as "not
//! derived yet", never left out.

use chrono::{Datelike, NaiveDate, Utc};
use fdp_cohort::uptake::{self, GroupUptake};
use fdp_cohort::{Cohort, Compiled, Inputs, ReferenceDate, Span};
use fdp_govern::{GovernedSession, Purpose};
use serde_json::{json, Value};

use crate::platform::{
    column, Answer, Chart, Input, Manifest, MemberRows, Offers, ParamKind, ParamSpec, ParamValue,
    Params, Priority, Product, ProductError, QuestionSpec, Reads, Source, ViewSpec,
};

const ID: &str = "population-health";

macro_rules! shipped {
    ($($file:literal),* $(,)?) => {
        /// The cohorts built in: file name and definition.
        pub const COHORTS: &[(&str, &str)] = &[
            $(($file, include_str!(concat!("../../../../cohorts/", $file)))),*
        ];
    };
}

shipped!(
    "qof-diabetes-register.toml",
    "diabetes-foot-check-overdue.toml",
    "diabetes-care-processes.toml",
    "flu-2026-27.toml",
    "mmr-24-months.toml",
    "mmr-5-years.toml",
);

/// The built-in cohorts, read once (the flu cohort's value sets alone are
/// 16,000 lines), or why one of them cannot be.
fn shipped() -> Result<&'static [Cohort], ProductError> {
    static SHIPPED: std::sync::OnceLock<Result<Vec<Cohort>, String>> = std::sync::OnceLock::new();
    SHIPPED
        .get_or_init(|| {
            COHORTS
                .iter()
                .map(|(file, text)| Cohort::from_toml(text).map_err(|e| format!("{file}: {e}")))
                .collect()
        })
        .as_deref()
        .map_err(|e| ProductError::Failed(e.clone()))
}

/// A built-in cohort by name.
pub fn cohort(name: &str) -> Result<Cohort, ProductError> {
    let all = shipped()?;
    all.iter()
        .find(|c| c.name == name)
        .cloned()
        .ok_or_else(|| ProductError::Param {
            name: "cohort".into(),
            message: format!(
                "no cohort {name:?}; the cohorts are {}",
                all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })
}

/// People and their coded records, as SQL over the governed tables.
pub fn inputs() -> Inputs {
    Inputs {
        people: "SELECT person_id AS patient_id, CAST(date_of_birth AS DATE) AS date_of_birth, \
                 CASE lower(sex) WHEN 'f' THEN 'female' WHEN 'm' THEN 'male' ELSE lower(sex) END AS sex, \
                 registered_gp, CAST(date_of_death AS DATE) AS date_of_death, ethnic_category_code FROM patient"
            .into(),
        events: "SELECT patient_id, diagnosis_snomed_ct_code AS code, \
                   CAST(diagnosis_start_date AS DATE) AS event_date FROM patient_diagnosis \
                 UNION ALL \
                 SELECT patient_id, code, CAST(effective_timestamp AS DATE) FROM observation \
                   WHERE status IS NULL OR status <> 'entered-in-error' \
                 UNION ALL \
                 SELECT patient_id, coalesce(vaccination_procedure_code, vaccine_code), \
                   CAST(occurrence_timestamp AS DATE) FROM vaccination \
                   WHERE status IS NULL OR status = 'completed'"
            .into(),
    }
}

/// The demographic cuts uptake is broken down by: name and title. Each
/// cut's SQL (`cut_sql`) reads `p`, a member with what the cohort carries
/// of them, and where needed `a` patient_area, `g` general_practice and
/// `e` ethnic_category_code.
pub const CUTS: &[(&str, &str)] = &[
    ("age_band", "Age band"),
    ("sex", "Sex"),
    ("ethnic_group", "Ethnic category"),
    ("imd_decile", "IMD decile (1 most deprived)"),
    ("practice", "GP practice"),
    ("pcn", "Primary care network"),
    ("lsoa", "LSOA"),
    ("local_authority", "Local authority"),
];

fn cut_sql(cut: &str, day: &ReferenceDate) -> Option<String> {
    let area = |col: &str| {
        format!(
            "CASE WHEN a.patient_id IS NULL THEN 'not derived yet' \
                  WHEN a.{col} IS NULL THEN a.area_status ELSE CAST(a.{col} AS VARCHAR) END"
        )
    };
    Some(match cut {
        "age_band" => {
            // Whole years on the date, by the dates of birth that begin
            // each band: exact from a date of birth given to the month
            // when the date is a month's last day.
            let mut arms = Vec::new();
            for low in (10..=90).step_by(10) {
                let born_after = day.back_sql(Span::Months(low * 12))?;
                let band = format!("{}-{}", low - 10, low - 1);
                arms.push(format!("WHEN CAST(p.date_of_birth AS DATE) > {born_after} THEN '{band}'"));
            }
            format!(
                "CASE WHEN p.date_of_birth IS NULL THEN 'not known' {} ELSE '90+' END",
                arms.join(" ")
            )
        }
        "sex" => "coalesce(lower(p.sex), 'not known')".into(),
        "ethnic_group" => "CASE WHEN e.code IS NOT NULL THEN e.display \
                           WHEN p.ethnic_category_code IS NULL OR trim(p.ethnic_category_code) = '' THEN 'Not known' \
                           ELSE 'Not known (unrecognised code)' END"
            .into(),
        "imd_decile" => area("imd_decile"),
        "practice" => "coalesce(p.registered_gp, 'not registered')".into(),
        "pcn" => "CASE WHEN p.registered_gp IS NULL THEN 'not registered' \
                  ELSE coalesce(g.pcn_code, 'no PCN') END"
            .into(),
        "lsoa" => area("lsoa_code"),
        "local_authority" => area("local_authority_code"),
        _ => return None,
    })
    .map(|sql| format!("coalesce({sql}, 'not known')"))
}

/// The members of a compiled cohort, with their groups by `cuts`, as SQL.
fn grouped(compiled: &Compiled, cuts: &[&str]) -> Result<String, ProductError> {
    let mut groups = Vec::new();
    for (i, c) in cuts.iter().enumerate() {
        let sql = cut_sql(c, &compiled.reference_date).ok_or_else(|| ProductError::Param {
            name: "cut".into(),
            message: format!(
                "no cut {c:?}; the cuts are {}",
                CUTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        })?;
        groups.push(format!("{sql} AS g{i}"));
    }
    let outcomes: String = (1..=compiled.outcomes.len())
        .map(|i| format!(", p.outcome_{i}"))
        .collect();
    // The members carry what the cuts need of each person; the area, the
    // practice's network and the ethnic category's name are joined only
    // when a cut asks for them.
    let needs = |names: &[&str]| cuts.iter().any(|c| names.contains(c));
    let mut joins = String::new();
    if needs(&["imd_decile", "lsoa", "local_authority"]) {
        joins.push_str(" LEFT JOIN patient_area a ON a.patient_id = p.patient_id");
    }
    if needs(&["pcn"]) {
        joins.push_str(" LEFT JOIN general_practice g ON g.practice_code = p.registered_gp");
    }
    if needs(&["ethnic_group"]) {
        joins.push_str(
            " LEFT JOIN ethnic_category_code e ON e.code = upper(trim(p.ethnic_category_code))",
        );
    }
    Ok(format!(
        "SELECT p.patient_id{outcomes}, {groups} FROM ({members}) p{joins}",
        groups = groups.join(", "),
        members = compiled.sql,
    ))
}

/// The SQL of the `size` view: the members of `cohort` on `as_at` counted
/// by one cut (`group`) or a pair (`group`, `and`). Public so that a
/// benchmark can run the very same text in another engine.
pub fn size_sql(cohort: &Cohort, cuts: &[&str], as_at: NaiveDate) -> Result<String, ProductError> {
    if cuts.is_empty() || cuts.len() > 2 {
        return Err(ProductError::Param {
            name: "cut".into(),
            message: "give one cut, or two for their pairs".into(),
        });
    }
    let compiled = compile(cohort, as_at)?;
    let inner = grouped(&compiled, cuts)?;
    let (keys, named) = if cuts.len() == 2 {
        ("g0, g1", "g0 AS \"group\", g1 AS \"and\"")
    } else {
        ("g0", "g0 AS \"group\"")
    };
    Ok(format!(
        "SELECT {named}, count(*) AS people FROM ({inner}) x GROUP BY {keys} ORDER BY {keys}"
    ))
}

/// Each member of `cohort` on `as_at` with their outcomes (`outcome_1`,
/// ...) and their group in every cut (`g0` ... in the order of [`CUTS`]),
/// as SQL over the tables the product reads. For checking the product's
/// figures against a truth it never sees.
pub fn members_by_every_cut(cohort: &Cohort, as_at: NaiveDate) -> Result<(String, Vec<String>), ProductError> {
    let compiled = compile(cohort, as_at)?;
    let cuts: Vec<&str> = CUTS.iter().map(|(n, _)| *n).collect();
    Ok((grouped(&compiled, &cuts)?, compiled.outcomes))
}

/// The parameter a federated uptake question is asked for.
const AS_AT_PARAMETER: &str = "as_at";

/// The name of the federated question on `cohort`'s uptake.
fn question_name(cohort: &str) -> String {
    format!("{ID}/{cohort}-uptake")
}

/// The federated questions this product offers: for each shipped cohort
/// with outcomes, its members and each outcome's number in the whole
/// cohort and in every group of every single cut, on a date the asker
/// gives. One approval serves every date. Pairs of cuts are left to each
/// member: across members their cells are mostly too small to survive
/// disclosure control.
fn questions() -> Result<Vec<QuestionSpec>, ProductError> {
    let day = ReferenceDate::Parameter(AS_AT_PARAMETER.into());
    let cuts: Vec<&str> = CUTS.iter().map(|(n, _)| *n).collect();
    let mut out = Vec::new();
    for cohort in shipped()?.iter().filter(|c| !c.outcomes.is_empty()) {
        let compiled = fdp_cohort::compile_at(cohort, &day, &inputs())
            .map_err(|e| ProductError::Failed(e.to_string()))?;
        let inner = grouped(&compiled, &cuts)?;
        let keys: Vec<String> = cuts
            .iter()
            .enumerate()
            .map(|(i, c)| format!("g{i} AS {c}"))
            .collect();
        let outcomes: String = (1..=compiled.outcomes.len())
            .map(|i| format!(", count(*) FILTER (WHERE outcome_{i}) AS outcome_{i}"))
            .collect();
        let sets: Vec<String> = (0..cuts.len()).map(|i| format!("(g{i})")).collect();
        out.push(QuestionSpec {
            name: question_name(&cohort.name),
            version: 1,
            purpose: Purpose::Planning,
            description: format!(
                "{}: people in the cohort and with each outcome ({}) on the date asked, in the whole cohort and by {}",
                cohort.title,
                compiled
                    .outcomes
                    .iter()
                    .enumerate()
                    .map(|(i, o)| format!("outcome_{} = {o}", i + 1))
                    .collect::<Vec<_>>()
                    .join(", "),
                cuts.join(", ")
            ),
            parameters: [(AS_AT_PARAMETER.to_string(), "date".to_string())].into(),
            sql: format!(
                "SELECT {keys}, count(*) AS people{outcomes} FROM ({inner}) x GROUP BY GROUPING SETS ((), {sets})",
                keys = keys.join(", "),
                sets = sets.join(", "),
            ),
        });
    }
    Ok(out)
}

/// One group's sums across members.
#[derive(Default)]
struct Summed {
    people: u64,
    /// Per outcome.
    with: Vec<u64>,
    /// Members whose count for the group was suppressed (the sum leaves
    /// them out).
    suppressed: std::collections::BTreeSet<String>,
    members: std::collections::BTreeSet<String>,
}

/// The members' answers to an uptake question summed group by group, then
/// each outcome's uptake in each group assessed against the whole
/// cohort's, as the `uptake` view does for one instance. A group where a
/// member's count was suppressed says which members it leaves out.
fn combine_uptake(cohort: &Cohort, answers: &[MemberRows]) -> Result<Answer, ProductError> {
    let outcomes: Vec<String> = cohort
        .outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| o.name.clone().unwrap_or_else(|| format!("outcome {}", i + 1)))
        .collect();
    let mut sums: std::collections::BTreeMap<(String, String), Summed> = Default::default();
    for a in answers {
        for row in &a.rows {
            let present: Vec<(&str, String)> = CUTS
                .iter()
                .filter_map(|(c, _)| match row.get(*c) {
                    Some(Value::String(v)) => Some((*c, v.clone())),
                    Some(Value::Number(n)) => Some((*c, n.to_string())),
                    _ => None,
                })
                .collect();
            if present.len() > 1 {
                return Err(ProductError::Failed(format!(
                    "{} answered a row grouped by more than one cut: {row}",
                    a.member
                )));
            }
            let key = present
                .first()
                .map(|(c, v)| (c.to_string(), v.clone()))
                .unwrap_or_default();
            let sum = sums.entry(key).or_default();
            sum.with.resize(outcomes.len(), 0);
            sum.members.insert(a.member.clone());
            let mut count = |name: &str| match row.get(name) {
                Some(v) if v.is_u64() => v.as_u64(),
                _ => {
                    sum.suppressed.insert(a.member.clone());
                    None
                }
            };
            let people = count("people");
            let with: Vec<Option<u64>> =
                (1..=outcomes.len()).map(|i| count(&format!("outcome_{i}"))).collect();
            sum.people += people.unwrap_or(0);
            for (i, w) in with.into_iter().enumerate() {
                sum.with[i] += w.unwrap_or(0);
            }
        }
    }
    let area = sums.remove(&(String::new(), String::new()));
    // Each member's rounded count may be this far from its truth, and a
    // sum as far as all of theirs together.
    let slack: u64 = answers.iter().map(|a| a.rounded_to / 2).sum();
    let mut rows = Vec::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        let (area_people, area_with) = area
            .as_ref()
            .map(|a| (a.people, a.with[i]))
            .unwrap_or((0, 0));
        let groups = sums.iter().map(|((cut, group), s)| {
            (cut.clone(), vec![group.clone()], s.people, s.with[i].min(s.people))
        });
        for g in uptake::assess(groups, area_with, area_people, slack) {
            let s = &sums[&(g.cut.clone(), g.group[0].clone())];
            let mut row = vec![json!(outcome)];
            row.extend(uptake_rows(std::slice::from_ref(&g)).remove(0));
            row.push(json!(s.members.len()));
            row.push(json!(s.suppressed.iter().cloned().collect::<Vec<_>>().join(", ")));
            rows.push(row);
        }
        if let Some(a) = &area {
            rows.push(vec![
                json!(outcome),
                json!("all"),
                json!("whole cohort"),
                json!(a.people),
                json!(a.with[i]),
                json!(if a.people > 0 { round(a.with[i] as f64 * 100.0 / a.people as f64, 1) } else { 0.0 }),
                Value::Null,
                Value::Null,
                json!(0.0),
                json!(0),
                json!(false),
                json!(a.members.len()),
                json!(a.suppressed.iter().cloned().collect::<Vec<_>>().join(", ")),
            ]);
        }
    }
    let mut columns = vec![column("outcome", "Outcome", Source::derived(&[("patient", "person_id")]))];
    columns.extend(uptake_columns());
    columns.push(column("members", "Members answering", Source::derived(&[("patient", "person_id")])));
    columns.push(column(
        "suppressed_at",
        "Members whose count was suppressed (left out of the sum)",
        Source::derived(&[("patient", "person_id")]),
    ));
    Ok(Answer {
        columns,
        rows,
        disclosure: Some(
            "each member's counts passed its own disclosure control before they were summed; a suppressed count is left out and named".into(),
        ),
        patients: Vec::new(),
    })
}

fn as_at(params: &Params) -> NaiveDate {
    params.date("as_at").unwrap_or_else(|| Utc::now().date_naive())
}

fn compile(cohort: &Cohort, as_at: NaiveDate) -> Result<Compiled, ProductError> {
    fdp_cohort::compile(cohort, Some(as_at), &inputs()).map_err(|e| ProductError::Failed(e.to_string()))
}

/// Which outcome (1-based) `name` is, the first where none is named.
fn outcome_index(compiled: &Compiled, cohort: &Cohort, name: Option<String>) -> Result<usize, ProductError> {
    if compiled.outcomes.is_empty() {
        return Err(ProductError::Param {
            name: "cohort".into(),
            message: format!("{} measures no outcome, so it has no uptake", cohort.name),
        });
    }
    match name {
        None => Ok(1),
        Some(n) => compiled
            .outcomes
            .iter()
            .position(|o| *o == n)
            .map(|i| i + 1)
            .ok_or_else(|| ProductError::Param {
                name: "outcome".into(),
                message: format!("{} measures {}", cohort.name, compiled.outcomes.join(", ")),
            }),
    }
}

/// Count people and those with the outcome in each group of each of
/// `sets` (each a list of indexes into `cuts`), and in the whole cohort,
/// in one query: the members are found once however many groupings are
/// asked for, and under disclosure control the totals and every grouping
/// are one result, so secondary suppression sees them together. Then each
/// group is assessed against the whole cohort.
async fn uptake_by(
    session: &GovernedSession,
    compiled: &Compiled,
    outcome: usize,
    cuts: &[&str],
    sets: &[Vec<usize>],
) -> Result<(u64, u64, Vec<GroupUptake>), ProductError> {
    let inner = grouped(compiled, cuts)?;
    let keys: Vec<String> = (0..cuts.len()).map(|i| format!("g{i}")).collect();
    let mut grouping = vec!["()".to_string()];
    grouping.extend(sets.iter().map(|set| {
        let k: Vec<&str> = set.iter().map(|&i| keys[i].as_str()).collect();
        format!("({})", k.join(", "))
    }));
    let sql = format!(
        "SELECT {keys}, count(*) AS people, \
                count(*) FILTER (WHERE outcome_{outcome}) AS with_outcome \
         FROM ({inner}) x GROUP BY GROUPING SETS ({grouping})",
        keys = keys.join(", "),
        grouping = grouping.join(", "),
    );
    let result = session.query(&sql).await?;
    let rows = result.rows_json().map_err(|e| ProductError::Failed(e.to_string()))?;
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    // Every cut's value is a text that is never null (an unknown is its
    // own group), so a null key is a dimension its grouping set left out.
    let key_of = |r: &Value| -> Vec<Option<String>> {
        keys.iter()
            .map(|k| match r.get(k) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            })
            .collect()
    };
    let rows: Vec<&Value> = rows.as_array().into_iter().flatten().collect();
    // Under disclosure control a whole cohort too small to show is itself
    // suppressed: no area rate, so no group is assessed.
    let (area_people, area_with) = rows
        .iter()
        .find(|r| key_of(r).iter().all(Option::is_none))
        .map(|r| (num(r, "people").unwrap_or(0), num(r, "with_outcome").unwrap_or(0)))
        .unwrap_or((0, 0));
    let groups = rows.iter().filter_map(|r| {
        let key = key_of(r);
        let present: Vec<usize> = (0..keys.len()).filter(|&i| key[i].is_some()).collect();
        if present.is_empty() {
            return None;
        }
        let people = num(r, "people")?;
        let with = num(r, "with_outcome")?;
        let cut = present.iter().map(|&i| cuts[i]).collect::<Vec<_>>().join(" × ");
        let group = present.iter().filter_map(|&i| key[i].clone()).collect();
        Some((cut, group, people, with.min(people)))
    });
    // Counts rounded by disclosure control may each be this far from the
    // truth.
    let slack = result.disclosure.as_ref().map(|d| d.rounded_to / 2).unwrap_or(0);
    Ok((area_people, area_with, uptake::assess(groups, area_with, area_people, slack)))
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn uptake_rows(groups: &[GroupUptake]) -> Vec<Vec<Value>> {
    groups
        .iter()
        .map(|g| {
            vec![
                json!(g.cut),
                json!(g.group.join(" × ")),
                json!(g.people),
                json!(g.with_outcome),
                json!(round(g.uptake * 100.0, 1)),
                json!(round(g.low95 * 100.0, 1)),
                json!(round(g.high95 * 100.0, 1)),
                json!(round(g.gap_points, 1)),
                json!(g.to_close_gap),
                json!(g.flagged),
            ]
        })
        .collect()
}

fn uptake_columns() -> Vec<crate::platform::OutputColumn> {
    let counted = || Source::count("patient");
    let derived = || Source::derived(&[("patient", "person_id")]);
    vec![
        column("cut", "Cut", derived()),
        column("group", "Group", derived()),
        column("people", "People in the cohort", counted()),
        column("with_outcome", "With the outcome", counted()),
        column("uptake_percent", "Uptake %", derived()),
        column("low95", "95% CI low", derived()),
        column("high95", "95% CI high", derived()),
        column("gap_points", "Gap to the area (points)", derived()),
        column("to_close_gap", "People to close the gap", derived()),
        column("flagged", "Below the area (99.8%)", derived()),
    ]
}

fn text_param(name: &str, required: bool, description: &str) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        kind: ParamKind::Text,
        required,
        description: description.into(),
    }
}

fn as_at_param() -> ParamSpec {
    ParamSpec {
        name: "as_at".into(),
        kind: ParamKind::Date,
        required: false,
        description: "The reference date the cohort is taken on (default today)".into(),
    }
}

/// The product.
#[derive(Default)]
pub struct PopulationHealth;

#[async_trait::async_trait]
impl Product for PopulationHealth {
    fn manifest(&self) -> Manifest {
        let cohort = || {
            text_param(
                "cohort",
                true,
                "A cohort: qof-diabetes-register, diabetes-foot-check-overdue, diabetes-care-processes, flu-2026-27, mmr-24-months, mmr-5-years",
            )
        };
        Manifest {
            id: ID.into(),
            title: "Population health and vaccination".into(),
            version: "1.0.0".into(),
            priority: Priority::PopulationHealth,
            description: "Cohorts as data (the QOF diabetes register, the eight care processes, flu 2026/27, MMR at 24 months and 5 years): their size and uptake by age, sex, ethnic group, deprivation, practice, network, LSOA and local authority, the groups falling behind, and invitation lists for direct care".into(),
            publisher: None,
            purposes: vec![Purpose::DirectCare, Purpose::Operations, Purpose::Planning],
            reads: vec![
                Reads::new(
                    "patient",
                    &[
                        "person_id", "date_of_birth", "sex", "registered_gp", "date_of_death",
                        "ethnic_category_code", "nhs_number", "title", "first_name", "surname",
                        "address_line_1", "address_line_2", "address_city", "postcode",
                    ],
                ),
                Reads::new("patient_diagnosis", &["patient_id", "diagnosis_snomed_ct_code", "diagnosis_start_date"]),
                Reads::new("observation", &["patient_id", "code", "effective_timestamp", "status"]),
                Reads::new("vaccination", &["patient_id", "vaccination_procedure_code", "vaccine_code", "occurrence_timestamp", "status"]),
                Reads::optional("patient_area", &["patient_id", "area_status", "imd_decile", "lsoa_code", "local_authority_code"]),
                Reads::optional("general_practice", &["practice_code", "pcn_code"]),
                Reads::optional("ethnic_category_code", &["code", "display"]),
            ],
            views: vec![
                ViewSpec {
                    name: "uptake".into(),
                    title: "Uptake by group".into(),
                    description: "A cohort's outcome (vaccinated, a care process) by one cut or a pair (cut = imd_decile, or imd_decile,practice), each group with its 95% interval, its gap to the whole cohort and the people it would take to close it; groups below at 99.8% flagged first".into(),
                    params: vec![
                        cohort(),
                        text_param("outcome", false, "The outcome measured (default the cohort's first)"),
                        ParamSpec {
                            name: "cut".into(),
                            kind: ParamKind::TextList,
                            required: true,
                            description: "One cut, or two for their pairs: age_band, sex, ethnic_group, imd_decile, practice, pcn, lsoa, local_authority".into(),
                        },
                        as_at_param(),
                    ],
                    input: Input::Tables,
                    chart: Some(Chart::bars("group", "uptake_percent")),
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: "low-uptake".into(),
                    title: "Groups falling behind".into(),
                    description: "Every group of every cut and pair of cuts whose uptake is below the whole cohort's at 99.8%, ranked by the people it would take to close the gap: a ranking of low-uptake areas and groups without a map".into(),
                    params: vec![
                        cohort(),
                        text_param("outcome", false, "The outcome measured (default the cohort's first)"),
                        as_at_param(),
                    ],
                    input: Input::Tables,
                    chart: Some(Chart::bars("group", "to_close_gap")),
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: "size".into(),
                    title: "Cohort size".into(),
                    description: "People in a cohort on a date, by one cut or a pair".into(),
                    params: vec![
                        cohort(),
                        ParamSpec {
                            name: "cut".into(),
                            kind: ParamKind::TextList,
                            required: true,
                            description: "One cut, or two for their pairs: age_band, sex, ethnic_group, imd_decile, practice, pcn, lsoa, local_authority".into(),
                        },
                        as_at_param(),
                    ],
                    input: Input::Tables,
                    chart: Some(Chart::bars("group", "people")),
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: "size-over-time".into(),
                    title: "Cohort size over time".into(),
                    description: "People in a cohort at the end of each of the last twelve months".into(),
                    params: vec![cohort(), as_at_param()],
                    input: Input::Tables,
                    chart: Some(Chart::lines("month_end", &["people"])),
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: "invitations".into(),
                    title: "Invitation list".into(),
                    description: "For direct care only: the patients of a cohort without its outcome (not yet vaccinated, no foot check), for their own practice to invite, as a mail-merge list. Every list is audited with its patients. A patient who has opted out of the national data opt-out is still invited: the opt-out is about secondary use, and this is care".into(),
                    params: vec![
                        cohort(),
                        text_param("outcome", false, "List those without this outcome (default the cohort's first; none for a cohort with no outcome: every member)"),
                        text_param("practice", false, "Only this practice's patients (ODS code)"),
                        as_at_param(),
                    ],
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: vec![],
                },
            ],
            actions: Vec::new(),
            offers: Offers {
                // The shipped cohorts are compiled in: they cannot fail
                // here without failing every view, and the tests read them.
                questions: questions().unwrap_or_default(),
                messages: Vec::new(),
            },
        }
    }

    fn combine(&self, question: &str, answers: &[MemberRows]) -> Option<Result<Answer, ProductError>> {
        let cohort = shipped()
            .ok()?
            .iter()
            .find(|c| question_name(&c.name) == question)?;
        Some(combine_uptake(cohort, answers))
    }

    async fn view(
        &self,
        view: &str,
        session: &GovernedSession,
        params: &Params,
    ) -> Result<Answer, ProductError> {
        let day = as_at(params);
        let cohort = cohort(&params.text("cohort").unwrap_or_default())?;
        let compiled = compile(&cohort, day)?;
        match view {
            "uptake" => {
                let cuts = params.list("cut");
                if cuts.is_empty() || cuts.len() > 2 {
                    return Err(ProductError::Param {
                        name: "cut".into(),
                        message: "give one cut, or two for their pairs".into(),
                    });
                }
                let outcome = outcome_index(&compiled, &cohort, params.text("outcome"))?;
                let cuts: Vec<&str> = cuts.iter().map(String::as_str).collect();
                let set = (0..cuts.len()).collect();
                let (_, _, groups) = uptake_by(session, &compiled, outcome, &cuts, &[set]).await?;
                Ok(answer(uptake_columns(), uptake_rows(&groups), session))
            }
            "low-uptake" => {
                let outcome = outcome_index(&compiled, &cohort, params.text("outcome"))?;
                let names: Vec<&str> = CUTS.iter().map(|(n, _)| *n).collect();
                let mut sets: Vec<Vec<usize>> = (0..names.len()).map(|i| vec![i]).collect();
                for i in 0..names.len() {
                    sets.extend((i + 1..names.len()).map(|j| vec![i, j]));
                }
                let (_, _, mut all) = uptake_by(session, &compiled, outcome, &names, &sets).await?;
                all.retain(|g| g.flagged);
                all.sort_by(|a, b| b.to_close_gap.cmp(&a.to_close_gap).then(a.cut.cmp(&b.cut)));
                Ok(answer(uptake_columns(), uptake_rows(&all), session))
            }
            "size" => {
                let cuts = params.list("cut");
                let cuts: Vec<&str> = cuts.iter().map(String::as_str).collect();
                let result = session.query(&size_sql(&cohort, &cuts, day)?).await?;
                let mut columns = vec![column("group", "Group", Source::derived(&[("patient", "person_id")]))];
                if cuts.len() == 2 {
                    columns.push(column("and", "And", Source::derived(&[("patient", "person_id")])));
                }
                columns.push(column("people", "People", Source::count("patient")));
                Answer::from_query(&result, columns)
            }
            "size-over-time" => {
                let mut rows = Vec::new();
                let mut disclosure = None;
                for back in (0..12).rev() {
                    let end = month_end(day, back);
                    let c = compile(&cohort, end)?;
                    let r = session
                        .query(&format!("SELECT count(*) AS people FROM ({}) m", c.sql))
                        .await?;
                    disclosure = r.disclosure.as_ref().map(|d| d.summary()).or(disclosure);
                    let json = r.rows_json().map_err(|e| ProductError::Failed(e.to_string()))?;
                    let people = json
                        .as_array()
                        .and_then(|a| a.first())
                        .and_then(|v| v.get("people").cloned())
                        .unwrap_or(Value::Null);
                    rows.push(vec![json!(end.to_string()), people]);
                }
                Ok(Answer {
                    columns: vec![
                        column("month_end", "Month end", Source::derived(&[("patient", "person_id")])),
                        column("people", "People", Source::count("patient")),
                    ],
                    rows,
                    disclosure,
                    patients: Vec::new(),
                })
            }
            "invitations" => {
                if session.purpose() != Purpose::DirectCare {
                    let why = format!(
                        "an invitation list names patients for their care, so it is for direct care only, not {}",
                        session.purpose()
                    );
                    session.refused("population-health invitations", &why)?;
                    return Err(ProductError::Forbidden(why));
                }
                let without = if compiled.outcomes.is_empty() {
                    String::new()
                } else {
                    let i = outcome_index(&compiled, &cohort, params.text("outcome"))?;
                    format!("WHERE NOT m.outcome_{i}")
                };
                let practice = match params.text("practice") {
                    Some(p) => format!(
                        " {} p.registered_gp = {}",
                        if without.is_empty() { "WHERE" } else { "AND" },
                        ParamValue::Text(p).sql_literal()
                    ),
                    None => String::new(),
                };
                let reason = format!("{}: {}", cohort.title, match params.text("outcome") {
                    Some(o) => format!("not yet {o}"),
                    None => compiled.outcomes.first().map(|o| format!("not yet {o}")).unwrap_or_default(),
                });
                let result = session
                    .query(&format!(
                        "SELECT p.registered_gp AS practice, p.nhs_number, p.title, p.first_name, p.surname, \
                                p.address_line_1, p.address_line_2, p.address_city, p.postcode, \
                                {reason} AS reason \
                         FROM ({members}) m JOIN patient p ON p.person_id = m.patient_id {without}{practice} \
                         ORDER BY p.registered_gp, p.surname, p.first_name",
                        reason = ParamValue::Text(reason).sql_literal(),
                        members = compiled.sql,
                    ))
                    .await?;
                let c = |name: &str, title: &str| column(name, title, Source::column("patient", name));
                Answer::from_query(
                    &result,
                    vec![
                        column("practice", "Practice", Source::column("patient", "registered_gp")),
                        c("nhs_number", "NHS number"),
                        c("title", "Title"),
                        c("first_name", "First name"),
                        c("surname", "Surname"),
                        c("address_line_1", "Address line 1"),
                        c("address_line_2", "Address line 2"),
                        c("address_city", "Town"),
                        c("postcode", "Postcode"),
                        column("reason", "Why invited", Source::derived(&[("patient", "person_id")])),
                    ],
                )
            }
            other => Err(self.no_view(other)),
        }
    }
}

fn answer(columns: Vec<crate::platform::OutputColumn>, rows: Vec<Vec<Value>>, session: &GovernedSession) -> Answer {
    Answer {
        columns,
        rows,
        disclosure: session
            .purpose()
            .is_secondary()
            .then(|| "counts under disclosure control before the intervals were computed".to_string()),
        patients: Vec::new(),
    }
}

/// The last day of the month `back` months before `day`'s.
fn month_end(day: NaiveDate, back: u32) -> NaiveDate {
    let first = day.with_day(1).expect("the first exists");
    let first = first
        .checked_sub_months(chrono::Months::new(back))
        .unwrap_or(first);
    first
        .checked_add_months(chrono::Months::new(1))
        .and_then(|d| d.pred_opt())
        .unwrap_or(first)
}
