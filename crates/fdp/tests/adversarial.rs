//! The adversarial suite: each test is an attack on the promise that
//! governance cannot be got round, made the way an analyst, a researcher,
//! a peer instance or someone with the data directory would make it, and
//! each asserts the refusal or the protected result. Every test names the
//! class of attack it covers (see `docs/governance.md`, "Threat model"):
//!
//! - class 2: an answer under planning that fewer patients than the
//!   threshold stand behind, or a small count written another way (here);
//! - class 3: a record changed without a change grant, or unaudited (here);
//! - class 4: a session naming a pseudonymisation project it is not on
//!   (here);
//! - class 5: a federated question slid beyond what was approved, or asked
//!   by no one named (`crates/fdp/tests/federation.rs`, between two running
//!   instances);
//! - class 6: identifiers from outside used as file names (a peer's message
//!   id: `crates/fdp-federation/tests/wire.rs`, which runs two instances'
//!   federation endpoints over mutual TLS);
//! - class 7: an audit that loses its tail unseen (here);
//! - class 8: a token in a URL, a cookie that outlives sign-out, cookies
//!   sent in the clear (here);
//! - class 9: settings and data that would fail open (here).

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

/// Principals of the demo policy these attacks act as.
fn config(dir: &Path, opt_out: &Path) -> std::path::PathBuf {
    let text = format!(
        "ods = \"RXX\"\nopt_out_file = \"{}\"\n\
         [principal.eng]\nroles = [\"integration-engineer\"]\n\
         [principal.ana]\nroles = [\"analyst\"]\n\
         [principal.doc]\nroles = [\"clinician\"]\n\
         [principal.res]\nroles = [\"researcher\"]\n\
         [principal.res2]\nroles = [\"researcher\"]\n\
         [principal.ig]\nroles = [\"information-governance-lead\"]\n",
        opt_out.display()
    );
    let path = dir.join("instance.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Specialties and how many patients stand behind each in class 2's data:
/// Urology 20 (one encounter each), Dermatology 1 (twelve encounters, so
/// twelve rows but one patient), Cardiology 3, ENT 6.
const SMALL_SPECIALTIES: &[&str] = &["Dermatology", "Cardiology", "ENT"];

/// What an analyst tries under planning to get round disclosure control,
/// and whether the answer may hold rows at all (`false`: row-level).
const CLASS_2_ATTACKS: &[(&str, bool)] = &[
    ("SELECT specialty_name, count(*) AS n FROM encounter GROUP BY specialty_name", true),
    ("SELECT specialty_name, count(*) * 1000 + 7 AS n FROM encounter GROUP BY 1", true),
    ("SELECT specialty_name, CAST(sum(1) AS DOUBLE) / 1 AS n FROM encounter GROUP BY 1", true),
    ("SELECT specialty_name, approx_distinct(patient_id) AS n FROM encounter GROUP BY 1", true),
    ("SELECT specialty_name FROM encounter GROUP BY specialty_name", true),
    ("SELECT DISTINCT specialty_name FROM encounter", true),
    (
        "SELECT specialty_name, max(k) AS n FROM (SELECT specialty_name, \
         row_number() OVER (PARTITION BY specialty_name ORDER BY encounter_id) AS k \
         FROM encounter) w GROUP BY specialty_name",
        true,
    ),
    (
        "SELECT count(*) FILTER (WHERE specialty_name = 'Cardiology') * 1000 AS n FROM encounter",
        true,
    ),
    (
        "SELECT sum(CASE WHEN specialty_name = 'ENT' THEN 1 ELSE 0 END) + 100 AS n FROM encounter",
        true,
    ),
    (
        "WITH s AS (SELECT specialty_name, count(*) AS c FROM encounter GROUP BY 1) \
         SELECT specialty_name, c FROM s WHERE c < 8",
        true,
    ),
    ("SELECT patient_id, specialty_name FROM encounter", false),
    ("SELECT * FROM patient", false),
    (
        "SELECT e.specialty_name, t.total FROM encounter e \
         CROSS JOIN (SELECT count(*) AS total FROM encounter) t",
        false,
    ),
    (
        "SELECT e.specialty_name, p.sex FROM encounter e JOIN patient p ON p.person_id = e.patient_id",
        false,
    ),
    (
        "SELECT specialty_name, count(*) AS n FROM encounter \
         WHERE patient_id IN (SELECT person_id FROM patient WHERE sex = 'F') GROUP BY 1 \
         UNION ALL SELECT 'all', count(*) FROM encounter",
        true,
    ),
];

/// Whether one answer to a class 2 attack kept the promise: no small
/// specialty, no planted identifier, no count from 1 to 7, and no row at
/// all for a row-level question.
fn class_2_kept(query: &str, aggregate: bool, rows: &[Row], planted: &[String]) {
    let text = format!("{rows:?}");
    if !aggregate {
        assert!(rows.is_empty(), "{query}: row-level rows left: {text}");
    }
    for s in SMALL_SPECIALTIES {
        assert!(!text.contains(s), "{query}: {s} left: {text}");
    }
    for p in planted {
        assert!(!text.contains(p.as_str()), "{query}: {p} left: {text}");
    }
    for r in rows {
        for (column, v) in r {
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.parse::<f64>().ok(),
                _ => None,
            };
            if let Some(n) = n {
                assert!(
                    !(n > 0.0 && n < 8.0),
                    "{query}: {column} = {n} left: {text}"
                );
            }
        }
    }
}

/// The `rows` of an answer (the JSON API's, or psycopg's through
/// `pg_batch`), which must be there.
fn rows_of(query: &str, answer: &Value) -> Vec<Row> {
    answer["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {answer}"))
        .iter()
        .map(|r| r.as_object().unwrap().clone())
        .collect()
}

