//! Federated questions between real instances: three trusts, each its own
//! `fdp serve` process with its own data, keys and policy, asked by an ICB
//! over mutual TLS. Every trust answers under its own governance (the
//! opted-out patients of one are left out, no count from 1 to 7 leaves);
//! then one trust withdraws its approval and another is stopped, and the
//! ICB's result says which answered, which declined and which could not be
//! reached. Both sides audit it.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const TRUSTS: [&str; 3] = ["RAA", "RBB", "RCC"];

fn cert(data: &Path) -> PathBuf {
    data.join("federation/instance.pem")
}

fn question(dir: &Path, file: &str, name: &str, sql: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!("name = \"{name}\"\nversion = 1\npurpose = \"planning\"\nsql = \"{sql}\"\n"),
    )
    .unwrap();
    path
}

/// `fdp peer ask` as the ICB: the combined answer.
fn ask(icb: &Path, q: &Path) -> Value {
    let out = fdp_ok!(
        "peer",
        "ask",
        "--data-dir",
        icb,
        "--question",
        q,
        "--as",
        "icb.analyst"
    );
    serde_json::from_str(&out).unwrap()
}

/// An ICB, QWO, and a trust, RDD, holding 20 patients, certified by one
/// authority, in `dir`.
fn icb_and_trust(dir: &Path) -> (PathBuf, PathBuf) {
    icb_and_trust_of(dir, 20)
}

fn icb_and_trust_of(dir: &Path, patients: usize) -> (PathBuf, PathBuf) {
    let ca = dir.join("ca");
    fdp_ok!("peer", "ca", "--out", ca, "--name", "Test ICS");
    let export = dir.join("export");
    fdp_ok!(
        "synth",
        "fhir",
        "--out",
        export,
        "--patients",
        patients.to_string()
    );
    let (icb, trust) = (dir.join("QWO"), dir.join("RDD"));
    peer_init(&icb, "QWO", "icb", &ca);
    fdp_ok!("ingest", "fhir", "--data-dir", trust, export);
    peer_init(&trust, "RDD", "trust", &ca);
    (icb, trust)
}

/// The ICB QWO listening, its analyst `tester`'s token the server's, and
/// the trust RDD, known to it by certificate only, collecting its work by
/// polling.
fn start_icb_and_polling_trust(icb: &Path, trust: &Path) -> (Server, Server) {
    let icb_port = free_port();
    let icb_server = Server::start_configured(
        icb,
        1.0,
        "127.0.0.1:0",
        "127.0.0.1:0",
        &format!(
            "[principal.tester]\nroles = [\"analyst\"]\n[federation]\nlisten = \"127.0.0.1:{icb_port}\"\n[[federation.peer]]\nods = \"RDD\"\nrole = \"trust\"\ncertificate = \"{}\"\n",
            cert(trust).display()
        ),
    );
    let trust_server = Server::start_configured(
        trust,
        1.0,
        "127.0.0.1:0",
        "127.0.0.1:0",
        &format!(
            "[federation]\npoll = \"QWO\"\npoll_every_ms = 100\n[[federation.peer]]\nods = \"QWO\"\nrole = \"icb\"\naddress = \"127.0.0.1:{icb_port}\"\ncertificate = \"{}\"\n",
            cert(icb).display()
        ),
    );
    (icb_server, trust_server)
}

/// The trust's IG lead approves the question in `file` from the ICB (QWO),
/// with `reason` and any `extra` arguments (`--range …`): what
/// `fdp peer approve` said, or why it refused.
fn approve(trust: &Path, file: &Path, reason: &str, extra: &[&str]) -> Result<String, String> {
    let out = fdp()
        .args(["peer", "approve", "--data-dir"])
        .arg(trust)
        .args(["--from", "QWO", "--question"])
        .arg(file)
        .args(["--by", "ig.lead", "--reason", reason])
        .args(extra)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn member<'a>(answer: &'a Value, ods: &str) -> &'a Value {
    answer["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == ods)
        .unwrap_or_else(|| panic!("{ods} missing from {answer}"))
}

