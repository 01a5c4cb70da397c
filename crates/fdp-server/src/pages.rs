//! Server-rendered pages.

// The checks return the error response itself, which a handler returns at
// once; boxing it would only add an allocation on the error path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use fdp_products::bed_board::admission::{admission_for, NhsNumberShown, ReadinessShown};
use fdp_products::bed_board::feed::cell;
use fdp_products::bed_board::{self, BedBoard, Counts};
use fdp_products::platform::ProductError;
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use crate::api;
use crate::auth::principal;
use crate::svg::{stacked_bars, StackedBar};
use crate::ui::{form_pairs, layout};
use crate::AppState;

fn fmt_time_us(us: Option<i64>) -> String {
    us.and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_micros)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn summary(c: &Counts) -> Markup {
    html! {
        ul.summary aria-label="Totals" {
            li { b data-count="beds" { (c.beds) } "beds" }
            li { b data-count="occupied" { (c.occupied) } "occupied" }
            li { b data-count="free" { (c.free) } "free" }
            li { b data-count="closed" { (c.closed) } "closed" }
            li { b data-count="occupancy" { (format!("{:.1}", c.occupancy_percent())) "%" } "occupancy of open beds" }
            li { b data-count="stay_7_plus" { (c.stay_7_plus) } "stays 7+ days" }
            li { b data-count="stay_14_plus" { (c.stay_14_plus) } "stays 14+ days" }
            li { b data-count="stay_21_plus" { (c.stay_21_plus) } "stays 21+ days" }
            li { b data-count="medically_optimised" { (c.medically_optimised) } "medically optimised" }
        }
    }
}

/// The instance's home page: sources, tables, freshness.
pub async fn home(State(state): State<AppState>) -> Html<String> {
    let m = &state.mllp;
    let data_dir = &state.instance.data_dir;
    let rows = crate::sources::table_rows(data_dir).await;
    let census = state.live.status().await;
    layout(
        "Instance",
        Some(&state.instance.ods),
        html! {
            h1 { "Instance " (state.instance.ods) }
            p.muted { "Data directory " code { (data_dir.display()) } ". Running since " (state.instance.started_at.format("%Y-%m-%d %H:%M UTC")) "." }
            h2 { "Sources" }
            table {
                thead { tr { th { "Source" } th { "Address" } th.num { "Connections" } th.num { "Messages" } th.num { "Acknowledged (AA)" } th.num { "Rejected (AE/AR)" } th.num { "Re-sent duplicates" } } }
                tbody { tr {
                    td { "HL7 v2 ADT over MLLP" }
                    td { (state.instance.mllp_addr.map(|a| a.to_string()).unwrap_or_else(|| "not listening".into())) }
                    td.num { (m.connections.load(Ordering::Relaxed)) }
                    td.num { (m.frames.load(Ordering::Relaxed)) }
                    td.num { (m.acked.load(Ordering::Relaxed)) }
                    td.num { a href="/quarantine" { (m.nacked.load(Ordering::Relaxed)) } }
                    td.num { (m.duplicates.load(Ordering::Relaxed)) }
                } }
            }
            p { "ADT events applied: "
                @for (t, n) in &census.events { span { (t) " " (n) "; " } }
                " census warnings: " (census.warnings) "." }
            @if !census.recent_warnings.is_empty() {
                details {
                    summary { "Recent census warnings (what the feed said that did not fit)" }
                    table {
                        thead { tr { th { "Seq" } th { "Event" } th { "Warning" } } }
                        tbody { @for w in &census.recent_warnings {
                            tr { td.num { (w.seq) } td { (w.trigger) } td { (w.message) } }
                        } }
                    }
                }
            }
            h2 { "Tables" }
            p.muted { "Canonical tables follow the NHS FDP Canonical Data Model; raw tables keep every record as received. Query them with " code { "fdp sql" } "." }
            table {
                thead { tr { th { "Table" } th.num { "Version" } th { "Last written (UTC)" } } }
                tbody { @for r in &rows { tr {
                    td { code { (r.qualified) } }
                    td.num { (r.version_text()) }
                    td { (r.last_ms.map(|ms| fmt_time_us(Some(ms * 1000))).unwrap_or_default()) }
                } } }
            }
        },
    )
}

