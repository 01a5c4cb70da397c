//! The property test of governance over random queries (class 2 of the
//! threat model in `docs/governance.md`).
//!
//! A generator builds SQL the way an analyst or a researcher might, and the
//! way one trying to get round disclosure control would: aggregates of
//! every kind DataFusion offers, counts written as arithmetic, casts and
//! filtered sums, joins, subqueries (`IN`, `EXISTS`, scalar), CTEs, unions,
//! rollups, window functions, row-level selections, and predicates that
//! single out one patient. Each runs in a governed session under planning
//! (the demo policy's analyst) and research (a researcher on a registered
//! project), answering over the network as an export would, on data with
//! planted identifiers and planted opted-out patients. Every answer must
//! hold:
//!
//! - no planted identifier (NHS number, name, hospital number (MRN), the
//!   instance's own patient id, date of birth, full postcode, a patient's
//!   name on a record);
//! - no count, or number derived from one, from 1 to the threshold;
//! - nothing of an opted-out patient: their records carry a text marker and
//!   a number no real record reaches, so any contribution shows.
//!
//! `FDP_PROPERTY_SEED` replays a run; `FDP_PROPERTY_QUERIES` sets how many
//! queries (20,000 by default, half under each purpose);
//! `FDP_PROPERTY_VERBOSE` prints each refused query and why. The seed and
//! the number run are printed whatever the outcome.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use common::*;
use fdp_govern::{Governance, Policy, Principal, Purpose, SessionRequest};
use fdp_synth::Xorshift;
use serde_json::{json, Value};

/// The demo policy's threshold: counts from 1 to 7 never leave.
const THRESHOLD: f64 = 8.0;
/// What an opted-out patient's numbers hold; no sum of real values here
/// reaches `OPTED_OUT_SEEN`.
const OPTED_OUT_NUMBER: i64 = 1_000_000_000;
const OPTED_OUT_SEEN: f64 = 1_000_000.0;
const OPTED_OUT_TEXT: &str = "OPTOUTMARK";

const PATIENTS: u64 = 150;
const OPTED_OUT: u64 = 10;

const SPECIALTIES: &[(&str, u64)] = &[
    // (specialty, share of encounters in 100ths): some so small that only
    // a few patients stand behind them.
    ("Urology", 30),
    ("Cardiology", 25),
    ("Respiratory Medicine", 20),
    ("General Surgery", 15),
    ("Dermatology", 6),
    ("Rheumatology", 3),
    ("Haematology", 1),
];
const WARDS: &[&str] = &["Ward 1", "Ward 2", "Ward 3", "Ward 4", "Ward 5"];
const SITES: &[&str] = &["St Aidan's Hospital", "Riverside General"];
const TYPES: &[&str] = &["IMP", "AMB", "EMER"];
const METHODS: &[&str] = &["Elective", "Emergency", "Transfer"];
const ETHNIC: &[&str] = &["A", "B", "C", "D"];

/// The planted data: what must never be seen.
struct Planted {
    identifiers: Vec<String>,
}

fn pick<'a>(rng: &mut Xorshift, xs: &'a [&'a str]) -> &'a str {
    xs[rng.below(xs.len() as u64) as usize]
}

fn specialty(rng: &mut Xorshift) -> &'static str {
    let mut roll = rng.below(100);
    for (s, share) in SPECIALTIES {
        if roll < *share {
            return s;
        }
        roll -= share;
    }
    SPECIALTIES[0].0
}

