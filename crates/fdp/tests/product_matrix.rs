//! The policy matrix for products (issue class 1 of the threat model in
//! `docs/governance.md`): for every role of the demo policy and every
//! purpose, what the bed board (JSON API, page and live event stream), an
//! admission's page, the referrals (API and page), capacity (API and page)
//! and the daily return show is exactly what the policy grants, and the same
//! as SQL gives the same principal under the same purpose:
//!
//! - a product is refused where the grant does not cover the tables it
//!   reads, and a list of patients one by one is refused over the API under
//!   a secondary purpose (only aggregates leave the instance);
//! - each value is as the policy's action on its model column says: shown
//!   as it is, masked, removed, or pseudonymised to the very pseudonym SQL
//!   gives for that column;
//! - an opted-out patient is left out of every secondary use, as SQL leaves
//!   their rows out.

mod common;

use std::io::{Read, Write};
use std::path::Path;

use common::*;
use fdp_govern::policy::{Action, Grant};
use fdp_govern::{Policy, Purpose};
use fdp_model::Model;
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

const JUSTIFICATION: &str = "asthma outcomes study, REC 26/YH/0001";

/// The tables each product reads.
const BOARD: &[&str] = &["bed", "ward", "ward_stay"];
const ADMISSION_PAGE: &[&str] = &["admission", "ward_stay"];
const REFERRALS: &[&str] = &["patient", "admission"];
const RETURN: &[&str] = &["bed", "ward_stay", "admission", "discharge_readiness"];

/// A patient the test admits to a free bed.
struct Admitted {
    admission: String,
    bed: String,
    nhs_number: String,
    /// On the national data opt-out list.
    opted_out: bool,
}

/// What the policy grants one role under one purpose, as the products
/// should apply it.
struct Expect<'a> {
    grant: Option<&'a Grant>,
    model: &'static Model,
}

impl Expect<'_> {
    fn covers(&self, tables: &[&str]) -> bool {
        self.grant
            .is_some_and(|g| tables.iter().all(|t| g.objects.covers(t)))
    }

    fn action(&self, table: &str, column: &str) -> Action {
        match self.grant {
            Some(g) if g.objects.covers(table) => {
                let p = self
                    .model
                    .object_type_by_table(table)
                    .and_then(|o| o.property_by_column(column))
                    .unwrap_or_else(|| panic!("{table}.{column} is not in the model"));
                g.action(table, column, p.sensitivity)
            }
            _ => Action::Remove,
        }
    }

    /// What a product should show of `table.column` whose value is `truth`:
    /// SQL's own value (`sql`, from the same principal and purpose) where
    /// it is pseudonymised.
    fn value(&self, table: &str, column: &str, truth: &Value, sql: Option<&Value>) -> Value {
        if truth.is_null() {
            return Value::Null;
        }
        match self.action(table, column) {
            Action::Show => truth.clone(),
            Action::Mask => json!("[masked]"),
            Action::Remove => Value::Null,
            Action::Pseudonymise => {
                let v = sql
                    .cloned()
                    .unwrap_or_else(|| panic!("SQL gave no pseudonym of {table}.{column}"));
                assert_ne!(&v, truth, "{table}.{column} pseudonymised");
                v
            }
            other => panic!("{table}.{column}: no product shows a value by {other}"),
        }
    }

    /// [`Self::value`] for a text a product must show something for (a
    /// name, a patient's id): `[masked]` where removed.
    fn text(&self, table: &str, column: &str, truth: &Value, sql: Option<&Value>) -> Value {
        match self.value(table, column, truth, sql) {
            Value::Null => json!("[masked]"),
            v => v,
        }
    }
}

fn config(
    dir: &Path,
    opt_out: &Path,
    listen: u16,
    care: &Path,
    care_port: u16,
) -> std::path::PathBuf {
    let mut text = format!("ods = \"RXX\"\nopt_out_file = \"{}\"\n", opt_out.display());
    for (name, role) in PRINCIPALS {
        text.push_str(&format!("[principal.{name}]\nroles = [\"{role}\"]\n"));
    }
    // The care provider a referral is sent to is never started: referrals
    // wait in the outbox, listed as sent.
    text.push_str(&format!(
        "[federation]\nlisten = \"127.0.0.1:{listen}\"\n[[federation.peer]]\nods = \"CARE1\"\nrole = \"care-provider\"\naddress = \"127.0.0.1:{care_port}\"\ncertificate = \"{}\"\n",
        care.join("federation/instance.pem").display()
    ));
    let path = dir.join("instance.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn headers(purpose: Purpose) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![("X-Purpose", purpose.as_str())];
    if purpose == Purpose::Research {
        h.push(("X-Project", "p1"));
        h.push(("X-Justification", JUSTIFICATION));
    }
    h
}

fn extra(purpose: Purpose) -> Vec<&'static str> {
    match purpose {
        Purpose::Research => vec!["--project", "p1", "--justification", JUSTIFICATION],
        _ => vec![],
    }
}