fn ward_chart(board: &BedBoard) -> Markup {
    let labels: Vec<String> = board
        .sites
        .iter()
        .flat_map(|s| {
            s.wards
                .iter()
                .map(move |w| format!("{} {}", s.site, w.ward))
        })
        .collect();
    let bars: Vec<StackedBar> = board
        .sites
        .iter()
        .flat_map(|s| &s.wards)
        .zip(&labels)
        .map(|(w, label)| StackedBar {
            label,
            parts: vec![
                (w.counts.occupied, "occupied", "occupied"),
                (w.counts.free, "free", "free"),
                (w.counts.closed, "closed", "closed"),
            ],
        })
        .collect();
    html! {
        p.legend aria-hidden="true" {
            span { i style="background:#003087" {} "occupied" }
            span { i style="background:#2e7d32" {} "free" }
            span { i style="background:#9e9e9e" {} "closed" }
        }
        (stacked_bars("Beds by ward: occupied, free and closed", &bars))
    }
}

const LIVE_SCRIPT: &str = r#"
(function () {
  var status = document.getElementById('live');
  var es = new EventSource('/bed-board/events');
  es.addEventListener('beds', function (e) {
    var d = JSON.parse(e.data);
    Object.keys(d.beds).forEach(function (id) {
      var c = d.beds[id];
      var el = document.querySelector('[data-bed="' + CSS.escape(id) + '"]');
      if (!el) { return; }
      el.className = 'bed ' + c.state;
      el.setAttribute('data-state', c.state);
      el.querySelector('.state').textContent = c.state;
      el.querySelector('.who').textContent = c.text;
      el.querySelector('.flags').textContent = c.flags;
    });
    Object.keys(d.counts).forEach(function (k) {
      var el = document.querySelector('[data-count="' + k + '"]');
      if (el) { el.textContent = d.counts[k]; }
    });
    var occ = document.querySelector('[data-count="occupancy"]');
    if (occ) { occ.textContent = d.occupancy + '%'; }
    document.body.setAttribute('data-seq', d.seq);
    status.textContent = 'Live: updated ' + new Date().toLocaleTimeString() + ' (record ' + d.seq + ')';
  });
  es.onerror = function () { status.textContent = 'Live updates interrupted; retrying…'; };
})();
"#;