async fn plant(data: &Path, seed: u64) -> Planted {
    let mut rng = Xorshift::new(seed ^ 0x5eed);
    let mut identifiers = Vec::new();
    let mut patients = Vec::new();
    let mut opted_out_numbers = Vec::new();
    for i in 0..PATIENTS {
        let opted_out = i < OPTED_OUT;
        let id = format!("PP{i:04}");
        let nhs = nhs_number(900_000_000 + i * 6_007);
        let first = format!("Plantfirst{i:03}");
        let mrn = format!("MRNX{i:05}");
        let dob = format!(
            "19{:02}-{:02}-{:02}",
            30 + rng.below(60),
            1 + rng.below(12),
            10 + rng.below(18)
        );
        let postcode = format!(
            "LS{} {}Q{}",
            1 + rng.below(9),
            rng.below(10),
            ["A", "B", "D"][rng.below(3) as usize]
        );
        identifiers.extend([
            id.clone(),
            nhs.clone(),
            first.clone(),
            mrn.clone(),
            dob.clone(),
            postcode.clone(),
        ]);
        if opted_out {
            opted_out_numbers.push(nhs.clone());
        }
        patients.push(json!({
            "person_id": id, "nhs_number": nhs, "first_name": first, "surname": "Plantsurname",
            "full_name": format!("{first} Plantsurname"), "mrn": mrn, "date_of_birth": dob,
            "postcode": postcode, "phone_number": format!("0113 496 {i:04}"),
            "sex": if opted_out { OPTED_OUT_TEXT } else if i % 2 == 0 { "F" } else { "M" },
            "ethnic_category": if opted_out { OPTED_OUT_TEXT } else { pick(&mut rng, ETHNIC) },
            "age": if opted_out { OPTED_OUT_NUMBER } else { 18 + rng.below(80) as i64 },
        }));
    }
    identifiers.push("Plantsurname".into());
    write_canonical(data, "Patient", &[], &patients).await;

    let patient_of = |rng: &mut Xorshift| rng.below(PATIENTS);
    let mut encounters = Vec::new();
    for n in 0..500 {
        let p = patient_of(&mut rng);
        let opted_out = p < OPTED_OUT;
        encounters.push(json!({
            "encounter_id": format!("E{n:04}"), "patient_id": format!("PP{p:04}"),
            "patient_name": format!("Plantfirst{p:03} Plantsurname"),
            "specialty_name": if opted_out { OPTED_OUT_TEXT } else { specialty(&mut rng) },
            "encounter_type": pick(&mut rng, TYPES), "site": pick(&mut rng, SITES),
            "ward": pick(&mut rng, WARDS),
            "patient_cancellation_count": if opted_out { OPTED_OUT_NUMBER } else { rng.below(4) as i64 },
        }));
    }
    write_canonical(data, "Encounter", &[], &encounters).await;
    let mut admissions = Vec::new();
    for n in 0..300 {
        let p = patient_of(&mut rng);
        let opted_out = p < OPTED_OUT;
        admissions.push(json!({
            "admission_id": format!("A{n:04}"), "patient_id": format!("PP{p:04}"),
            "patient_name": format!("Plantfirst{p:03} Plantsurname"),
            "specialty_name": if opted_out { OPTED_OUT_TEXT } else { specialty(&mut rng) },
            "ward": if opted_out { OPTED_OUT_TEXT } else { pick(&mut rng, WARDS) },
            "site_name": pick(&mut rng, SITES), "admission_method": pick(&mut rng, METHODS),
        }));
    }
    write_canonical(data, "Admission", &[], &admissions).await;
    std::fs::write(
        data.join("opt-out.txt"),
        opted_out_numbers.join("\n") + "\n",
    )
    .unwrap();
    Planted { identifiers }
}

/// A table the generator reads: its alias, the column naming the patient,
/// text columns to group and filter by (with values that occur), and
/// numeric expressions.
struct Table {
    name: &'static str,
    alias: &'static str,
    patient: &'static str,
    dims: &'static [(&'static str, &'static [&'static str])],
    nums: &'static [&'static str],
}

const SPECIALTY_NAMES: &[&str] = &[
    "Urology",
    "Cardiology",
    "Dermatology",
    "Haematology",
    "Rheumatology",
];

