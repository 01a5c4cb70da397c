//! The board's live updates: after each change to the census, the beds
//! whose cells changed and the new totals, shaped by the view the stream
//! was opened with, and audited each time a patient appears who was not
//! on the board last sent.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use fdp_govern::{GovernError, ProductView};
use fdp_ingest::adt::census::Census;
use fdp_ingest::live::Live;
use serde::Serialize;
use serde_json::{json, Value};

use super::board::{BedBoard, BedView};
use crate::platform::GovernedCensus;

/// What one bed cell shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub state: &'static str,
    pub text: String,
    /// Space-separated: `los7`, `los14`, `los21` (long stay), `leave`,
    /// `mo` (medically optimised), `nhs-missing`, `nhs-invalid`,
    /// `nhs-unverified` (no verified NHS number yet).
    pub flags: String,
}

/// The cell `b` shows.
pub fn cell(b: &BedView) -> Cell {
    match &b.occupant {
        Some(o) => {
            let mut flags = Vec::new();
            if let Some(d) = o.long_stay {
                flags.push(format!("los{d}"));
            }
            if o.on_leave {
                flags.push("leave".to_string());
            }
            if o.readiness.as_ref().is_some_and(|r| r.medically_optimised) {
                flags.push("mo".to_string());
            }
            if o.nhs_number_flag {
                flags.push(format!("nhs-{}", o.nhs_number_status.unwrap_or("missing")));
            }
            Cell {
                state: b.state.as_str(),
                text: format!("{} · {}d", o.name, o.length_of_stay_days),
                flags: flags.join(" "),
            }
        }
        None => Cell {
            state: b.state.as_str(),
            text: b.closed_reason.clone().unwrap_or_default(),
            flags: String::new(),
        },
    }
}

fn cells(board: &BedBoard) -> HashMap<String, Cell> {
    board
        .sites
        .iter()
        .flat_map(|s| &s.wards)
        .flat_map(|w| &w.beds)
        .map(|b| (b.bed_id.clone(), cell(b)))
        .collect()
}

/// A stream of the board's updates for one viewer.
pub struct BoardFeed {
    view: ProductView,
    sent: HashMap<String, Cell>,
    shown: HashSet<String>,
}

impl BoardFeed {
    /// A feed for the viewer `view` was minted for, who has been shown
    /// `first` (and audited for it).
    pub fn opened(first: &BedBoard, view: ProductView) -> BoardFeed {
        BoardFeed {
            view,
            sent: HashMap::new(),
            shown: first.patients().into_iter().collect(),
        }
    }

    /// The next update, from the live census now (see [`Self::next_from`]).
    pub async fn next(&mut self, live: &Live) -> Result<Value, GovernError> {
        let board = {
            let census = live.read().await;
            super::board::governed_board(&GovernedCensus::new(&census, &self.view, Utc::now()))
        };
        self.update(board)
    }

    /// The next update, from `census` at `now`: every cell that changed
    /// since the last (every cell, the first time), the totals and the
    /// occupancy. Patients on it who were not on the last are audited
    /// first; what cannot be audited is not sent (the error).
    pub fn next_from(&mut self, census: &Census, now: DateTime<Utc>) -> Result<Value, GovernError> {
        let board = super::board::governed_board(&GovernedCensus::new(census, &self.view, now));
        self.update(board)
    }

    fn update(&mut self, board: BedBoard) -> Result<Value, GovernError> {
        let on_board: HashSet<String> = board.patients().into_iter().collect();
        let appeared: Vec<String> = on_board.difference(&self.shown).cloned().collect();
        if !appeared.is_empty() {
            self.view.served(appeared.len() as u64, appeared)?;
        }
        self.shown = on_board;
        let now = cells(&board);
        let changed: HashMap<&String, &Cell> = now
            .iter()
            .filter(|(k, v)| self.sent.get(*k) != Some(*v))
            .collect();
        let update = json!({
            "seq": board.through_seq,
            "counts": board.counts,
            "occupancy": format!("{:.1}", board.counts.occupancy_percent()),
            "beds": changed,
        });
        self.sent = now;
        Ok(update)
    }
}