#[test]
fn a_federated_question_is_answered_declined_and_missed_as_it_should_be() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    fdp_ok!("peer", "ca", "--out", ca, "--name", "Test ICS");
    let export = dir.path().join("export");
    fdp_ok!("synth", "fhir", "--out", export, "--patients", "40");
    let icb = dir.path().join("QWO");
    peer_init(&icb, "QWO", "icb", &ca);

    // Three patients of the first trust have opted out.
    let patients = std::fs::read_to_string(export.join("Patient.ndjson")).unwrap();
    let opted_out: Vec<String> = patients
        .lines()
        .take(3)
        .map(|l| {
            let p: Value = serde_json::from_str(l).unwrap();
            p["identifier"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["system"] == "https://fhir.nhs.uk/Id/nhs-number")
                .unwrap()["value"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();

    let total = question(
        dir.path(),
        "total.toml",
        "patients",
        "SELECT count(*) AS n FROM patient",
    );
    let groups = question(
        dir.path(),
        "groups.toml",
        "patients-by-ethnicity",
        "SELECT ethnic_category_code AS e, count(*) AS n FROM patient GROUP BY ethnic_category_code",
    );
    let mut icb_config = "ods = \"QWO\"\n[federation]\n".to_string();
    let mut servers = Vec::new();
    let mut datas = Vec::new();
    for ods in TRUSTS {
        let data = dir.path().join(ods);
        fdp_ok!("ingest", "fhir", "--data-dir", data, export);
        peer_init(&data, ods, "trust", &ca);
        if ods == "RAA" {
            std::fs::write(data.join("opt-out.txt"), opted_out.join("\n") + "\n").unwrap();
        }
        for q in [&total, &groups] {
            approve(&data, q, "ICB planning return, approved at IG board", &[]).unwrap();
        }
        let port = free_port();
        let config = format!(
            "[principal.tester]\nroles = [\"information-governance-lead\"]\n[federation]\nlisten = \"127.0.0.1:{port}\"\n[[federation.peer]]\nods = \"QWO\"\nrole = \"icb\"\ncertificate = \"{}\"\n",
            cert(&icb).display()
        );
        servers.push(Some(Server::start_configured(
            &data,
            1.0,
            "127.0.0.1:0",
            "127.0.0.1:0",
            &config,
        )));
        icb_config.push_str(&format!(
            "[[federation.peer]]\nods = \"{ods}\"\nrole = \"trust\"\naddress = \"127.0.0.1:{port}\"\ncertificate = \"{}\"\n",
            cert(&data).display()
        ));
        datas.push(data);
    }
    std::fs::write(icb.join("instance.toml"), icb_config).unwrap();

    // Every member answers, each under its own governance.
    let answer = ask(&icb, &total);
    for ods in TRUSTS {
        assert_eq!(member(&answer, ods)["status"], "answered", "{answer}");
    }
    let n = |ods: &str| {
        member(&answer, ods)["answer"]["rows"][0]["n"]
            .as_i64()
            .unwrap()
    };
    // 40 patients, rounded to 5; the first trust's 3 opted-out patients
    // are not counted (37, rounded to 35).
    assert_eq!((n("RAA"), n("RBB"), n("RCC")), (35, 40, 40), "{answer}");
    assert_eq!(answer["rows"].as_array().unwrap().len(), 3);
    // Each answer says which version of which table it was computed from.
    let versions = &member(&answer, "RAA")["answer"]["tables"]["patient"];
    assert!(
        versions[0][0]
            .as_str()
            .is_some_and(|p| p.starts_with("patient"))
            && versions[0][1].is_u64(),
        "{answer}"
    );
    // No count from 1 to 7 leaves any member.
    let answer = ask(&icb, &groups);
    let mut cells = 0;
    for r in answer["rows"].as_array().unwrap() {
        if let Some(n) = r["n"].as_i64() {
            assert!(n == 0 || n >= 8, "{r}");
        }
        cells += 1;
    }
    // Groups fewer than the threshold's patients stand behind are
    // withheld by each member, not sent as suppressed cells.
    assert!(cells >= 3, "{answer}");

    // The second trust's IG lead withdraws the approval; the third is down.
    fdp_ok!(
        "peer",
        "withdraw",
        "--data-dir",
        datas[1],
        "--from",
        "QWO",
        "--name",
        "patients",
        "--version",
        "1",
        "--by",
        "ig.lead",
        "--reason",
        "pending DPIA review"
    );
    servers[2].take().unwrap().stop();
    let answer = ask(&icb, &total);
    assert_eq!(member(&answer, "RAA")["status"], "answered", "{answer}");
    assert_eq!(member(&answer, "RBB")["status"], "declined", "{answer}");
    assert!(member(&answer, "RBB")["reason"]
        .as_str()
        .unwrap()
        .contains("not approved"));
    assert_eq!(member(&answer, "RCC")["status"], "unreachable", "{answer}");
    assert_eq!(answer["rows"].as_array().unwrap().len(), 1);
    // A question changed under the same name and version is not approved.
    let changed = question(
        dir.path(),
        "changed.toml",
        "patients-by-ethnicity",
        "SELECT * FROM patient",
    );
    let answer = ask(&icb, &changed);
    assert_eq!(member(&answer, "RAA")["status"], "declined", "{answer}");

    // The second trust's IG lead reads the question on the approvals page,
    // word for word, and approves it again there; it is answered again.
    let rbb = servers[1].as_ref().unwrap();
    let (status, page) = http_get(rbb.http, "/federation/approvals", Some(&rbb.token));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("SELECT count(*) AS n FROM patient"), "{page}");
    assert!(
        page.contains("data-name=\"patients\" data-approved=\"false\""),
        "{page}"
    );
    let digest = page
        .split("data-name=\"patients\" data-approved=\"false\"")
        .nth(1)
        .unwrap()
        .split("name=\"digest\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form to approve the withdrawn question");
    let approved = http_form(
        rbb.http,
        "/federation/approvals",
        &rbb.token,
        &[],
        &[
            ("from", "QWO"),
            ("digest", digest),
            ("reason", "DPIA review complete"),
        ],
    );
    assert_eq!(approved.status, 303, "{}", approved.body);
    let answer = ask(&icb, &total);
    assert_eq!(member(&answer, "RBB")["status"], "answered", "{answer}");

    for s in servers.into_iter().flatten() {
        s.stop();
    }
    // Both sides audited it: the member each question received, the query
    // it ran as the ICB's principal and the approvals; the ICB each send.
    let raa = audit_entries(&datas[0]);
    assert!(raa.iter().any(|e| e["kind"] == "question-approval"
        && e["principal"] == "ig.lead"
        && e["justification"] == "ICB planning return, approved at IG board"));
    assert!(raa
        .iter()
        .any(|e| e["kind"] == "federation-receive" && e["principal"] == "peer:QWO"));
    // The member names the person at the ICB who asked, not only the ICB.
    assert!(raa.iter().any(|e| e["kind"] == "query"
        && e["principal"] == "peer:QWO/icb.analyst"
        && e["channel"] == "federation"
        && e["what"] == "SELECT count(*) AS n FROM patient"));
    let rbb = audit_entries(&datas[1]);
    assert!(rbb.iter().any(|e| e["kind"] == "question-withdrawal"));
    assert!(rbb.iter().any(|e| e["kind"] == "question-approval"
        && e["principal"] == "tester"
        && e["justification"] == "DPIA review complete"));
    assert!(rbb.iter().any(|e| e["kind"] == "federation-receive"
        && e["outcome"].as_str().unwrap().contains("declined")));
    let qwo = audit_entries(&icb);
    let sent = qwo
        .iter()
        .filter(|e| e["kind"] == "federation-send")
        .count();
    assert_eq!(sent, 5 * 3, "one entry per question sent to each member");
    // And the ICB audits each ask with who asked and what each member said.
    let asks: Vec<&Value> = qwo
        .iter()
        .filter(|e| e["kind"] == "federated-question")
        .collect();
    assert_eq!(asks.len(), 5, "{asks:?}");
    assert!(asks.iter().all(|e| e["principal"] == "icb.analyst"
        && e["what"].as_str().unwrap().starts_with("ask ")
        && e["outcome"].as_str().unwrap().contains("RAA ")));
    assert!(qwo.iter().any(|e| e["kind"] == "federation-send"
        && e["outcome"].as_str().unwrap().contains("not delivered")));
}

#[test]
fn a_trust_that_only_connects_out_answers_through_its_icb() {
    let dir = tempfile::tempdir().unwrap();
    let (icb, trust) = icb_and_trust(dir.path());
    let total = question(
        dir.path(),
        "total.toml",
        "patients",
        "SELECT count(*) AS n FROM patient",
    );
    approve(&trust, &total, "ICB planning return", &[]).unwrap();
    // The ICB listens; the trust is known to it by certificate only, and
    // collects its work by polling.
    let (icb_server, trust_server) = start_icb_and_polling_trust(&icb, &trust);
    let (status, body) = http_post(
        icb_server.http,
        "/api/federation/questions",
        &icb_server.token,
        &serde_json::json!({"name": "patients", "version": 1, "purpose": "planning",
            "sql": "SELECT count(*) AS n FROM patient"})
        .to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(member(&answer, "RDD")["status"], "answered", "{answer}");
    assert_eq!(answer["rows"][0]["n"], 20, "{answer}");
    assert_eq!(answer["rows"][0]["member"], "RDD");
    trust_server.stop();
    icb_server.stop();
}

/// A question a product offers the federation is approved and asked by
/// its name alone, with its arguments: here the daily return's, which both
/// instances have built in. A name no product offers is refused, naming
/// what is offered.
#[test]
fn an_offered_question_is_approved_and_asked_by_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let (icb, trust) = icb_and_trust(dir.path());
    let name = "daily-return/length-of-stay";
    let approve_offered = |offered: &str| {
        fdp()
            .args(["peer", "approve", "--data-dir"])
            .arg(&trust)
            .args(["--from", "QWO", "--offered", offered, "--by", "ig.lead"])
            .args([
                "--reason",
                "ICB daily return",
                "--range",
                "census_at=now-30d..now",
            ])
            .output()
            .unwrap()
    };
    let refused = approve_offered("daily-return/bed-days");
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("no product in use here offers a question \"daily-return/bed-days\"")
            && why.contains(name),
        "{why}"
    );
    let approved = approve_offered(name);
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    let port = free_port();
    let trust_server = Server::start_configured(
        &trust,
        1.0,
        "127.0.0.1:0",
        "127.0.0.1:0",
        &format!(
            "[federation]\nlisten = \"127.0.0.1:{port}\"\n[[federation.peer]]\nods = \"QWO\"\nrole = \"icb\"\ncertificate = \"{}\"\n",
            cert(&icb).display()
        ),
    );
    std::fs::write(
        icb.join("instance.toml"),
        format!(
            "ods = \"QWO\"\n[federation]\n[[federation.peer]]\nods = \"RDD\"\nrole = \"trust\"\naddress = \"127.0.0.1:{port}\"\ncertificate = \"{}\"\n",
            cert(&trust).display()
        ),
    )
    .unwrap();
    let census_at = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let out = fdp_ok!(
        "peer",
        "ask",
        "--data-dir",
        icb,
        "--offered",
        name,
        "--arg",
        format!("census_at={census_at}"),
        "--as",
        "icb.analyst"
    );
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["question"], name);
    assert_eq!(member(&answer, "RDD")["status"], "answered", "{answer}");
    assert!(
        member(&answer, "RDD")["answer"]["rows"][0]
            .get("stay_7_days_plus")
            .is_some(),
        "{answer}"
    );
    trust_server.stop();
}

