//! The bed board in headless Chromium changes a bed's state within a second
//! of the ADT message that changed it; a page that reads a table first asks
//! for the purpose it is read for.

mod common;

use std::time::{Duration, Instant};

use common::webdriver::Browser;
use common::*;

/// Sign in as a person does: the token pasted into the form.
fn sign_in(browser: &Browser, http: std::net::SocketAddr, token: &str) {
    browser.goto(&format!("http://{http}/login"));
    browser.eval(&format!(
        "document.getElementById('token').value = {}; \
         document.querySelector('form[action=\"/login\"]').submit(); return true",
        serde_json::to_string(token).unwrap()
    ));
    wait_until(10, "the sign-in to be posted", || {
        browser.eval("return location.pathname") != "/login"
    });
}

/// The text of each row's cell in the product view's column `name`.
fn column(browser: &Browser, name: &str) -> Vec<String> {
    serde_json::from_value(browser.eval(&format!(
        "var cols = Array.from(document.querySelectorAll('#product-view thead th')).map(h => h.dataset.column); \
         var i = cols.indexOf({}); \
         return Array.from(document.querySelectorAll('#product-view tbody tr')).map(r => r.cells[i].textContent)",
        serde_json::to_string(name).unwrap()
    )))
    .unwrap()
}

fn admit(bed: &serde_json::Value, control: &str) -> Vec<u8> {
    // bed_id is site:ward:bay:label.
    let id = bed["bed_id"].as_str().unwrap();
    let parts: Vec<&str> = id.split(':').collect();
    let (site, ward, bay, label) = (parts[0], parts[1], parts[2], parts[3]);
    format!(
        "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261120080000||ADT^A01^ADT_A01|{control}|P|2.4\r\
         EVN|A01|20261120080000\r\
         PID|1||9434765919^^^NHS^NH~UI1^^^RXX^MR||BROWSER^Test||19500101|F\r\
         PV1|1|I|{ward}^{bay}^{label}^{site}^^BED|21|||||||||||||||V-{control}\r"
    )
    .into_bytes()
}

