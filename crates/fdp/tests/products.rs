//! Products on the platform, end to end: the declared examples in
//! `examples/products` installed by the IG lead with `fdp product install`,
//! then read with the built-in coded product through the API (JSON and CSV)
//! and the pages, under purposes whose grants differ: what each answers is
//! the planted truth under operations, disclosure-controlled under planning
//! over the API, and refused where the grant does not cover what the
//! product reads.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

fn config(dir: &Path) -> PathBuf {
    let text = "ods = \"RXX\"\n\
         [principal.bed]\nroles = [\"bed-manager\"]\n\
         [principal.ana]\nroles = [\"analyst\"]\n\
         [principal.ig]\nroles = [\"information-governance-lead\"]\n";
    let path = dir.join("instance.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/products")
        .join(name)
}

/// Ward A: ten patients medically optimised on 20 November and still in;
/// ward B: two, optimised on 25 November. Theatre T1: four sessions of 240
/// planned minutes, three run using 180 each, one cancelled.
async fn plant(data: &Path) {
    let (mut readiness, mut admissions, mut stays) = (Vec::new(), Vec::new(), Vec::new());
    for (ward, n, date) in [("RXX:A", 10, "2026-11-20"), ("RXX:B", 2, "2026-11-25")] {
        for i in 0..n {
            let id = format!("{ward}-{i}");
            readiness.push(json!({"admission_id": id, "patient_id": format!("P{id}"),
                "medically_optimised": true, "medically_optimised_date": date,
                "updated_timestamp": format!("{date}T09:00:00Z")}));
            admissions.push(json!({"admission_id": id, "patient_id": format!("P{id}"),
                "admission_timestamp": "2026-11-01T08:00:00Z"}));
            stays.push(json!({"ward_stay_id": format!("S{id}"), "admission_id": id,
                "patient_id": format!("P{id}"), "ward_id": ward,
                "start_timestamp": "2026-11-01T08:00:00Z"}));
        }
    }
    write_canonical(data, "DischargeReadiness", &[], &readiness).await;
    write_canonical(data, "Admission", &[], &admissions).await;
    write_canonical(data, "WardStay", &[], &stays).await;
    let sessions: Vec<Value> = (0..4)
        .map(|i| {
            json!({"theatre_session_id": format!("TS{i}"), "theatre_name": "T1",
                   "date": format!("2026-11-2{i}"), "planned_session_minutes": 240,
                   "actual_utilised_minutes": if i == 3 { Value::Null } else { json!(180) },
                   "cancelled": i == 3})
        })
        .collect();
    write_canonical(data, "TheatreSession", &[], &sessions).await;
}