/// A CSV file's rows as JSON objects (no field in these answers holds a
/// comma or a quote).
fn csv_rows(body: &str) -> Vec<Row> {
    let mut lines = body.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_2_nothing_leaves_under_planning_that_fewer_patients_than_the_threshold_stand_behind()
{
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opt_out = dir.path().join("opt-out.txt");
    std::fs::write(&opt_out, "").unwrap();
    let config = config(dir.path(), &opt_out);
    let mut planted: Vec<String> = Vec::new();
    let patients: Vec<Value> = (0..30u64)
        .map(|i| {
            let nhs = nhs_number(943_476_100 + i * 7);
            planted.extend([
                nhs.clone(),
                format!("Plantedname{i:02}"),
                format!("MRN-PLANT-{i:02}"),
                format!("19{:02}-03-1{}", 40 + i, i % 10),
            ]);
            json!({"person_id": format!("P{i:02}"), "nhs_number": nhs,
                   "first_name": format!("Plantedname{i:02}"), "surname": "Plantedsurname",
                   "mrn": format!("MRN-PLANT-{i:02}"),
                   "date_of_birth": format!("19{:02}-03-1{}", 40 + i, i % 10),
                   "postcode": "LS1 4AP", "sex": if i % 2 == 0 { "F" } else { "M" }})
        })
        .collect();
    planted.extend(["Plantedsurname".to_string(), "LS1 4AP".to_string()]);
    write_canonical(&data, "Patient", &[], &patients).await;
    let mut encounters = Vec::new();
    let mut add = |patient: u64, specialty: &str| {
        let n = encounters.len();
        encounters.push(
            json!({"encounter_id": format!("E{n:03}"), "patient_id": format!("P{patient:02}"),
                               "specialty_name": specialty, "encounter_type": "IMP"}),
        );
    };
    for p in 0..20 {
        add(p, "Urology");
    }
    for _ in 0..12 {
        add(20, "Dermatology");
    }
    for p in 21..24 {
        add(p, "Cardiology");
        add(p, "Cardiology");
    }
    for p in 24..30 {
        add(p, "ENT");
    }
    write_canonical(&data, "Encounter", &[], &encounters).await;

    // Inside the instance (the command line on its own machine) an analyst
    // may look at pseudonymised rows, as in a trusted research environment.
    let inside = sql_as(
        &config,
        &data,
        "ana",
        "planning",
        &[],
        "SELECT patient_id, specialty_name FROM encounter",
    )
    .unwrap();
    assert_eq!(inside.len(), encounters.len());
    assert!(
        !format!("{inside:?}").contains("\"P0"),
        "pseudonymised inside too"
    );

    let server = Server::start_with_config_file(&data, &config, "sql = \"127.0.0.1:0\"", "");
    let token = fdp_ok!("token", "create", "ana", "--data-dir", data)
        .trim()
        .to_string();
    // Through the JSON API and the CSV export.
    for (query, aggregate) in CLASS_2_ATTACKS {
        let body = json!({"sql": query, "purpose": "planning"}).to_string();
        let (status, answer) = http_post(server.http, "/sql", &token, &body);
        // Answered, with the protection applied: not refused, which would
        // show nothing about what disclosure control does.
        assert_eq!(status, 200, "{query}: {answer}");
        let v: Value = serde_json::from_str(&answer).unwrap();
        class_2_kept(query, *aggregate, &rows_of(query, &v), &planted);
        let export = http_request(server.http, "POST", "/export", Some(&token), Some(&body));
        assert_eq!(export.status, 200, "{query}: {}", export.body);
        class_2_kept(query, *aggregate, &csv_rows(&export.body), &planted);
    }
    // The answer a planner needs still comes through, rounded.
    let body = json!({"sql": CLASS_2_ATTACKS[0].0, "purpose": "planning"}).to_string();
    let (_, answer) = http_post(server.http, "/sql", &token, &body);
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        v["rows"],
        json!([{"specialty_name": "Urology", "n": 20}]),
        "{answer}"
    );
    // The download of a whole table under planning: no row of a patient.
    let cookie = purpose_cookie(server.http, &token, "planning");
    for table in ["encounter", "patient"] {
        let r = http_request_with(
            server.http,
            "GET",
            &format!("/tables/{table}/download"),
            Some(&token),
            &[("Cookie", cookie.as_str())],
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let rows = csv_rows(&r.body);
        class_2_kept(table, false, &rows, &planted);
        assert!(
            r.header("x-disclosure-control")
                .is_some_and(|d| d.contains("rows withheld")),
            "{:?}",
            r.headers
        );
    }
    // SQL over the PostgreSQL wire, as a BI tool fetches it.
    let wire = pg_batch(
        server.sql.unwrap(),
        &[
            json!({"user": "ana", "password": token, "dbname": "planning",
                 "queries": CLASS_2_ATTACKS.iter().map(|(q, _)| *q).collect::<Vec<_>>()}),
        ],
    );
    let results = wire[0]["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{:?}", wire[0]));
    for ((query, aggregate), r) in CLASS_2_ATTACKS.iter().zip(results) {
        class_2_kept(query, *aggregate, &rows_of(query, r), &planted);
    }
    assert_eq!(
        results[0]["rows"],
        json!([{"specialty_name": "Urology", "n": 20}])
    );
    // Each withholding is in the audit.
    assert!(audit_entries(&data).iter().any(|e| e["principal"] == "ana"
        && e["decisions"].as_array().is_some_and(|d| d
            .iter()
            .any(|d| d.as_str().unwrap_or_default().contains("rows withheld")))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_9_a_stored_column_the_model_does_not_know_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opt_out = dir.path().join("opt-out.txt");
    std::fs::write(&opt_out, "").unwrap();
    let config = config(dir.path(), &opt_out);
    // Someone with the data directory (or a newer writer) adds a column the
    // model has never heard of, full of free text about the patient.
    let rows: Vec<Value> = (0..3)
        .map(|i| {
            json!({
                "person_id": format!("P{i}"),
                "nhs_number": nhs_number(943_476_591 + i),
                "free_text_note": format!("SECRET-NOTE-{i}: lives with daughter, HIV+"),
            })
        })
        .collect();
    write_canonical(&data, "Patient", &["free_text_note"], &rows).await;

    // The integration engineer is shown every tag for operations: still
    // not a column with no tag.
    for (who, purpose) in [("eng", "operations"), ("doc", "direct-care")] {
        let got = sql_as(&config, &data, who, purpose, &[], "SELECT * FROM patient").unwrap();
        assert_eq!(got.len(), 3, "{who}");
        for r in &got {
            assert!(!r.contains_key("free_text_note"), "{who}: {r:?}");
            assert!(!format!("{r:?}").contains("SECRET-NOTE"), "{who}: {r:?}");
        }
        let named = sql_as(
            &config,
            &data,
            who,
            purpose,
            &[],
            "SELECT free_text_note FROM patient",
        );
        assert!(
            named.as_ref().is_err_and(|e| e.contains("free_text_note")),
            "{who}: {named:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_9_time_travel_never_brings_an_opted_out_patient_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opt_out = dir.path().join("opt-out.txt");
    let config = config(dir.path(), &opt_out);
    // Twenty patients arrive untraced (no NHS number yet) beside twenty
    // traced ones; each has an admission.
    let traced_later: Vec<String> = (0..20).map(|i| nhs_number(600_000_000 + 17 * i)).collect();
    let traced: Vec<String> = (0..20).map(|i| nhs_number(700_000_000 + 13 * i)).collect();
    let patients = |later_known: bool| -> Vec<Value> {
        (0..20)
            .map(|i| {
                json!({
                    "person_id": format!("OPT{i:02}"),
                    "nhs_number": later_known.then(|| traced_later[i].clone()),
                })
            })
            .chain(
                (0..20)
                    .map(|i| json!({"person_id": format!("KEEP{i:02}"), "nhs_number": traced[i]})),
            )
            .collect()
    };
    // Version 0 of each table is its creation; 1 the first rows.
    write_canonical(&data, "Patient", &[], &patients(false)).await; // version 1
    write_canonical(&data, "Patient", &[], &patients(true)).await; // version 2: traced
    let admissions: Vec<Value> = (0..20)
        .map(|i| json!({"admission_id": format!("A-OPT{i:02}"), "patient_id": format!("OPT{i:02}")}))
        .chain((0..20).map(|i| json!({"admission_id": format!("A-KEEP{i:02}"), "patient_id": format!("KEEP{i:02}")})))
        .collect();
    write_canonical(&data, "Admission", &[], &admissions).await; // version 1
    write_canonical(&data, "Admission", &[], &admissions).await; // version 2
                                                                 // Once traced, the twenty turn out to have opted out.
    std::fs::write(&opt_out, traced_later.join("\n") + "\n").unwrap();

    let count = |as_of: Option<&str>| -> i64 {
        let mut extra = vec![];
        if let Some(v) = as_of {
            extra = vec!["--as-of", v];
        }
        let got = sql_as(
            &config,
            &data,
            "ana",
            "planning",
            &extra,
            "SELECT count(*) AS n FROM admission",
        )
        .unwrap();
        got[0]["n"].as_i64().unwrap()
    };
    assert_eq!(count(None), 20, "today");
    // Back to when the patient table did not yet link the numbers to the
    // person ids the admissions carry.
    assert_eq!(count(Some("1")), 20, "as of version 1");
}

/// `fdp projects …` as given; Err(stderr) when refused.
fn projects(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Result<String, String> {
    let out = fdp().arg("projects").args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_4_a_researcher_names_only_a_registered_project_they_are_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opt_out = dir.path().join("opt-out.txt");
    std::fs::write(&opt_out, "").unwrap();
    let config = config(dir.path(), &opt_out);
    let rows: Vec<Value> = (0..12)
        .map(
            |i| json!({"person_id": format!("P{i:02}"), "nhs_number": nhs_number(943_476_591 + i)}),
        )
        .collect();
    write_canonical(&data, "Patient", &[], &rows).await;
    let register = |by: &str, name: &str, on: &str| {
        projects(&[
            &"register",
            &name,
            &"--data-dir",
            &data,
            &"--config",
            &config,
            &"--by",
            &by,
            &"--purpose",
            &"research",
            &"--title",
            &"asthma outcomes, REC 26/YH/0001",
            &"--principal",
            &on,
        ])
    };
    // Only the IG lead registers projects; the researcher cannot approve
    // their own, nor the analyst.
    for who in ["res", "ana"] {
        let e = register(who, "mine", who).unwrap_err();
        assert!(e.contains("reviews the audit"), "{who}: {e}");
    }
    register("ig", "p1", "res").unwrap();
    register("ig", "p2", "res2").unwrap();

    let research = |who: &str, project: &str| {
        sql_as(
            &config,
            &data,
            who,
            "research",
            &["--project", project, "--justification", "study"],
            "SELECT person_id FROM patient ORDER BY person_id",
        )
    };
    let mine = research("res", "p1").unwrap();
    assert_eq!(mine.len(), 12);
    // A project nobody registered: refused, and no key is made for it.
    let e = research("res", "made-up").unwrap_err();
    assert!(e.contains("no approved project"), "{e}");
    // Another researcher's project: their pseudonyms would link to its
    // extract. Refused.
    let e = research("res", "p2").unwrap_err();
    assert!(e.contains("not on project"), "{e}");
    // Research pseudonyms under a planning session's key: refused too.
    let e = sql_as(
        &config,
        &data,
        "ana",
        "planning",
        &["--project", "p1"],
        "SELECT count(*) FROM patient",
    )
    .unwrap_err();
    assert!(
        e.contains("approved for research") || e.contains("not on project"),
        "{e}"
    );
    let keys = std::fs::read_dir(data.join("keystore"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert!(
        keys.iter().any(|k| k.starts_with("pseudonym.research.p1.")),
        "{keys:?}"
    );
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("made-up") || k.contains(".p2.")),
        "{keys:?}"
    );

    // Taken off the project, or the project closed: refused from then on.
    let ig_changes_p1 = |action: &str, principal: Option<&str>| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &action,
            &"p1",
            &"--data-dir",
            &data,
            &"--config",
            &config,
            &"--by",
            &"ig",
        ];
        if let Some(p) = &principal {
            args.extend([&"--principal" as &dyn AsRef<std::ffi::OsStr>, p]);
        }
        projects(&args).unwrap();
    };
    ig_changes_p1("remove", Some("res"));
    assert!(research("res", "p1")
        .unwrap_err()
        .contains("not on project"));
    ig_changes_p1("add", Some("res"));
    assert_eq!(research("res", "p1").unwrap(), mine);
    ig_changes_p1("close", None);
    assert!(research("res", "p1").unwrap_err().contains("closed"));

    // Over HTTP too: the same refusal whatever the channel.
    let server = Server::start_with_config_file(&data, &config, "sql = \"127.0.0.1:0\"", "");
    let token = fdp_ok!("token", "create", "res2", "--data-dir", data)
        .trim()
        .to_string();
    let ask = |project: &str| {
        let body = json!({"sql": "SELECT person_id FROM patient", "purpose": "research",
                          "project": project, "justification": "study"});
        http_post(server.http, "/sql", &token, &body.to_string())
    };
    assert_eq!(ask("p2").0, 200);
    for project in ["p1", "made-up", "../p2"] {
        let (status, body) = ask(project);
        assert_eq!(status, 403, "{project}: {body}");
    }
    // The UI's checkpoint: a declaration naming someone else's project is
    // refused before anything is read.
    let declare = |project: &str| {
        http_form(
            server.http,
            "/purpose",
            &token,
            &[],
            &[
                ("purpose", "research"),
                ("project", project),
                ("justification", "study"),
                ("next", "/tables"),
            ],
        )
    };
    assert_eq!(declare("p2").status, 303);
    let refused = declare("p1");
    assert_ne!(refused.status, 303, "{}", refused.body);
    assert!(refused.body.contains("closed"), "{}", refused.body);
    // SQL over the PostgreSQL wire, as a BI tool or psycopg would connect.
    let wire = pg_batch(
        server.sql.unwrap(),
        &["p2", "p1", "made-up"]
            .iter()
            .map(|p| {
                json!({"user": "res2", "password": token, "dbname": "research",
                       "options": format!("-c project={p} -c justification=study"),
                       "queries": ["SELECT count(DISTINCT person_id) AS n FROM patient"]})
            })
            .collect::<Vec<_>>(),
    );
    // Refused at connection, or at the first query: either way, no rows.
    let error_of = |v: &Value| {
        v["error"]
            .as_str()
            .or(v["results"][0]["error"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        wire[0]["results"][0]["rows"],
        json!([{"n": 10}]),
        "twelve patients, rounded: {:?}",
        wire[0]
    );
    assert!(error_of(&wire[1]).contains("closed"), "{:?}", wire[1]);
    assert!(
        error_of(&wire[2]).contains("no approved project"),
        "{:?}",
        wire[2]
    );

    // Every change and every refusal is in the audit, with who made it.
    let audit = audit_entries(&data);
    let changes: Vec<&Value> = audit.iter().filter(|e| e["kind"] == "project").collect();
    assert!(changes
        .iter()
        .any(|e| e["principal"] == "ig" && e["outcome"] == "ok" && e["project"] == "p2"));
    assert!(changes
        .iter()
        .any(|e| e["principal"] == "res" && e["outcome"].as_str().unwrap().starts_with("refused")));
    for why in ["is closed", "no approved project"] {
        assert!(
            audit.iter().any(|e| e["principal"] == "res2"
                && e["outcome"].as_str().unwrap_or_default().contains(why)),
            "{why}"
        );
    }
}

/// `fdp audit verify` with these extra arguments: Ok(what it printed) when
/// the log holds, Err(what it found) when not.
fn verify(data: &Path, extra: &[&dyn AsRef<std::ffi::OsStr>]) -> Result<String, String> {
    let out = fdp()
        .args(["audit", "verify", "--data-dir"])
        .arg(data)
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Keep the first `keep` lines of a file (what someone with the data
/// directory does to hide the last accesses).
fn cut_to(path: &Path, keep: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let kept: String = text.lines().take(keep).map(|l| format!("{l}\n")).collect();
    std::fs::write(path, kept).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_7_the_audit_cannot_lose_its_tail_or_its_key_unseen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opt_out = dir.path().join("opt-out.txt");
    std::fs::write(&opt_out, "").unwrap();
    let config = config(dir.path(), &opt_out);
    let rows: Vec<Value> = (0..3)
        .map(|i| json!({"person_id": format!("P{i}"), "nhs_number": nhs_number(943_476_591 + i)}))
        .collect();
    write_canonical(&data, "Patient", &[], &rows).await;
    let server = Server::start_with_config_file(&data, &config, "", "");
    let token = fdp_ok!("token", "create", "doc", "--data-dir", data)
        .trim()
        .to_string();
    // A clinician looks up a few patients: a handful of entries, fewer
    // than the log signs of its own accord.
    for i in 0..5 {
        let body = json!({"sql": format!("SELECT * FROM patient WHERE person_id = 'P{}'", i % 3),
                          "purpose": "direct-care"});
        assert_eq!(
            http_post(server.http, "/sql", &token, &body.to_string()).0,
            200
        );
    }
    server.stop();
    let audit = data.join("audit").join("audit.jsonl");
    let checkpoints = data.join("audit").join("checkpoints.jsonl");
    let entries = std::fs::read_to_string(&audit).unwrap().lines().count();
    assert!(entries >= 5, "{entries}");
    verify(&data, &[]).unwrap();
    let pristine = (
        std::fs::read(&audit).unwrap(),
        std::fs::read(&checkpoints).unwrap(),
    );
    let restore = || {
        std::fs::write(&audit, &pristine.0).unwrap();
        std::fs::write(&checkpoints, &pristine.1).unwrap();
    };

    // With the instance stopped, the last lookups are cut off the log:
    // the checkpoint signed at shutdown no longer matches.
    cut_to(&audit, entries - 3);
    let e = verify(&data, &[]).unwrap_err();
    assert!(e.contains("removed from the end"), "{e}");
    restore();

    // The head, published outside the instance (here: a file beside it).
    let head = dir.path().join("head.json");
    std::fs::write(&head, fdp_ok!("audit", "head", "--data-dir", data)).unwrap();

    // Cut off with the checkpoints that signed them: consistent inside the
    // data directory, but not with the head published outside it.
    cut_to(&audit, entries - 3);
    let signed: Vec<String> = std::fs::read_to_string(&checkpoints)
        .unwrap()
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
                <= (entries - 3) as u64
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&checkpoints, signed.concat()).unwrap();
    let e = verify(&data, &[&"--head", &head]).unwrap_err();
    assert!(e.contains("removed from the end"), "{e}");
    restore();

    // A new signing key, and the log re-signed with it: consistent inside,
    // refused against the published key.
    std::fs::remove_file(data.join("keystore").join("audit-signing.key")).unwrap();
    std::fs::remove_file(&checkpoints).unwrap();
    fdp_ok!("audit", "head", "--data-dir", data);
    verify(&data, &[]).unwrap();
    let e = verify(&data, &[&"--head", &head]).unwrap_err();
    assert!(e.contains("the key was replaced"), "{e}");
    let published = serde_json::from_str::<Value>(&std::fs::read_to_string(&head).unwrap())
        .unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let e = verify(&data, &[&"--public-key", &published]).unwrap_err();
    assert!(e.contains("the key was replaced"), "{e}");
}

/// A FHIR Patient with a name and an NHS number.
fn patient_resource(id: Option<&str>, family: &str) -> Value {
    let mut p = json!({"resourceType": "Patient",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number(943_476_600)}],
        "name": [{"family": family, "given": ["Ada"]}],
        "birthDate": "1961-04-02"});
    if let Some(id) = id {
        p["id"] = json!(id);
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_3_no_record_is_changed_without_a_change_grant_and_every_change_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opt_out = dir.path().join("opt-out.txt");
    std::fs::write(&opt_out, "").unwrap();
    let config = config(dir.path(), &opt_out);
    // A researcher on a registered project: the most a researcher can hold.
    projects(&[
        &"register",
        &"p1",
        &"--data-dir",
        &data,
        &"--config",
        &config,
        &"--by",
        &"ig",
        &"--purpose",
        &"research",
        &"--title",
        &"asthma outcomes",
        &"--principal",
        &"res",
    ])
    .unwrap();
    let server = Server::start_with_config_file(
        &data,
        &config,
        "",
        "[principal.bed]\nroles = [\"bed-manager\"]\n\
         [principal.visitor]\nroles = [\"clinician\"]\norganisation = \"RYY\"",
    );
    let a = server.http;
    let token = |who: &str| {
        fdp_ok!("token", "create", who, "--data-dir", data)
            .trim()
            .to_string()
    };
    let doc = token("doc");

    // The clinician records a patient, and corrects the name.
    let made = http_request(
        a,
        "POST",
        "/fhir/Patient",
        Some(&doc),
        Some(&patient_resource(None, "Lovelace").to_string()),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let id = serde_json::from_str::<Value>(&made.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let fixed = http_request(
        a,
        "PUT",
        &format!("/fhir/Patient/{id}"),
        Some(&doc),
        Some(&patient_resource(Some(&id), "King").to_string()),
    );
    assert_eq!(fixed.status, 200, "{}", fixed.body);

    // Each attacker, in every purpose their roles hold, on every FHIR
    // write: create, update, delete, a transaction, a batch, a bulk import.
    let import_dir = data.join("import");
    std::fs::create_dir_all(&import_dir).unwrap();
    let ndjson = import_dir.join("Patient.ndjson");
    std::fs::write(
        &ndjson,
        format!("{}\n", patient_resource(Some(&id), "Forged")),
    )
    .unwrap();
    let attackers: &[(&str, &[(&str, &str)])] = &[
        ("ana", &[("X-Purpose", "planning")]),
        ("ana", &[("X-Purpose", "operations")]),
        (
            "res",
            &[
                ("X-Purpose", "research"),
                ("X-Project", "p1"),
                ("X-Justification", "study"),
            ],
        ),
        ("ig", &[("X-Purpose", "operations")]),
        // Records as received are granted to the engineer; changing them is not.
        ("eng", &[("X-Purpose", "operations")]),
        // The bed manager changes beds and readiness under operations, not patients.
        ("bed", &[("X-Purpose", "operations")]),
        // A clinician of another organisation.
        ("visitor", &[]),
    ];
    let mut attempts = 0;
    for (who, headers) in attackers {
        let t = token(who);
        let send = |method: &str, path: &str, body: Option<&Value>| {
            let body = body.map(Value::to_string);
            http_request_with(a, method, path, Some(&t), headers, body.as_deref())
        };
        let forged = patient_resource(Some(&id), "Forged");
        let created = send(
            "POST",
            "/fhir/Patient",
            Some(&patient_resource(None, "Forged")),
        );
        let updated = send("PUT", &format!("/fhir/Patient/{id}"), Some(&forged));
        let deleted = send("DELETE", &format!("/fhir/Patient/{id}"), None);
        for (what, r) in [
            ("create", &created),
            ("update", &updated),
            ("delete", &deleted),
        ] {
            assert_eq!(r.status, 403, "{who} {headers:?} {what}: {}", r.body);
            assert!(
                r.body.contains("may not change these records"),
                "{who} {what}: {}",
                r.body
            );
        }
        let entries = json!([
            {"resource": forged, "request": {"method": "PUT", "url": format!("Patient/{id}")}},
            {"request": {"method": "DELETE", "url": format!("Patient/{id}")}}]);
        let transaction = send(
            "POST",
            "/fhir",
            Some(&json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})),
        );
        assert_eq!(
            transaction.status, 403,
            "{who} transaction: {}",
            transaction.body
        );
        let batch = send(
            "POST",
            "/fhir",
            Some(&json!({"resourceType": "Bundle", "type": "batch", "entry": entries})),
        );
        assert_eq!(batch.status, 200, "{who} batch: {}", batch.body);
        let batch: Value = serde_json::from_str(&batch.body).unwrap();
        for e in batch["entry"].as_array().unwrap() {
            assert_eq!(
                e["response"]["status"], "403 Forbidden",
                "{who} batch: {batch}"
            );
        }
        let import = send(
            "POST",
            "/fhir/$import",
            Some(&json!({"input": [{"type": "Patient", "url": ndjson.display().to_string()}]})),
        );
        assert_eq!(import.status, 403, "{who} import: {}", import.body);
        attempts += 5;
    }
    // The patient is as the clinician left it: version 2, named King.
    let now = http_request(a, "GET", &format!("/fhir/Patient/{id}"), Some(&doc), None);
    assert_eq!(now.status, 200, "{}", now.body);
    let now: Value = serde_json::from_str(&now.body).unwrap();
    assert_eq!(now["meta"]["versionId"], "2", "{now}");
    assert_eq!(now["name"][0]["family"], "King", "{now}");

    // Product changes are governed by the same grant, on the API and the
    // pages: the analyst may read capacity under operations, not change it.
    let ana = token("ana");
    let offers = json!([{"kind": "residential", "location": "Hillside House", "free": 1, "total": 10,
                         "updated_at": "2026-12-01T10:00:00Z"}]);
    let put_capacity = |token: &str| {
        http_request_with(
            a,
            "PUT",
            "/api/capacity",
            Some(token),
            &[("X-Purpose", "operations")],
            Some(&offers.to_string()),
        )
    };
    let put = put_capacity(&ana);
    assert_eq!(put.status, 403, "{}", put.body);
    let bed_status = http_request_with(
        a,
        "POST",
        "/api/beds/RXX-W1-B1/status",
        Some(&ana),
        &[("X-Purpose", "operations")],
        Some(r#"{"closed": true}"#),
    );
    assert_eq!(bed_status.status, 403, "{}", bed_status.body);
    // Discharge readiness is a change to a patient's care record: refused
    // before the admission is even looked up, so a refusal tells nothing.
    for admission in ["V-ANY", "no-such-admission"] {
        let readiness = http_request_with(
            a,
            "POST",
            &format!("/api/admissions/{admission}/discharge-readiness"),
            Some(&ana),
            &[("X-Purpose", "operations")],
            Some(r#"{"medically_optimised": true, "discharge_pathway": 1}"#),
        );
        assert_eq!(readiness.status, 403, "{}", readiness.body);
    }
    attempts += 2;
    let cookie = purpose_cookie(a, &ana, "operations");
    let page = http_form(
        a,
        "/capacity",
        &ana,
        &[("Cookie", &cookie)],
        &[("free-0", "3")],
    );
    assert_eq!(page.status, 403, "{}", page.body);
    attempts += 3;
    let put = put_capacity(&token("bed"));
    assert_eq!(put.status, 200, "{}", put.body);

    // A bulk import by the clinician is allowed, and audited with its patients.
    let imported = http_request(
        a,
        "POST",
        "/fhir/$import",
        Some(&doc),
        Some(
            &json!({"input": [{"type": "Patient", "url": ndjson.display().to_string()}]})
                .to_string(),
        ),
    );
    assert_eq!(imported.status, 200, "{}", imported.body);
    let deleted = http_request(
        a,
        "DELETE",
        &format!("/fhir/Patient/{id}"),
        Some(&doc),
        None,
    );
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    server.stop();

    let audit = audit_entries(&data);
    let changes: Vec<&Value> = audit.iter().filter(|e| e["kind"] == "change").collect();
    let refused = changes
        .iter()
        .filter(|e| e["outcome"].as_str().unwrap().starts_with("refused"))
        .count();
    // Every refused write is in the audit (a Bundle's is one per type).
    assert!(
        refused >= attempts,
        "{refused} refusals audited for {attempts} attempts"
    );
    let of_patient = |what: &str| {
        changes.iter().any(|e| {
            e["principal"] == "doc"
                && e["outcome"] == "ok"
                && e["what"].as_str().unwrap().starts_with(what)
                && e["patients"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p == id.as_str())
        })
    };
    for what in [
        "POST /fhir/Patient",
        "PUT /fhir/Patient/",
        "POST /fhir/$import",
        "DELETE /fhir/Patient/",
    ] {
        assert!(
            of_patient(what),
            "{what} by doc is not audited with the patient"
        );
    }
}

/// The `Set-Cookie` header for cookie `name` in a raw HTTP response head.
fn set_cookie_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.trim())
        .find(|v| v.starts_with(&format!("{name}=")))
}

fn cookie_value(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
}

#[test]
fn class_8_a_browser_signs_in_by_post_and_holds_a_session_that_ends() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 1.0);
    let (a, token) = (server.http, server.token.clone());
    let html = [("Accept", "text/html")];

    // A token in a link signs no one in: it would be in browser history
    // and proxy logs.
    let r = http_request_with(
        a,
        "GET",
        &format!("/login?token={token}&next=/bed-board"),
        None,
        &html,
        None,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.header("set-cookie").is_none(),
        "a link signed a browser in"
    );
    assert!(r.body.contains("Paste the token"), "{}", r.body);

    // A wrong token posted: no session.
    let wrong = http_form(a, "/login", "none", &[], &[("token", "fdp_0000")]);
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());

    // The form: the cookie holds a session id, not the token.
    let signed_in = http_form(
        a,
        "/login",
        "none",
        &[],
        &[("token", &token), ("next", "/bed-board")],
    );
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let set = signed_in
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    let id = cookie_value(&set).to_string();
    assert!(!set.contains(&token) && id.len() == 64, "{set}");
    for attr in ["HttpOnly", "SameSite=Strict", "Max-Age=43200"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain HTTP cannot keep a Secure cookie: {set}"
    );
    let whoami = |cookie: &str| {
        http_request_with(a, "GET", "/api/whoami", None, &[("Cookie", cookie)], None)
    };
    let me = whoami(&format!("fdp_session={id}"));
    assert_eq!(me.status, 200, "{}", me.body);
    assert!(me.body.contains("\"tester\""), "{}", me.body);
    // The token itself in the cookie (the old scheme) is not a session.
    assert_eq!(whoami(&format!("fdp_session={token}")).status, 401);

    // Sign-out ends the session on the server: a copy of the cookie, taken
    // before, signs no one in.
    let out = http_request_with(
        a,
        "POST",
        "/logout",
        None,
        &[("Cookie", &format!("fdp_session={id}"))],
        Some(""),
    );
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(whoami(&format!("fdp_session={id}")).status, 401);
    server.stop();
}

#[test]
fn class_8_the_http_listener_serves_tls_and_its_cookies_are_secure() {
    let dir = tempfile::tempdir().unwrap();
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.path().join("http.crt"), dir.path().join("http.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let server = Server::start_configured(
        &dir.path().join("data"),
        1.0,
        "127.0.0.1:0",
        "127.0.0.1:0",
        &format!(
            "http_tls_cert = {:?}\nhttp_tls_key = {:?}\n[principal.tester]\nroles = [\"clinician\"]\n",
            cert, key
        ),
    );
    let base = format!("https://127.0.0.1:{}", server.http.port());
    // curl, trusting only the instance's certificate; -i keeps the head.
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-i", "--max-time", "20", "--cacert"])
            .arg(&cert)
            .args(args)
            .output()
            .expect("curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, head, err) = curl(&[
        "--data-urlencode",
        &format!("token={}", server.token),
        &format!("{base}/login"),
    ]);
    assert!(ok, "{err}");
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    let session = set_cookie_of(&head, "fdp_session").expect("a session cookie");
    assert!(session.contains("; Secure"), "{session}");
    let id = cookie_value(session).to_string();
    // The purpose declared at the checkpoint is kept in a Secure cookie too.
    let (ok, head, err) = curl(&[
        "-b",
        &format!("fdp_session={id}"),
        "--data",
        "purpose=direct-care",
        &format!("{base}/purpose"),
    ]);
    assert!(ok, "{err}");
    let purpose = set_cookie_of(&head, "fdp_purpose").unwrap_or_else(|| panic!("{head}"));
    assert!(purpose.contains("; Secure"), "{purpose}");
    let (ok, head, err) = curl(&[
        "-H",
        &format!("Authorization: Bearer {}", server.token),
        &format!("{base}/api/whoami"),
    ]);
    assert!(ok && head.starts_with("HTTP/1.1 200"), "{head}{err}");
    // Plain HTTP to the TLS listener is not answered.
    let (ok, head, _) = curl(&[&format!("http://127.0.0.1:{}/healthz", server.http.port())]);
    assert!(!ok || !head.contains(" 200"), "{head}");
    server.stop();
}

#[test]
fn class_7_the_live_stream_audits_each_patient_as_they_appear() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    load_bed_register(dir.path(), &data);
    let server = Server::start(&data, 1.0);
    let board = |token: &str| -> Value {
        let (status, body) = http_get(server.http, "/api/bed-board", Some(token));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let bed = board(&server.token)["sites"][0]["wards"][0]["beds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["state"] == "free")
        .expect("a free bed")
        .clone();
    let bed_id = bed["bed_id"].as_str().unwrap().to_string();

    // Open the stream, and read its first event: the board as it opened.
    let mut stream = std::net::TcpStream::connect(server.http).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET /bed-board/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Purpose: direct-care\r\nAccept: text/event-stream\r\n\r\n",
        server.token
    )
    .unwrap();
    let mut seen = String::new();
    let mut read_until = |what: &str| {
        let mut buf = [0u8; 8192];
        while !seen.contains(what) {
            let n = stream.read(&mut buf).expect("the stream to send");
            assert!(n > 0, "the stream closed: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    read_until("event: beds");

    // A patient is admitted while it is open.
    let id: Vec<&str> = bed_id.split(':').collect();
    let a01 = format!(
        "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261120080000||ADT^A01^ADT_A01|STREAM1|P|2.4\r\
         EVN|A01|20261120080000\r\
         PID|1||9434765919^^^NHS^NH~UI7^^^RXX^MR||STREAMED^Sam||19500101|F\r\
         PV1|1|I|{}^{}^{}^{}^^BED|21|||||||||||||||V-STREAM1\r",
        id[1], id[2], id[3], id[0]
    );
    let acks = mllp_roundtrip(server.mllp, &[a01.into_bytes()]);
    assert_eq!(acks, ["AA"]);
    read_until("STREAMED");
    let patient = board(&server.token)["sites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["wards"].as_array().unwrap())
        .flat_map(|w| w["beds"].as_array().unwrap())
        .find(|b| b["bed_id"] == bed_id.as_str())
        .map(|b| b["occupant"]["patient_id"].as_str().unwrap().to_string())
        .expect("the admitted patient");
    drop(stream);
    server.stop();

    // The stream's audit names the patient it showed after it opened.
    let streamed: Vec<Value> = audit_entries(&data)
        .into_iter()
        .filter(|e| e["what"] == "GET /bed-board/events")
        .collect();
    assert!(streamed.len() >= 2, "{streamed:?}");
    assert!(
        !streamed[0]["patients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == patient.as_str()),
        "the patient was on the board before they were admitted"
    );
    assert!(
        streamed[1..].iter().any(|e| e["patients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == patient.as_str())),
        "the stream showed {patient} without auditing it: {streamed:?}"
    );
}

/// Class 1: the bed board is shaped by the same compiled policy as SQL. An
/// analyst gets, under operations, each occupant's details as the policy
/// shows their model columns (the name removed, the patient's id
/// pseudonymised, nothing of the patient table, which operations does not
/// grant); under planning, the API refuses a board of patients one by one
/// (only aggregates leave), while the live stream of the pages, inside the
/// instance, shows the pseudonymised board with opted-out patients left out.
#[test]
fn class_1_the_bed_board_shows_what_the_policy_grants_and_no_more() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    load_bed_register(dir.path(), &data);
    let opt_out = dir.path().join("opt-out.txt");
    let opted_out = nhs_number(943_476_591);
    std::fs::write(&opt_out, format!("{opted_out}\n")).unwrap();
    let config = config(dir.path(), &opt_out);
    let server = Server::start_with_config_file(&data, &config, "", "");
    let ana = fdp_ok!("token", "create", "ana", "--data-dir", data)
        .trim()
        .to_string();
    let get = |token: &str, purpose: &str| {
        http_request_with(
            server.http,
            "GET",
            "/api/bed-board",
            Some(token),
            &[("X-Purpose", purpose)],
            None,
        )
    };
    let doc = fdp_ok!("token", "create", "doc", "--data-dir", data)
        .trim()
        .to_string();
    // Two patients admitted to free beds: one on the opt-out list.
    let (status, body) = http_get(server.http, "/api/bed-board", Some(&doc));
    assert_eq!(status, 200, "{body}");
    let board: Value = serde_json::from_str(&body).unwrap();
    let free: Vec<String> = board["sites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["wards"].as_array().unwrap())
        .flat_map(|w| w["beds"].as_array().unwrap())
        .filter(|b| b["state"] == "free")
        .map(|b| b["bed_id"].as_str().unwrap().to_string())
        .take(2)
        .collect();
    let kept = nhs_number(943_476_599);
    let mut messages = Vec::new();
    for (i, (bed, (nhs, name))) in free
        .iter()
        .zip([(&kept, "SHOWNOT^Kim"), (&opted_out, "OPTEDOUT^Lee")])
        .enumerate()
    {
        let id: Vec<&str> = bed.split(':').collect();
        messages.push(
            format!(
                "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261120080000||ADT^A01^ADT_A01|BOARD{i}|P|2.4\r\
                 EVN|A01|20261120080000\r\
                 PID|1||{nhs}^^^NHS^NH~UB{i}^^^RXX^MR||{name}||19500101|F\r\
                 PV1|1|I|{}^{}^{}^{}^^BED|21|||||||||||||||V-BOARD{i}\r",
                id[1], id[2], id[3], id[0]
            )
            .into_bytes(),
        );
    }
    assert_eq!(mllp_roundtrip(server.mllp, &messages), ["AA", "AA"]);
    let occupants = |board: &Value| -> Vec<Value> {
        board["sites"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["wards"].as_array().unwrap())
            .flat_map(|w| w["beds"].as_array().unwrap())
            .filter(|b| free.contains(&b["bed_id"].as_str().unwrap().to_string()))
            .map(|b| b["occupant"].clone())
            .collect()
    };
    // AA means stored; the census applies the admissions a moment later.
    wait_until(20, "both admissions on the board", || {
        let (_, body) = http_get(server.http, "/api/bed-board", Some(&doc));
        serde_json::from_str::<Value>(&body)
            .map(|b| occupants(&b).iter().all(|o| o.is_object()))
            .unwrap_or(false)
    });

    // Operations: the board, shaped column by column.
    let ops = get(&ana, "operations");
    assert_eq!(ops.status, 200, "{}", ops.body);
    for secret in [
        "SHOWNOT",
        "OPTEDOUT",
        kept.as_str(),
        opted_out.as_str(),
        "UB0",
        "UB1",
    ] {
        assert!(!ops.body.contains(secret), "{secret} in {}", ops.body);
    }
    let board: Value = serde_json::from_str(&ops.body).unwrap();
    let shown = occupants(&board);
    assert_eq!(shown.len(), 2);
    for o in &shown {
        assert_eq!(o["name"], "[masked]", "{o}");
        assert!(o["nhs_number"].is_null() && o["sex"].is_null(), "{o}");
        let id = o["patient_id"].as_str().unwrap();
        assert!(
            id.starts_with('p') && id.contains('-') && id.len() > 20,
            "not a pseudonym: {o}"
        );
    }

    // Planning over the API: refused, and the refusal audited.
    let planning = get(&ana, "planning");
    assert_eq!(planning.status, 403, "{}", planning.body);
    assert!(planning.body.contains("one by one"), "{}", planning.body);
    assert!(audit_entries(&data).iter().any(|e| e["principal"] == "ana"
        && e["what"] == "GET /api/bed-board"
        && e["outcome"].as_str().unwrap().starts_with("refused")));

    // Planning in the pages' live stream: pseudonymised, opted-out left out.
    let mut stream = std::net::TcpStream::connect(server.http).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET /bed-board/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ana}\r\nX-Purpose: planning\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 65536];
    while !seen.contains("event: beds") || !seen.contains("\n\n") {
        let n = stream.read(&mut buf).expect("the stream to send");
        assert!(n > 0, "the stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(stream);
    for secret in ["SHOWNOT", "OPTEDOUT", kept.as_str(), opted_out.as_str()] {
        assert!(!seen.contains(secret), "{secret} in {seen}");
    }
    server.stop();
    // The stream audited the one patient it showed, and not the opted-out.
    let streamed: Vec<Value> = audit_entries(&data)
        .into_iter()
        .filter(|e| e["principal"] == "ana" && e["what"] == "GET /bed-board/events")
        .collect();
    assert!(!streamed.is_empty());
    let named: usize = streamed
        .iter()
        .map(|e| e["patients"].as_array().map_or(0, |p| p.len()))
        .sum();
    assert_eq!(named, board_patients_before(&board), "{streamed:?}");
}

/// The occupied beds on a board an operations view returned, less the two
/// the test admitted, plus the one of them not opted out: what a planning
/// view of the same board names.
fn board_patients_before(board: &Value) -> usize {
    let occupied = board["sites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["wards"].as_array().unwrap())
        .flat_map(|w| w["beds"].as_array().unwrap())
        .filter(|b| b["occupant"].is_object())
        .count();
    occupied - 1
}

/// Class 2's one exception: rows leave under research only as a file of an
/// extract specification the IG lead approved for the researcher's own
/// project. The file's query is the one approved, never the caller's; its
/// rows are shaped by the policy (no identifier, ids pseudonymised with the
/// project's key, opted-out patients left out). Everything else under
/// research still leaves as aggregates only.
#[test]
fn class_2_rows_leave_under_research_only_as_an_approved_extract() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let export = dir.path().join("fhir");
    fdp_ok!("synth", "fhir", "--out", export, "--patients", "30");
    fdp_ok!("ingest", "fhir", "--data-dir", data, export);
    let opt_out = dir.path().join("opt-out.txt");
    let config = config(dir.path(), &opt_out);
    let truth = sql_as(
        &config,
        &data,
        "doc",
        "direct-care",
        &[],
        "SELECT * FROM patient",
    )
    .unwrap();
    assert_eq!(truth.len(), 30);
    std::fs::write(
        &opt_out,
        format!("{}\n", truth[0]["nhs_number"].as_str().unwrap()),
    )
    .unwrap();
    let planted: std::collections::BTreeSet<String> = truth
        .iter()
        .flat_map(|r| {
            [
                "person_id",
                "nhs_number",
                "full_name",
                "first_name",
                "surname",
                "mrn",
                "date_of_birth",
                "postcode",
            ]
            .iter()
            .filter_map(|c| r.get(*c).and_then(Value::as_str).map(str::to_string))
            .collect::<Vec<_>>()
        })
        .collect();
    let manage = |args: &[&str]| {
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = Vec::new();
        for a in args {
            all.push(a);
        }
        all.extend([
            &"--data-dir" as &dyn AsRef<std::ffi::OsStr>,
            &data,
            &"--config",
            &config,
        ]);
        projects(&all)
    };
    for (name, purpose, on) in [
        ("p1", "research", "res"),
        ("p2", "research", "res2"),
        ("plan1", "planning", "ana"),
    ] {
        manage(&[
            "register",
            name,
            "--by",
            "ig",
            "--purpose",
            purpose,
            "--title",
            "asthma outcomes, REC 26/YH/0001",
            "--principal",
            on,
        ])
        .unwrap();
    }
    let spec = dir.path().join("cohort.toml");
    std::fs::write(
        &spec,
        "name = \"cohort\"\ndescription = \"Everyone registered, for the asthma outcomes study\"\n\
         [[file]]\nname = \"patients\"\nsql = \"SELECT * FROM patient\"\n",
    )
    .unwrap();
    let spec_arg = spec.display().to_string();
    // Only the IG lead approves, only for a research project, and only
    // queries.
    let e = manage(&["approve-extract", "p1", "--spec", &spec_arg, "--by", "res"]).unwrap_err();
    assert!(e.contains("reviews the audit"), "{e}");
    let e = manage(&[
        "approve-extract",
        "plan1",
        "--spec",
        &spec_arg,
        "--by",
        "ig",
    ])
    .unwrap_err();
    assert!(e.contains("only a research project"), "{e}");
    let bad = dir.path().join("bad.toml");
    for sql in ["DELETE FROM patient", "SELECT 1; SELECT * FROM patient"] {
        std::fs::write(
            &bad,
            format!(
                "name = \"bad\"\ndescription = \"x\"\n[[file]]\nname = \"f\"\nsql = \"{sql}\"\n"
            ),
        )
        .unwrap();
        let e = manage(&[
            "approve-extract",
            "p1",
            "--spec",
            &bad.display().to_string(),
            "--by",
            "ig",
        ])
        .unwrap_err();
        assert!(
            e.contains("not one query") || e.contains("not an extract"),
            "{sql}: {e}"
        );
    }
    manage(&["approve-extract", "p1", "--spec", &spec_arg, "--by", "ig"]).unwrap();
    let listed = projects(&[&"list", &"--data-dir", &data]).unwrap();
    assert!(listed.contains("extract cohort"), "{listed}");

    let server = Server::start_with_config_file(&data, &config, "", "");
    let token = |who: &str| {
        fdp_ok!("token", "create", who, "--data-dir", data)
            .trim()
            .to_string()
    };
    let (res, res2, ana) = (token("res"), token("res2"), token("ana"));
    let ask =
        |token: &str, body: Value| http_post(server.http, "/export", token, &body.to_string());
    let research = |project: &str, more: Value| {
        let mut body = json!({"purpose": "research", "project": project,
                              "justification": "asthma outcomes, REC 26/YH/0001"});
        body.as_object_mut()
            .unwrap()
            .extend(more.as_object().unwrap().clone());
        body
    };

    // The approved file: its rows leave, shaped by the policy.
    let (status, csv) = ask(
        &res,
        research("p1", json!({"extract": "cohort", "file": "patients"})),
    );
    assert_eq!(status, 200, "{csv}");
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), 29, "everyone but the opted-out patient: {csv}");
    for row in &rows {
        for (column, v) in row {
            let v = v.as_str().unwrap();
            assert!(!planted.contains(v), "{column} = {v} left in the extract");
        }
        let id = row["person_id"].as_str().unwrap();
        assert!(
            id.starts_with('p') && id.contains('-'),
            "not a pseudonym: {id}"
        );
    }
    // The same query sent as SQL is not the extract: no rows leave.
    let (status, csv) = ask(
        &res,
        research("p1", json!({"sql": "SELECT * FROM patient"})),
    );
    assert_eq!(status, 200, "{csv}");
    assert!(csv_rows(&csv).is_empty(), "rows left as SQL: {csv}");
    // An extract's query is the approved one, never the caller's.
    let (status, body) = ask(
        &res,
        research(
            "p1",
            json!({"extract": "cohort", "file": "patients", "sql": "SELECT * FROM patient"}),
        ),
    );
    assert_eq!(status, 400, "{body}");
    // Another researcher: not on p1; on p2, which has no such extract.
    let (status, body) = ask(
        &res2,
        research("p1", json!({"extract": "cohort", "file": "patients"})),
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = ask(
        &res2,
        research("p2", json!({"extract": "cohort", "file": "patients"})),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("no approved extract"), "{body}");
    // A file the extract does not have.
    let (status, body) = ask(
        &res,
        research("p1", json!({"extract": "cohort", "file": "admissions"})),
    );
    assert_eq!(status, 403, "{body}");
    // Planning takes no extract, whatever project it names.
    let (status, body) = ask(
        &ana,
        json!({"purpose": "planning", "project": "plan1", "extract": "cohort", "file": "patients"}),
    );
    assert_eq!(status, 403, "{body}");

    // Withdrawn: refused from then on, the running instance included.
    manage(&["withdraw-extract", "p1", "cohort", "--by", "ig"]).unwrap();
    let (status, body) = ask(
        &res,
        research("p1", json!({"extract": "cohort", "file": "patients"})),
    );
    assert_eq!(status, 403, "{body}");
    server.stop();

    // The audit names the extract, its approver and its digest.
    let entries = audit_entries(&data);
    let taken: Vec<&Value> = entries
        .iter()
        .filter(|e| e["principal"] == "res" && e["outcome"] == "ok")
        .filter(|e| {
            e["decisions"].as_array().is_some_and(|d| {
                d.iter().any(|d| {
                    d.as_str()
                        .unwrap_or_default()
                        .starts_with("extract cohort/patients: approved by ig")
                })
            })
        })
        .collect();
    assert_eq!(taken.len(), 1, "{entries:?}");
    assert!(entries.iter().any(|e| e["kind"] == "project"
        && e["what"] == "approve extract cohort for project p1"
        && e["outcome"] == "ok"));
}