#[test]
fn bed_board_shows_an_admission_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    // A trust's bed register, loaded before the instance starts.
    load_bed_register(dir.path(), &data);
    let server = Server::start_configured(
        &data,
        1.0,
        "127.0.0.1:0",
        "127.0.0.1:0",
        "[principal.tester]\nroles = [\"bed-manager\"]\n",
    );

    let (status, body) = http_get(server.http, "/api/bed-board", Some(&server.token));
    assert_eq!(status, 200);
    let board: serde_json::Value = serde_json::from_str(&body).unwrap();
    let free = board["sites"][0]["wards"][0]["beds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["state"] == "free")
        .expect("a free bed")
        .clone();
    let bed_id = free["bed_id"].as_str().unwrap().to_string();
    let other = board["sites"][0]["wards"][0]["beds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["state"] == "free")
        .nth(1)
        .expect("a second free bed")["bed_id"]
        .as_str()
        .unwrap()
        .to_string();

    let browser = Browser::start();
    sign_in(&browser, server.http, &server.token);
    // The bed board shows patients: the browser is sent to declare a
    // purpose first, and comes back to the board.
    browser.goto(&format!("http://{}/bed-board", server.http));
    assert_eq!(
        browser.eval("return location.pathname + location.search"),
        "/purpose?next=/bed-board"
    );
    browser.eval(
        "document.querySelector('input[name=purpose][value=direct-care]').click(); \
         document.querySelector('form[action=\"/purpose\"]').submit(); return true",
    );
    wait_until(10, "the bed board after the checkpoint", || {
        browser.eval("return location.pathname") == "/bed-board"
    });
    let state_js = format!(
        "var e = document.querySelector('[data-bed=\"' + CSS.escape({}) + '\"]'); return e ? e.getAttribute('data-state') : null;",
        serde_json::to_string(&bed_id).unwrap()
    );
    assert_eq!(
        browser.eval(&state_js),
        "free",
        "the page shows the bed as free"
    );
    // Wait for the live stream to be connected.
    wait_until(10, "the live stream to connect", || {
        browser
            .eval("return document.getElementById('live').textContent")
            .as_str()
            .is_some_and(|t| t.starts_with("Live"))
    });

    let t0 = Instant::now();
    let acks = mllp_roundtrip(server.mllp, &[admit(&free, "UI-1")]);
    assert_eq!(acks, vec!["AA"]);
    let mut shown = None;
    while t0.elapsed() < Duration::from_secs(5) {
        if browser.eval(&state_js) == "occupied" {
            shown = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let shown = shown.expect("the bed never showed as occupied");
    eprintln!(
        "bed shown occupied {} ms after the A01 was sent",
        shown.as_millis()
    );
    assert!(shown < Duration::from_secs(1), "took {shown:?}");
    let text = browser.eval(&format!(
        "return document.querySelector('[data-bed=\"' + CSS.escape({}) + '\"] .who').textContent",
        serde_json::to_string(&bed_id).unwrap()
    ));
    assert!(text.as_str().unwrap().contains("BROWSER"), "{text}");

    // A bed manager closes a bed; the page shows it closed.
    let path = format!("/api/beds/{}/status", other.replace(' ', "%20"));
    let (status, resp) = http_post(
        server.http,
        &path,
        &server.token,
        r#"{"closed": true, "reason": "deep clean"}"#,
    );
    assert_eq!(status, 204, "{resp}");
    let other_js = format!(
        "var e = document.querySelector('[data-bed=\"' + CSS.escape({}) + '\"]'); return e ? e.getAttribute('data-state') : null;",
        serde_json::to_string(&other).unwrap()
    );
    wait_until(5, "the closed bed on the page", || {
        browser.eval(&other_js) == "closed"
    });
    wait_until(30, "the bed closure in raw", || {
        try_sql_count(&data, "SELECT count(*) AS n FROM raw.ui_event WHERE message_type = 'Bed' AND source = 'user:tester'") == Some(1)
    });

    if let Ok(dir) = std::env::var("FDP_SCREENSHOT_DIR") {
        std::fs::write(format!("{dir}/bed-board.png"), browser.screenshot()).unwrap();
    }

    // A table's rows under the purpose declared; changing it goes through
    // the checkpoint again.
    browser.goto(&format!(
        "http://{}/purpose?next=/tables/bed/rows",
        server.http
    ));
    browser.eval(
        "document.querySelector('input[name=purpose][value=operations]').click(); \
         document.querySelector('form[action=\"/purpose\"]').submit(); return true",
    );
    wait_until(10, "the rows page after the checkpoint", || {
        browser.eval("return location.pathname") == "/tables/bed/rows"
            && browser.eval("var e = document.querySelector('[data-purpose]'); return e ? e.getAttribute('data-purpose') : null") == "operations"
    });
    let shown = browser.eval("return document.querySelectorAll('#rows tbody tr').length");
    assert_eq!(
        shown.as_u64(),
        Some(board["counts"]["beds"].as_u64().unwrap().min(100)),
        "the first page of beds"
    );
    if let Ok(dir) = std::env::var("FDP_SCREENSHOT_DIR") {
        std::fs::write(format!("{dir}/table-rows.png"), browser.screenshot()).unwrap();
    }
    server.stop();
}

/// The population-health analyst's pages in headless Chromium: after the
/// purpose checkpoint (planning), uptake by IMD decile as a table and a bar
/// chart with no count from 1 to 7, cohort size over time as a line chart,
/// and the invitation list refused with its reason.
#[test]
fn population_health_pages_show_uptake_and_refuse_lists_under_planning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("icb");
    let reference = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/uk_reference"
    );
    fdp_ok!(
        "synth",
        "population",
        "--data-dir",
        data,
        "--people",
        "6000",
        "--reference",
        reference,
        "--cohorts",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../cohorts"),
        "--as-at",
        "2026-12-31"
    );
    fdp_ok!("reference", "load", "--data-dir", data, reference);
    let server = Server::start_configured(
        &data,
        1.0,
        "127.0.0.1:0",
        "127.0.0.1:0",
        "[principal.analyst]\nroles = [\"population-health-analyst\"]\n",
    );
    let token = fdp_ok!("token", "create", "analyst", "--data-dir", data)
        .trim()
        .to_string();
    let browser = Browser::start();
    sign_in(&browser, server.http, &token);
    let uptake =
        "/products/population-health/uptake?cohort=flu-2026-27&cut=imd_decile&as_at=2026-12-31";
    browser.goto(&format!("http://{}{uptake}", server.http));
    browser.eval(
        "document.querySelector('input[name=purpose][value=planning]').click(); \
         document.querySelector('form[action=\"/purpose\"]').submit(); return true",
    );
    wait_until(60, "uptake by decile after the checkpoint", || {
        browser
            .eval("return document.querySelectorAll('#product-view tbody tr').length")
            .as_u64()
            .is_some_and(|n| n >= 5)
    });
    let groups = column(&browser, "group");
    assert!(groups.iter().any(|g| g == "1"), "{groups:?}");
    for name in ["people", "with_outcome"] {
        for cell in column(&browser, name) {
            if let Ok(n) = cell.trim().parse::<u64>() {
                assert!(n == 0 || n >= 8, "a planning cell of {n} on the page");
            }
        }
    }
    // The chart: a bar for each decile shown.
    let bars = browser.eval("return document.querySelectorAll('svg rect.bar').length");
    assert!(
        bars.as_u64()
            .is_some_and(|n| n as usize >= groups.len() - 1),
        "{bars} bars for {} groups",
        groups.len()
    );
    if let Ok(dir) = std::env::var("FDP_SCREENSHOT_DIR") {
        std::fs::write(format!("{dir}/uptake-by-decile.png"), browser.screenshot()).unwrap();
    }
    // Cohort size over time: a line across twelve month ends.
    browser.goto(&format!(
        "http://{}/products/population-health/size-over-time?cohort=qof-diabetes-register&as_at=2026-12-31",
        server.http
    ));
    wait_until(60, "the register's size over time", || {
        browser.eval("return document.querySelectorAll('#product-view tbody tr').length")
            == serde_json::json!(12)
    });
    assert!(
        browser
            .eval("return document.querySelectorAll('svg polyline, svg path').length")
            .as_u64()
            .is_some_and(|n| n >= 1),
        "no line drawn"
    );
    // Names and addresses are for direct care: the page says so.
    browser.goto(&format!(
        "http://{}/products/population-health/invitations?cohort=diabetes-foot-check-overdue&as_at=2026-12-31",
        server.http
    ));
    wait_until(30, "the refusal", || {
        browser
            .eval("return document.body.textContent")
            .as_str()
            .is_some_and(|t| t.contains("direct care only"))
    });
    assert_eq!(
        browser.eval("return document.querySelectorAll('#product-view tbody tr').length"),
        serde_json::json!(0)
    );
    server.stop();
}

/// The vaccination lead's page of stock against bookings, from a trust's
/// extracts loaded through the shipped mappings: the site booked for a
/// product it holds none of first, with no cover, and a bar for each line;
/// the same answer as CSV.
#[test]
fn vaccine_stock_page_shows_cover_by_site_shortest_first() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("drop");
    let data = dir.path().join("trust");
    load_synthetic_extracts(&drop, &data, 7);
    let server = Server::start_configured(
        &data,
        1.0,
        "127.0.0.1:0",
        "127.0.0.1:0",
        "[principal.lead]\nroles = [\"vaccination-lead\"]\n",
    );
    let token = fdp_ok!("token", "create", "lead", "--data-dir", data)
        .trim()
        .to_string();
    let browser = Browser::start();
    sign_in(&browser, server.http, &token);
    let cover = "/products/vaccine-stock/cover?as_at=2026-03-02&days=14";
    browser.goto(&format!("http://{}{cover}", server.http));
    browser.eval(
        "var o = document.querySelector('input[name=purpose][value=operations]'); \
         if (o) { o.click(); document.querySelector('form[action=\"/purpose\"]').submit(); } return true",
    );
    wait_until(60, "stock against bookings", || {
        browser
            .eval("return document.querySelectorAll('#product-view tbody tr').length")
            .as_u64()
            .is_some_and(|n| n >= 3)
    });
    let days = column(&browser, "days_of_cover");
    assert_eq!(days[0].trim(), "0", "{days:?}");
    assert_eq!(column(&browser, "on_hand")[0].trim(), "0");
    let bars = browser.eval("return document.querySelectorAll('svg rect.bar').length");
    assert!(
        bars.as_u64().is_some_and(|n| n >= 1),
        "{bars} bars for {} lines",
        days.len()
    );
    if let Ok(dir) = std::env::var("FDP_SCREENSHOT_DIR") {
        std::fs::write(
            format!("{dir}/vaccine-stock-cover.png"),
            browser.screenshot(),
        )
        .unwrap();
    }
    let csv = http_request_with(
        server.http,
        "GET",
        "/api/products/vaccine-stock/cover?as_at=2026-03-02&days=14&format=csv",
        Some(&token),
        &[("X-Purpose", "operations")],
        None,
    );
    assert_eq!(csv.status, 200, "{}", csv.body);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(
        lines[0].starts_with("site,item_code,item_name,on_hand,booked"),
        "{}",
        csv.body
    );
    assert_eq!(lines.len() - 1, days.len(), "{}", csv.body);
    server.stop();
}

