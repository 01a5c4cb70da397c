//! Mutual aid over HTTP. A trust publishes the free time on its locked
//! lists to the ICB; another trust's waiting-list manager sees the slots
//! across the area with the patients each suits, and sends a booking
//! request with the patient's choice; the providing trust accepts or
//! declines. What fits is the product's (`fdp_products::mutual_aid`, over
//! the `theatre-sessions` and `waiting-list` views, run in the caller's
//! own governed session); carrying the request is the federation's.
//!
//! [`MutualAid`] is the work itself, over one instance's parts, so that
//! `fdp demo` takes the same steps the API does; the handlers below adapt
//! it to HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path as FsPath;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Duration, NaiveDate, Utc};
use fdp_federation::capacity::{Offer, OwnCapacity, Published};
use fdp_federation::mutual_aid::{
    BookingRequest, BookingRequests, MutualAidError, NewBookingRequest, RecordIntake,
};
use fdp_federation::Federation;
use fdp_govern::{GovernError, Governance, ProductView, SessionRequest};
use fdp_products::mutual_aid::{self, objects, SlotFit, LOCK_DAYS};
use fdp_products::platform::{run_view, ProductError, Registry};
use fdp_products::theatre_sessions::FREE_TIME;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::auth::principal;
use crate::checkpoint::purpose_of;
use crate::referrals::Decision;
use crate::AppState;

