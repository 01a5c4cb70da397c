//! The board itself: built from the census ([`bed_board`]) and shaped by
//! the policy's view ([`BedBoard::governed`], [`governed_board`]).

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, Utc};
use fdp_govern::{ProductView, RowFacts};
use fdp_ingest::adt::census::{BedStatus, Census, DischargeReadiness, Spell};
use serde::Serialize;

use crate::platform::GovernedCensus;

/// What a text the board must show something for reads where the policy
/// removes it.
pub const MASKED: &str = "[masked]";

/// The board from `census`, as its view lets it be seen.
pub fn governed_board(census: &GovernedCensus<'_>) -> BedBoard {
    bed_board(census.census(), census.now()).governed(census.view())
}

/// What a bed is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BedState {
    Free,
    Occupied,
    Closed,
}

impl BedState {
    pub fn as_str(self) -> &'static str {
        match self {
            BedState::Free => "free",
            BedState::Occupied => "occupied",
            BedState::Closed => "closed",
        }
    }
}

/// The patient in a bed, as the bed board shows them.
#[derive(Debug, Clone, Serialize)]
pub struct Occupant {
    pub admission_id: String,
    pub patient_id: String,
    pub name: String,
    pub nhs_number: Option<String>,
    /// How far the NHS number can be trusted: `verified`, `unverified`,
    /// `missing` or `invalid` (the model's local status code).
    pub nhs_number_status: Option<&'static str>,
    /// The status in words, for staff (never the number itself).
    pub nhs_number_status_text: Option<String>,
    /// The admission is flagged: the patient has no verified NHS number.
    pub nhs_number_flag: bool,
    pub sex: Option<String>,
    pub age: Option<u32>,
    pub admitted_at: Option<DateTime<Utc>>,
    /// Whole days since admission.
    pub length_of_stay_days: i64,
    /// The highest long-stay threshold passed: 7, 14 or 21 days.
    pub long_stay: Option<u8>,
    pub on_leave: bool,
    pub specialty: Option<String>,
    pub readiness: Option<DischargeReadiness>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BedView {
    pub bed_id: String,
    pub label: String,
    pub bay: String,
    pub bed_type: String,
    pub state: BedState,
    pub closed_reason: Option<String>,
    pub occupant: Option<Occupant>,
}

/// Counts for a ward, a site or the whole board.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub beds: usize,
    pub occupied: usize,
    pub free: usize,
    pub closed: usize,
    pub on_leave: usize,
    pub stay_7_plus: usize,
    pub stay_14_plus: usize,
    pub stay_21_plus: usize,
    pub medically_optimised: usize,
}