/// Class 5 of the adversarial suite (`crates/fdp/tests/adversarial.rs`,
/// `docs/governance.md`): a question cannot be slid along its parameters or
/// back in time beyond what the member's IG lead approved, and the person
/// who asked is named in the audits of both sides.
#[test]
fn class_5_an_approval_reaches_only_its_ranges_and_both_sides_audit_who_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (icb, trust) = icb_and_trust(dir.path());
    let sql = "SELECT count(*) AS n FROM patient WHERE date_of_birth >= :born_since";
    let file = dir.path().join("born-since.toml");
    std::fs::write(
        &file,
        format!("name = \"born-since\"\nversion = 1\npurpose = \"planning\"\nsql = \"{sql}\"\nparameters = {{ born_since = \"date\" }}\n"),
    )
    .unwrap();
    let reason = "ICB planning, decades of birth only";
    // Approving a parameterised question needs its range.
    let unranged = approve(&trust, &file, reason, &[]).unwrap_err();
    assert!(
        unranged.contains("born_since: give the range"),
        "{unranged}"
    );
    approve(
        &trust,
        &file,
        reason,
        &["--range", "born_since=1900-01-01..1990-01-01"],
    )
    .unwrap();

    let (icb_server, trust_server) = start_icb_and_polling_trust(&icb, &trust);
    let ask = |arguments: Value, as_of: Option<&str>| {
        let mut q = serde_json::json!({"name": "born-since", "version": 1, "purpose": "planning",
            "sql": sql, "parameters": {"born_since": "date"}, "arguments": arguments});
        if let Some(t) = as_of {
            q["as_of"] = t.into();
        }
        let (status, body) = http_post(
            icb_server.http,
            "/api/federation/questions",
            &icb_server.token,
            &q.to_string(),
        );
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        member(&answer, "RDD").clone()
    };
    assert_eq!(
        ask(serde_json::json!({"born_since": "1950-01-01"}), None)["status"],
        "answered"
    );
    // Sliding the parameter past the approved range: declined.
    for outside in ["1989-12-31T00:00:00Z", "2001-01-01", "1850-01-01"] {
        let a = ask(serde_json::json!({"born_since": outside}), None);
        if outside.contains('T') {
            // Not a date at all: refused before any range is looked at.
            assert_ne!(a["status"], "answered", "{a}");
            continue;
        }
        assert_eq!(a["status"], "declined", "{outside}: {a}");
        assert!(
            a["reason"]
                .as_str()
                .unwrap()
                .contains("outside the approved range"),
            "{a}"
        );
    }
    // Back in time, when the approval does not reach there: declined.
    let then = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let a = ask(serde_json::json!({"born_since": "1950-01-01"}), Some(&then));
    assert_eq!(a["status"], "declined", "{a}");
    assert!(a["reason"].as_str().unwrap().contains("as_of"), "{a}");
    trust_server.stop();
    icb_server.stop();

    // Both sides name who asked: the ICB's analyst, at the trust too.
    let at_trust = audit_entries(&trust);
    assert!(at_trust.iter().any(|e| e["kind"] == "query"
        && e["principal"] == "peer:QWO/tester"
        && e["channel"] == "federation"));
    let refused: Vec<&Value> = at_trust
        .iter()
        .filter(|e| e["kind"] == "federated-question" && e["principal"] == "peer:QWO/tester")
        .collect();
    assert!(refused.len() >= 3, "{refused:?}");
    assert!(refused
        .iter()
        .all(|e| e["outcome"].as_str().unwrap().starts_with("refused")));
    let at_icb = audit_entries(&icb);
    let asks = at_icb
        .iter()
        .filter(|e| e["kind"] == "federated-question" && e["principal"] == "tester")
        .count();
    assert_eq!(asks, 5);
}