/// The live bed board, as the declared purpose lets this person see it.
pub async fn bed_board(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/bed-board");
    };
    let (board, view) = match api::board_for(&state, &req, "GET /bed-board", true).await {
        Ok(shown) => shown,
        Err(r) => return r,
    };
    let options = crate::capacity::discharge_options(&state, &board, &view).await;
    // Where each admission's latest discharge referral has got to.
    let mut referrals = state
        .federation
        .as_ref()
        .and_then(|fed| state.referrals.current(fed).ok())
        .unwrap_or_default();
    referrals.sort_by_key(|r| r.sent_at);
    let referred: std::collections::HashMap<String, String> = referrals
        .into_iter()
        .filter_map(|r| Some((r.admission?, format!("{} ({})", r.status.as_str(), r.to))))
        .collect();
    layout(
        "Bed board",
        Some(&state.instance.ods),
        html! {
            h1 { "Bed board" }
            p #live .live role="status" aria-live="polite" { "As of " (board.as_of.format("%H:%M:%S UTC")) " (record " (board.through_seq) ")" }
            (summary(&board.counts))
            @if board.sites.is_empty() {
                p { "No beds yet. Beds appear as the PAS feed names them, or load a bed register." }
            } @else {
                (ward_chart(&board))
            }
            @for site in &board.sites {
                h2 { "Site " (site.site) " — " (site.counts.occupied) " of " (site.counts.beds) " beds occupied" }
                @for ward in &site.wards {
                    section aria-labelledby=(format!("w-{}", ward.ward_id)) {
                        h3 id=(format!("w-{}", ward.ward_id)) {
                            (ward.ward) @if !ward.name.is_empty() { " — " (ward.name) } " "
                            span.muted { "(" (ward.counts.occupied) " occupied, " (ward.counts.free) " free, " (ward.counts.closed) " closed; " (ward.counts.stay_21_plus) " stays 21+ days)" }
                        }
                        ul.beds {
                            @for b in &ward.beds {
                                @let c = cell(b);
                                li class=(format!("bed {}", c.state)) data-bed=(b.bed_id) data-state=(c.state) {
                                    span.label { (if b.bay.is_empty() { String::new() } else { format!("{} · ", b.bay) }) (b.label) }
                                    " " span.state.muted { (c.state) }
                                    br;
                                    @if let Some(o) = &b.occupant {
                                        a.who href=(format!("/bed-board/admission/{}", o.admission_id)) { (c.text) }
                                    } @else {
                                        span.who { (c.text) }
                                    }
                                    " " span.flags { (c.flags) }
                                    @if let Some(st) = b.occupant.as_ref().and_then(|o| referred.get(&o.admission_id)) {
                                        br; span.referral data-referral=(st) { "referral " (st) }
                                    }
                                }
                            }
                        }
                        details {
                            summary { "Close or reopen a bed on " (ward.ward) }
                            form method="post" action="/bed-board/bed-status" {
                                label for=(format!("bed-{}", ward.ward_id)) { "Bed" }
                                select id=(format!("bed-{}", ward.ward_id)) name="bed_id" {
                                    @for b in &ward.beds { option value=(b.bed_id) { (b.bay) " " (b.label) " (" (b.state.as_str()) ")" } }
                                }
                                label for=(format!("act-{}", ward.ward_id)) { "Action" }
                                select id=(format!("act-{}", ward.ward_id)) name="closed" {
                                    option value="yes" { "Close" }
                                    option value="no" { "Reopen" }
                                }
                                label for=(format!("why-{}", ward.ward_id)) { "Reason (for closing)" }
                                input id=(format!("why-{}", ward.ward_id)) name="reason" type="text";
                                button type="submit" { "Save" }
                            }
                        }
                    }
                }
            }
            @if !board.unplaced.is_empty() {
                h2 { "Admitted without a bed (" (board.unplaced.len()) ")" }
                table {
                    thead { tr { th { "Patient" } th { "Ward" } th.num { "Days" } } }
                    tbody { @for u in &board.unplaced {
                        tr { td { a href=(format!("/bed-board/admission/{}", u.occupant.admission_id)) { (u.occupant.name) } }
                             td { (u.ward_id.clone().unwrap_or_default()) } td.num { (u.occupant.length_of_stay_days) } }
                    } }
                }
            }
            p.hint { "Flags: los7/los14/los21 long stay; leave = on leave of absence; mo = medically optimised for discharge." }
            (options)
            script { (PreEscaped(LIVE_SCRIPT)) }
        },
    )
    .into_response()
}

