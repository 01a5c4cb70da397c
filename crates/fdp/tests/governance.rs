//! Governance end to end: the demo policy's matrix of role × purpose ×
//! object type × sensitivity tag, checked through `fdp sql`, `POST /sql`,
//! SQL over the PostgreSQL wire protocol (psycopg), `POST /export` (CSV) and
//! the UI (the purpose checkpoint, then a table's rows page);
//! nothing identifying under planning; pseudonyms that differ by project;
//! the national data opt-out; disclosure control; and an audit log that
//! records every access and catches tampering.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;
use fdp_govern::policy::Action;
use fdp_govern::{Policy, Principal, Purpose};
use fdp_model::{Model, Sensitivity};
use serde_json::{json, Map, Value};

type Row = Map<String, Value>;

const PRINCIPALS: &[(&str, &str)] = &[
    ("doc", "clinician"),
    ("bed", "bed-manager"),
    ("ana", "analyst"),
    ("res", "researcher"),
    ("ig", "information-governance-lead"),
    ("eng", "integration-engineer"),
];

fn config(dir: &Path, opt_out: &Path) -> std::path::PathBuf {
    let mut text = format!("ods = \"RXX\"\nopt_out_file = \"{}\"\n", opt_out.display());
    for (name, role) in PRINCIPALS {
        text.push_str(&format!("[principal.{name}]\nroles = [\"{role}\"]\n"));
    }
    let path = dir.join("instance.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn extra_for(purpose: Purpose, project: &str) -> Vec<String> {
    match purpose {
        Purpose::Research => vec![
            "--project".into(),
            project.into(),
            "--justification".into(),
            "asthma outcomes study, REC 26/YH/0001".into(),
        ],
        _ => vec![],
    }
}

#[test]
fn the_policy_matrix_holds_through_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    let export = dir.path().join("export");
    fdp_ok!("synth", "fhir", "--out", export, "--patients", "40");
    fdp_ok!("ingest", "fhir", "--data-dir", data, export);
    let opt_out = dir.path().join("opt-out.txt");
    let config = config(dir.path(), &opt_out);
    // The IG lead approves the two research projects the researcher is on.
    for p in ["p1", "p2"] {
        fdp_ok!(
            "projects",
            "register",
            p,
            "--data-dir",
            data,
            "--config",
            config,
            "--by",
            "ig",
            "--purpose",
            "research",
            "--title",
            "asthma outcomes study, REC 26/YH/0001",
            "--principal",
            "res"
        );
    }

    // What direct care sees is the truth the other purposes are checked against.
    let truth = sql_as(
        &config,
        &data,
        "doc",
        "direct-care",
        &[],
        "SELECT * FROM patient ORDER BY person_id",
    )
    .unwrap();
    assert_eq!(truth.len(), 40);
    let opted_out = truth[0]["nhs_number"].as_str().unwrap().to_string();
    let opted_out_person = truth[0]["person_id"].as_str().unwrap().to_string();
    std::fs::write(&opt_out, format!("# national data opt-out\n{opted_out}\n")).unwrap();
    let identifying: BTreeSet<String> = truth
        .iter()
        .flat_map(|r| {
            [
                "nhs_number",
                "full_name",
                "first_name",
                "surname",
                "date_of_birth",
                "postcode",
                "mrn",
                "address_line_1",
                "person_id",
            ]
            .iter()
            .filter_map(|c| r.get(*c).and_then(|v| v.as_str()).map(str::to_string))
            .collect::<Vec<_>>()
        })
        .collect();
    assert!(identifying.len() > 200);

    let model = Model::canonical();
    let policy = Policy::demo(model);
    let tables: BTreeSet<String> = std::fs::read_dir(data.join("tables/canonical"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .split('@')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let server = Server::start_with_config_file(&data, &config, "sql = \"127.0.0.1:0\"", "");
    let tokens: BTreeMap<&str, String> = PRINCIPALS
        .iter()
        .map(|(name, _)| {
            (
                *name,
                fdp_ok!("token", "create", name, "--data-dir", data)
                    .trim()
                    .to_string(),
            )
        })
        .collect();

    let wire = wire_batch(&server, &tokens, &tables);
    let mut wire_accesses = 0;
    let mut exports = 0;
    let mut ui_accesses = 0;

    let mut checked = 0;
    let mut accesses = 0;
    for (who, role_name) in PRINCIPALS {
        let role = &policy.roles[*role_name];
        let principal = Principal {
            name: who.to_string(),
            roles: vec![role_name.to_string()],
            organisation: Some("RXX".into()),
        };
        for purpose in Purpose::ALL {
            let extra = extra_for(purpose, "p1");
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let in_ui = declare_in_ui(server.http, &tokens[who], purpose);
            ui_accesses += 1;
            let Some(grant) = role.grants.get(&purpose) else {
                let (status, page) = in_ui.unwrap_err();
                assert_eq!(status, 403, "{who} {purpose} in the UI: {page}");
                assert!(page.contains("no role that is granted"), "{page}");
                // Not granted: refused on every path, and the refusal audited.
                let e =
                    sql_as(&config, &data, who, purpose.as_str(), &extra, "SELECT 1").unwrap_err();
                assert!(e.contains("no role that is granted"), "{e}");
                let (status, _) = http_sql(
                    server.http,
                    &tokens[who],
                    json!({"sql": "SELECT 1", "purpose": purpose}),
                );
                assert_eq!(status, 403);
                let (status, _) = http_post(
                    server.http,
                    "/export",
                    &tokens[who],
                    &json!({"sql": "SELECT 1", "purpose": purpose}).to_string(),
                );
                assert_eq!(status, 403);
                exports += 1;
                accesses += 2;
                let e = wire[&(who.to_string(), purpose)].as_ref().unwrap_err();
                assert!(e.contains("no role that is granted"), "{e}");
                wire_accesses += 1;
                continue;
            };
            let over_wire = wire[&(who.to_string(), purpose)]
                .as_ref()
                .unwrap_or_else(|e| panic!("{who} {purpose} over the wire: {e}"));
            let ui_purpose = in_ui.unwrap_or_else(|e| panic!("{who} {purpose} in the UI: {e:?}"));
            assert!(policy.grant_for(&principal, purpose, None).is_ok());
            for table in &tables {
                let object = model.object_type_by_table(table).unwrap();
                let q = format!("SELECT * FROM {table}");
                let cli = sql_as(&config, &data, who, purpose.as_str(), &extra, &q);
                let mut body = json!({"sql": q, "purpose": purpose});
                if purpose == Purpose::Research {
                    body["project"] = json!("p1");
                    body["justification"] = json!("asthma outcomes study, REC 26/YH/0001");
                }
                let (status, answer) = http_sql(server.http, &tokens[who], body.clone());
                let (export_status, export) =
                    http_post(server.http, "/export", &tokens[who], &body.to_string());
                exports += 1;
                accesses += 2;
                wire_accesses += 1;
                let over_wire = &over_wire[table];
                let in_ui = ui_rows(server.http, &tokens[who], &ui_purpose, table);
                if !grant.objects.covers(table) {
                    let (ui_status, page) = in_ui.unwrap_err();
                    assert_eq!(ui_status, 404, "{who} {purpose} {table} in the UI");
                    assert!(page.contains("not found"), "{page}");
                    let e = cli.unwrap_err();
                    assert!(e.contains("not found"), "{who} {purpose} {table}: {e}");
                    assert_eq!(status, 400, "{answer}");
                    let e = over_wire.as_ref().unwrap_err();
                    assert!(
                        e.contains("not found"),
                        "{who} {purpose} {table} over the wire: {e}"
                    );
                    assert_eq!(export_status, 400, "{export}");
                    continue;
                }
                assert_eq!(export_status, 200, "{who} {purpose} {table}: {export}");
                let exported = parse_csv(&export);
                let over_export: Vec<Row> = exported[1..]
                    .iter()
                    .map(|r| {
                        exported[0]
                            .iter()
                            .cloned()
                            .zip(r.iter().map(|v| {
                                if v.is_empty() {
                                    Value::Null
                                } else {
                                    Value::String(v.clone())
                                }
                            }))
                            .collect()
                    })
                    .collect();
                let (wire_columns, over_wire) = over_wire
                    .as_ref()
                    .unwrap_or_else(|e| panic!("{who} {purpose} {table} over the wire: {e}"));
                let cli = cli.unwrap_or_else(|e| panic!("{who} {purpose} {table}: {e}"));
                let (ui_columns, in_ui, pages) =
                    in_ui.unwrap_or_else(|e| panic!("{who} {purpose} {table} in the UI: {e:?}"));
                ui_accesses += pages;
                assert_eq!(status, 200, "{who} {purpose} {table}: {answer}");
                let over_http: Vec<Row> = serde_json::from_value(answer["rows"].clone()).unwrap();
                // What leaves the instance under planning or research is
                // never a patient's row; the command line and the pages,
                // inside it, show the pseudonymised rows.
                let names_patients = table == "patient"
                    || object.properties.iter().any(|p| p.column == "patient_id");
                let leaving = if purpose.is_secondary() && names_patients {
                    0
                } else {
                    cli.len()
                };
                assert_eq!(leaving, over_http.len(), "{who} {purpose} {table}");
                let columns: BTreeSet<String> = answer["columns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().to_string())
                    .collect();
                assert_eq!(&columns, wire_columns, "{who} {purpose} {table}");
                assert_eq!(leaving, over_wire.len(), "{who} {purpose} {table}");
                assert_eq!(columns, ui_columns, "{who} {purpose} {table} in the UI");
                assert_eq!(cli.len(), in_ui.len(), "{who} {purpose} {table} in the UI");
                let export_columns: BTreeSet<String> = exported[0].iter().cloned().collect();
                assert_eq!(columns, export_columns, "{who} {purpose} {table} export");
                assert_eq!(leaving, over_export.len(), "{who} {purpose} {table} export");
                // Columns: exactly those the policy does not remove.
                for p in &object.properties {
                    let action = grant.action(table, &p.column, p.sensitivity);
                    assert_eq!(
                        columns.contains(&p.column),
                        action != Action::Remove,
                        "{who} {purpose} {table}.{} ({}) is {action}",
                        p.column,
                        p.sensitivity
                    );
                    checked += 1;
                    for row in cli
                        .iter()
                        .chain(&over_http)
                        .chain(over_wire)
                        .chain(&over_export)
                        .chain(&in_ui)
                    {
                        let Some(v) = row.get(&p.column) else {
                            continue;
                        };
                        match (action, v) {
                            (Action::Mask, Value::String(s)) => assert_eq!(s, "[masked]"),
                            (Action::Mask, v) => {
                                assert!(v.is_null(), "{table}.{} masked: {v}", p.column)
                            }
                            (Action::Pseudonymise, Value::String(s)) => {
                                assert!(s.starts_with("p1-"), "{s}")
                            }
                            (Action::Year, v) => assert!(
                                v.is_null()
                                    || v.as_i64()
                                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                                        .is_some_and(|y| (1900..2100).contains(&y)),
                                "{v}"
                            ),
                            (Action::District, Value::String(s)) => {
                                assert!(s.len() <= 4 && !s.contains(' '), "{s}")
                            }
                            (Action::AgeBand, Value::String(s)) => {
                                assert!(s.contains('-') || s == "90+", "{s}")
                            }
                            _ => {}
                        }
                    }
                }
                // Rows: opted-out patients only leave out of secondary uses.
                if table == "patient" {
                    let expected = if purpose.is_secondary() { 39 } else { 40 };
                    assert_eq!(cli.len(), expected, "{who} {purpose}");
                    if !purpose.is_secondary()
                        && columns.contains("person_id")
                        && grant.action(table, "person_id", Sensitivity::Identifying)
                            == Action::Show
                    {
                        assert!(cli
                            .iter()
                            .any(|r| r["person_id"] == json!(opted_out_person)));
                    }
                }
                // Under planning and research nothing identifying, anywhere.
                if purpose.is_secondary() {
                    for row in cli
                        .iter()
                        .chain(&over_http)
                        .chain(over_wire)
                        .chain(&over_export)
                        .chain(&in_ui)
                    {
                        for (c, v) in row {
                            if let Some(s) = v.as_str() {
                                assert!(
                                    !identifying.contains(s),
                                    "{who} {purpose} {table}.{c} = {s}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "{checked} column checks");

    // Pseudonyms differ between two projects for the same patients.
    let q = "SELECT person_id FROM patient";
    let extra = |p: &'static str| vec!["--project", p, "--justification", "study"];
    let p1: BTreeSet<String> = sql_as(&config, &data, "res", "research", &extra("p1"), q)
        .unwrap()
        .into_iter()
        .map(|r| r["person_id"].to_string())
        .collect();
    let p2: BTreeSet<String> = sql_as(&config, &data, "res", "research", &extra("p2"), q)
        .unwrap()
        .into_iter()
        .map(|r| r["person_id"].to_string())
        .collect();
    assert_eq!(p1.len(), 39);
    assert!(p1.is_disjoint(&p2));
    // Re-identification for direct care is a request of its own, never the
    // pseudonym reversed: a clinician who gives a reason gets the patient
    // back; an analyst, or a request without a reason, is refused.
    let pseudonym = p1.iter().next().unwrap().trim_matches('"').to_string();
    let reidentify = |who: &str, justification: &str| {
        http_post(
            server.http,
            "/reidentify",
            &tokens[who],
            &json!({"pseudonym": pseudonym, "made_for": "research", "project": "p1",
                    "justification": justification})
            .to_string(),
        )
    };
    let (status, answer) = reidentify("doc", "flagged result needs clinic follow-up");
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let found = answer["patients"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{answer}");
    let reidentified = found[0]["person_id"].as_str().unwrap().to_string();
    assert!(truth.iter().any(|r| r["person_id"] == json!(reidentified)));
    let (status, e) = reidentify("ana", "curious");
    assert_eq!(status, 403, "{e}");
    let (status, e) = reidentify("doc", " ");
    assert_eq!(status, 403, "{e}");
    assert!(e.contains("justification"), "{e}");
    accesses += 3;
    // A sensitive purpose needs a justification.
    let e = sql_as(&config, &data, "res", "research", &["--project", "p1"], q).unwrap_err();
    assert!(e.contains("needs a justification"), "{e}");
    // No way around the views: no DDL, no reading the files.
    let e = sql_as(
        &config,
        &data,
        "ana",
        "planning",
        &[],
        &format!(
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{}/tables/canonical/patient/'",
            data.display()
        ),
    )
    .unwrap_err();
    assert!(e.contains("not supported") || e.contains("DDL"), "{e}");
    accesses += 4;

    // Rotating a project's key (audited) starts new pseudonyms: the same
    // patients under the same project no longer match the earlier extract.
    let rotated = fdp_ok!(
        "keys",
        "rotate",
        "--data-dir",
        data,
        "--purpose",
        "research",
        "--project",
        "p1",
        "--by",
        "ig",
        "--reason",
        "extract p1/2026-11 shared in error"
    );
    assert!(rotated.contains("now v2"), "{rotated}");
    let listed = fdp_ok!("keys", "list", "--data-dir", data);
    assert!(
        listed
            .lines()
            .any(|l| l.contains("research") && l.contains("p1") && l.contains("v1 v2")),
        "{listed}"
    );
    let after: BTreeSet<String> = sql_as(&config, &data, "res", "research", &extra("p1"), q)
        .unwrap()
        .into_iter()
        .map(|r| r["person_id"].to_string())
        .collect();
    accesses += 1;
    assert_eq!(after.len(), p1.len());
    assert!(after.is_disjoint(&p1));
    assert!(after.iter().all(|p| p.starts_with("\"p2-")), "{after:?}");

    // Disclosure control: counts 1-7 suppressed, others rounded to 5, and
    // a lone suppressed cell beside a total gets a partner.
    let counts = sql_as(&config, &data, "ana", "planning", &[], "SELECT ethnic_category_code AS e, count(*) AS n FROM patient GROUP BY ROLLUP(ethnic_category_code) ORDER BY e").unwrap();
    accesses += 1;
    let mut hidden = 0;
    for r in &counts {
        match r.get("n").and_then(|v| v.as_i64()) {
            None => hidden += 1,
            Some(n) => assert!(n == 0 || (n >= 8 && n % 5 == 0), "{r:?}"),
        }
    }
    assert!(
        hidden != 1,
        "a single suppressed cell beside the total: {counts:?}"
    );
    // The same through an export: no exported count from 1 to 7.
    let (status, csv) = http_post(
        server.http,
        "/export",
        &tokens["ana"],
        &json!({"sql": "SELECT ethnic_category_code AS e, count(*) AS n FROM patient GROUP BY ROLLUP(ethnic_category_code)", "purpose": "planning"}).to_string(),
    );
    assert_eq!(status, 200, "{csv}");
    exports += 1;
    let exported = parse_csv(&csv);
    assert_eq!(exported[0], ["e", "n"]);
    let mut hidden = 0;
    for r in &exported[1..] {
        match r[1].as_str() {
            "" => hidden += 1,
            n => {
                let n: i64 = n.parse().unwrap();
                assert!(n == 0 || (n >= 8 && n % 5 == 0), "{r:?}");
            }
        }
    }
    assert!(
        hidden != 1,
        "a single suppressed cell beside the total: {csv}"
    );
    let raw_counts = sql_as(&config, &data, "eng", "operations", &[], "SELECT ethnic_category_code AS e, count(*) AS n FROM patient GROUP BY ethnic_category_code").unwrap();
    accesses += 1;
    assert!(
        raw_counts
            .iter()
            .any(|r| (1..8).contains(&r["n"].as_i64().unwrap())),
        "the fixture needs small cells: {raw_counts:?}"
    );

    // The UI sends a person who has not declared a purpose to the
    // checkpoint before it reads a table for them.
    let r = http_request(
        server.http,
        "GET",
        "/tables/patient/rows",
        Some(&tokens["ana"]),
        None,
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some("/purpose?next=/tables/patient/rows")
    );
    // A declaration counts only for the principal who made it.
    let ana_planning = declare_in_ui(server.http, &tokens["ana"], Purpose::Planning).unwrap();
    ui_accesses += 1;
    let cookie = format!("fdp_purpose={ana_planning}");
    let borrowed = http_request_with(
        server.http,
        "GET",
        "/tables/patient/rows",
        Some(&tokens["doc"]),
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(borrowed.status, 303, "{}", borrowed.body);
    // A download from the UI is an export: under planning it leaves the
    // instance, so it holds no patient's row (only the header), and the
    // header says why.
    let r = http_request_with(
        server.http,
        "GET",
        "/tables/patient/download",
        Some(&tokens["ana"]),
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    exports += 1;
    let downloaded = parse_csv(&r.body);
    assert_eq!(downloaded.len(), 1);
    assert!(r
        .header("x-disclosure-control")
        .is_some_and(|d| d.contains("39 rows withheld")));
    for v in downloaded.iter().flatten() {
        assert!(!identifying.contains(v), "downloaded {v}");
    }
    // The analyst's answers say nothing of what the opt-out excluded; the
    // IG lead's audit page does, and finds who looked at a patient.
    let (status, answer) = http_sql(
        server.http,
        &tokens["ana"],
        json!({"sql": "SELECT count(*) AS n FROM patient", "purpose": "planning"}),
    );
    accesses += 1;
    assert_eq!(status, 200);
    let text = answer.to_string();
    assert!(
        !text.contains("opt-out") && !text.contains("excluded"),
        "{text}"
    );
    let (status, page) = http_get(server.http, "/audit", Some(&tokens["ana"]));
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("no role that reviews the audit"), "{page}");
    ui_accesses += 1;
    let (status, page) = http_get(
        server.http,
        &format!("/audit?patient={opted_out_person}"),
        Some(&tokens["ig"]),
    );
    assert_eq!(status, 200, "{page}");
    ui_accesses += 2;
    assert!(page.contains("data-intact=\"true\""), "{page}");
    assert!(
        page.contains("<td>doc</td>"),
        "who looked at the patient: {page}"
    );
    assert!(
        page.contains("<tr data-table=\"patient\"><td><code>patient</code></td><td class=\"num\">40</td><td class=\"num\" data-excluded=\"1\">"),
        "{page}"
    );
    let encounters = sql_as(
        &config,
        &data,
        "doc",
        "direct-care",
        &[],
        &format!("SELECT count(*) AS n FROM encounter WHERE patient_id = '{opted_out_person}'"),
    )
    .unwrap()[0]["n"]
        .as_i64()
        .unwrap();
    accesses += 1;
    let row = page
        .split("<tr data-table=\"encounter\">")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("the encounter table's opt-out row");
    assert!(
        row.contains(&format!("data-excluded=\"{encounters}\"")),
        "encounters of the opted-out patient: {encounters}: {row}"
    );

    // The audit has every access, and catches tampering.
    drop(server);
    let audit = std::fs::read_to_string(data.join("audit/audit.jsonl")).unwrap();
    let entries: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ours = entries
        .iter()
        .filter(|e| e["channel"] == "sql" || e["channel"] == "http")
        .count();
    assert_eq!(
        ours,
        accesses + 1,
        "one entry per access, and the direct-care query before them"
    );
    let exported = entries
        .iter()
        .filter(|e| e["channel"] == "export")
        .inspect(|e| {
            assert!(
                e["kind"] == "export" || e["outcome"].as_str().unwrap().starts_with("refused"),
                "{e}"
            )
        })
        .count();
    assert_eq!(exported, exports, "one entry per export or refusal");
    // Each query's entry names the tables it read.
    assert!(entries.iter().any(|e| e["channel"] == "http"
        && e["what"] == "SELECT * FROM patient"
        && e["objects"] == json!(["patient"])));
    assert!(!audit.contains("?table?"));
    let in_ui = entries.iter().filter(|e| e["channel"] == "ui").count();
    assert_eq!(
        in_ui, ui_accesses,
        "one entry per declaration, page, audit review or refusal in the UI"
    );
    assert!(entries.iter().any(|e| e["kind"] == "purpose"
        && e["principal"] == "res"
        && e["justification"] == "asthma outcomes study, REC 26/YH/0001"
        && e["outcome"] == "declared"));
    assert!(entries
        .iter()
        .any(|e| e["kind"] == "opt-out-review" && e["principal"] == "ig"));
    assert!(entries.iter().any(|e| e["kind"] == "re-identification"
        && e["principal"] == "doc"
        && e["outcome"] == "ok"
        && e["patients"] == json!([reidentified])));
    let over_wire = entries.iter().filter(|e| e["channel"] == "pgwire").count();
    assert_eq!(
        over_wire, wire_accesses,
        "one entry per query or refusal over the wire"
    );
    assert!(entries
        .iter()
        .any(|e| e["justification"] == "asthma outcomes study, REC 26/YH/0001"));
    assert!(entries.iter().any(|e| e["kind"] == "key-rotation"
        && e["principal"] == "ig"
        && e["project"] == "p1"
        && e["justification"] == "extract p1/2026-11 shared in error"));
    let looked = fdp_ok!(
        "audit",
        "query",
        "--data-dir",
        data,
        "--patient",
        opted_out_person
    );
    assert!(looked.contains("\"principal\":\"doc\""), "{looked}");
    let ok = fdp_ok!("audit", "verify", "--data-dir", data);
    assert!(ok.contains("audit log intact"), "{ok}");
    let mut lines: Vec<String> = audit.lines().map(str::to_string).collect();
    lines[10] = lines[10].replace("\"rows\":", "\"rows\":1");
    std::fs::write(data.join("audit/audit.jsonl"), lines.join("\n") + "\n").unwrap();
    let bad = fdp()
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("line 11 (entry 11): edited"),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
}

/// RFC 4180 CSV: quoted fields may hold commas, quotes (doubled) and line
/// breaks.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

type WireAnswer = Result<(BTreeSet<String>, Vec<Row>), String>;

/// Every principal × purpose × table as `SELECT *` over the PostgreSQL wire
/// protocol, with psycopg, in one run of the client: each principal connects
/// once per purpose (refused where the purpose is not granted).
fn wire_batch(
    server: &Server,
    tokens: &BTreeMap<&str, String>,
    tables: &BTreeSet<String>,
) -> BTreeMap<(String, Purpose), Result<BTreeMap<String, WireAnswer>, String>> {
    let addr = server.sql.expect("the server was started with sql = ADDR");
    let mut keys = Vec::new();
    let mut sessions = Vec::new();
    for (who, _) in PRINCIPALS {
        for purpose in Purpose::ALL {
            let options = match purpose {
                Purpose::Research => {
                    r"-c project=p1 -c justification=asthma\ outcomes\ study,\ REC\ 26/YH/0001"
                }
                _ => "",
            };
            keys.push((who.to_string(), purpose));
            sessions.push(json!({
                "user": who,
                "password": tokens[who],
                "dbname": purpose.as_str(),
                "options": options,
                "queries": tables.iter().map(|t| format!("SELECT * FROM {t}")).collect::<Vec<_>>(),
            }));
        }
    }
    let answers = pg_batch(addr, &sessions);
    keys.into_iter()
        .zip(answers)
        .map(|(key, answer)| {
            let value = match answer.get("error") {
                Some(e) => Err(e.as_str().unwrap().to_string()),
                None => Ok(tables
                    .iter()
                    .zip(answer["results"].as_array().unwrap())
                    .map(|(t, r)| {
                        let a = match r.get("error") {
                            Some(e) => Err(e.as_str().unwrap().to_string()),
                            None => Ok((
                                r["columns"]
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .map(|c| c.as_str().unwrap().to_string())
                                    .collect(),
                                serde_json::from_value(r["rows"].clone()).unwrap(),
                            )),
                        };
                        (t.clone(), a)
                    })
                    .collect()),
            };
            (key, value)
        })
        .collect()
}

/// Declare `purpose` at the UI's checkpoint as the holder of `token`: the
/// declaration's cookie value, or the status and page that refused it.
fn declare_in_ui(
    addr: std::net::SocketAddr,
    token: &str,
    purpose: Purpose,
) -> Result<String, (u16, String)> {
    let mut fields = vec![("purpose", purpose.as_str()), ("next", "/tables")];
    if purpose == Purpose::Research {
        fields.push(("project", "p1"));
        fields.push(("justification", "asthma outcomes study, REC 26/YH/0001"));
    }
    let r = http_form(addr, "/purpose", token, &[], &fields);
    if r.status != 303 {
        return Err((r.status, r.body));
    }
    assert_eq!(r.header("location"), Some("/tables"));
    let cookie = r.header("set-cookie").expect("the declaration's cookie");
    let value = cookie
        .strip_prefix("fdp_purpose=")
        .and_then(|c| c.split(';').next())
        .expect("fdp_purpose=…");
    Ok(value.to_string())
}

type UiRows = (BTreeSet<String>, Vec<Row>, usize);

/// Every row of `table` as the UI's rows page shows it under the declared
/// purpose, page by page: its columns, rows and how many pages it took; or
/// the status and page that refused it.
fn ui_rows(
    addr: std::net::SocketAddr,
    token: &str,
    declared: &str,
    table: &str,
) -> Result<UiRows, (u16, String)> {
    let cookie = format!("fdp_purpose={declared}");
    let mut rows = Vec::new();
    let mut pages = 0;
    let mut path = format!("/tables/{table}/rows?limit=1000");
    loop {
        let r = http_request_with(
            addr,
            "GET",
            &path,
            Some(token),
            &[("Cookie", &cookie)],
            None,
        );
        if r.status != 200 {
            return Err((r.status, r.body));
        }
        pages += 1;
        let (names, page_rows) = html_table(&r.body, "rows");
        rows.extend(page_rows.into_iter().map(|cells| {
            names
                .iter()
                .cloned()
                .zip(
                    cells
                        .into_iter()
                        .map(|c| c.map_or(Value::Null, Value::String)),
                )
                .collect::<Row>()
        }));
        match r
            .body
            .split_once("rel=\"next\" href=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
        {
            Some((next, _)) => path = unescape(next),
            None => return Ok((names.into_iter().collect(), rows, pages)),
        }
    }
}

/// The header cells and body rows of the HTML table with `id`; a cell
/// marked `data-null` is NULL.
fn html_table(html: &str, id: &str) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let start = html
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table #{id} in {html}"));
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    let (head, body) = table.split_once("<tbody>").unwrap();
    let cells = |row: &str, tag: &str| -> Vec<Option<String>> {
        row.split(&format!("<{tag}"))
            .skip(1)
            .filter(|c| c.starts_with(['>', ' ']))
            .map(|c| {
                let (attrs, rest) = c.split_once('>').unwrap();
                let text = rest.split(&format!("</{tag}>")).next().unwrap();
                (!attrs.contains("data-null")).then(|| unescape(text))
            })
            .collect()
    };
    let names = cells(head, "th").into_iter().map(Option::unwrap).collect();
    let rows = body.split("<tr>").skip(1).map(|r| cells(r, "td")).collect();
    (names, rows)
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// `POST /sql` as the holder of `token`.
fn http_sql(addr: std::net::SocketAddr, token: &str, body: Value) -> (u16, Value) {
    let (status, text) = http_post(addr, "/sql", token, &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