const ENCOUNTER: Table = Table {
    name: "encounter",
    alias: "e",
    patient: "patient_id",
    dims: &[
        ("specialty_name", SPECIALTY_NAMES),
        ("encounter_type", TYPES),
        ("site", SITES),
        ("ward", WARDS),
    ],
    nums: &["patient_cancellation_count", "length(e.ward)"],
};
const ADMISSION: Table = Table {
    name: "admission",
    alias: "a",
    patient: "patient_id",
    dims: &[
        ("specialty_name", SPECIALTY_NAMES),
        ("ward", WARDS),
        ("site_name", SITES),
        ("admission_method", METHODS),
    ],
    nums: &["length(a.specialty_name)"],
};
const PATIENT: Table = Table {
    name: "patient",
    alias: "p",
    patient: "person_id",
    dims: &[("sex", &["F", "M"]), ("ethnic_category", ETHNIC)],
    nums: &["age"],
};
/// Research sees age only as a band.
const PATIENT_RESEARCH: Table = Table {
    name: "patient",
    alias: "p",
    patient: "person_id",
    dims: &[
        ("sex", &["F", "M"]),
        ("ethnic_category", ETHNIC),
        ("age", &["40-49", "70-79"]),
    ],
    nums: &["length(p.ethnic_category)"],
};

/// One generated query: its SQL, and the output columns that hold a count
/// or a number derived from one, with what the count was multiplied by.
#[derive(Debug, Clone)]
struct Query {
    sql: String,
    counts: HashMap<String, f64>,
}

struct Gen {
    rng: Xorshift,
    tables: Vec<&'static Table>,
    next: usize,
}

/// What an output column is.
struct Out {
    sql: String,
    alias: String,
    count_times: Option<f64>,
}

impl Gen {
    fn chance(&mut self, percent: u64) -> bool {
        self.rng.below(100) < percent
    }