/// Why a step was not taken, with the HTTP status that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Problem {
        Problem {
            status,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<MutualAidError> for Problem {
    fn from(e: MutualAidError) -> Problem {
        let status = match &e {
            MutualAidError::NotFound(_) => StatusCode::NOT_FOUND,
            MutualAidError::AlreadyDecided(_) | MutualAidError::NotTheProvider(_) => {
                StatusCode::CONFLICT
            }
            MutualAidError::Send(fdp_federation::SendError::UnknownPeer(_)) => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem::new(status, e.to_string())
    }
}

impl From<ProductError> for Problem {
    fn from(e: ProductError) -> Problem {
        Problem::new(crate::products::status_of(&e), e.to_string())
    }
}

impl From<GovernError> for Problem {
    fn from(e: GovernError) -> Problem {
        let status = match e {
            GovernError::Refused(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem::new(status, e.to_string())
    }
}

/// What a waiting-list manager asks for (`POST /api/mutual-aid/requests`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskedBooking {
    /// The trust offering the slot (ODS code).
    pub to: String,
    /// Its theatre session.
    pub session_id: String,
    /// The entry on this trust's list.
    pub eal_id: String,
    /// What the patient said when offered it, e.g. "agreed to travel".
    pub patient_choice: String,
    /// Why the record may be shared.
    pub lawful_basis: String,
}

/// One instance's parts that mutual aid works with.
pub struct MutualAid<'a> {
    pub governance: &'a Governance,
    pub tables: &'a fdp_store::StoredTables,
    pub registry: Registry,
    pub federation: Option<&'a Arc<Federation>>,
    pub requests: &'a BookingRequests,
    /// Where records are stored (the instance's FHIR source).
    pub intake: &'a dyn RecordIntake,
    pub data_dir: &'a FsPath,
}

impl<'a> MutualAid<'a> {
    /// The parts the HTTP handlers work with.
    pub fn of(state: &'a AppState) -> MutualAid<'a> {
        MutualAid {
            governance: &state.governance,
            tables: &state.tables,
            registry: state.products.registry(),
            federation: state.federation.as_ref(),
            requests: &state.booking_requests,
            intake: state.fhir.as_ref(),
            data_dir: &state.instance.data_dir,
        }
    }

    fn federation(&self) -> Result<&'a Arc<Federation>, Problem> {
        self.federation.ok_or_else(|| {
            Problem::new(
                StatusCode::CONFLICT,
                "this instance is not in a federation: configure [federation] and its peers",
            )
        })
    }

    /// Whether `req` may change `tables` (the decision audited as a
    /// change).
    fn may_change(&self, req: &SessionRequest, tables: &[&str], what: &str) -> Result<(), Problem> {
        self.governance
            .change_view(req, tables, what)?
            .changed(vec![])
            .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    }

    fn view(
        &self,
        req: &SessionRequest,
        tables: &[&str],
        what: &str,
    ) -> Result<ProductView, Problem> {
        Ok(self.governance.product_view(req, tables, what)?)
    }

    /// Rows of `product`'s `view` with `given`, in `req`'s own governed
    /// session (so audited, and refused as the caller would be).
    async fn view_rows(
        &self,
        req: &SessionRequest,
        (product, view): (&str, &str),
        given: &[(&str, String)],
    ) -> Result<Vec<Map<String, Value>>, Problem> {
        let given: BTreeMap<String, String> = given
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let session = self.governance.session(self.tables, req.clone()).await?;
        let out = run_view(&self.registry, product, view, &session, &given).await?;
        Ok(objects(&out.columns, &out.rows))
    }

    /// The booking requests sent and received as `req` may see them: one
    /// by one (each names a patient), the patient and their name shaped as
    /// the policy shapes a list entry's, audited as served (`what`).
    fn shown_requests(
        &self,
        req: &SessionRequest,
        what: &str,
    ) -> Result<Vec<BookingRequest>, Problem> {
        let fed = self.federation()?;
        let view = self
            .view(req, &["patient", "eal_entry"], what)?
            .one_by_one("the booking requests")?;
        let shown: Vec<BookingRequest> = self
            .requests
            .current(fed)?
            .into_iter()
            .map(|mut r| {
                r.patient_name = view.field("eal_entry", "patient_name", r.patient_name.as_deref());
                r.patient = view
                    .field("eal_entry", "patient_id", Some(&r.patient))
                    .unwrap_or_default();
                r.transfer = Value::Null;
                r
            })
            .collect();
        let patients = shown.iter().map(|r| r.patient.clone()).collect();
        view.served(shown.len() as u64, patients)?;
        Ok(shown)
    }

    /// This trust's theatre-slot offers: the free time inside the lock from
    /// `today`, less requests it accepted onto a session whose booking its
    /// theatre system has not yet sent (a booking names the pathway once it
    /// has).
    pub async fn theatre_slots(
        &self,
        req: &SessionRequest,
        today: NaiveDate,
    ) -> Result<Vec<Offer>, Problem> {
        let mut rows = self
            .view_rows(
                req,
                ("theatre-sessions", FREE_TIME),
                &[
                    ("from", today.to_string()),
                    ("to", (today + Duration::days(LOCK_DAYS)).to_string()),
                ],
            )
            .await?;
        let accepted = match self.federation {
            Some(fed) => self.requests.accepted_onto_sessions(&fed.identity.ods)?,
            None => BTreeMap::new(),
        };
        if !accepted.is_empty() {
            let booked = self.booked_pathways(req).await?;
            mutual_aid::less_accepted(&mut rows, &accepted, &booked);
        }
        Ok(mutual_aid::offers(&rows, Utc::now()))
    }

    /// (session, pathway) of every booking not cancelled, as `req` sees
    /// them.
    async fn booked_pathways(
        &self,
        req: &SessionRequest,
    ) -> Result<BTreeSet<(String, String)>, Problem> {
        let session = self.governance.session(self.tables, req.clone()).await?;
        let result = session
            .query(
                "SELECT DISTINCT theatre_session_id, rtt_pathway_id FROM theatre_booking \
                 WHERE NOT coalesce(booking_cancelled, false) AND rtt_pathway_id IS NOT NULL",
            )
            .await?;
        let rows = result
            .rows_json()
            .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(rows
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some((
                    r["theatre_session_id"].as_str()?.to_string(),
                    r["rtt_pathway_id"].as_str()?.to_string(),
                ))
            })
            .collect())
    }

    /// Derive this trust's theatre-slot offers (see [`Self::theatre_slots`])
    /// as `req`, who must be able to change capacity, replace its
    /// theatre-slot offers with them (other offers kept) and publish them to
    /// the ICB: the offers, and how many ICBs they were queued to.
    pub async fn publish_theatre_slots(
        &self,
        req: &SessionRequest,
        today: NaiveDate,
    ) -> Result<(Vec<Offer>, usize), Problem> {
        self.may_change(
            req,
            &[fdp_federation::capacity::TABLE],
            "publish theatre slots",
        )?;
        let slots = self.theatre_slots(req, today).await?;
        let own = OwnCapacity::open(self.data_dir);
        let mut offers: Vec<Offer> = own
            .offers()
            .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e))?
            .into_iter()
            .filter(|o| o.kind != "theatre-slot")
            .collect();
        offers.extend(slots.clone());
        let icbs = own
            .set(self.federation.map(|f| &**f), offers)
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e))?;
        Ok((slots, icbs))
    }

    /// Every slot in `feed` (the ICB's gathered capacity) other trusts
    /// offer from today, each with the entries on this trust's PTL it
    /// suits, as `req` sees them.
    pub async fn fits(
        &self,
        req: &SessionRequest,
        feed: &[Published],
    ) -> Result<Vec<SlotFit>, Problem> {
        Ok(self.fits_and_ptl(req, feed).await?.0)
    }

    /// [`Self::fits`], with the PTL they were fitted from.
    async fn fits_and_ptl(
        &self,
        req: &SessionRequest,
        feed: &[Published],
    ) -> Result<(Vec<SlotFit>, Vec<Map<String, Value>>), Problem> {
        let fed = self.federation()?;
        // The feed names no patient, but is capacity, read under a purpose
        // like any table.
        self.view(
            req,
            &[fdp_federation::capacity::TABLE],
            "the capacity feed, for mutual aid",
        )?
        .served(0, vec![])
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let ptl = self.view_rows(req, ("waiting-list", "ptl"), &[]).await?;
        let fits = mutual_aid::fits(feed, &fed.identity.ods, Utc::now().date_naive(), &ptl);
        Ok((fits, ptl))
    }

    /// Send a booking request for an entry on this trust's list into a
    /// slot in `feed`, as `by`: the slot and the entry are checked against
    /// each other as `req` sees them, then the pathway's record goes
    /// through the outbox.
    pub async fn send(
        &self,
        req: &SessionRequest,
        by: &str,
        asked: AskedBooking,
        feed: &[Published],
    ) -> Result<BookingRequest, Problem> {
        for (field, value) in [
            ("patient_choice", &asked.patient_choice),
            ("lawful_basis", &asked.lawful_basis),
        ] {
            if value.trim().is_empty() {
                return Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{field}: say it; a booking request is sent only with the patient's choice and the lawful basis"),
                ));
            }
        }
        self.may_change(
            req,
            &["booking_request"],
            "send a mutual-aid booking request",
        )?;
        let fed = self.federation()?;
        let (fits, ptl) = self.fits_and_ptl(req, feed).await?;
        let fit = fits
            .iter()
            .find(|f| f.publisher == asked.to && f.slot.session_id == asked.session_id)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    format!(
                        "{} offers no slot on session {} (GET /api/mutual-aid/slots lists what is offered)",
                        asked.to, asked.session_id
                    ),
                )
            })?;
        let row = ptl
            .iter()
            .find(|r| r.get("eal_id").and_then(Value::as_str) == Some(asked.eal_id.as_str()))
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    format!("no entry {} on the list is shown to you", asked.eal_id),
                )
            })?;
        if let Some(why) = mutual_aid::unfit(&fit.slot, fit.specialty.as_deref(), row) {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!("entry {} does not fit the slot: {why}", asked.eal_id),
            ));
        }
        let pathway = mutual_aid::transferred(
            row,
            &fed.identity.ods,
            &asked.to,
            &asked.session_id,
        )
        .ok_or_else(|| {
            Problem::new(
                StatusCode::FORBIDDEN,
                format!(
                    "entry {}'s patient, pathway or clock start is not shown under this grant, so its record cannot be sent",
                    asked.eal_id
                ),
            )
        })?;
        let new = NewBookingRequest {
            to: asked.to,
            location: fit.location.clone(),
            specialty: fit.specialty.clone(),
            slot: fit.slot.clone(),
            eal_id: asked.eal_id,
            pathway,
            patient_name: row
                .get("patient_name")
                .and_then(Value::as_str)
                .map(str::to_string),
            rtt_weeks_waiting: row.get("rtt_weeks_waiting").and_then(Value::as_i64),
            patient_choice: asked.patient_choice,
            lawful_basis: asked.lawful_basis,
        };
        Ok(self.requests.send(fed, self.governance.audit(), by, new)?)
    }

    /// The providing trust's decision on request `id`, as `by`, taking
    /// effect today; then its slots are published again where `req` may
    /// (whether they were is the second value).
    pub async fn decide(
        &self,
        req: &SessionRequest,
        by: &str,
        id: &str,
        accept: bool,
        reason: Option<String>,
    ) -> Result<(BookingRequest, bool), Problem> {
        let fed = self.federation()?;
        self.may_change(
            req,
            &["booking_request", "eal_entry"],
            &format!("decide mutual-aid booking request {id}"),
        )?;
        let today = Utc::now().date_naive();
        let decided = self
            .requests
            .decide(
                fed,
                self.governance.audit(),
                self.intake,
                by,
                id,
                accept,
                reason,
                today,
            )
            .await?;
        // The slot's time is now taken: offer what is left. A caller whose
        // grant does not reach capacity leaves that to the next publication.
        let republished = match self.publish_theatre_slots(req, today).await {
            Ok(_) => true,
            Err(p) if p.status == StatusCode::FORBIDDEN => false,
            Err(p) => {
                tracing::warn!(problem = %p, "the theatre slots could not be published again");
                false
            }
        };
        Ok((decided, republished))
    }
}