fn product_cli(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Result<String, String> {
    let out = fdp().arg("product").args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_and_coded_products_serve_what_each_purpose_may_see() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    plant(&data).await;
    let config = config(dir.path());
    let delays = example("discharge-delays-summary");
    let theatres = example("theatre-utilisation");

    // Only the IG lead installs; both examples check and install.
    let e = product_cli(&[
        &"install",
        &"--data-dir",
        &data,
        &"--config",
        &config,
        &"--by",
        &"ana",
        &delays,
    ])
    .unwrap_err();
    assert!(e.contains("reviews the audit"), "{e}");
    for p in [&delays, &theatres] {
        product_cli(&[&"check", &"--data-dir", &data, &"--config", &config, p]).unwrap();
        product_cli(&[
            &"install",
            &"--data-dir",
            &data,
            &"--config",
            &config,
            &"--by",
            &"ig",
            p,
        ])
        .unwrap();
    }
    let listed = product_cli(&[&"list", &"--data-dir", &data]).unwrap();
    for id in [
        "discharge-delays ",
        "discharge-delays-summary",
        "theatre-utilisation",
    ] {
        assert!(listed.contains(id), "{listed}");
    }
    let audited = audit_entries(&data);
    assert!(audited.iter().any(|e| e["kind"] == "product"
        && e["what"] == "install product theatre-utilisation 1.0.0"
        && e["outcome"] == "ok"));

    let server = Server::start_with_config_file(&data, &config, "", "");
    let token = |who: &str| {
        fdp_ok!("token", "create", who, "--data-dir", data)
            .trim()
            .to_string()
    };
    let (bed, ana) = (token("bed"), token("ana"));
    let get = |token: &str, purpose: &str, path: &str| {
        http_request_with(
            server.http,
            "GET",
            path,
            Some(token),
            &[("X-Purpose", purpose)],
            None,
        )
    };
    let (status, list) = http_get(server.http, "/api/products", Some(&bed));
    assert_eq!(status, 200, "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    let ids: Vec<&str> = list["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    for id in [
        "discharge-delays",
        "discharge-delays-summary",
        "theatre-utilisation",
    ] {
        assert!(ids.contains(&id), "{id} not in {ids:?}");
    }
    // Each manifest names its publisher; a built-in product has none.
    let publisher = |id: &str| {
        list["products"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap()["publisher"]
            .clone()
    };
    assert_eq!(publisher("theatre-utilisation"), "RXX");
    assert!(publisher("discharge-delays").is_null());
    // The question the declared product offers the federation runs as a
    // member would answer it: in aggregate, under planning.
    let offered = list["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "discharge-delays-summary")
        .unwrap()["offers"]["questions"][0]
        .clone();
    assert_eq!(offered["name"], "discharge-delays-summary/delayed-by-ward");
    let sql = offered["sql"]
        .as_str()
        .unwrap()
        .replace(":census_at", "TIMESTAMP '2026-11-30T08:00:00Z'");
    let body = json!({"sql": sql, "purpose": "planning"}).to_string();
    let (status, answer) = http_post(server.http, "/sql", &ana, &body);
    assert_eq!(status, 200, "{answer}");
    let rows = &serde_json::from_str::<Value>(&answer).unwrap()["rows"];
    assert_eq!(
        rows[0],
        json!({"ward_id": "RXX:A", "patients": 10}),
        "{answer}"
    );
    assert!(
        rows[1]["patients"].is_null() || rows.as_array().unwrap().len() == 1,
        "ward B's two patients are not disclosed: {answer}"
    );

    // Operations: the planted truth, from the declared and the coded product alike.
    let as_at = "as_at=2026-11-30";
    for path in [
        format!("/api/products/discharge-delays-summary/by-ward?{as_at}"),
        format!("/api/products/discharge-delays/by-ward?{as_at}"),
    ] {
        let r = get(&bed, "operations", &path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let out: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            out["rows"],
            json!([["RXX:A", 10, 10.0], ["RXX:B", 2, 5.0]]),
            "{path}"
        );
        assert_eq!(
            out["columns"][0]["source"],
            json!({"kind": "column", "table": "ward_stay", "column": "ward_id"})
        );
    }
    let csv = get(
        &bed,
        "operations",
        &format!("/api/products/discharge-delays-summary/by-ward?{as_at}&format=csv"),
    );
    assert_eq!(csv.status, 200);
    assert_eq!(
        csv.body,
        "ward_id,patients,mean_days_delayed\nRXX:A,10,10.0\nRXX:B,2,5.0\n"
    );
    let r = get(
        &bed,
        "operations",
        "/api/products/theatre-utilisation/by-theatre?from=2026-11-20&to=2026-11-30",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let out: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(out["rows"], json!([["T1", 4, 1, 720, 540, 75.0]]));

    // Planning over the API: ward B's two patients are withheld.
    let r = get(
        &ana,
        "planning",
        &format!("/api/products/discharge-delays-summary/by-ward?{as_at}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let out: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(out["rows"], json!([["RXX:A", 10, 10.0]]), "{out}");
    assert!(out["disclosure"].is_string(), "{out}");
    // The analyst's planning grant does not cover theatre sessions.
    let r = get(
        &ana,
        "planning",
        "/api/products/theatre-utilisation/by-theatre?from=2026-11-20&to=2026-11-30",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("theatre_session"), "{}", r.body);
    // A parameter is typed, and required where declared.
    let r = get(
        &bed,
        "operations",
        "/api/products/theatre-utilisation/by-theatre?from=2026-11-20",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("to"), "{}", r.body);
    let r = get(
        &bed,
        "operations",
        "/api/products/theatre-utilisation/by-theatre?from=yesterday&to=2026-11-30",
    );
    assert_eq!(r.status, 400, "{}", r.body);

    // The pages, under the purpose declared at the checkpoint.
    let cookie = purpose_cookie(server.http, &ana, "planning");
    let page = http_request_with(
        server.http,
        "GET",
        &format!("/products/discharge-delays-summary/by-ward?{as_at}"),
        Some(&ana),
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("RXX:A")
            && page.body.contains("data-view=\"by-ward\"")
            && page.body.contains("<svg"),
        "{}",
        page.body
    );
    let page = http_request_with(
        server.http,
        "GET",
        "/products/theatre-utilisation/by-theatre?from=2026-11-20&to=2026-11-30",
        Some(&ana),
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(page.status, 403, "{}", page.body);
    server.stop();

    // The refusals were audited, with the product and the view.
    assert!(audit_entries(&data).iter().any(|e| e["principal"] == "ana"
        && e["what"] == "product theatre-utilisation/by-theatre"
        && e["outcome"]
            .as_str()
            .unwrap_or_default()
            .starts_with("refused")));
}