    fn one<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.rng.below(xs.len() as u64) as usize]
    }

    fn alias(&mut self) -> String {
        self.next += 1;
        format!("c{}", self.next)
    }

    fn column(&self, t: &Table, c: &str) -> String {
        if c.contains('(') {
            c.to_string()
        } else {
            format!("{}.{c}", t.alias)
        }
    }

    fn dim(&mut self, t: &Table) -> (String, &'static [&'static str]) {
        let (c, values) = *self.one(t.dims);
        (self.column(t, c), values)
    }

    /// A value that occurs in a column, as an SQL literal's inside.
    fn value(&mut self, values: &[&str]) -> String {
        self.one(values).replace('\'', "''")
    }

    fn num(&mut self, t: &Table) -> String {
        let c = *self.one(t.nums);
        self.column(t, c)
    }

    fn predicate(&mut self, t: &Table) -> String {
        let (d, values) = self.dim(t);
        let v = self.value(values);
        match self.rng.below(8) {
            0 => format!("{d} = '{v}'"),
            1 => format!("{d} <> '{v}'"),
            2 => format!("{d} IN ('{v}', '{}')", self.value(values)),
            3 => format!("{} > {}", self.num(t), self.rng.below(5)),
            4 => format!("{d} IS NOT NULL"),
            5 => format!("{d} LIKE '%{}%'", &v[..1].replace('\'', "''")),
            // Singling one patient out.
            6 => format!(
                "{}.{} = (SELECT min({}) FROM {} )",
                t.alias, t.patient, t.patient, t.name
            ),
            _ => format!("{} BETWEEN 1 AND 2", self.num(t)),
        }
    }

    /// A count-like aggregate, written one of the ways it can be.
    fn count(&mut self, t: &Table) -> (String, f64) {
        let (d, values) = self.dim(t);
        let v = self.value(values);
        let n = self.num(t);
        let raw = match self.rng.below(11) {
            0 => "count(*)".to_string(),
            1 => format!("count({d})"),
            2 => format!("count(DISTINCT {d})"),
            3 => format!("count(DISTINCT {}.{})", t.alias, t.patient),
            4 => "sum(1)".to_string(),
            5 => format!("sum(CASE WHEN {d} = '{v}' THEN 1 ELSE 0 END)"),
            6 => format!("approx_distinct({}.{})", t.alias, t.patient),
            7 => format!("count(*) FILTER (WHERE {d} = '{v}')"),
            8 => format!("regr_count({n}, {n})"),
            9 => format!("sum({n})"),
            _ => format!("count(DISTINCT {d}) + count(*) - count(*)"),
        };
        let m = 1 + self.rng.below(9);
        match self.rng.below(8) {
            0 => (raw, 1.0),
            1 => (format!("{raw} * {m}"), m as f64),
            2 => (format!("CAST({raw} AS DOUBLE)"), 1.0),
            3 => (format!("CAST({raw} AS BIGINT) * {m}"), m as f64),
            4 => (format!("coalesce({raw}, 0)"), 1.0),
            5 => (format!("abs({raw})"), 1.0),
            6 => (format!("{raw} + 0"), 1.0),
            _ => (format!("greatest({raw}, 0)"), 1.0),
        }
    }

    /// Any other aggregate DataFusion offers.
    fn other_aggregate(&mut self, t: &Table) -> String {
        let n = self.num(t);
        let (d, _) = self.dim(t);
        let all = [
            format!("avg({n})"),
            format!("min({n})"),
            format!("max({n})"),
            format!("min({d})"),
            format!("max({d})"),
            format!("median({n})"),
            format!("stddev({n})"),
            format!("stddev_pop({n})"),
            format!("var_samp({n})"),
            format!("var_pop({n})"),
            format!("approx_median({n})"),
            format!("approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY {n})"),
            format!("approx_percentile_cont_with_weight(1, 0.5) WITHIN GROUP (ORDER BY {n})"),
            format!("percentile_cont(0.5) WITHIN GROUP (ORDER BY {n})"),
            format!("bit_and(CAST({n} AS BIGINT))"),
            format!("bit_or(CAST({n} AS BIGINT))"),
            format!("bit_xor(CAST({n} AS BIGINT))"),
            format!("bool_and({n} > 1)"),
            format!("bool_or({n} > 1)"),
            format!("first_value({d})"),
            format!("last_value({d})"),
            format!("nth_value({d}, 1)"),
            format!("corr({n}, {n})"),
            format!("covar_samp({n}, {n})"),
            format!("covar_pop({n}, {n})"),
            format!("regr_slope({n}, {n})"),
            format!("regr_intercept({n}, {n})"),
            format!("regr_r2({n}, {n})"),
            format!("regr_avgx({n}, {n})"),
            format!("regr_avgy({n}, {n})"),
            format!("regr_sxx({n}, {n})"),
            format!("regr_syy({n}, {n})"),
            format!("regr_sxy({n}, {n})"),
            format!("array_agg({d})"),
            format!("string_agg({d}, ',')"),
            format!("avg(DISTINCT {n})"),
            format!("sum(DISTINCT {n}) * 1.0 / 3"),
        ];
        self.one(&all).clone()
    }

    fn aggregates(&mut self, t: &Table) -> Vec<Out> {
        let mut outs = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            let alias = self.alias();
            if self.chance(60) {
                let (sql, m) = self.count(t);
                outs.push(Out {
                    sql,
                    alias,
                    count_times: Some(m),
                });
            } else {
                let sql = self.other_aggregate(t);
                outs.push(Out {
                    sql,
                    alias,
                    count_times: None,
                });
            }
        }
        outs
    }

    /// The FROM clause: one table, or it joined to the patient table.
    fn from(&mut self, t: &'static Table) -> (String, Vec<&'static Table>) {
        let patient = *self
            .tables
            .iter()
            .find(|t| t.name == "patient")
            .expect("a patient table");
        if t.name != "patient" && self.chance(35) {
            let join = if self.chance(70) { "JOIN" } else { "LEFT JOIN" };
            (
                format!(
                    "{} {} {join} patient p ON p.person_id = {}.{}",
                    t.name, t.alias, t.alias, t.patient
                ),
                vec![t, patient],
            )
        } else {
            (format!("{} {}", t.name, t.alias), vec![t])
        }
    }

    fn table(&mut self) -> &'static Table {
        let i = self.rng.below(self.tables.len() as u64) as usize;
        self.tables[i]
    }

    /// `SELECT dims, aggregates FROM … GROUP BY dims`, in one of its forms.
    fn grouped(&mut self, t: &'static Table) -> (String, Vec<Out>, Vec<String>) {
        let (from, tables) = self.from(t);
        let mut dims = Vec::new();
        for _ in 0..self.rng.below(3) {
            let tt = *self.one(&tables);
            let (d, _) = self.dim(tt);
            if !dims.contains(&d) {
                dims.push(d);
            }
        }
        let aggregate_on = *self.one(&tables);
        let outs = self.aggregates(aggregate_on);
        let mut select: Vec<String> = dims
            .iter()
            .enumerate()
            .map(|(i, d)| format!("{d} AS d{i}"))
            .collect();
        select.extend(outs.iter().map(|o| format!("{} AS {}", o.sql, o.alias)));
        let mut sql = format!("SELECT {} FROM {from}", select.join(", "));
        if self.chance(40) {
            let tt = *self.one(&tables);
            sql.push_str(&format!(" WHERE {}", self.predicate(tt)));
        }
        if !dims.is_empty() {
            let list = dims.join(", ");
            sql.push_str(&match self.rng.below(6) {
                0 => format!(" GROUP BY ROLLUP({list})"),
                1 => format!(" GROUP BY GROUPING SETS (({list}), ())"),
                _ => format!(" GROUP BY {list}"),
            });
        }
        if self.chance(15) {
            sql.push_str(&format!(" HAVING count(*) > {}", self.rng.below(6)));
        }
        let names: Vec<String> = (0..dims.len()).map(|i| format!("d{i}")).collect();
        (sql, outs, names)
    }

    fn query(&mut self) -> Query {
        self.next = 0;
        let t = self.table();
        let mut counts = HashMap::new();
        let sql = match self.rng.below(12) {
            // Plain grouped aggregates, the commonest question.
            0..=3 => {
                let (sql, outs, _) = self.grouped(t);
                note(&mut counts, &outs);
                let limit = if self.chance(20) {
                    " ORDER BY 1 LIMIT 3"
                } else {
                    ""
                };
                format!("{sql}{limit}")
            }
            // A CTE, filtered on its counts.
            4 => {
                let (inner, outs, _) = self.grouped(t);
                note(&mut counts, &outs);
                let filter = match outs.iter().find(|o| o.count_times.is_some()) {
                    Some(o) => format!(" WHERE {} < {}", o.alias, 2 + self.rng.below(12)),
                    None => String::new(),
                };
                format!("WITH s AS ({inner}) SELECT * FROM s{filter}")
            }
            // An aggregate of an aggregate.
            5 => {
                let (inner, outs, dims) = self.grouped(t);
                let Some(o) = outs.iter().find(|o| o.count_times.is_some()) else {
                    return Query {
                        sql: inner,
                        counts: HashMap::new(),
                    };
                };
                let f = *self.one(&["max", "min", "sum", "avg", "count"]);
                let alias = "outer_n".to_string();
                counts.insert(
                    alias.clone(),
                    if f == "avg" {
                        0.0
                    } else {
                        o.count_times.unwrap_or(1.0)
                    },
                );
                if f == "count" {
                    counts.insert(alias.clone(), 1.0);
                }
                let group = dims.first().cloned();
                match group {
                    Some(g) => format!(
                        "SELECT {g}, {f}({}) AS {alias} FROM ({inner}) s GROUP BY {g}",
                        o.alias
                    ),
                    None => format!("SELECT {f}({}) AS {alias} FROM ({inner}) s", o.alias),
                }
            }
            // Window functions, over rows or aggregated afterwards.
            6 => {
                let (d, _) = self.dim(t);
                let n = self.num(t);
                let (w, counted) = match self.rng.below(9) {
                    0 => (format!("count(*) OVER (PARTITION BY {d})"), true),
                    1 => (
                        format!(
                            "row_number() OVER (PARTITION BY {d} ORDER BY {}.{})",
                            t.alias, t.patient
                        ),
                        true,
                    ),
                    2 => (format!("rank() OVER (PARTITION BY {d} ORDER BY {n})"), true),
                    3 => (format!("dense_rank() OVER (ORDER BY {n})"), true),
                    4 => (format!("sum({n}) OVER (PARTITION BY {d})"), true),
                    5 => (
                        format!("lag({n}) OVER (ORDER BY {}.{})", t.alias, t.patient),
                        false,
                    ),
                    6 => (
                        format!("first_value({n}) OVER (PARTITION BY {d} ORDER BY {n})"),
                        false,
                    ),
                    7 => (format!("ntile(4) OVER (ORDER BY {n})"), true),
                    _ => (
                        format!("count(*) OVER (PARTITION BY {}.{})", t.alias, t.patient),
                        true,
                    ),
                };
                if self.chance(50) {
                    if counted {
                        counts.insert("w".to_string(), 1.0);
                    }
                    format!("SELECT {d} AS g, {w} AS w FROM {} {}", t.name, t.alias)
                } else {
                    let f = *self.one(&["max", "min", "sum"]);
                    if counted {
                        counts.insert("m".to_string(), 1.0);
                    }
                    format!(
                        "SELECT g, {f}(w) AS m FROM (SELECT {d} AS g, {w} AS w FROM {} {}) s GROUP BY g",
                        t.name, t.alias
                    )
                }
            }
            // Unions of two aggregates.
            7 => {
                let (d, values) = self.dim(t);
                let v = self.value(values);
                let (c1, m1) = self.count(t);
                let (c2, m2) = self.count(t);
                counts.insert("n".into(), m1.min(m2));
                let all = if self.chance(50) { "ALL " } else { "" };
                format!(
                    "SELECT {d} AS g, {c1} AS n FROM {} {} WHERE {d} = '{v}' GROUP BY {d} \
                     UNION {all}SELECT 'all' AS g, {c2} AS n FROM {} {}",
                    t.name, t.alias, t.name, t.alias
                )
            }
            // Subqueries: IN, EXISTS, scalar.
            8 => {
                let (d, _) = self.dim(t);
                let (c, m) = self.count(t);
                counts.insert("n".into(), m);
                let sub = match self.rng.below(4) {
                    0 => format!(
                        "{}.{} IN (SELECT person_id FROM patient WHERE sex = '{}')",
                        t.alias, t.patient, self.one(&["F", "M"])
                    ),
                    1 => format!(
                        "EXISTS (SELECT 1 FROM patient q WHERE q.person_id = {}.{} AND q.sex = '{}')",
                        t.alias, t.patient, self.one(&["F", "M"])
                    ),
                    2 => format!(
                        "{}.{} NOT IN (SELECT person_id FROM patient WHERE ethnic_category = '{}')",
                        t.alias, t.patient, self.one(ETHNIC)
                    ),
                    _ => format!(
                        "{}.{} = (SELECT max(person_id) FROM patient)",
                        t.alias, t.patient
                    ),
                };
                if self.chance(30) {
                    counts.insert("total".into(), 1.0);
                    format!(
                        "SELECT {d} AS g, {c} AS n, (SELECT count(*) FROM patient) AS total \
                         FROM {} {} WHERE {sub} GROUP BY {d}",
                        t.name, t.alias
                    )
                } else {
                    format!(
                        "SELECT {d} AS g, {c} AS n FROM {} {} WHERE {sub} GROUP BY {d}",
                        t.name, t.alias
                    )
                }
            }
            // Row-level questions, straight or joined to a total.
            9 | 10 => {
                let (from, tables) = self.from(t);
                let mut cols = vec![format!("{}.{}", t.alias, t.patient)];
                for tt in &tables {
                    cols.push(self.dim(tt).0);
                    cols.push(self.num(tt));
                }
                if self.chance(30) {
                    cols.push("*".into());
                }
                let cols: Vec<String> = cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if c == "*" {
                            c.clone()
                        } else {
                            format!("{c} AS r{i}")
                        }
                    })
                    .collect();
                let mut sql = format!("SELECT {} FROM {from}", cols.join(", "));
                if self.chance(50) {
                    sql.push_str(&format!(" WHERE {}", self.predicate(t)));
                }
                if self.chance(20) {
                    sql = format!(
                        "SELECT r.*, t.total FROM ({sql}) r CROSS JOIN (SELECT count(*) AS total FROM {}) t",
                        t.name
                    );
                    counts.insert("total".into(), 1.0);
                }
                sql
            }
            // Identifying columns by name: refused, or removed.
            _ => {
                let c = *self.one(&[
                    "p.nhs_number",
                    "p.first_name",
                    "p.mrn",
                    "p.full_name",
                    "p.postcode",
                    "p.date_of_birth",
                    "p.phone_number",
                ]);
                format!("SELECT {c}, count(*) AS n FROM patient p GROUP BY {c}")
            }
        };
        Query { sql, counts }
    }
}