impl Counts {
    fn add_bed(&mut self, b: &BedView) {
        self.beds += 1;
        match b.state {
            BedState::Free => self.free += 1,
            BedState::Occupied => self.occupied += 1,
            BedState::Closed => self.closed += 1,
        }
        if let Some(o) = &b.occupant {
            self.on_leave += o.on_leave as usize;
            self.stay_7_plus += (o.length_of_stay_days >= 7) as usize;
            self.stay_14_plus += (o.length_of_stay_days >= 14) as usize;
            self.stay_21_plus += (o.length_of_stay_days >= 21) as usize;
            self.medically_optimised +=
                o.readiness.as_ref().is_some_and(|r| r.medically_optimised) as usize;
        }
    }
    fn add(&mut self, o: &Counts) {
        self.beds += o.beds;
        self.occupied += o.occupied;
        self.free += o.free;
        self.closed += o.closed;
        self.on_leave += o.on_leave;
        self.stay_7_plus += o.stay_7_plus;
        self.stay_14_plus += o.stay_14_plus;
        self.stay_21_plus += o.stay_21_plus;
        self.medically_optimised += o.medically_optimised;
    }
    /// Occupied share of open beds, in percent.
    pub fn occupancy_percent(&self) -> f64 {
        let open = self.beds - self.closed;
        if open == 0 {
            0.0
        } else {
            100.0 * self.occupied as f64 / open as f64
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WardView {
    pub ward_id: String,
    /// Ward code, as the PAS names it.
    pub ward: String,
    /// Ward name from the bed register, if known.
    pub name: String,
    pub counts: Counts,
    pub beds: Vec<BedView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteView {
    pub site: String,
    pub counts: Counts,
    pub wards: Vec<WardView>,
}

/// Admitted patients the board knows of but cannot place in a bed (the PAS
/// named no bed, or gave theirs to someone else).
#[derive(Debug, Clone, Serialize)]
pub struct Unplaced {
    pub ward_id: Option<String>,
    pub occupant: Occupant,
}

#[derive(Debug, Clone, Serialize)]
pub struct BedBoard {
    pub as_of: DateTime<Utc>,
    /// Sequence number of the last record reflected.
    pub through_seq: u64,
    pub counts: Counts,
    pub sites: Vec<SiteView>,
    pub unplaced: Vec<Unplaced>,
}

impl Occupant {
    /// The occupant as `view` lets them be seen: each detail by the model
    /// column it comes from. A text the product must show something for
    /// (the name, the patient's id) reads `[masked]` where removed.
    fn governed(self, view: &ProductView) -> Occupant {
        let text = |table: &str, column: &str, v: &str| {
            view.field(table, column, Some(v))
                .unwrap_or_else(|| MASKED.into())
        };
        let status = view.shows("patient", "nhs_number_status_indicator_local_code");
        let readiness = view.shows("discharge_readiness", "medically_optimised");
        Occupant {
            admission_id: text("admission", "admission_id", &self.admission_id),
            patient_id: text("admission", "patient_id", &self.patient_id),
            name: text("admission", "patient_name", &self.name),
            nhs_number: view.field("patient", "nhs_number", self.nhs_number.as_deref()),
            nhs_number_status: self.nhs_number_status.filter(|_| status),
            nhs_number_status_text: view.field(
                "patient",
                "nhs_number_status_indicator",
                self.nhs_number_status_text.as_deref(),
            ),
            nhs_number_flag: self.nhs_number_flag && status,
            sex: view.field("patient", "sex", self.sex.as_deref()),
            age: view.number("patient", "age", self.age),
            admitted_at: view.number("admission", "admission_timestamp", self.admitted_at),
            specialty: view.field("admission", "specialty_id", self.specialty.as_deref()),
            readiness: self.readiness.filter(|_| readiness),
            ..self
        }
    }
}

impl BedBoard {
    /// The patients the board names (by id as shown), in beds or admitted
    /// without one, for the audit; a patient whose id the policy removed
    /// names no one.
    pub fn patients(&self) -> Vec<String> {
        self.sites
            .iter()
            .flat_map(|s| &s.wards)
            .flat_map(|w| &w.beds)
            .filter_map(|b| b.occupant.as_ref())
            .chain(self.unplaced.iter().map(|u| &u.occupant))
            .filter(|o| o.patient_id != MASKED)
            .map(|o| o.patient_id.clone())
            .collect()
    }

    /// The board as `view` lets it be seen, by the rules SQL over the
    /// tables is shaped by: sites and wards the grant does not reach left
    /// out (and the totals counted again without them), each occupant's
    /// details by the model column they come from, and an occupant the row
    /// rules do not admit (an opted-out patient, for a secondary purpose)
    /// shown only as an occupied bed.
    pub fn governed(mut self, view: &ProductView) -> BedBoard {
        let mut total = Counts::default();
        for site in &mut self.sites {
            let name = site.site.clone();
            site.wards.retain(|w| {
                view.admits(&RowFacts {
                    site: Some(&name),
                    ward: Some(&w.ward),
                    ..RowFacts::default()
                })
            });
            site.counts = Counts::default();
            for ward in &mut site.wards {
                for bed in &mut ward.beds {
                    bed.occupant = bed
                        .occupant
                        .take()
                        .and_then(|o| admitted(view, &name, &ward.ward, o));
                }
                site.counts.add(&ward.counts);
            }
            total.add(&site.counts);
        }
        // A site is shown where any of its wards is: a grant kept to wards
        // names no site, and one kept to sites leaves out their wards.
        self.sites.retain(|s| !s.wards.is_empty());
        self.counts = total;
        self.unplaced = std::mem::take(&mut self.unplaced)
            .into_iter()
            .filter_map(|u| {
                // A ward id is `site:ward`; a patient on no ward passes
                // only a grant that keeps to no sites or wards.
                let (site, ward) = match u.ward_id.as_deref().and_then(|id| id.rsplit_once(':')) {
                    Some((s, w)) => (Some(s.to_string()), Some(w.to_string())),
                    None => (None, None),
                };
                let facts = RowFacts {
                    site: site.as_deref(),
                    ward: ward.as_deref(),
                    nhs_number: u.occupant.nhs_number.as_deref(),
                    ..RowFacts::default()
                };
                view.admits(&facts).then(|| Unplaced {
                    occupant: u.occupant.governed(view),
                    ..u
                })
            })
            .collect();
        self
    }
}

/// `o` as `view` shows them in a bed of `site`'s `ward`, or `None` where the
/// row rules do not admit them (the bed still shows as occupied).
fn admitted(view: &ProductView, site: &str, ward: &str, o: Occupant) -> Option<Occupant> {
    let facts = RowFacts {
        site: Some(site),
        ward: Some(ward),
        nhs_number: o.nhs_number.as_deref(),
        ..RowFacts::default()
    };
    view.admits(&facts).then(|| o.governed(view))
}

/// Build the board from the census at time `now`.
pub fn bed_board(census: &Census, now: DateTime<Utc>) -> BedBoard {
    let mut sites: Vec<SiteView> = Vec::new();
    for bed in census.beds.values() {
        let occupant = census
            .occupant(&bed.bed_id)
            .map(|s| occupant(census, s, now));
        let state = if occupant.is_some() {
            BedState::Occupied
        } else if bed.status == BedStatus::Closed {
            BedState::Closed
        } else {
            BedState::Free
        };
        let view = BedView {
            bed_id: bed.bed_id.clone(),
            label: bed.label.clone(),
            bay: bed.room.clone(),
            bed_type: bed.bed_type.clone(),
            state,
            closed_reason: bed.closed_reason.clone(),
            occupant,
        };
        let site = match sites.iter_mut().find(|s| s.site == bed.site) {
            Some(s) => s,
            None => {
                sites.push(SiteView {
                    site: bed.site.clone(),
                    counts: Counts::default(),
                    wards: Vec::new(),
                });
                sites.last_mut().expect("just pushed")
            }
        };
        let ward_id = format!("{}:{}", bed.site, bed.ward);
        let ward = match site.wards.iter_mut().find(|w| w.ward_id == ward_id) {
            Some(w) => w,
            None => {
                site.wards.push(WardView {
                    ward_id,
                    ward: bed.ward.clone(),
                    name: bed.ward_name.clone(),
                    counts: Counts::default(),
                    beds: Vec::new(),
                });
                site.wards.last_mut().expect("just pushed")
            }
        };
        ward.beds.push(view);
    }
    let mut total = Counts::default();
    for site in &mut sites {
        for ward in &mut site.wards {
            ward.beds
                .sort_by(|a, b| natural_cmp(&a.bay, &b.bay).then(natural_cmp(&a.label, &b.label)));
            for b in &ward.beds {
                ward.counts.add_bed(b);
            }
            site.counts.add(&ward.counts);
        }
        site.wards.sort_by(|a, b| natural_cmp(&a.ward, &b.ward));
        total.add(&site.counts);
    }
    sites.sort_by(|a, b| natural_cmp(&a.site, &b.site));
    let unplaced = census
        .admitted()
        .filter(|s| s.bed_id.is_none())
        .map(|s| Unplaced {
            ward_id: s.current_stay().map(|st| st.location.ward_id()),
            occupant: occupant(census, s, now),
        })
        .collect();
    BedBoard {
        as_of: now,
        through_seq: census.applied_seq,
        counts: total,
        sites,
        unplaced,
    }
}

fn occupant(census: &Census, s: &Spell, now: DateTime<Utc>) -> Occupant {
    let p = census.patients.get(&s.patient_id);
    let admitted_at = s
        .admitted_at_us
        .and_then(DateTime::<Utc>::from_timestamp_micros);
    let los = admitted_at
        .map(|a| (now - a).num_days().max(0))
        .unwrap_or(0);
    let long_stay = [21u8, 14, 7].into_iter().find(|d| los >= *d as i64);
    let name = p
        .map(|p| {
            let mut n = String::new();
            if let Some(s) = &p.surname {
                n.push_str(&s.to_uppercase());
            }
            if let Some(f) = &p.first_name {
                if !n.is_empty() {
                    n.push_str(", ");
                }
                n.push_str(f);
            }
            n
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| s.patient_id.clone());
    let age = p
        .and_then(|p| p.date_of_birth.as_deref())
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .and_then(|dob| now.date_naive().years_since(dob));
    let status = p.and_then(|p| p.nhs_number_status.as_ref());
    Occupant {
        admission_id: s.admission_id.clone(),
        patient_id: s.patient_id.clone(),
        name,
        nhs_number: p.and_then(|p| p.nhs_number.clone()),
        nhs_number_status: status.map(|s| s.local_code()),
        nhs_number_status_text: status.map(|s| s.describe()),
        nhs_number_flag: status.is_some_and(|s| s.needs_attention()),
        sex: p.and_then(|p| p.sex.clone()),
        age,
        admitted_at,
        length_of_stay_days: los,
        long_stay,
        on_leave: s.on_leave,
        specialty: s.specialty.clone(),
        readiness: census.readiness.get(&s.admission_id).cloned(),
    }
}

/// Order "Bed 2" before "Bed 10".
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let key = |s: &str| -> (String, u64, String) {
        let start = s.find(|c: char| c.is_ascii_digit());
        match start {
            Some(i) => {
                let digits: String = s[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
                let rest = &s[i + digits.len()..];
                (
                    s[..i].to_string(),
                    digits.parse().unwrap_or(u64::MAX),
                    rest.to_string(),
                )
            }
            None => (s.to_string(), 0, String::new()),
        }
    };
    key(a).cmp(&key(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec!["Bed 10", "Bed 2", "Bed 1", "Side room"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, vec!["Bed 1", "Bed 2", "Bed 10", "Side room"]);
    }
}
