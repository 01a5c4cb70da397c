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
use fdp_ingest::adt::census::SpellStatus;
use fdp_products::care::{BedBoard, Counts};
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use crate::api::{self, cell};
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
    let census = state.live.read().await;
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
                " census warnings: " (census.warning_count) "." }
            @if !census.recent_warnings.is_empty() {
                details {
                    summary { "Recent census warnings (what the feed said that did not fit)" }
                    table {
                        thead { tr { th { "Seq" } th { "Event" } th { "Warning" } } }
                        tbody { @for w in census.recent_warnings.iter().rev().take(50) {
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
                                select id=(format!("act-{}", ward.ward_id)) name="action" {
                                    option value="close" { "Close" }
                                    option value="open" { "Reopen" }
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

/// A change from a page needs a declared purpose whose grant covers the
/// table it changes; the decision is audited.
fn may_change(
    state: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    table: &str,
    what: &str,
) -> Result<(), Response> {
    let p = principal(ext);
    let Some(req) = crate::checkpoint::declared(state, headers, &p, "ui") else {
        return Err(crate::ui::to_checkpoint("/bed-board"));
    };
    api::change_allowed(state, &req, table, what, true)
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

/// One admission: who, where they have been, and discharge readiness.
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
    let view = match api::product_view(
        &state,
        &req,
        &["admission", "ward_stay"],
        &format!("GET /bed-board/admission/{id}"),
        true,
    ) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let census = state.live.read().await;
    let Some(spell) = census.spells.get(&id) else {
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
            .into_response();
    };
    let patient = census.patients.get(&spell.patient_id);
    // The same row rules as the tables': the sites and wards granted, and
    // the national data opt-out for a secondary purpose.
    let location = spell.current_stay().map(|st| &st.location);
    let facts = fdp_govern::RowFacts {
        site: location.map(|l| l.site.as_str()),
        ward: location.map(|l| l.ward.as_str()),
        nhs_number: patient.and_then(|p| p.nhs_number.as_deref()),
        ..Default::default()
    };
    if !view.admits(&facts) {
        let e = view.refuse("this admission is outside the sites, wards or patients the grant shows under this purpose");
        return crate::governed::refused(&state, StatusCode::FORBIDDEN, &e.to_string());
    }
    if let Err(e) = view.served(1, vec![spell.patient_id.clone()]) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    // Each value as the policy shows its model column: as it is, masked,
    // pseudonymised or generalised; `[masked]` where it is removed.
    let shown = |table: &str, column: &str, value: Option<String>| {
        if value.is_none() {
            return String::new();
        }
        view.field(table, column, value.as_deref())
            .unwrap_or_else(|| "[masked]".to_string())
    };
    let r = census.readiness.get(&id).cloned().unwrap_or_default();
    let history = census
        .readiness_history
        .get(&id)
        .cloned()
        .unwrap_or_default();
    let name = shown(
        "admission",
        "patient_name",
        patient.map(|p| {
            format!(
                "{} {}",
                p.first_name.clone().unwrap_or_default(),
                p.surname.clone().unwrap_or_default()
            )
        }),
    );
    layout(
        "Admission",
        Some(&state.instance.ods),
        html! {
            p { a href="/bed-board" { "← Bed board" } }
            h1 { (name.trim()) " — admission " (id) }
            table {
                tbody {
                    tr { th { "NHS number" } td { (shown("patient", "nhs_number", patient.and_then(|p| p.nhs_number.clone()))) } }
                    @let nhs_status = patient.and_then(|p| p.nhs_number_status.as_ref());
                    tr { th { "NHS number status" } td {
                        @if !view.shows("patient", "nhs_number_status_indicator") { "[masked]" }
                        @else if let Some(st) = nhs_status {
                            span class=(if st.needs_attention() { "flag nhs-flag" } else { "" }) data-nhs-status=(st.local_code()) {
                                (st.describe())
                                @if st.needs_attention() { " — no verified NHS number: check identity before sharing or matching records" }
                            }
                            // The value received is as identifying as a
                            // valid number: shown only where numbers are.
                            @if let fdp_ingest::adt::event::NhsNumberStatus::Invalid { value, .. } = st {
                                @if view.shows("patient", "nhs_number") { " (received: " (value) ")" }
                            }
                        }
                        @else { "not recorded" }
                    } }
                    tr { th { "Hospital number" } td { (shown("patient", "mrn", patient.and_then(|p| p.mrn.clone()))) } }
                    tr { th { "Date of birth" } td { (shown("patient", "date_of_birth", patient.and_then(|p| p.date_of_birth.clone()))) } }
                    @if view.shows("admission", "admission_status") {
                        tr { th { "Status" } td { (spell.status.as_str()) @if spell.on_leave { " (on leave)" } } }
                    }
                    @if view.shows("admission", "admission_timestamp") {
                        tr { th { "Admitted" } td { (fmt_time_us(spell.admitted_at_us)) } }
                    }
                    @if spell.status == SpellStatus::Discharged && view.shows("admission", "discharge_timestamp") {
                        tr { th { "Discharged" } td { (fmt_time_us(spell.discharged_at_us)) } }
                    }
                    @if view.reads("bed") { tr { th { "Bed" } td { (spell.bed_id.clone().unwrap_or_else(|| "none".into())) } } }
                }
            }
            h2 { "Stays" }
            @let (wards, beds, times) = (view.shows("ward_stay", "ward_id"), view.reads("bed"), view.shows("ward_stay", "start_timestamp"));
            table {
                thead { tr { th { "Ward" } th { "Bay" } th { "Bed" } th { "From" } th { "To" } } }
                tbody { @for s in &spell.stays {
                    tr {
                        td { @if wards { (s.location.ward) } }
                        td { @if beds { (s.location.room) } } td { @if beds { (s.location.bed) } }
                        td { @if times { (fmt_time_us(Some(s.start_us))) } } td { @if times { (fmt_time_us(s.end_us)) } }
                    }
                } }
            }
            @if let Some(fed) = state.federation.as_ref().filter(|_| view.reads("referral")) {
                (referral_section(&state, fed, &id))
            }
            h2 { "Discharge readiness" }
            @if !view.reads("discharge_readiness") {
                p.muted #readiness-not-granted { "Discharge readiness is not granted under " (view.purpose()) "." }
            } @else {
                @if let Some(by) = view.field("discharge_readiness", "updated_by", Some(&r.updated_by)).filter(|b| !b.is_empty()) {
                    p.muted { "Last recorded by " (by) " at " (fmt_time_us(Some(r.updated_at_us))) " UTC." }
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
                @if !history.is_empty() {
                    h2 { "Readiness recorded" }
                    table {
                        thead { tr { th { "When (UTC)" } th { "By" } th { "Medically optimised" } th { "Pathway" } th { "Waiting for" } th { "Expected discharge" } } }
                        tbody { @for h in history.iter().rev() {
                            tr {
                                td { (fmt_time_us(Some(h.updated_at_us))) }
                                td { (view.field("discharge_readiness", "updated_by", Some(&h.updated_by)).unwrap_or_default()) }
                                td { @if h.medically_optimised { "yes" (h.medically_optimised_date.as_deref().map(|d| format!(", {d}")).unwrap_or_default()) } @else { "no" } }
                                td { (h.discharge_pathway.map(|p| p.to_string()).unwrap_or_default()) }
                                td { (h.waiting_for.join(", ")) }
                                td { (h.expected_discharge_date.clone().unwrap_or_default()) }
                            }
                        } }
                    }
                }
            }
        },
    )
    .into_response()
}

/// Form fields as the browser sends them (repeated `waiting_for`).
pub async fn readiness_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ext: Extensions,
    headers: HeaderMap,
    body: String,
) -> Response {
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint(&format!("/bed-board/admission/{id}"));
    };
    let view = match api::change_view(
        &state,
        &req,
        &["discharge_readiness"],
        &format!("POST /bed-board/admission/{id}/readiness"),
        true,
    ) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut input = api::ReadinessInput {
        medically_optimised: false,
        medically_optimised_date: None,
        discharge_pathway: None,
        waiting_for: Vec::new(),
        expected_discharge_date: None,
    };
    for (k, v) in form_pairs(&body) {
        match k.as_str() {
            "medically_optimised" => input.medically_optimised = v == "yes",
            "medically_optimised_date" if !v.is_empty() => input.medically_optimised_date = Some(v),
            "expected_discharge_date" if !v.is_empty() => input.expected_discharge_date = Some(v),
            "discharge_pathway" if !v.is_empty() => input.discharge_pathway = v.parse().ok(),
            "waiting_for" => input.waiting_for.push(v),
            _ => {}
        }
    }
    let by = principal(&ext).name;
    match api::apply_readiness(&state, &view, &id, input, &by).await {
        Ok(_) => Redirect::to(&format!("/bed-board/admission/{id}")).into_response(),
        Err((code, msg)) => not_saved(&state, code, &msg, &format!("/bed-board/admission/{id}")),
    }
}

/// The page for a change that was refused: what was wrong, and the way back.
fn not_saved(state: &AppState, code: StatusCode, msg: &str, back: &str) -> Response {
    let page = layout(
        "Not saved",
        Some(&state.instance.ods),
        html! {
            h1 { "Not saved" } p.error role="alert" { (msg) }
            p { a href=(back) { "Back" } }
        },
    );
    (code, page).into_response()
}

#[derive(Deserialize)]
pub struct BedStatusForm {
    bed_id: String,
    action: String,
    reason: Option<String>,
}

pub async fn bed_status_form(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Form(f): Form<BedStatusForm>,
) -> Response {
    if let Err(r) = may_change(&state, &ext, &headers, "bed", "POST /bed-board/bed-status") {
        return r;
    }
    let by = principal(&ext).name;
    let input = api::BedStatusInput {
        closed: f.action == "close",
        reason: f.reason,
    };
    match api::apply_bed_status(&state, &f.bed_id, input, &by).await {
        Ok(()) => Redirect::to("/bed-board").into_response(),
        Err((code, msg)) => not_saved(&state, code, &msg, "/bed-board"),
    }
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
