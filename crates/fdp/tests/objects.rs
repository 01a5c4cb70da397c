//! The FDP object API from a client: every kind of operation NHS England's
//! published document describes (list, get, search, count, aggregate,
//! links), each answer validated against that document's own response
//! schema and each request against its request schema
//! (`tests/clients/object_api_check.py`, with `openapi-schema-validator`).
//! The same requests under different purposes answer what each may see;
//! counts and aggregates agree with SQL under the same purpose; and what an
//! analyst might try to learn beyond the grant (filtering on a removed
//! property, matching a pseudonymised id with the real one, a type the
//! purpose does not cover) is refused or finds nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;
use serde_json::{json, Value};

const BASE: &str = "/api/v2/ontologies/palantirukhealth-ontology/objects";

fn config(dir: &Path) -> PathBuf {
    let text = "ods = \"RXX\"\n\
         [principal.bed]\nroles = [\"bed-manager\"]\n\
         [principal.ana]\nroles = [\"analyst\"]\n\
         [principal.doc]\nroles = [\"clinician\"]\n";
    let path = dir.join("instance.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Twelve admissions: ten on ward A, two on ward B; the first has two
/// ward stays, the others one; each patient has a name to search by.
async fn plant(data: &Path) {
    let (mut admissions, mut stays, mut patients) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..12 {
        let ward = if i < 10 { "RXX:A" } else { "RXX:B" };
        let id = format!("ADM{i:02}");
        let name = if i % 2 == 0 {
            "Ada Lovelace"
        } else {
            "Mary Seacole"
        };
        admissions.push(json!({
            "admission_id": id, "patient_id": format!("P{i:02}"), "patient_name": format!("{name} {i}"),
            "ward": ward, "admission_timestamp": format!("2026-11-{:02}T08:00:00Z", i + 1),
            "admission_type": if i < 3 { "elective" } else { "emergency" },
        }));
        stays.push(
            json!({"ward_stay_id": format!("S{i:02}"), "admission_id": id,
            "patient_id": format!("P{i:02}"), "ward_id": ward,
            "start_timestamp": format!("2026-11-{:02}T08:00:00Z", i + 1)}),
        );
        patients.push(
            json!({"person_id": format!("P{i:02}"), "full_name": format!("{name} {i}"),
            "nhs_number": nhs_number(900_000_000 + i as u64), "sex": "F"}),
        );
    }
    stays.push(
        json!({"ward_stay_id": "S99", "admission_id": "ADM00", "patient_id": "P00",
        "ward_id": "RXX:B", "start_timestamp": "2026-11-03T08:00:00Z"}),
    );
    write_canonical(data, "Admission", &[], &admissions).await;
    write_canonical(data, "WardStay", &[], &stays).await;
    write_canonical(data, "Patient", &[], &patients).await;
}

/// The object types the published document serves, by their API names.
fn published_types() -> Vec<String> {
    let spec = std::fs::read_to_string(spec()).unwrap();
    let mut out: Vec<String> = spec
        .lines()
        .filter_map(|l| l.strip_prefix("  /api/v2/ontologies/palantirukhealth-ontology/objects/"))
        .filter_map(|rest| rest.strip_suffix(':'))
        .filter(|rest| !rest.contains('/'))
        .map(String::from)
        .collect();
    out.dedup();
    out
}

fn spec() -> PathBuf {
    shared_data("fdp_cdm/canonical-data-model-openapi.yaml")
}

/// One call of the published API.
fn call(token: &str, purpose: &str, method: &str, path: &str) -> Value {
    json!({"method": method, "path": format!("{BASE}/{path}"), "token": token, "purpose": purpose})
}

/// Run `calls` through the checking client; every answer, each checked.
fn run(server: &Server, calls: &[Value]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/object_api_check.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .arg(format!("http://{}", server.http))
        .arg(spec())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with openapi-schema-validator and PyYAML");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(calls.to_vec()).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "object_api_check.py failed");
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    for (c, r) in calls.iter().zip(&results) {
        // A path the published document does not have is asked on purpose.
        if c["unpublished"] == true {
            continue;
        }
        assert_eq!(r["schema_errors"], json!([]), "{c}: {r}");
    }
    results
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

fn keys(answer: &Value) -> Vec<String> {
    answer["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["__primaryKey"].as_str().unwrap().to_string())
        .collect()
}

/// `POST /sql` under `purpose`: the rows.
fn sql_rows(server: &Server, token: &str, purpose: &str, sql: &str) -> Vec<Value> {
    let (status, body) = http_post(
        server.http,
        "/sql",
        token,
        &json!({"sql": sql, "purpose": purpose}).to_string(),
    );
    assert_eq!(status, 200, "{sql}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["rows"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_object_api_answers_in_the_published_schema_under_each_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    plant(&data).await;
    let config = config(dir.path());
    let server = Server::start_with_config_file(&data, &config, "", "");
    let token = |who: &str| {
        fdp_ok!("token", "create", who, "--data-dir", data)
            .trim()
            .to_string()
    };
    let (bed, ana, doc) = (token("bed"), token("ana"), token("doc"));

    // Every published object type answers list, count, search and
    // aggregate in the published shapes (most hold nothing here).
    let types = published_types();
    assert!(types.len() >= 50, "{} types in the document", types.len());
    let mut sweep = Vec::new();
    for t in &types {
        sweep.push(with(
            call(&doc, "direct-care", "GET", t),
            "query",
            json!({"pageSize": 2}),
        ));
        sweep.push(call(&doc, "direct-care", "POST", &format!("{t}/count")));
        sweep.push(with(
            call(&doc, "direct-care", "POST", &format!("{t}/aggregate")),
            "body",
            json!({"aggregation": [{"type": "count"}]}),
        ));
        sweep.push(with(
            call(&doc, "direct-care", "POST", &format!("{t}/search")),
            "body",
            json!({"pageSize": 1}),
        ));
    }
    let answers = run(&server, &sweep);
    for (c, a) in sweep.iter().zip(&answers) {
        assert_eq!(a["status"], 200, "{c}: {a}");
    }
    let count_of = |t: &str| {
        let i = types.iter().position(|x| x == t).unwrap();
        answers[4 * i + 1]["body"]["count"].clone()
    };
    assert_eq!(count_of("Admission"), 12);
    assert_eq!(count_of("WardStay"), 13);
    assert_eq!(count_of("Appointment"), 0);

    // Paging: three pages of five, four, nothing more, no object twice.
    let page = |token: Option<&str>| {
        let mut q = json!({"pageSize": 5});
        if let Some(t) = token {
            q["pageToken"] = json!(t);
        }
        with(call(&bed, "direct-care", "GET", "Admission"), "query", q)
    };
    let first = run(&server, &[page(None)]).remove(0);
    let t1 = first["body"]["nextPageToken"].as_str().unwrap().to_string();
    let second = run(&server, &[page(Some(&t1))]).remove(0);
    let t2 = second["body"]["nextPageToken"]
        .as_str()
        .unwrap()
        .to_string();
    let third = run(&server, &[page(Some(&t2))]).remove(0);
    assert!(third["body"].get("nextPageToken").is_none(), "{third}");
    let mut all: Vec<String> = [&first, &second, &third]
        .iter()
        .flat_map(|a| keys(&a["body"]))
        .collect();
    assert_eq!(all.len(), 12);
    all.dedup();
    assert_eq!(
        all,
        (0..12).map(|i| format!("ADM{i:02}")).collect::<Vec<_>>()
    );

    // The same object under two purposes: the bed manager caring for the
    // patient sees the name; the analyst under operations sees no name and
    // a pseudonym for the patient.
    let got = run(
        &server,
        &[
            call(&bed, "direct-care", "GET", "Admission/ADM03"),
            call(&ana, "operations", "GET", "Admission/ADM03"),
            with(
                call(&bed, "direct-care", "GET", "Admission/ADM03"),
                "query",
                json!({"select": ["ward"]}),
            ),
        ],
    );
    let (direct, ops) = (&got[0]["body"], &got[1]["body"]);
    assert_eq!(direct["__apiName"], "Admission");
    assert_eq!(direct["__primaryKey"], "ADM03");
    assert_eq!(direct["patientName"], "Mary Seacole 3");
    assert_eq!(direct["patientId"], "P03");
    assert_eq!(direct["admissionTimestamp"], "2026-11-04T08:00:00Z");
    assert_eq!(got[1]["status"], 200, "{}", got[1]);
    assert!(ops.get("patientName").is_none(), "{ops}");
    let pseudonym = ops["patientId"].as_str().unwrap();
    assert_ne!(pseudonym, "P03");
    assert_eq!(ops["ward"], "RXX:A");
    assert_eq!(
        got[2]["body"],
        json!({"__apiName": "Admission", "__primaryKey": "ADM03", "admissionId": "ADM03", "ward": "RXX:A"})
    );

    // Search: the published operators over the planted truth.
    let search = |token: &str, purpose: &str, body: Value| {
        with(
            call(token, purpose, "POST", "Admission/search"),
            "body",
            body,
        )
    };
    let found = run(
        &server,
        &[
            search(
                &bed,
                "direct-care",
                json!({"where": {"type": "eq", "field": "ward", "value": "RXX:B"}}),
            ),
            search(
                &bed,
                "direct-care",
                json!({"where": {"type": "and", "value": [
                {"type": "containsAllTerms", "field": "patientName", "value": "seacole MARY"},
                {"type": "lt", "field": "admissionTimestamp", "value": "2026-11-06T00:00:00Z"}]}}),
            ),
            search(
                &bed,
                "direct-care",
                json!({"where": {"type": "not", "value":
                {"type": "in", "field": "admissionType", "value": ["emergency"]}},
                "orderBy": {"fields": [{"field": "admissionTimestamp", "direction": "desc"}]}}),
            ),
            search(
                &bed,
                "direct-care",
                json!({"where": {"type": "startsWith", "field": "patientName", "value": "Ada"},
                "pageSize": 2, "select": ["patientName"]}),
            ),
            // What an analyst might try beyond the grant.
            search(
                &ana,
                "operations",
                json!({"where": {"type": "startsWith", "field": "patientName", "value": "Ada"}}),
            ),
            search(
                &ana,
                "operations",
                json!({"where": {"type": "eq", "field": "patientId", "value": "P03"}}),
            ),
            search(
                &ana,
                "operations",
                json!({"where": {"type": "eq", "field": "patientId", "value": pseudonym}}),
            ),
        ],
    );
    assert_eq!(keys(&found[0]["body"]), ["ADM10", "ADM11"]);
    assert_eq!(keys(&found[1]["body"]), ["ADM01", "ADM03"]);
    assert_eq!(keys(&found[2]["body"]), ["ADM02", "ADM01", "ADM00"]);
    assert_eq!(keys(&found[3]["body"]), ["ADM00", "ADM02"]);
    assert!(found[3]["body"]["nextPageToken"].is_string());
    assert_eq!(found[4]["status"], 403, "{}", found[4]);
    assert_eq!(found[4]["body"]["errorName"], "PropertiesNotVisible");
    assert_eq!(
        keys(&found[5]["body"]),
        Vec::<String>::new(),
        "the real id finds nothing"
    );
    assert_eq!(keys(&found[6]["body"]), ["ADM03"]);

    // Links, whichever end holds the key.
    let linked = run(
        &server,
        &[
            call(
                &bed,
                "direct-care",
                "GET",
                "Admission/ADM00/links/wardStays",
            ),
            call(
                &bed,
                "direct-care",
                "GET",
                "Admission/ADM00/links/wardStays/S99",
            ),
            call(&bed, "direct-care", "GET", "Admission/ADM00/links/patient"),
            call(&bed, "direct-care", "GET", "WardStay/S05/links/admission"),
            call(
                &bed,
                "direct-care",
                "GET",
                "Admission/ADM01/links/wardStays/S99",
            ),
        ],
    );
    assert_eq!(keys(&linked[0]["body"]), ["S00", "S99"]);
    assert_eq!(linked[1]["body"]["wardId"], "RXX:B");
    assert_eq!(keys(&linked[2]["body"]), ["P00"]);
    assert_eq!(linked[2]["body"]["data"][0]["fullName"], "Ada Lovelace 0");
    assert_eq!(keys(&linked[3]["body"]), ["ADM05"]);
    assert_eq!(linked[4]["status"], 404, "S99 is not ADM01's");

    // Count and aggregate agree with SQL under the same purpose: exactly
    // under operations, and after disclosure control under planning (ward
    // B's two admissions are too few to show; twelve is rounded to ten).
    let agg_body = json!({"aggregation": [{"type": "count"}, {"type": "min", "field": "admissionTimestamp", "name": "first"}],
                          "groupBy": [{"type": "exact", "field": "ward"}]});
    let measured = run(
        &server,
        &[
            call(&bed, "operations", "POST", "Admission/count"),
            with(
                call(&bed, "operations", "POST", "Admission/aggregate"),
                "body",
                agg_body.clone(),
            ),
            call(&ana, "planning", "POST", "Admission/count"),
            with(
                call(&ana, "planning", "POST", "Admission/aggregate"),
                "body",
                json!({"aggregation": [{"type": "count"}], "groupBy": [{"type": "exact", "field": "ward"}]}),
            ),
            call(&ana, "planning", "GET", "Admission"),
        ],
    );
    let sql_count = |token: &str, purpose: &str| {
        sql_rows(
            &server,
            token,
            purpose,
            "SELECT count(*) AS n FROM admission",
        )[0]["n"]
            .clone()
    };
    assert_eq!(measured[0]["body"]["count"], 12);
    assert_eq!(measured[0]["body"]["count"], sql_count(&bed, "operations"));
    let by_ward = sql_rows(
        &server,
        &bed,
        "operations",
        "SELECT ward, count(*) AS n, min(admission_timestamp) AS first FROM admission GROUP BY ward ORDER BY ward",
    );
    let groups = measured[1]["body"]["data"].as_array().unwrap();
    assert_eq!(groups.len(), by_ward.len());
    for (g, s) in groups.iter().zip(&by_ward) {
        assert_eq!(g["group"]["ward"], s["ward"]);
        assert_eq!(g["metrics"][0], json!({"name": "count", "value": s["n"]}));
        assert_eq!(g["metrics"][1]["value"], s["first"]);
    }
    assert_eq!(groups[0]["metrics"][0]["value"], 10);
    assert_eq!(measured[2]["body"]["count"], sql_count(&ana, "planning"));
    assert_eq!(measured[2]["body"]["count"], 10, "twelve rounded to five");
    let planned = sql_rows(
        &server,
        &ana,
        "planning",
        "SELECT ward, count(*) AS n FROM admission GROUP BY ward ORDER BY ward",
    );
    let shown: Vec<(Value, Value)> = measured[3]["body"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"]["ward"].clone(), g["metrics"][0]["value"].clone()))
        .collect();
    let sql_shown: Vec<(Value, Value)> = planned
        .iter()
        .map(|r| (r["ward"].clone(), r["n"].clone()))
        .collect();
    assert_eq!(shown, sql_shown);
    assert!(
        !shown
            .iter()
            .any(|(w, n)| w == "RXX:B" && n.as_i64().is_some()),
        "ward B's two admissions shown: {shown:?}"
    );
    // Row by row, nothing about one patient leaves under planning.
    assert_eq!(measured[4]["status"], 200, "{}", measured[4]);
    assert_eq!(measured[4]["body"]["data"], json!([]));

    // Refusals in the published error shape, audited.
    let refused = run(
        &server,
        &[
            call(&bed, "direct-care", "GET", "TheatreSession"),
            call(&bed, "direct-care", "GET", "Admission/NOPE"),
            with(
                call(&bed, "direct-care", "GET", "Ghost"),
                "unpublished",
                json!(true),
            ),
            with(
                call(&bed, "direct-care", "GET", "Admission/ADM00/links/nowhere"),
                "unpublished",
                json!(true),
            ),
            with(
                call(&bed, "direct-care", "GET", "Admission"),
                "query",
                json!({"pageToken": "bogus"}),
            ),
            search(
                &bed,
                "direct-care",
                json!({"where": {"type": "gt", "field": "admissionTimestamp", "value": "last week"}}),
            ),
        ],
    );
    let names: Vec<(u64, &str)> = refused
        .iter()
        .map(|r| {
            (
                r["status"].as_u64().unwrap(),
                r["body"]["errorName"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (403, "ObjectTypeNotVisible"),
            (404, "ObjectNotFound"),
            (404, "ObjectTypeNotFound"),
            (404, "LinkTypeNotFound"),
            (400, "InvalidPageToken"),
            (400, "InvalidRequest"),
        ]
    );
    assert!(refused[5]["body"]["parameters"]["message"]
        .as_str()
        .unwrap()
        .contains("where.value: expected a timestamp"));
    let audit = audit_entries(&data);
    assert!(audit.iter().any(|e| e["what"] == "list TheatreSession"
        && e["outcome"].as_str().unwrap().starts_with("refused")));
    assert!(audit.iter().any(|e| e["principal"] == "ana"
        && e["purpose"] == "planning"
        && e["what"].as_str().unwrap_or("").contains("count(*)")));

    // Without a token, nothing.
    let (status, _) = http_get(server.http, &format!("{BASE}/Admission"), None);
    assert_eq!(status, 401);
    server.stop();
}
