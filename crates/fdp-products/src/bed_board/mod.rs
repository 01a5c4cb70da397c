//! The live bed board (care coordination): for each site and ward, every
//! bed, free, occupied or closed; who is in it and for how long; the
//! long-stay thresholds national reporting uses (7, 14 and 21 days); and
//! discharge readiness as staff record it.
//!
//! It reads the live census, not the tables, so it is as fresh as the
//! feed: a [`GovernedCensus`] shaped by the caller's policy. Staff change
//! two things through it, each a governed action: an admission's
//! discharge readiness and a bed's status (closed, reopened).
//!
//! - [`board`]: the board itself, built from the census and shaped by the
//!   policy's view.
//! - [`feed`]: the board's live updates, bed by bed, each audited with the
//!   patients it newly shows.
//! - [`actions`]: the changes staff make, checked against the census.
//! - [`admission`]: one admission's record as the policy shows it.

pub mod actions;
pub mod admission;
pub mod board;
pub mod feed;
#[cfg(test)]
mod tests;

pub use board::{bed_board, BedBoard, BedState, BedView, Counts, Occupant, SiteView, WardView};

use fdp_govern::{Governance, ProductView, Purpose, SessionRequest};
use fdp_ingest::live::Live;
use serde_json::{json, Value};

use crate::platform::{
    column,
    census_view_for, ActionSpec, Answer, MessageSpec, Offers, Change, GovernedCensus, Input, Manifest,
    ParamKind, ParamSpec, Params, Priority, Product, ProductError, Reads, Source, ViewSpec,
};

/// The live bed board, as a product.
#[derive(Default)]
pub struct LiveBoard;

/// The product's id: its name in URLs.
pub const ID: &str = "bed-board";

#[async_trait::async_trait]
impl Product for LiveBoard {
    fn manifest(&self) -> Manifest {
        let input = |name: &str, kind, required, description: &str| ParamSpec {
            name: name.into(),
            kind,
            required,
            description: description.into(),
        };
        Manifest {
            id: ID.into(),
            title: "Bed board".into(),
            version: "1.0.0".into(),
            priority: Priority::CareCoordination,
            description: "Every bed on every ward, live from the PAS feed: who is in it, for how long, and how ready they are to go home".into(),
            // The policy decides the rest: a board inside the instance
            // shows each purpose what its grant shows; over the API only
            // aggregates leave under a secondary purpose.
            publisher: None,
            purposes: vec![Purpose::DirectCare, Purpose::Operations, Purpose::Planning, Purpose::Research],
            reads: vec![
                Reads::new("bed", &["bed_id", "bed_label", "bay", "bed_type", "status", "closed_reason"]),
                Reads::new("ward", &["site", "ward_code"]),
                Reads::new("ward_stay", &["admission_id", "ward_id", "start_timestamp"]),
                Reads::optional("admission", &["admission_id", "patient_id", "patient_name", "admission_timestamp", "specialty_id"]),
                Reads::optional("patient", &["nhs_number", "nhs_number_status_indicator", "nhs_number_status_indicator_local_code", "sex", "age"]),
                Reads::optional("discharge_readiness", &["medically_optimised", "medically_optimised_date", "discharge_pathway", "waiting_for", "expected_discharge_date", "updated_by"]),
            ],
            views: vec![
                ViewSpec {
                    name: "beds".into(),
                    title: "Beds".into(),
                    description: "Every bed, one row each: its state, and its occupant as the policy shows them".into(),
                    params: vec![input("ward", ParamKind::Text, false, "Only this ward (its code)")],
                    input: Input::Census,
                    chart: None,
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: "wards".into(),
                    title: "Wards".into(),
                    description: "Each ward's beds: occupied, free, closed, long stays and patients medically optimised".into(),
                    params: Vec::new(),
                    input: Input::Census,
                    chart: Some(crate::platform::Chart::bars("ward", "occupied")),
                    as_of: None,
                    needs: vec![],
                },
            ],
            actions: vec![
                ActionSpec {
                    name: actions::READINESS.into(),
                    title: "Record discharge readiness".into(),
                    description: "Whether the patient is medically optimised, their discharge pathway, what they wait for and when they are expected to go".into(),
                    target: "admission".into(),
                    changes: vec!["discharge_readiness".into()],
                    inputs: vec![
                        input("medically_optimised", ParamKind::Boolean, true, "Medically optimised for discharge"),
                        input("medically_optimised_date", ParamKind::Date, false, "The date they became medically optimised"),
                        input("discharge_pathway", ParamKind::Integer, false, "Discharge pathway: 0, 1, 2 or 3"),
                        input("waiting_for", ParamKind::TextList, false, "What the discharge waits for"),
                        input("expected_discharge_date", ParamKind::Date, false, "The expected date of discharge"),
                    ],
                    input: Input::Census,
                    offered_on: Vec::new(),
                },
                ActionSpec {
                    name: actions::BED_STATUS.into(),
                    title: "Close or reopen a bed".into(),
                    description: "Close a bed (with the reason) or reopen it".into(),
                    target: "bed".into(),
                    changes: vec!["bed".into()],
                    inputs: vec![
                        input("closed", ParamKind::Boolean, true, "Closed (true) or open (false)"),
                        input("reason", ParamKind::Text, false, "Why it is closed"),
                    ],
                    input: Input::Census,
                    offered_on: Vec::new(),
                },
            ],
            // A patient leaves the board through a discharge referral
            // (`crate::referrals`) to a place capacity feeds say is free
            // (`crate::capacity`): the messages those take from peers.
            offers: Offers {
                questions: Vec::new(),
                messages: vec![
                    MessageSpec::new("referral", "A discharge referral with the patient's record, from a trust"),
                    MessageSpec::new("referral-status", "A care provider's acceptance or decline of a referral sent"),
                    MessageSpec::new("capacity", "A care provider's or service's free places, to its ICB"),
                    MessageSpec::new("capacity-query", "A member's request for the places its ICB has gathered"),
                ],
            },
        }
    }