/// The supplies lead, on a synthetic year of ward supplies loaded through
/// the shipped mappings: the shortage list shows the ward about to run
/// short; on the suggestions page they accept the transfer to it from the
/// ward holding spare; the stock page then shows the stock moved, and the
/// heat map draws a cell for each ward and category.
#[test]
fn supplies_lead_accepts_a_transfer_and_sees_the_stock_move() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("drop");
    let data = dir.path().join("trust");
    let end = "2026-03-01";
    fdp_ok!("synth", "supplies", "--out", &drop, "--seed", "7", "--end", end);
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(drop.join("supplies_truth.json")).unwrap()).unwrap();
    std::fs::remove_file(drop.join("supplies_truth.json")).unwrap();
    fdp_ok!(
        "ingest",
        "csv",
        "--data-dir",
        &data,
        "--mapping",
        mappings(),
        &drop
    );
    let planted = &truth["imbalance"];
    let (item, short, spare) = (
        planted["npc"].as_str().unwrap(),
        planted["short_location"].as_str().unwrap(),
        planted["spare_location"].as_str().unwrap(),
    );
    let server = Server::start_configured(
        &data,
        1.0,
        "127.0.0.1:0",
        "127.0.0.1:0",
        "[principal.sam]\nroles = [\"supplies-lead\"]\n",
    );
    let token = fdp_ok!("token", "create", "sam", "--data-dir", data)
        .trim()
        .to_string();
    let browser = Browser::start();
    sign_in(&browser, server.http, &token);
    let page = |view: &str, query: &str| {
        browser.goto(&format!(
            "http://{}/products/supply-chain/{view}?as_at={end}{query}",
            server.http
        ));
        browser.eval(
            "var o = document.querySelector('input[name=purpose][value=operations]'); \
             if (o) { o.click(); document.querySelector('form[action=\"/purpose\"]').submit(); } return true",
        );
        wait_until(60, view, || {
            browser.eval("return document.querySelector('#product-view') !== null")
                == serde_json::json!(true)
        });
    };

    page("shortages", "");
    let locations = column(&browser, "location");
    let items = column(&browser, "item_code");
    assert!(
        locations
            .iter()
            .zip(&items)
            .any(|(l, i)| l.trim() == short && i.trim() == item),
        "{short} {item} not among {locations:?}"
    );

    page("suggestions", &format!("&item={item}"));
    let to = column(&browser, "to");
    let at = to
        .iter()
        .position(|t| t.trim() == short)
        .unwrap_or_else(|| panic!("{to:?}"));
    assert_eq!(column(&browser, "from")[at].trim(), spare);
    assert_eq!(column(&browser, "kind")[at].trim(), "transfer");
    let quantity: f64 = column(&browser, "quantity")[at].trim().parse().unwrap();
    browser.eval(&format!(
        "document.querySelectorAll('#product-view tbody tr')[{at}].querySelector('form.row-action button').click(); return true"
    ));
    wait_until(30, "the suggestion to be accepted", || {
        !column(&browser, "to").iter().any(|t| t.trim() == short)
    });

    page("stock", &format!("&item={item}"));
    let on_hand: std::collections::BTreeMap<String, f64> = column(&browser, "location")
        .into_iter()
        .map(|l| l.trim().to_string())
        .zip(
            column(&browser, "on_hand")
                .into_iter()
                .map(|v| v.trim().parse::<f64>().unwrap()),
        )
        .collect();
    assert_eq!(
        on_hand[short],
        planted["short_on_hand"].as_f64().unwrap() + quantity,
        "{on_hand:?}"
    );
    assert_eq!(
        on_hand[spare],
        planted["spare_on_hand"].as_f64().unwrap() - quantity,
        "{on_hand:?}"
    );

    page("heat-map", "");
    let cells = browser.eval("return document.querySelectorAll('svg rect[class^=heat-]').length");
    let rows = column(&browser, "location").len();
    assert_eq!(
        cells.as_u64(),
        Some(rows as u64),
        "{cells} cells for {rows} rows"
    );
    if let Ok(dir) = std::env::var("FDP_SCREENSHOT_DIR") {
        std::fs::write(
            format!("{dir}/supply-chain-heat-map.png"),
            browser.screenshot(),
        )
        .unwrap();
    }
    server.stop();
}