/// The admission's discharge referrals and the form to send one.
fn referral_section(state: &AppState, fed: &fdp_federation::Federation, id: &str) -> Markup {
    let mine: Vec<fdp_federation::referrals::Referral> = state
        .referrals
        .current(fed)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.admission.as_deref() == Some(id))
        .collect();
    let providers: Vec<&fdp_federation::Peer> = fed
        .peers()
        .iter()
        .filter(|p| p.role == fdp_federation::OrgRole::CareProvider)
        .collect();
    html! {
        h2 { "Discharge referral" }
        @if !mine.is_empty() {
            table #referrals {
                thead { tr { th { "To" } th { "Status" } th { "Why / what next" } th { "Sent (UTC)" } } }
                tbody { @for r in &mine {
                    @let status = r.status.as_str();
                    tr data-status=(status) {
                        td { (r.to) } td { (status) } td { (r.reason.clone().unwrap_or_default()) }
                        td { (r.sent_at.format("%Y-%m-%d %H:%M")) }
                    }
                } }
            }
        }
        @if providers.is_empty() {
            p.muted { "No care provider is configured as a peer of this instance." }
        } @else {
            form method="post" action=(format!("/bed-board/admission/{id}/referral")) {
                label for="ref-to" { "Refer to" }
                select #ref-to name="to" { @for p in &providers { option value=(p.ods) { (p.ods) } } }
                label for="ref-basis" { "Lawful basis" }
                input #ref-basis name="lawful_basis" size="60" value="UK GDPR 6(1)(e) and 9(2)(h): direct care" required;
                label for="ref-needs" { "Care needs (one a line)" }
                textarea #ref-needs name="care_needs" rows="3" cols="60" {}
                label for="ref-summary" { "Discharge summary" }
                textarea #ref-summary name="summary" rows="4" cols="60" required {}
                br;
                button type="submit" { "Send referral" }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ReferralForm {
    to: String,
    lawful_basis: String,
    #[serde(default)]
    care_needs: String,
    summary: String,
}

/// `POST /bed-board/admission/{id}/referral`: refer from the admission's
/// page, under the purpose declared at the checkpoint.
pub async fn referral_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ext: Extensions,
    headers: HeaderMap,
    Form(f): Form<ReferralForm>,
) -> Response {
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint(&format!("/bed-board/admission/{id}"));
    };
    let body = crate::referrals::ReferralRequest {
        admission_id: id.clone(),
        to: f.to,
        lawful_basis: f.lawful_basis,
        care_needs: f
            .care_needs
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        summary: f.summary,
    };
    match crate::referrals::make_referral(&state, req, &p.name, body).await {
        Ok(_) => Redirect::to(&format!("/bed-board/admission/{id}")).into_response(),
        Err(r) => r,
    }
}

/// Waiting-for reasons offered on the readiness form.
const WAITING_FOR: &[&str] = &[
    "package of care",
    "care home placement",
    "community hospital bed",
    "therapy assessment",
    "medication to take home",
    "equipment or adaptations",
    "transport",
    "family or carer decision",
    "social care assessment",
];

/// One admission: who, where they have been, and discharge readiness, as
/// the bed board's admission record shows them under the declared purpose.
pub async fn admission(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint(&format!("/bed-board/admission/{id}"));
    };
    let what = format!("GET /bed-board/admission/{id}");
    let (a, view) = match admission_for(&state.governance, &req, &state.live, &id, &what).await {
        Ok(shown) => shown,
        Err(ProductError::NotFound(_)) => {
            return (
                StatusCode::NOT_FOUND,
                layout(
                    "Not found",
                    Some(&state.instance.ods),
                    html! {
                        h1 { "No admission " (id) }
                        p { a href="/bed-board" { "Back to the bed board" } }
                    },
                ),
            )
                .into_response()
        }
        Err(e) => return crate::products::failed(&state, &e, true),
    };
    layout(
        "Admission",
        Some(&state.instance.ods),
        html! {
            p { a href="/bed-board" { "← Bed board" } }
            h1 { (a.name) " — admission " (id) }
            table {
                tbody {
                    tr { th { "NHS number" } td { (a.nhs_number) } }
                    tr { th { "NHS number status" } td {
                        @match &a.nhs_number_status {
                            NhsNumberShown::Masked => { "[masked]" }
                            NhsNumberShown::NotRecorded => { "not recorded" }
                            NhsNumberShown::Recorded { code, text, needs_attention, received } => {
                                span class=(if *needs_attention { "flag nhs-flag" } else { "" }) data-nhs-status=(code) {
                                    (text)
                                    @if *needs_attention { " — no verified NHS number: check identity before sharing or matching records" }
                                }
                                @if let Some(value) = received { " (received: " (value) ")" }
                            }
                        }
                    } }
                    tr { th { "Hospital number" } td { (a.mrn) } }
                    tr { th { "Date of birth" } td { (a.date_of_birth) } }
                    @if let Some((status, on_leave)) = &a.status {
                        tr { th { "Status" } td { (status) @if *on_leave { " (on leave)" } } }
                    }
                    @if let Some(at) = a.admitted_at_us {
                        tr { th { "Admitted" } td { (fmt_time_us(at)) } }
                    }
                    @if let Some(at) = a.discharged_at_us {
                        tr { th { "Discharged" } td { (fmt_time_us(at)) } }
                    }
                    @if let Some(bed) = &a.bed { tr { th { "Bed" } td { (bed) } } }
                }
            }
            h2 { "Stays" }
            table {
                thead { tr { th { "Ward" } th { "Bay" } th { "Bed" } th { "From" } th { "To" } } }
                tbody { @for s in &a.stays {
                    tr {
                        td { (s.ward.clone().unwrap_or_default()) }
                        td { (s.bay.clone().unwrap_or_default()) } td { (s.bed.clone().unwrap_or_default()) }
                        td { (s.from_us.map(|t| fmt_time_us(Some(t))).unwrap_or_default()) }
                        td { (s.to_us.map(fmt_time_us).unwrap_or_default()) }
                    }
                } }
            }
            @if let Some(fed) = state.federation.as_ref().filter(|_| a.referrals) {
                (referral_section(&state, fed, &id))
            }
            h2 { "Discharge readiness" }
            @match &a.readiness {
                None => { p.muted #readiness-not-granted { "Discharge readiness is not granted under " (view.purpose()) "." } }
                Some(readiness) => { (readiness_form_markup(&id, readiness)) }
            }
        },
    )
    .into_response()
}