    fn census_view(
        &self,
        view: &str,
        census: &GovernedCensus<'_>,
        params: &Params,
    ) -> Result<Answer, ProductError> {
        let board = board::governed_board(census);
        match view {
            "beds" => Ok(beds(&board, params.text("ward").as_deref())),
            "wards" => Ok(wards(&board)),
            other => Err(self.no_view(other)),
        }
    }

    fn act(
        &self,
        action: &str,
        target: &str,
        census: &GovernedCensus<'_>,
        inputs: &Params,
        by: &str,
    ) -> Result<Change, ProductError> {
        match action {
            actions::READINESS => actions::readiness(census, target, inputs, by),
            actions::BED_STATUS => actions::bed_status(census, target, inputs, by),
            other => Err(ProductError::UnknownAction {
                product: ID.into(),
                action: other.chars().take(64).collect(),
            }),
        }
    }
}

/// The board as `req` may see it now, audited with the patients it shows,
/// and the view it was shaped by (a live stream keeps using it); or the
/// refusal, audited. `what` names the request in the audit.
pub async fn board_for(
    governance: &Governance,
    req: &SessionRequest,
    live: &Live,
    what: &str,
) -> Result<(BedBoard, ProductView), ProductError> {
    let view = census_view_for(governance, req, &LiveBoard.manifest(), what)?;
    let board = {
        let census = live.read().await;
        board::governed_board(&GovernedCensus::new(&census, &view, chrono::Utc::now()))
    };
    view.served(board.counts.beds as u64, board.patients())?;
    Ok((board, view))
}

