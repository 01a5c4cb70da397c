//! The OpenAPI document describes the whole HTTP API, and every operation in
//! it that is not one of the documented public ones refuses a request
//! without a valid token.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

#[test]
fn every_operation_in_the_openapi_document_needs_a_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start(&data, 1.0);

    let (status, body) = http_get(server.http, "/openapi.json", None);
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 30, "{} paths", paths.len());

    let mut public = BTreeSet::new();
    let mut checked = 0;
    for (path, item) in paths {
        // Path parameters filled in with something plausible.
        let concrete = path
            .replace("{rt}", "Patient")
            .replace("{vid}", "1")
            .replace("{id}", "x")
            .replace("{name}", "patient")
            .replace("{view}", "by-ward")
            .replace("{action}", "bed-status")
            .replace("{target}", "B1")
            .replace("{ontology}", "palantirukhealth-ontology")
            .replace("{objectType}", "Admission")
            .replace("{primaryKey}", "A1")
            .replace("{linkType}", "wardStays")
            .replace("{linkedObjectPrimaryKey}", "S1");
        assert!(!concrete.contains('{'), "unfilled parameter in {path}");
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            if op["security"].as_array().unwrap().is_empty() {
                public.insert(format!("{method} {path}"));
                continue;
            }
            for token in [
                None,
                Some("fdp_not-a-token"),
                Some("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
            ] {
                let r = http_request(server.http, &method, &concrete, token, Some("{}"));
                assert_eq!(
                    r.status, 401,
                    "{method} {path} with {token:?} answered {}: {}",
                    r.status, r.body
                );
                assert!(
                    r.header("www-authenticate")
                        .is_some_and(|h| h.starts_with("Bearer")),
                    "{method} {path}: no WWW-Authenticate"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "{checked} operations checked");
    // The documented exceptions, and nothing else.
    assert_eq!(
        public,
        BTreeSet::from(
            [
                "GET /healthz",
                "GET /login",
                "POST /login",
                "GET /openapi.json"
            ]
            .map(String::from)
        )
    );

    // The same requests with a valid token get past the check.
    let (status, body) = http_get(server.http, "/api/whoami", Some(&server.token));
    assert_eq!(status, 200, "{body}");
    // A person's browser asking for a page is sent to sign in instead.
    let r = http_request_with(
        server.http,
        "GET",
        "/bed-board",
        None,
        &[("Accept", "text/html,application/xhtml+xml")],
        None,
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));
}