/// The `fdp_purpose` cookie of `purpose` declared at the checkpoint, or
/// `None` where it is refused.
fn declared(addr: std::net::SocketAddr, token: &str, purpose: Purpose) -> Option<String> {
    let mut fields = vec![("purpose", purpose.as_str())];
    if purpose == Purpose::Research {
        fields.push(("project", "p1"));
        fields.push(("justification", JUSTIFICATION));
    }
    let r = http_form(addr, "/purpose", token, &[], &fields);
    if r.status != 303 {
        return None;
    }
    Some(
        r.header("set-cookie")
            .expect("the declaration's cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string(),
    )
}

/// The first event of the live bed board (the board as it opened, bed by
/// bed), or the status that refused it.
fn first_event(
    addr: std::net::SocketAddr,
    token: &str,
    purpose: Purpose,
) -> Result<Map<String, Value>, u16> {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut request = format!(
        "GET /bed-board/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\nConnection: close\r\n"
    );
    for (k, v) in headers(purpose) {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(status) = seen
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| *s != 200)
        {
            return Err(status);
        }
        if let Some(data) = seen
            .split("event: beds\ndata: ")
            .nth(1)
            .and_then(|rest| rest.split_once('\n'))
            .map(|(data, _)| data)
        {
            let event: Value = serde_json::from_str(data).unwrap();
            return Ok(event["beds"].as_object().unwrap().clone());
        }
        let n = stream.read(&mut buf).expect("the stream to send");
        assert!(n > 0, "the stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

fn occupant_in(board: &Value, bed: &str) -> Value {
    board["sites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["wards"].as_array().unwrap())
        .flat_map(|w| w["beds"].as_array().unwrap())
        .find(|b| b["bed_id"] == bed)
        .unwrap_or_else(|| panic!("no bed {bed} on the board"))["occupant"]
        .clone()
}

fn row_where<'a>(rows: &'a [Row], column: &str, value: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.get(column).and_then(Value::as_str) == Some(value))
}

#[test]
fn products_show_what_the_policy_grants_to_each_role_and_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    fdp_ok!("peer", "ca", "--out", ca, "--name", "Test ICS");
    let data = dir.path().join("RXX");
    let care = dir.path().join("CARE1");
    peer_init(&data, "RXX", "trust", &ca);
    peer_init(&care, "CARE1", "care-provider", &ca);
    load_bed_register(dir.path(), &data);

    // Three patients: the second is on the national data opt-out.
    let patients: Vec<(String, &str, bool)> = vec![
        (nhs_number(943_476_511), "MATRIXA^Ann", false),
        (nhs_number(943_476_522), "MATRIXB^Bob", true),
        (nhs_number(943_476_533), "MATRIXC^Cat", false),
    ];
    let opt_out = dir.path().join("opt-out.txt");
    std::fs::write(&opt_out, format!("{}\n", patients[1].0)).unwrap();
    let config = config(dir.path(), &opt_out, free_port(), &care, free_port());
    fdp_ok!(
        "projects",
        "register",
        "p1",
        "--data-dir",
        data,
        "--config",
        config,
        "--by",
        "ig",
        "--purpose",
        "research",
        "--title",
        JUSTIFICATION,
        "--principal",
        "res"
    );
    let tokens: std::collections::BTreeMap<&str, String> = PRINCIPALS
        .iter()
        .map(|(name, _)| {
            let t = fdp_ok!("token", "create", name, "--data-dir", data);
            (*name, t.trim().to_string())
        })
        .collect();
    let server = Server::start_with_config_file(&data, &config, "", "");
    let addr = server.http;
    let get = |who: &str, path: &str, purpose: Purpose| {
        http_request_with(
            addr,
            "GET",
            path,
            Some(&tokens[who]),
            &headers(purpose),
            None,
        )
    };

    // Admitted to free beds by the PAS feed.
    let doc_board = get("doc", "/api/bed-board", Purpose::DirectCare);
    assert_eq!(doc_board.status, 200, "{}", doc_board.body);
    let doc_board: Value = serde_json::from_str(&doc_board.body).unwrap();
    let free: Vec<String> = doc_board["sites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["wards"].as_array().unwrap())
        .flat_map(|w| w["beds"].as_array().unwrap())
        .filter(|b| b["state"] == "free")
        .map(|b| b["bed_id"].as_str().unwrap().to_string())
        .take(3)
        .collect();
    let mut admitted = Vec::new();
    let mut messages = Vec::new();
    for (i, ((nhs, name, opted_out), bed)) in patients.iter().zip(&free).enumerate() {
        let id: Vec<&str> = bed.split(':').collect();
        messages.push(
            format!(
                "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261120080000||ADT^A01^ADT_A01|MATRIX{i}|P|2.4\r\
                 EVN|A01|20261120080000\r\
                 PID|1||{nhs}^^^NHS^NH~MX{i}^^^RXX^MR||{name}||19500101|F\r\
                 PV1|1|I|{}^{}^{}^{}^^BED|21|||||||||||||||V-MATRIX{i}\r",
                id[1], id[2], id[3], id[0]
            )
            .into_bytes(),
        );
        admitted.push(Admitted {
            admission: format!("V-MATRIX{i}"),
            bed: bed.clone(),
            nhs_number: nhs.clone(),
            opted_out: *opted_out,
        });
    }
    assert_eq!(mllp_roundtrip(server.mllp, &messages), ["AA", "AA", "AA"]);
    // AA means stored; the census applies the admissions a moment later.
    wait_until(20, "the admissions on the board", || {
        let board = get("doc", "/api/bed-board", Purpose::DirectCare);
        serde_json::from_str::<Value>(&board.body)
            .is_ok_and(|b| admitted.iter().all(|a| occupant_in(&b, &a.bed).is_object()))
    });

    // The first is medically optimised, and referred to a care home with
    // the second; the instance offers a care-home place.
    let readiness = json!({"medically_optimised": true, "medically_optimised_date": "2026-11-25",
        "discharge_pathway": 2, "waiting_for": ["care home placement"]});
    let answer = http_post(
        addr,
        &format!(
            "/api/admissions/{}/discharge-readiness",
            admitted[0].admission
        ),
        &tokens["doc"],
        &readiness.to_string(),
    );
    assert_eq!(answer.0, 200, "{}", answer.1);
    for a in &admitted[..2] {
        let body = json!({"admission_id": a.admission, "to": "CARE1",
            "lawful_basis": "UK GDPR 6(1)(e) and 9(2)(h): direct care",
            "care_needs": ["hoist for transfers"],
            "summary": "Medically optimised; needs a nursing home placement."});
        let (status, sent) = http_post(addr, "/api/referrals", &tokens["doc"], &body.to_string());
        assert_eq!(status, 202, "{sent}");
    }
    let offers = json!([{"kind": "nursing", "location": "Hillside House", "free": 3, "total": 40,
                         "updated_at": "2026-12-01T10:00:00Z"}]);
    let put = http_request_with(
        addr,
        "PUT",
        "/api/capacity",
        Some(&tokens["bed"]),
        &[("X-Purpose", "direct-care")],
        Some(&offers.to_string()),
    );
    assert_eq!(put.status, 200, "{}", put.body);

    // The truth, as direct care sees it, and the tables caught up with it.
    let doc_board: Value =
        serde_json::from_str(&get("doc", "/api/bed-board", Purpose::DirectCare).body).unwrap();
    let truth: Vec<Value> = admitted
        .iter()
        .map(|a| occupant_in(&doc_board, &a.bed))
        .collect();
    for (t, a) in truth.iter().zip(&admitted) {
        assert_eq!(t["nhs_number"], a.nhs_number.as_str(), "{t}");
    }
    // The readiness change was audited with the patient it is about.
    let change = format!(
        "POST /api/admissions/{}/discharge-readiness",
        admitted[0].admission
    );
    assert!(
        audit_entries(&data)
            .iter()
            .any(|e| e["what"] == change.as_str()
                && e["kind"] == "change"
                && e["patients"]
                    .as_array()
                    .is_some_and(|p| p.contains(&truth[0]["patient_id"]))),
        "no audit of {change} naming {}",
        truth[0]["patient_id"]
    );
    wait_until(30, "the admissions to reach the tables", || {
        sql_as(
            &config,
            &data,
            "doc",
            "direct-care",
            &[],
            "SELECT * FROM admission",
        )
        .map(|rows| {
            admitted
                .iter()
                .all(|a| row_where(&rows, "admission_id", &a.admission).is_some())
        })
        .unwrap_or(false)
    });
    // The census instant is whole seconds: one after the tables caught up.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let census_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let doc_referrals: Vec<Value> =
        serde_json::from_str(&get("doc", "/api/referrals", Purpose::DirectCare).body).unwrap();
    assert_eq!(doc_referrals.len(), 2, "{doc_referrals:?}");

    let model = Model::canonical();
    let policy = Policy::demo(model);
    let mut checked = 0;
    for (who, role) in PRINCIPALS {
        for purpose in Purpose::ALL {
            let e = Expect {
                grant: policy.roles[*role].grants.get(&purpose),
                model,
            };
            let case = format!("{who} ({role}) under {purpose}");
            let secondary = purpose.is_secondary();
            let sql = |table: &str| -> Option<Vec<Row>> {
                if !e.covers(&[table]) {
                    return None;
                }
                let q = format!("SELECT * FROM {table}");
                Some(
                    sql_as(&config, &data, who, purpose.as_str(), &extra(purpose), &q)
                        .unwrap_or_else(|err| panic!("{case}: {q}: {err}")),
                )
            };
            let admissions = sql("admission");
            let patient_rows = sql("patient");
            // SQL's row of each admitted patient, and of their patient record.
            let sql_admission = |a: &Admitted| -> Option<Row> {
                admissions
                    .as_ref()
                    .and_then(|rows| row_where(rows, "admission_id", &a.admission).cloned())
            };
            let sql_patient = |a: &Admitted| -> Option<Row> {
                let id = sql_admission(a)?.get("patient_id")?.as_str()?.to_string();
                patient_rows
                    .as_ref()
                    .and_then(|rows| row_where(rows, "person_id", &id).cloned())
            };
            if let Some(rows) = &admissions {
                for a in &admitted {
                    assert_eq!(
                        row_where(rows, "admission_id", &a.admission).is_some(),
                        !(secondary && a.opted_out),
                        "{case}: SQL and the opt-out"
                    );
                }
            }
            // Each occupant as the product should show them.
            let expected = |a: &Admitted, truth: &Value| -> Value {
                if secondary && a.opted_out {
                    return Value::Null;
                }
                let adm = sql_admission(a);
                let pat = sql_patient(a);
                let adm_col = |c: &str| adm.as_ref().and_then(|r| r.get(c));
                let pat_col = |c: &str| pat.as_ref().and_then(|r| r.get(c));
                json!({
                    "admission_id": e.text("admission", "admission_id", &truth["admission_id"], adm_col("admission_id")),
                    "patient_id": e.text("admission", "patient_id", &truth["patient_id"], adm_col("patient_id")),
                    "name": e.text("admission", "patient_name", &truth["name"], adm_col("patient_name")),
                    "nhs_number": e.value("patient", "nhs_number", &truth["nhs_number"], pat_col("nhs_number")),
                    "sex": e.value("patient", "sex", &truth["sex"], pat_col("sex")),
                })
            };
            let compare = |what: &str, a: &Admitted, shown: &Value, want: &Value| {
                if want.is_null() {
                    assert!(
                        shown.is_null(),
                        "{case}: {what}: {} shown: {shown}",
                        a.admission
                    );
                    return;
                }
                for (k, v) in want.as_object().unwrap() {
                    assert_eq!(&shown[k], v, "{case}: {what}: {} {k}", a.admission);
                }
            };

            // The bed board over the API: refused under a secondary purpose.
            let board_allowed = e.covers(BOARD);
            let api = get(who, "/api/bed-board", purpose);
            if board_allowed && !secondary {
                assert_eq!(api.status, 200, "{case}: {}", api.body);
                let board: Value = serde_json::from_str(&api.body).unwrap();
                for (a, t) in admitted.iter().zip(&truth) {
                    let shown = occupant_in(&board, &a.bed);
                    compare("the API's board", a, &shown, &expected(a, t));
                    let readiness = e.action("discharge_readiness", "medically_optimised");
                    assert_eq!(
                        shown["readiness"].is_object(),
                        t["readiness"].is_object() && readiness == Action::Show,
                        "{case}: {} readiness",
                        a.admission
                    );
                }
                checked += 1;
            } else {
                assert_eq!(api.status, 403, "{case}: {}", api.body);
            }

            // The live event stream, inside the instance: each bed's text
            // is the occupant's name as the policy shows it.
            match first_event(addr, &tokens[who], purpose) {
                Ok(beds) => {
                    assert!(board_allowed, "{case}: the stream opened");
                    for (a, t) in admitted.iter().zip(&truth) {
                        let cell = &beds[&a.bed];
                        assert_eq!(cell["state"], "occupied", "{case}: {cell}");
                        let text = cell["text"].as_str().unwrap();
                        match expected(a, t) {
                            Value::Null => assert_eq!(text, "", "{case}: {}", a.admission),
                            want => assert!(
                                text.starts_with(&format!("{} · ", want["name"].as_str().unwrap())),
                                "{case}: {} shows {text:?}, not {}",
                                a.admission,
                                want["name"]
                            ),
                        }
                    }
                    checked += 1;
                }
                Err(status) => {
                    assert!(!board_allowed, "{case}: the stream refused ({status})");
                    assert_eq!(status, 403, "{case}");
                }
            }

            // The pages, under the purpose declared at the checkpoint.
            let cookie = declared(addr, &tokens[who], purpose);
            assert_eq!(
                cookie.is_some(),
                e.grant.is_some(),
                "{case}: the checkpoint"
            );
            let page = |path: &str| {
                http_request_with(
                    addr,
                    "GET",
                    path,
                    Some(&tokens[who]),
                    &[("Cookie", cookie.as_deref().unwrap_or_default())],
                    None,
                )
            };
            if let Some(_cookie) = &cookie {
                let board = page("/bed-board");
                assert_eq!(board.status == 200, board_allowed, "{case}: the board page");
                for (a, t) in admitted.iter().zip(&truth) {
                    let name = t["name"].as_str().unwrap();
                    let shows_name = board_allowed
                        && !(secondary && a.opted_out)
                        && e.action("admission", "patient_name") == Action::Show;
                    assert_eq!(
                        board.body.contains(name),
                        shows_name,
                        "{case}: {name} on the board page"
                    );
                    assert!(
                        !board.body.contains(&a.nhs_number)
                            || e.action("patient", "nhs_number") == Action::Show
                    );
                }
                for (a, t) in admitted.iter().zip(&truth) {
                    let p = page(&format!("/bed-board/admission/{}", a.admission));
                    let allowed = e.covers(ADMISSION_PAGE) && !(secondary && a.opted_out);
                    assert_eq!(
                        p.status == 200,
                        allowed,
                        "{case}: {}'s page: {}",
                        a.admission,
                        p.status
                    );
                    if !allowed {
                        assert_eq!(p.status, 403, "{case}");
                        assert!(!p.body.contains(&a.nhs_number), "{case}");
                        continue;
                    }
                    let want = expected(a, t);
                    for (table, column, key) in [
                        ("patient", "nhs_number", "nhs_number"),
                        ("admission", "patient_name", "name"),
                    ] {
                        // The surname alone: the page writes the name its own way.
                        let truth_text = t[key].as_str().unwrap().replace(['^', ','], " ");
                        let mark = truth_text
                            .split_whitespace()
                            .find(|w| w.contains("MATRIX") || w.chars().all(|c| c.is_ascii_digit()))
                            .unwrap()
                            .to_string();
                        let shown = p.body.contains(&mark);
                        assert_eq!(
                            shown,
                            e.action(table, column) == Action::Show,
                            "{case}: {}'s page shows {table}.{column}: {want}",
                            a.admission
                        );
                    }
                    assert_eq!(
                        p.body.contains("readiness-not-granted"),
                        !e.covers(&["discharge_readiness"]),
                        "{case}: readiness on {}'s page",
                        a.admission
                    );
                    checked += 1;
                }
                let referrals = page("/referrals");
                assert_eq!(
                    referrals.status == 200,
                    e.covers(REFERRALS),
                    "{case}: the referrals page"
                );
                if referrals.status == 200 {
                    for a in &admitted[..2] {
                        assert_eq!(
                            referrals
                                .body
                                .contains(&format!("/bed-board/admission/{}", a.admission)),
                            !(secondary && a.opted_out),
                            "{case}: {}'s referral on the page",
                            a.admission
                        );
                    }
                }
                let capacity = page("/capacity");
                assert_eq!(
                    capacity.status == 200,
                    e.covers(&["care_capacity"]),
                    "{case}: the capacity page"
                );
                if capacity.status == 200 {
                    assert_eq!(
                        capacity.body.contains("Hillside House"),
                        e.action("care_capacity", "location") == Action::Show,
                        "{case}"
                    );
                }
            }

            // Referrals over the API: one by one, so never under a
            // secondary purpose.
            let api = get(who, "/api/referrals", purpose);
            if e.covers(REFERRALS) && !secondary {
                assert_eq!(api.status, 200, "{case}: {}", api.body);
                let shown: Vec<Value> = serde_json::from_str(&api.body).unwrap();
                assert_eq!(shown.len(), 2, "{case}");
                for a in &admitted[..2] {
                    let t = doc_referrals
                        .iter()
                        .find(|r| r["admission"] == a.admission.as_str())
                        .expect("direct care's referral");
                    let r = shown
                        .iter()
                        .find(|r| r["admission"] == a.admission.as_str())
                        .unwrap_or_else(|| panic!("{case}: no referral of {}", a.admission));
                    let pseudonym = sql_admission(a).and_then(|r| r.get("patient_id").cloned());
                    assert_eq!(
                        r["patient"],
                        e.text("patient", "person_id", &t["patient"], pseudonym.as_ref()),
                        "{case}"
                    );
                    let needs = match e.action("referral", "referral_notes") {
                        Action::Show => t["care_needs"].clone(),
                        Action::Mask => json!(["[masked]"]),
                        _ => json!([]),
                    };
                    assert_eq!(r["care_needs"], needs, "{case}");
                    if e.action("patient", "nhs_number") != Action::Show {
                        assert!(r["bundle"].is_null(), "{case}: the whole record");
                    }
                }
                checked += 1;
            } else {
                assert_eq!(api.status, 403, "{case}: {}", api.body);
            }

            // Capacity: no patient in it, but read under a purpose like
            // any table, each figure by its column.
            let api = get(who, "/api/capacity", purpose);
            if e.covers(&["care_capacity"]) {
                assert_eq!(api.status, 200, "{case}: {}", api.body);
                let shown: Value = serde_json::from_str(&api.body).unwrap();
                let offer = &shown["offers"][0];
                assert_eq!(
                    offer["location"],
                    e.value("care_capacity", "location", &json!("Hillside House"), None),
                    "{case}"
                );
                assert_eq!(
                    offer["free"],
                    e.value("care_capacity", "places_free", &json!(3), None),
                    "{case}"
                );
                checked += 1;
            } else {
                assert_eq!(api.status, 403, "{case}: {}", api.body);
            }

            // The daily return: computed in the governed session, so the
            // same as SQL inside the instance, and disclosure-controlled
            // under a secondary purpose.
            let path = format!(
                "/api/returns/daily?census_at={}",
                census_at.replace('+', "%2B")
            );
            let api = get(who, &path, purpose);
            if e.covers(RETURN) {
                assert_eq!(api.status, 200, "{case}: {}", api.body);
                let r: Value = serde_json::from_str(&api.body).unwrap();
                let occupied = &r["sections"]["daily-return/beds-occupied"]["rows"];
                let figures: Vec<&Value> = occupied
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|row| &row["beds_occupied"])
                    .collect();
                let in_sql = admitted
                    .iter()
                    .filter(|a| !(secondary && a.opted_out))
                    .count() as i64;
                if secondary {
                    for f in &figures {
                        assert!(
                            f.is_null() || f.as_i64().is_some_and(|n| n == 0 || n >= 8),
                            "{case}: a small count left: {r}"
                        );
                    }
                } else {
                    let total: i64 = figures.iter().filter_map(|f| f.as_i64()).sum();
                    assert_eq!(total, in_sql, "{case}: {r}");
                }
                checked += 1;
            } else {
                assert_ne!(api.status, 200, "{case}: {}", api.body);
            }
        }
    }
    server.stop();
    println!("the product matrix: {checked} product views checked against the policy and SQL");
    assert!(checked >= 25, "{checked}");
}