/// The `beds` view: a row a bed, of `ward` only if given.
fn beds(board: &BedBoard, ward: Option<&str>) -> Answer {
    let columns = vec![
        column("site", "Site", Source::column("ward", "site")),
        column("ward", "Ward", Source::column("ward", "ward_code")),
        column("bay", "Bay", Source::column("bed", "bay")),
        column("bed", "Bed", Source::column("bed", "bed_label")),
        column("state", "State", Source::column("bed", "status")),
        column("admission_id", "Admission", Source::column("admission", "admission_id")),
        column("patient_id", "Patient", Source::column("admission", "patient_id")),
        column("name", "Name", Source::column("admission", "patient_name")),
        column(
            "nhs_number_status",
            "NHS number status",
            Source::column("patient", "nhs_number_status_indicator_local_code"),
        ),
        column(
            "length_of_stay_days",
            "Days in hospital",
            Source::derived(&[("admission", "admission_timestamp")]),
        ),
        column(
            "medically_optimised",
            "Medically optimised",
            Source::column("discharge_readiness", "medically_optimised"),
        ),
        column(
            "discharge_pathway",
            "Discharge pathway",
            Source::column("discharge_readiness", "discharge_pathway"),
        ),
        column(
            "expected_discharge_date",
            "Expected discharge",
            Source::column("discharge_readiness", "expected_discharge_date"),
        ),
    ];
    let mut rows = Vec::new();
    let mut patients = Vec::new();
    for site in &board.sites {
        for w in site.wards.iter().filter(|w| ward.is_none_or(|x| x == w.ward)) {
            for b in &w.beds {
                let o = b.occupant.as_ref();
                if let Some(o) = o.filter(|o| o.patient_id != board::MASKED) {
                    patients.push(o.patient_id.clone());
                }
                let readiness = o.and_then(|o| o.readiness.as_ref());
                rows.push(vec![
                    json!(site.site),
                    json!(w.ward),
                    json!(b.bay),
                    json!(b.label),
                    json!(b.state.as_str()),
                    json!(o.map(|o| &o.admission_id)),
                    json!(o.map(|o| &o.patient_id)),
                    json!(o.map(|o| &o.name)),
                    json!(o.and_then(|o| o.nhs_number_status)),
                    json!(o.map(|o| o.length_of_stay_days)),
                    json!(readiness.map(|r| r.medically_optimised)),
                    json!(readiness.and_then(|r| r.discharge_pathway)),
                    json!(readiness.and_then(|r| r.expected_discharge_date.as_ref())),
                ]);
            }
        }
    }
    Answer {
        columns,
        rows,
        disclosure: None,
        patients,
    }
}

/// The `wards` view: a row a ward, with its counts.
fn wards(board: &BedBoard) -> Answer {
    let count = |name: &str, title: &str| column(name, title, Source::count("bed"));
    let columns = vec![
        column("site", "Site", Source::column("ward", "site")),
        column("ward", "Ward", Source::column("ward", "ward_code")),
        count("beds", "Beds"),
        count("occupied", "Occupied"),
        count("free", "Free"),
        count("closed", "Closed"),
        count("stay_7_plus", "Stays 7+ days"),
        count("stay_14_plus", "Stays 14+ days"),
        count("stay_21_plus", "Stays 21+ days"),
        count("medically_optimised", "Medically optimised"),
    ];
    let rows = board
        .sites
        .iter()
        .flat_map(|s| s.wards.iter().map(move |w| (s, w)))
        .map(|(s, w)| {
            let c = &w.counts;
            vec![
                json!(s.site),
                json!(w.ward),
                json!(c.beds),
                json!(c.occupied),
                json!(c.free),
                json!(c.closed),
                json!(c.stay_7_plus),
                json!(c.stay_14_plus),
                json!(c.stay_21_plus),
                json!(c.medically_optimised),
            ]
        })
        .collect::<Vec<Vec<Value>>>();
    Answer {
        columns,
        rows,
        disclosure: None,
        // Counts name no one.
        patients: Vec::new(),
    }
}