fn note(counts: &mut HashMap<String, f64>, outs: &[Out]) {
    for o in outs {
        if let Some(m) = o.count_times {
            counts.insert(o.alias.clone(), m);
        }
    }
}

/// What was wrong with an answer, if anything.
fn violation(q: &Query, rows: &Value, planted: &Planted) -> Option<String> {
    let rows = rows.as_array()?;
    for r in rows {
        let r = r.as_object()?;
        for (column, v) in r {
            let text = v.to_string();
            if let Some(id) = planted
                .identifiers
                .iter()
                .find(|id| text.contains(id.as_str()))
            {
                return Some(format!("planted identifier {id} in {column}"));
            }
            if text.contains(OPTED_OUT_TEXT) {
                return Some(format!("an opted-out patient's record in {column}"));
            }
            let numbers: Vec<f64> = match v {
                Value::Number(n) => n.as_f64().into_iter().collect(),
                Value::Array(a) => a.iter().filter_map(Value::as_f64).collect(),
                _ => Vec::new(),
            };
            for n in numbers {
                if n.abs() >= OPTED_OUT_SEEN {
                    return Some(format!(
                        "an opted-out patient's number behind {column} = {n}"
                    ));
                }
                if let Some(&m) = q.counts.get(column) {
                    if m > 0.0 {
                        let count = n / m;
                        if (1.0 - 1e-9..THRESHOLD).contains(&count) {
                            return Some(format!("a count of {count} behind {column} = {n}"));
                        }
                    }
                }
            }
        }
    }
    None
}