/// Class 5, differencing: an ICB analyst slides an approved parameter a
/// little at a time, hoping the difference between two answers singles out
/// a few patients. The member declines any answer whose figures differ from
/// one it already released by an amount that could stand for fewer patients
/// than the threshold, and answers one far enough from every earlier one.
#[test]
fn class_5_answers_a_few_patients_apart_are_not_both_released() {
    let dir = tempfile::tempdir().unwrap();
    let (icb, trust) = icb_and_trust_of(dir.path(), 300);
    // The truth, read inside the trust: each patient's year of birth, which
    // the question counts by.
    let mut years: Vec<i64> = sql(&trust, "SELECT date_of_birth FROM patient")
        .iter()
        .filter_map(|r| r["date_of_birth"].as_str()?.get(..4)?.parse().ok())
        .collect();
    years.sort();
    let born_since = |y: i64| years.iter().filter(|&&b| b >= y).count() as i64;
    // A first year with about a hundred born since; a later one a handful
    // fewer (5 to 8: however each is rounded, the released figures differ);
    // and one far from the first.
    let first = (1900..2030)
        .find(|&y| born_since(y) <= 150)
        .expect("a year with at most 150 born since");
    let near = (first + 1..2030)
        .find(|&y| (5..=8).contains(&(born_since(first) - born_since(y))))
        .unwrap_or_else(|| panic!("no year 5 to 8 patients after {first}: {years:?}"));
    let far = (first + 1..2030)
        .find(|&y| born_since(first) - born_since(y) >= 17 && born_since(y) >= 20)
        .expect("a year at least 17 patients after the first");

    let sql =
        "SELECT count(*) AS n FROM patient WHERE date_part('year', date_of_birth) >= :born_since";
    let file = dir.path().join("born-since.toml");
    std::fs::write(
        &file,
        format!("name = \"born-since\"\nversion = 1\npurpose = \"planning\"\nsql = \"{sql}\"\nparameters = {{ born_since = \"integer\" }}\n"),
    )
    .unwrap();
    approve(
        &trust,
        &file,
        "ICB planning by year of birth",
        &["--range", "born_since=1900..2030"],
    )
    .unwrap();
    let (icb_server, trust_server) = start_icb_and_polling_trust(&icb, &trust);
    let ask = |year: i64| {
        let q = serde_json::json!({"name": "born-since", "version": 1, "purpose": "planning",
            "sql": sql, "parameters": {"born_since": "integer"},
            "arguments": {"born_since": year.to_string()}});
        let (status, body) = http_post(
            icb_server.http,
            "/api/federation/questions",
            &icb_server.token,
            &q.to_string(),
        );
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        member(&answer, "RDD").clone()
    };
    let n = |a: &Value| a["answer"]["rows"][0]["n"].as_i64();
    let a = ask(first);
    assert_eq!(a["status"], "answered", "{a}");
    assert!(n(&a).is_some_and(|n| n >= 8), "{a}");
    // Asked again as it was: the same figure, released again.
    assert_eq!(ask(first)["status"], "answered");
    let b = ask(near);
    assert_eq!(b["status"], "declined", "{near} after {first}: {b}");
    assert!(
        b["reason"]
            .as_str()
            .unwrap()
            .contains("could single out patients"),
        "{b}"
    );
    let c = ask(far);
    assert_eq!(c["status"], "answered", "{far} after {first}: {c}");
    assert!(n(&a).unwrap() - n(&c).unwrap() >= 13, "{a} {c}");
    trust_server.stop();
    icb_server.stop();
    // The trust audits the decline, naming who asked.
    assert!(audit_entries(&trust)
        .iter()
        .any(|e| e["kind"] == "federated-question"
            && e["principal"] == "peer:QWO/tester"
            && e["outcome"]
                .as_str()
                .unwrap()
                .contains("could single out patients")));
}