/// The caller's session request, or the refusal.
#[allow(clippy::result_large_err)] // returned at once as the response
fn asked_by(
    state: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
) -> Result<SessionRequest, Response> {
    purpose_of(state, ext, headers, "http")
}

/// The ICB's gathered feed (fetched at most every 30 s).
async fn feed(state: &AppState) -> Result<Vec<Published>, Problem> {
    let fed = MutualAid::of(state).federation()?.clone();
    state
        .capacity
        .get(&fed)
        .await
        .map_err(|e| Problem::new(StatusCode::BAD_GATEWAY, e))
}

/// `POST /api/capacity/theatre-slots`: derive this trust's theatre-slot
/// offers from its sessions inside the two-week lock (free time less a
/// changeover, computed from the bookings) and publish them to the ICB.
/// Reads the theatre tables and changes `care_capacity` under the
/// caller's purpose.
pub async fn publish_theatre_slots(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let req = match asked_by(&state, &ext, &headers) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let today = Utc::now().date_naive();
    match MutualAid::of(&state)
        .publish_theatre_slots(&req, today)
        .await
    {
        Ok((slots, icbs)) => Json(json!({
            "from": today,
            "to": today + Duration::days(LOCK_DAYS),
            "slots": slots,
            "published_to": icbs,
        }))
        .into_response(),
        Err(p) => p.into_response(),
    }
}