fn analyst() -> Principal {
    Principal {
        name: "ana".into(),
        roles: vec!["analyst".into()],
        organisation: Some("RXX".into()),
    }
}

fn researcher() -> Principal {
    Principal {
        name: "res".into(),
        roles: vec!["researcher".into()],
        organisation: Some("RXX".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_random_query_releases_an_identifier_a_small_count_or_an_opted_out_patient() {
    let seed: u64 = std::env::var("FDP_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let total: usize = std::env::var("FDP_PROPERTY_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    // Printed past the test harness's capture, so that every run shows it.
    let _ = writeln!(
        std::io::stderr(),
        "governance property test: seed {seed} (replay with FDP_PROPERTY_SEED={seed}), {total} queries"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let planted = Arc::new(plant(&data, seed).await);
    let governance = Arc::new(
        Governance::open(
            &data,
            Policy::demo(fdp_model::Model::canonical()),
            "RXX",
            Some(&data.join("opt-out.txt")),
        )
        .unwrap(),
    );
    let ig = Principal {
        name: "ig".into(),
        roles: vec!["information-governance-lead".into()],
        organisation: Some("RXX".into()),
    };
    governance
        .manage_project(&ig, "test", "register".into(), |projects| {
            let p = fdp_govern::projects::Project {
                extracts: Default::default(),
                name: "study".into(),
                purpose: Purpose::Research,
                title: "outcomes, REC 26/YH/0002".into(),
                principals: ["res".to_string()].into(),
                registered_by: "ig".into(),
                registered_at: chrono::Utc::now(),
                closed_at: None,
            };
            projects.register(p.clone())?;
            Ok(p)
        })
        .unwrap();
    let source = fdp_store::StoredTables::new(&data);
    let mut planning = SessionRequest::new(analyst(), Purpose::Planning, "http");
    planning.role = Some("analyst".into());
    let mut research = SessionRequest::new(researcher(), Purpose::Research, "http");
    research.project = Some("study".into());
    research.justification = Some("outcomes study".into());

    let mut tasks = Vec::new();
    for (k, (req, tables)) in [
        (planning, vec![&ENCOUNTER, &ADMISSION, &PATIENT]),
        (research, vec![&ADMISSION, &PATIENT_RESEARCH]),
    ]
    .into_iter()
    .enumerate()
    {
        let governance = governance.clone();
        let source = source.clone();
        let planted = planted.clone();
        let n = total / 2 + if k == 0 { total % 2 } else { 0 };
        let verbose = std::env::var_os("FDP_PROPERTY_VERBOSE").is_some();
        tasks.push(tokio::spawn(async move {
            let session = governance.session(&source, req.clone()).await.unwrap();
            let mut generator = Gen {
                rng: Xorshift::new(seed.wrapping_add(k as u64 + 1)),
                tables,
                next: 0,
            };
            let (mut answered, mut refused, mut rows) = (0usize, 0usize, 0usize);
            for i in 0..n {
                let q = generator.query();
                let answer = tokio::time::timeout(
                    std::time::Duration::from_secs(120),
                    session.query(&q.sql),
                )
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{} query {i} (seed {seed}) ran for two minutes:\n{}",
                        req.purpose, q.sql
                    )
                });
                match answer {
                    Ok(result) => {
                        answered += 1;
                        let json = result.rows_json().unwrap();
                        rows += json.as_array().map_or(0, Vec::len);
                        if let Some(why) = violation(&q, &json, &planted) {
                            panic!(
                                "{} query {i} (seed {seed}): {why}\n{}\nanswer: {json}",
                                req.purpose, q.sql
                            );
                        }
                    }
                    Err(e) => {
                        refused += 1;
                        if verbose {
                            let _ = writeln!(std::io::stderr(), "refused: {}\n  {e}", q.sql);
                        }
                    }
                }
            }
            (req.purpose, answered, refused, rows)
        }));
    }
    let mut answered_all = 0;
    for t in tasks {
        let (purpose, answered, refused, rows) = t.await.unwrap();
        let _ = writeln!(
            std::io::stderr(),
            "governance property test: {purpose}: {answered} answered ({rows} rows released), {refused} refused"
        );
        // A generator whose queries mostly fail would prove nothing.
        assert!(
            answered * 10 >= (answered + refused) * 6,
            "{purpose}: only {answered} of {} queries answered",
            answered + refused
        );
        answered_all += answered;
    }
    let _ = writeln!(
        std::io::stderr(),
        "governance property test: seed {seed}, {total} queries run, {answered_all} answered, no violation"
    );
}
