//! SQL over the PostgreSQL wire protocol with the clients analysts use: psql
//! and psycopg connect over TLS with a token as the password and the purpose
//! as the database, list the tables their policy grants, run queries
//! (prepared, with parameters, cancelled), and are refused without
//! credentials, with a wrong password (more slowly each time) or without TLS.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

fn psql(
    addr: SocketAddr,
    user: &str,
    password: Option<&str>,
    conninfo: &str,
    args: &[&str],
) -> Output {
    let mut c = Command::new("psql");
    c.arg(format!(
        "host={} port={} user={user} {conninfo}",
        addr.ip(),
        addr.port()
    ))
    // -w: never prompt for a password; -X: no ~/.psqlrc.
    .args(["-w", "-X", "-v", "ON_ERROR_STOP=1"])
    .args(args)
    .env_remove("PGPASSWORD")
    .env("PGCONNECT_TIMEOUT", "60");
    if let Some(p) = password {
        c.env("PGPASSWORD", p);
    }
    c.output().expect("psql (postgresql-client) is installed")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn psql_and_psycopg_connect_list_query_and_are_refused_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    let export = dir.path().join("export");
    fdp_ok!("synth", "fhir", "--out", export, "--patients", "40");
    fdp_ok!("ingest", "fhir", "--data-dir", data, export);
    let ana = fdp_ok!("token", "create", "ana", "--data-dir", data)
        .trim()
        .to_string();
    let doc = fdp_ok!("token", "create", "doc", "--data-dir", data)
        .trim()
        .to_string();
    let server = Server::start_configured(
        &data,
        1.0,
        "127.0.0.1:0",
        "127.0.0.1:0",
        "sql = \"127.0.0.1:0\"\n\
         [principal.ana]\nroles = [\"analyst\"]\n\
         [principal.doc]\nroles = [\"clinician\"]\n",
    );
    let addr = server.sql.unwrap();
    let tls = "sslmode=require";

    // psql lists the tables the analyst's planning policy grants, as tables.
    let listed = psql(
        addr,
        "ana",
        Some(&ana),
        &format!("dbname=planning {tls}"),
        &["-c", "\\dt"],
    );
    assert!(listed.status.success(), "{}", text(&listed));
    let listed = text(&listed);
    for t in ["patient", "encounter", "admission", "observation"] {
        assert!(
            listed.contains(&format!(" {t} ")) && listed.contains("| table"),
            "{listed}"
        );
    }
    // The clinician's direct-care session lists what the clinician may read.
    let described = psql(
        addr,
        "doc",
        Some(&doc),
        &format!("dbname=direct-care {tls}"),
        &["-c", "\\d patient"],
    );
    assert!(described.status.success(), "{}", text(&described));
    assert!(
        text(&described).contains("nhs_number"),
        "{}",
        text(&described)
    );
    // Under planning the same table has no NHS number, and dates of birth
    // are years.
    let described = psql(
        addr,
        "ana",
        Some(&ana),
        &format!("dbname=planning {tls}"),
        &["-c", "\\d patient"],
    );
    let d = text(&described);
    assert!(
        !d.contains(" nhs_number ") && d.contains(" date_of_birth ") && d.contains("| integer"),
        "{d}"
    );

    // Queries under the purpose: direct care sees every patient; planning
    // counts leave rounded.
    let q = |user: &str, token: &str, db: &str, sql: &str| {
        let o = psql(
            addr,
            user,
            Some(token),
            &format!("dbname={db} {tls}"),
            &["-At", "-c", sql],
        );
        assert!(o.status.success(), "{user} {db} {sql}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(
        q("doc", &doc, "direct-care", "SELECT count(*) FROM patient"),
        "40"
    );
    let nhs = q(
        "doc",
        &doc,
        "direct-care",
        "SELECT nhs_number FROM patient ORDER BY nhs_number LIMIT 1",
    );
    assert_eq!(nhs.len(), 10, "{nhs}");
    let by_sex = q(
        "ana",
        &ana,
        "planning",
        "SELECT sex, count(*) FROM patient GROUP BY sex ORDER BY sex",
    );
    for line in by_sex.lines() {
        let n = line.rsplit('|').next().unwrap();
        assert!(
            n.is_empty() || n.parse::<i64>().unwrap() % 5 == 0,
            "{by_sex}"
        );
    }
    let e = psql(
        addr,
        "ana",
        Some(&ana),
        &format!("dbname=planning {tls}"),
        &["-c", "SELECT nhs_number FROM patient"],
    );
    assert!(!e.status.success());
    assert!(text(&e).contains("nhs_number"), "{}", text(&e));

    // Refused: no password, a wrong one, someone else's token, no TLS, a
    // purpose the role lacks, a database that is not a purpose.
    let refused = |user: &str, password: Option<&str>, conninfo: &str, why: &str| {
        let o = psql(addr, user, password, conninfo, &["-c", "SELECT 1"]);
        assert!(!o.status.success(), "{user} {conninfo} was let in");
        assert!(text(&o).contains(why), "{user} {conninfo}: {}", text(&o));
    };
    refused(
        "ana",
        None,
        &format!("dbname=planning {tls}"),
        "no password supplied",
    );
    refused(
        "ana",
        Some("fdp_not-a-token"),
        &format!("dbname=planning {tls}"),
        "password authentication failed",
    );
    refused(
        "ana",
        Some(&doc),
        &format!("dbname=planning {tls}"),
        "password authentication failed",
    );
    refused(
        "ana",
        Some(&ana),
        "dbname=planning sslmode=disable",
        "only encrypted connections",
    );
    refused(
        "ana",
        Some(&ana),
        &format!("dbname=direct-care {tls}"),
        "no role that is granted",
    );
    refused(
        "ana",
        Some(&ana),
        &format!("dbname=postgres {tls}"),
        "the databases are the purposes",
    );
    let ddl = psql(
        addr,
        "ana",
        Some(&ana),
        &format!("dbname=planning {tls}"),
        &["-c", "DROP TABLE patient"],
    );
    assert!(text(&ddl).contains("DROP is not allowed"), "{}", text(&ddl));

    // Repeated failures are answered more and more slowly (the successful
    // sign-ins above cleared the count): two at once, then half a second,
    // doubling.
    let mut took = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        refused(
            "ana",
            Some("fdp_guess"),
            &format!("dbname=planning {tls}"),
            "password authentication failed",
        );
        took.push(started.elapsed());
    }
    assert!(took[1] < Duration::from_millis(450), "{took:?}");
    assert!(took[2] >= Duration::from_millis(450), "{took:?}");
    assert!(took[3] >= Duration::from_millis(950), "{took:?}");
    assert!(took[4] >= Duration::from_millis(1950), "{took:?}");
    // Another user from the same address is not held up by ana's failures.
    let started = Instant::now();
    refused(
        "doc",
        Some("fdp_guess"),
        &format!("dbname=direct-care {tls}"),
        "password authentication failed",
    );
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );

    // psycopg: listing, prepared statements with parameters in text and
    // binary, read-only, statement timeout, cancellation.
    let script = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("tests/clients/pg_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args(["ana", &ana])
        .output()
        .expect("python3 with psycopg");
    assert!(out.status.success(), "pg_check.py:\n{}", text(&out));
    assert!(text(&out).ends_with("ok\n"), "{}", text(&out));

    // Every query, refusal and cancellation over the wire is in the audit.
    drop(server);
    let audit = std::fs::read_to_string(data.join("audit/audit.jsonl")).unwrap();
    let wire: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["channel"] == "pgwire")
        .collect();
    let sign_in_refusals = wire
        .iter()
        .filter(|e| e["kind"] == "refusal" && e["what"].as_str().unwrap().starts_with("sign in"))
        .count();
    assert_eq!(
        sign_in_refusals, 8,
        "wrong token, someone else's, five guesses, doc's guess"
    );
    assert!(wire.iter().any(|e| e["principal"] == "doc"
        && e["what"] == "SELECT count(*) FROM patient"
        && e["rows"] == 1));
    assert!(wire
        .iter()
        .any(|e| e["outcome"] == "cancelled before it finished"));
    assert!(wire.iter().any(|e| e["outcome"]
        .as_str()
        .unwrap()
        .contains("no role that is granted")));
    let ok = fdp_ok!("audit", "verify", "--data-dir", data);
    assert!(ok.contains("audit log intact"), "{ok}");
}