/// The readiness form, filled with what is recorded, and its history.
fn readiness_form_markup(id: &str, shown: &ReadinessShown) -> Markup {
    let r = &shown.current;
    html! {
        @if !r.updated_by.is_empty() {
            p.muted { "Last recorded by " (r.updated_by) " at " (fmt_time_us(Some(r.updated_at_us))) " UTC." }
        }
        form method="post" action=(format!("/bed-board/admission/{id}/readiness")) {
            fieldset {
                legend { "Medically optimised for discharge" }
                label { input type="checkbox" name="medically_optimised" value="yes" checked[r.medically_optimised]; " Yes, medically optimised" }
                label for="mo-date" { "Date medically optimised" }
                input #mo-date type="date" name="medically_optimised_date" value=(r.medically_optimised_date.clone().unwrap_or_default());
            }
            label for="pathway" { "Discharge pathway" }
            select #pathway name="discharge_pathway" {
                option value="" selected[r.discharge_pathway.is_none()] { "Not decided" }
                @for (p, text) in [(0u8, "0 — home, no new support"), (1, "1 — home with support"), (2, "2 — rehabilitation or short-term care in a bedded setting"), (3, "3 — long-term care home placement")] {
                    option value=(p) selected[r.discharge_pathway == Some(p)] { (text) }
                }
            }
            fieldset {
                legend { "Waiting for" }
                @for w in WAITING_FOR {
                    label { input type="checkbox" name="waiting_for" value=(w) checked[r.waiting_for.iter().any(|x| x == w)]; " " (w) }
                }
            }
            label for="edd" { "Expected discharge date" }
            input #edd type="date" name="expected_discharge_date" value=(r.expected_discharge_date.clone().unwrap_or_default());
            br;
            button type="submit" { "Save readiness" }
        }
        @if !shown.history.is_empty() {
            h2 { "Readiness recorded" }
            table {
                thead { tr { th { "When (UTC)" } th { "By" } th { "Medically optimised" } th { "Pathway" } th { "Waiting for" } th { "Expected discharge" } } }
                tbody { @for h in shown.history.iter().rev() {
                    tr {
                        td { (fmt_time_us(Some(h.updated_at_us))) }
                        td { (h.updated_by) }
                        td { @if h.medically_optimised { "yes" (h.medically_optimised_date.as_deref().map(|d| format!(", {d}")).unwrap_or_default()) } @else { "no" } }
                        td { (h.discharge_pathway.map(|p| p.to_string()).unwrap_or_default()) }
                        td { (h.waiting_for.join(", ")) }
                        td { (h.expected_discharge_date.clone().unwrap_or_default()) }
                    }
                } }
            }
        }
    }
}

/// `POST /bed-board/admission/{id}/readiness`: the readiness form.
pub async fn readiness_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ext: Extensions,
    headers: HeaderMap,
    body: String,
) -> Response {
    let back = format!("/bed-board/admission/{id}");
    let path = format!("{back}/readiness");
    let action = bed_board::actions::READINESS;
    crate::products::act_from_form(
        &state,
        &ext,
        &headers,
        &path,
        (bed_board::ID, action, &id),
        &body,
        &back,
    )
    .await
}