/// `GET /api/mutual-aid/slots`: every theatre slot other trusts offer,
/// each with the patients on this trust's list it suits, greatest need
/// first.
pub async fn slots(State(state): State<AppState>, ext: Extensions, headers: HeaderMap) -> Response {
    let req = match asked_by(&state, &ext, &headers) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let fits = match feed(&state).await {
        Ok(feed) => MutualAid::of(&state).fits(&req, &feed).await,
        Err(p) => Err(p),
    };
    match fits {
        Ok(f) => Json(f).into_response(),
        Err(p) => p.into_response(),
    }
}

/// `POST /api/mutual-aid/requests`: send a booking request (see
/// [`MutualAid::send`]).
pub async fn request(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: Result<Json<AskedBooking>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(asked) = match body {
        Ok(b) => b,
        Err(e) => return Problem::new(StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    };
    let req = match asked_by(&state, &ext, &headers) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let sent = match feed(&state).await {
        Ok(feed) => {
            MutualAid::of(&state)
                .send(&req, &principal(&ext).name, asked, &feed)
                .await
        }
        Err(p) => Err(p),
    };
    match sent {
        Ok(r) => (StatusCode::ACCEPTED, Json(r)).into_response(),
        Err(p) => p.into_response(),
    }
}

/// `GET /api/mutual-aid/requests`: booking requests sent and received,
/// with where each has got to. Each names a patient, so it is read one by
/// one under direct care, the name shown as the policy shows a patient's.
pub async fn list(State(state): State<AppState>, ext: Extensions, headers: HeaderMap) -> Response {
    let req = match asked_by(&state, &ext, &headers) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let listed = MutualAid::of(&state).shown_requests(&req, "GET /api/mutual-aid/requests");
    match listed {
        Ok(shown) => Json(shown).into_response(),
        Err(p) => p.into_response(),
    }
}

/// `POST /api/mutual-aid/requests/{id}/decision`: the providing trust
/// accepts (the patient joins its list, the clock carried over, RTT status
/// 21) or declines; the asking trust is told through the outbox, and the
/// slots offered are published again.
pub async fn decide(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Decision>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return Problem::new(StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    };
    let req = match asked_by(&state, &ext, &headers) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match MutualAid::of(&state)
        .decide(&req, &principal(&ext).name, &id, body.accept, body.reason)
        .await
    {
        Ok((decided, republished)) => {
            let mut answer = serde_json::to_value(&decided).unwrap_or_default();
            answer["transfer"] = Value::Null;
            answer["slots_republished"] = json!(republished);
            Json(answer).into_response()
        }
        Err(p) => p.into_response(),
    }
}

/// `GET /mutual-aid`: for the waiting-list manager, the slots other trusts
/// offer with the patients on this list each suits, each with a form to
/// send a booking request; for the theatre scheduler, the requests
/// received to accept or decline, and a button to publish this trust's
/// own free time. Under the purpose declared at the checkpoint; a part the
/// grant does not reach says why instead.
pub async fn page(State(state): State<AppState>, ext: Extensions, headers: HeaderMap) -> Response {
    use maud::html;
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/mutual-aid");
    };
    let aid = MutualAid::of(&state);
    let Ok(fed) = aid.federation() else {
        return crate::governed::refused(
            &state,
            StatusCode::CONFLICT,
            "this instance is not in a federation",
        );
    };
    let me = fed.identity.ods.clone();
    let fits = match feed(&state).await {
        Ok(feed) => aid.fits(&req, &feed).await,
        Err(p) => Err(p),
    };
    let requests = aid.shown_requests(&req, "GET /mutual-aid");
    let name = |n: &Option<String>| n.clone().unwrap_or_else(|| "[not shown]".into());
    crate::ui::layout(
        "Mutual aid",
        Some(&me),
        html! {
            h1 { "Mutual aid" }
            p.muted { "Theatre time other trusts in the ICB will not use on their locked lists (the next two weeks), with the patients on this trust's list each slot suits: same specialty, the case's expected time within the slot, P1a to P4, not booked sooner; the most urgent, then the longest wait, first." }
            form method="post" action="/mutual-aid/publish" {
                button type="submit" { "Publish this trust's free theatre time to the ICB" }
            }
            h2 { "Slots offered" }
            @match &fits {
                Err(p) => { p.muted { "Not shown: " (p.message) } }
                Ok(fits) if fits.is_empty() => { p.muted { "No other trust offers a slot today." } }
                Ok(fits) => {
                    @for f in fits {
                        section.slot data-publisher=(f.publisher) data-session=(f.slot.session_id) {
                            h3 { (f.publisher) ": " (f.location) ", " (f.slot.date) " " (f.slot.am_pm.clone().unwrap_or_default())
                                 " — " (f.specialty.clone().unwrap_or_default()) ", " (f.slot.usable_minutes) " min usable" }
                            @if f.candidates.is_empty() { p.muted { "No patient on this list fits it." } }
                            @else {
                                table {
                                    thead { tr { th { "Patient" } th { "Priority" } th { "Weeks waited" } th { "Expected (min)" } th { "Patient's choice, then send" } } }
                                    tbody { @for c in f.candidates.iter().take(10) {
                                        tr data-eal=(c.eal_id) {
                                            td { (name(&c.patient_name)) }
                                            td { (c.priority_type.clone().unwrap_or_default()) }
                                            td { (c.rtt_weeks_waiting.map(|w| w.to_string()).unwrap_or_default()) }
                                            td { (c.expected_theatre_minutes.map(|m| m.to_string()).unwrap_or_default()) }
                                            td {
                                                form method="post" action="/mutual-aid/requests" {
                                                    input type="hidden" name="to" value=(f.publisher);
                                                    input type="hidden" name="session_id" value=(f.slot.session_id);
                                                    input type="hidden" name="eal_id" value=(c.eal_id);
                                                    input type="hidden" name="lawful_basis" value="UK GDPR 6(1)(e) and 9(2)(h): direct care";
                                                    input name="patient_choice" required placeholder="what the patient said" aria-label="The patient's choice";
                                                    " "
                                                    button type="submit" { "Send booking request" }
                                                }
                                            }
                                        }
                                    } }
                                }
                            }
                        }
                    }
                }
            }
            @match &requests {
                Err(p) => { h2 { "Booking requests" } p.muted { "Not shown: " (p.message) } }
                Ok(all) => {
                    @let received: Vec<&BookingRequest> = all.iter().filter(|r| r.to == me).collect();
                    @let sent: Vec<&BookingRequest> = all.iter().filter(|r| r.from == me).collect();
                    h2 { "Received (" (received.len()) ")" }
                    @if received.is_empty() { p.muted { "None." } }
                    @for r in received.iter().rev() {
                        section.request data-id=(r.id) data-status=(r.status.as_str()) {
                            h3 { (name(&r.patient_name)) " from " (r.from) ": session " (r.slot.session_id) " on " (r.slot.date) }
                            p { "Priority " (r.priority_type.clone().unwrap_or_default()) ", "
                                (r.rtt_weeks_waiting.map(|w| w.to_string()).unwrap_or_default()) " weeks waited, expected "
                                (r.expected_theatre_minutes.map(|m| m.to_string()).unwrap_or_default()) " min. The patient: "
                                em { (r.patient_choice) } ". Status: " strong { (r.status.as_str()) }
                                @if let Some(e) = &r.entry_at_provider { " (entry " (e) ")" } }
                            @if r.status == fdp_federation::mutual_aid::Status::Delivered {
                                form method="post" action=(format!("/mutual-aid/requests/{}/decision", r.id)) {
                                    label for=(format!("why-{}", r.id)) { "Reason or note (sent to the trust)" }
                                    input id=(format!("why-{}", r.id)) name="reason" size="50";
                                    button type="submit" name="decision" value="accept" { "Accept" }
                                    " "
                                    button type="submit" name="decision" value="decline" { "Decline" }
                                }
                            }
                        }
                    }
                    h2 { "Sent (" (sent.len()) ")" }
                    table #sent {
                        thead { tr { th { "To" } th { "Session" } th { "Patient" } th { "Status" } th { "Why / what next" } th { "Sent (UTC)" } } }
                        tbody { @for r in sent.iter().rev() {
                            tr data-status=(r.status.as_str()) {
                                td { (r.to) } td { (r.slot.session_id) " on " (r.slot.date) } td { (name(&r.patient_name)) }
                                td { (r.status.as_str()) } td { (r.reason.clone().unwrap_or_default()) }
                                td { (r.sent_at.format("%Y-%m-%d %H:%M")) }
                            }
                        } }
                    }
                }
            }
        },
    )
    .into_response()
}