/// Class 2 between two running instances: an approved question whose
/// answer would be row-level, or about one patient, leaves the member with
/// no row (the same disclosure control as every answer under planning).
#[test]
fn class_2_a_federated_answer_is_never_row_level() {
    let dir = tempfile::tempdir().unwrap();
    let (icb, trust) = icb_and_trust(dir.path());
    let questions = [
        ("rows", "SELECT person_id, date_of_birth, sex FROM patient"),
        (
            "one-patient",
            "SELECT sex, count(*) AS n, max(date_of_birth) AS born FROM patient \
             WHERE person_id = (SELECT min(person_id) FROM patient) GROUP BY sex",
        ),
    ];
    for (name, sql) in questions {
        let file = question(dir.path(), &format!("{name}.toml"), name, sql);
        approve(&trust, &file, "approved in error", &[]).unwrap();
    }
    let (icb_server, trust_server) = start_icb_and_polling_trust(&icb, &trust);
    for (name, sql) in questions {
        let q = serde_json::json!({"name": name, "version": 1, "purpose": "planning", "sql": sql});
        let (status, body) = http_post(
            icb_server.http,
            "/api/federation/questions",
            &icb_server.token,
            &q.to_string(),
        );
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        let rdd = member(&answer, "RDD");
        assert_eq!(rdd["status"], "answered", "{name}: {rdd}");
        assert_eq!(
            rdd["answer"]["rows"],
            serde_json::json!([]),
            "{name}: {rdd}"
        );
        assert!(
            rdd["answer"]["disclosure_control"]
                .to_string()
                .contains("rows withheld"),
            "{name}: {rdd}"
        );
    }
    trust_server.stop();
    icb_server.stop();
}
