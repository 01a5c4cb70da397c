//! The waiting list's validation queue end to end, on a running instance
//! loaded with a synthetic trust's list: an administrator proposes a
//! removal through the API, the attempts to get round the sign-off are
//! refused and audited, and a clinician signs it off in headless
//! Chromium, after which the entry has left the PTL.

mod common;

use common::webdriver::Browser;
use common::*;
use serde_json::{json, Value};

#[test]
fn a_removal_is_proposed_signed_off_by_a_clinician_in_the_browser_and_leaves_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("drop");
    let data = dir.path().join("trust");
    fdp_ok!(
        "synth",
        "elective",
        "--out",
        drop,
        "--pathways",
        "400",
        "--problem-share",
        "0.05"
    );
    for file in ["waiting_list_20261130.csv", "rtt_activity_20261130.csv"] {
        fdp_ok!(
            "ingest",
            "csv",
            "--data-dir",
            data,
            "--mapping",
            mappings(),
            drop.join(file)
        );
    }
    let server = Server::start_configured(
        &data,
        1.0,
        "127.0.0.1:0",
        "127.0.0.1:0",
        "[principal.tester]\nroles = [\"clinician\"]\n\
         [principal.admin]\nroles = [\"waiting-list-manager\"]\n\
         [principal.doc]\nroles = [\"clinician\"]\n",
    );
    let token = |who: &str| {
        fdp_ok!("token", "create", who, "--data-dir", data)
            .trim()
            .to_string()
    };
    let (admin, doc) = (token("admin"), token("doc"));

    // The rule that finds patients who have died flags some entries.
    let (status, flags) = direct_care_call(
        &server,
        "GET",
        "/api/products/waiting-list/validation?rule=deceased",
        &admin,
        None,
    );
    assert_eq!(status, 200, "{flags}");
    let flags = rows(&flags);
    assert!(flags.len() >= 2, "{} deceased flags", flags.len());
    let entry = flags[0]["eal_id"].as_str().unwrap().to_string();
    let other = flags[1]["eal_id"].as_str().unwrap().to_string();
    let (_, ptl) = direct_care_call(
        &server,
        "GET",
        "/api/products/waiting-list/ptl",
        &admin,
        None,
    );
    let ptl = rows(&ptl);
    let on_list = |id: &str, ptl: &[serde_json::Map<String, Value>]| {
        ptl.iter().any(|e| e["eal_id"] == json!(id))
    };
    assert!(on_list(&entry, &ptl));
    let specialty = ptl.iter().find(|e| e["eal_id"] == json!(entry)).unwrap()["specialty"]
        .as_str()
        .unwrap()
        .to_string();

    // The administrator proposes the removal, with the rule's evidence.
    let (status, proposed) = direct_care_call(
        &server,
        "POST",
        &format!("/api/products/waiting-list/actions/propose/{entry}"),
        &admin,
        Some(json!({"reason": "deceased", "rule": "deceased", "evidence": flags[0]["evidence"]})),
    );
    assert_eq!(status, 200, "{proposed}");
    let change = proposed["change"].as_str().unwrap().to_string();

    // A form's way back cannot be pointed off the instance: not on the
    // way to the checkpoint, nor on the page saying why a change was not
    // made (a second proposal for the same entry).
    let form = format!("/products/waiting-list/actions/propose/{entry}");
    let cookie = purpose_cookie(server.http, &admin, "direct-care");
    for hostile in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
    ] {
        let fields = [("back", hostile), ("reason", "treated"), ("evidence", "x")];
        let undeclared = http_form(server.http, &form, &admin, &[], &fields);
        assert_eq!(undeclared.status, 303, "{hostile:?}");
        assert_eq!(
            undeclared.header("location"),
            Some("/purpose?next=/"),
            "{hostile:?}"
        );
        let refused = http_form(server.http, &form, &admin, &[("Cookie", &cookie)], &fields);
        assert_eq!(refused.status, 409, "{hostile:?}: {}", refused.body);
        assert!(refused.body.contains("href=\"/\""), "{}", refused.body);
        assert!(!refused.body.contains("evil.example"), "{}", refused.body);
    }

    // Ways round the sign-off, each refused: the administrator's grant
    // does not sign off; a clinician does not sign off their own change;
    // a change is not written as a FHIR Task by anyone.
    let sign_off = format!("/api/products/waiting-list/actions/sign-off/{change}");
    let (status, refused) = direct_care_call(&server, "POST", &sign_off, &admin, Some(json!({})));
    assert_eq!(status, 403, "{refused}");
    let (status, own) = direct_care_call(
        &server,
        "POST",
        &format!("/api/products/waiting-list/actions/propose/{other}"),
        &doc,
        Some(json!({"reason": "deceased", "evidence": "seen on the spine"})),
    );
    assert_eq!(status, 200, "{own}");
    let own = own["change"].as_str().unwrap().to_string();
    let (status, refused) = direct_care_call(
        &server,
        "POST",
        &format!("/api/products/waiting-list/actions/sign-off/{own}"),
        &doc,
        Some(json!({})),
    );
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused.to_string().contains("signed off by someone else"),
        "{refused}"
    );
    let forged = json!({"resourceType": "Task", "status": "completed", "intent": "order",
        "code": {"coding": [{"system": "https://openfdp.nhs.uk/CodeSystem/waiting-list-change", "code": "remove"}]},
        "focus": {"identifier": {"system": "https://openfdp.nhs.uk/Id/eal-entry", "value": other}},
        "requester": {"display": "admin"}, "owner": {"display": "doc"}});
    let (status, refused) =
        direct_care_call(&server, "POST", "/fhir/Task", &doc, Some(forged.clone()));
    assert_eq!(status, 403, "{refused}");
    let (status, refused) = direct_care_call(
        &server,
        "PUT",
        &format!("/fhir/Task/{own}"),
        &doc,
        Some(forged),
    );
    assert_eq!(status, 403, "{refused}");

    // The clinician, in the browser: the PTL filtered to the entry's
    // specialty, then the queue, where they sign the change off.
    let browser = Browser::start();
    browser.goto(&format!("http://{}/login", server.http));
    browser.eval(&format!(
        "document.getElementById('token').value = {}; \
         document.querySelector('form[action=\"/login\"]').submit(); return true",
        serde_json::to_string(&doc).unwrap()
    ));
    wait_until(10, "the sign-in", || {
        browser.eval("return location.pathname") != "/login"
    });
    let ptl_page = format!(
        "/products/waiting-list/ptl?specialty={}",
        specialty.replace(' ', "+")
    );
    browser.goto(&format!("http://{}{ptl_page}", server.http));
    browser.eval(
        "document.querySelector('input[name=purpose][value=direct-care]').click(); \
         document.querySelector('form[action=\"/purpose\"]').submit(); return true",
    );
    wait_until(10, "the PTL after the checkpoint", || {
        browser.eval("return location.pathname") == "/products/waiting-list/ptl"
    });
    // The entries the page lists, and the row forms it shows.
    let listed_now = || -> Vec<String> {
        browser
            .eval("return Array.from(document.querySelectorAll('#product-view tbody tr')).map(r => r.cells[0].textContent)")
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let forms = || {
        browser
            .eval("return document.querySelectorAll('form.row-action').length")
            .as_u64()
    };
    let listed = listed_now();
    assert!(listed.contains(&entry), "{entry} on the filtered PTL");
    let same_specialty = ptl
        .iter()
        .filter(|e| e["specialty"] == json!(specialty))
        .count();
    assert_eq!(listed.len(), same_specialty, "filtered to {specialty}");
    assert!(listed.len() < ptl.len(), "the filter left some out");

    browser.goto(&format!(
        "http://{}/products/waiting-list/queue",
        server.http
    ));
    wait_until(10, "the queue", || forms() == Some(2));
    browser.eval(&format!(
        "var f = document.querySelector('form.row-action[data-target=' + JSON.stringify({}) + ']'); \
         f.querySelector('input[name=comments]').value = 'Death confirmed on the spine'; \
         f.querySelector('button').click(); return true",
        serde_json::to_string(&change).unwrap()
    ));
    wait_until(10, "the change to leave the queue", || forms() == Some(1));
    if let Ok(dir) = std::env::var("FDP_SCREENSHOT_DIR") {
        std::fs::write(format!("{dir}/validation-queue.png"), browser.screenshot()).unwrap();
    }
    browser.goto(&format!("http://{}{ptl_page}", server.http));
    let after = listed_now();
    assert!(!after.contains(&entry), "{entry} has left the list");
    assert_eq!(after.len(), listed.len() - 1);

    // The entry's history says who did what, kept as a versioned record.
    let (_, history) = direct_care_call(
        &server,
        "GET",
        &format!("/api/products/waiting-list/history?entry={entry}"),
        &admin,
        None,
    );
    let history = rows(&history);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["decision"], json!("signed off"));
    assert_eq!(history[0]["requested_by"], json!("admin"));
    assert_eq!(history[0]["decided_by"], json!("doc"));
    let (status, versions) = direct_care_call(
        &server,
        "GET",
        &format!("/fhir/Task/{change}/_history"),
        &doc,
        None,
    );
    assert_eq!(status, 200, "{versions}");
    let statuses: Vec<&str> = versions["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 2, "{versions}");
    assert!(
        statuses.contains(&"requested") && statuses.contains(&"completed"),
        "{statuses:?}"
    );

    // Audited: both changes made, by whom, and each refusal.
    let audit = audit_entries(&data);
    let made: Vec<&Value> = audit
        .iter()
        .filter(|e| {
            e["kind"] == "change"
                && e["outcome"] == "ok"
                && e["what"]
                    .as_str()
                    .is_some_and(|w| w.contains("waiting-list"))
        })
        .collect();
    let by: Vec<&str> = made
        .iter()
        .map(|e| e["principal"].as_str().unwrap())
        .collect();
    assert_eq!(by, ["admin", "doc", "doc"], "propose, propose, sign-off");
    let refused = audit
        .iter()
        .filter(|e| {
            e["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("refused"))
                && e["what"].as_str().is_some_and(|w| w.contains("sign-off"))
        })
        .count();
    assert_eq!(refused, 2, "the administrator's and the proposer's own");
    server.stop();
}