/// The form's fields by name.
pub(crate) fn field(body: &str, name: &str) -> Option<String> {
    crate::ui::form_pairs(body)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.trim().to_string())
}

/// Back to the page, or the refusal as a page.
fn back(state: &AppState, done: Result<(), Problem>) -> Response {
    match done {
        Ok(()) => axum::response::Redirect::to("/mutual-aid").into_response(),
        Err(p) => crate::governed::refused(state, p.status, &p.message),
    }
}

/// `POST /mutual-aid/requests`: the page's booking request.
pub async fn request_form(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: String,
) -> Response {
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/mutual-aid");
    };
    let get = |k: &str| field(&body, k).unwrap_or_default();
    let asked = AskedBooking {
        to: get("to"),
        session_id: get("session_id"),
        eal_id: get("eal_id"),
        patient_choice: get("patient_choice"),
        lawful_basis: get("lawful_basis"),
    };
    let sent = match feed(&state).await {
        Ok(feed) => MutualAid::of(&state)
            .send(&req, &p.name, asked, &feed)
            .await
            .map(|_| ()),
        Err(p) => Err(p),
    };
    back(&state, sent)
}

/// `POST /mutual-aid/requests/{id}/decision`: the page's accept or decline.
pub async fn decision_form(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/mutual-aid");
    };
    let accept = match field(&body, "decision").as_deref() {
        Some("accept") => true,
        Some("decline") => false,
        _ => {
            return crate::governed::refused(
                &state,
                StatusCode::BAD_REQUEST,
                "choose Accept or Decline",
            )
        }
    };
    let reason = field(&body, "reason").filter(|r| !r.is_empty());
    let decided = MutualAid::of(&state)
        .decide(&req, &p.name, &id, accept, reason)
        .await
        .map(|_| ());
    back(&state, decided)
}

/// `POST /mutual-aid/publish`: the page's publication of this trust's free
/// theatre time.
pub async fn publish_form(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/mutual-aid");
    };
    let published = MutualAid::of(&state)
        .publish_theatre_slots(&req, Utc::now().date_naive())
        .await
        .map(|_| ());
    back(&state, published)
}