/// `POST /bed-board/bed-status`: close or reopen the bed the form names.
pub async fn bed_status_form(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: String,
) -> Response {
    let bed = form_pairs(&body)
        .into_iter()
        .find(|(k, _)| k == "bed_id")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let action = bed_board::actions::BED_STATUS;
    let path = "/bed-board/bed-status";
    crate::products::act_from_form(
        &state,
        &ext,
        &headers,
        path,
        (bed_board::ID, action, &bed),
        &body,
        "/bed-board",
    )
    .await
}

/// Every rejected record, why, and its raw bytes.
pub async fn quarantine(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    const SHOWN: usize = 500;
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/quarantine");
    };
    let view = match api::may_see_quarantine(&state, &req, "GET /quarantine", true) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let records = api::quarantined(&state).await;
    let shown = records.as_ref().map(|r| r.len().min(SHOWN)).unwrap_or(0);
    if let Err(e) = view.served(shown as u64, vec![]) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    let kind = q.get("kind").cloned().unwrap_or_default();
    let data_dir = state.instance.data_dir.display().to_string();
    layout(
        "Quarantine",
        Some(&state.instance.ods),
        html! {
            h1 { "Quarantine" }
            p.muted { "Records every source sent that were kept and not used, newest first: where each came from, where in it the problem is, the rule it broke, and its content as received. HL7 v2 messages were answered with a negative acknowledgement naming the problem; FHIR resources with an OperationOutcome; extract lines are listed in the load's summary." }
            @match records {
                Err(e) => p.error { "Could not read the raw tables: " (e) },
                Ok(all) => {
                    @let count = |k: &str| all.iter().filter(|e| e.kind == k).count();
                    nav.kinds {
                        a href="/quarantine" { "All (" (all.len()) ")" } " · "
                        a href="/quarantine?kind=hl7v2" { "HL7 v2 (" (count("hl7v2")) ")" } " · "
                        a href="/quarantine?kind=fhir" { "FHIR (" (count("fhir")) ")" } " · "
                        a href="/quarantine?kind=csv" { "Extracts (" (count("csv")) ")" }
                    }
                    @let shown: Vec<_> = all.iter().filter(|e| kind.is_empty() || e.kind == kind).collect();
                    @if shown.is_empty() {
                        p { "Nothing in quarantine." }
                    } @else {
                        @if shown.len() > SHOWN {
                            p.muted { "The newest " (SHOWN) " of " (shown.len()) " are shown; `fdp quarantine list` lists them all." }
                        }
                        p.muted {
                            "Once the cause is fixed (a corrected mapping, a rule change), put FHIR resources and extract lines through again with "
                            code { "fdp quarantine retry --data-dir " (data_dir) " --mapping MAPPINGS ID…" }
                            " while the instance is stopped; HL7 v2 messages are re-sent by the system that sent them."
                        }
                        @for r in shown.iter().take(SHOWN) {
                            section.q id=(r.id) {
                                h2 { (r.what) }
                                table { tbody {
                                    tr { th { "Id" } td { code { (r.id) } } }
                                    tr { th { "Received" } td { (r.received_at) } }
                                    tr { th { "From" } td { (r.source) } }
                                    tr { th { "Where" } td { (r.position) } }
                                    tr { th { "Problem" } td.error { (r.reason) } }
                                } }
                                details { summary { "Content as received" } pre.raw { (r.raw) } }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::form_pairs;

    #[test]
    fn repeated_form_keys_are_kept() {
        let p = form_pairs("a=1&waiting_for=care+home&waiting_for=transport%2Fambulance&x");
        assert_eq!(p[1], ("waiting_for".into(), "care home".into()));
        assert_eq!(p[2], ("waiting_for".into(), "transport/ambulance".into()));
        assert_eq!(p[3], ("x".into(), String::new()));
        // A stray percent sign stays as it is.
        assert_eq!(form_pairs("k=100%")[0].1, "100%");
    }
}
