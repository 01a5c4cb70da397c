//! A patient administration system (PAS) simulator emitting HL7 v2.4 ADT.
//!
//! [`PasSimulator`] keeps its own model of the hospital (who is in which
//! bed, who is on leave, which records are duplicates awaiting a merge) and
//! turns a stream of wall-clock instants into the ADT messages a PAS would
//! send. [`PasSimulator::expected_occupancy`] exposes that model as the
//! oracle an ingest pipeline's bed board must match after processing every
//! valid message emitted so far.
//!
//! Message conventions (UK NHS v2.4 ADT) are documented on
//! [`PasSimulator::next`].

mod census;
mod events;
mod feed;
mod flow;
mod malformed;
mod render;
mod state;

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::SynthError;
use crate::people::{Catchment, MrnAllocator, NhsNumberAllocator, NhsNumberRange};
use crate::rng::{rng_for, stream, SynthRng};
use crate::trust::Trust;
use state::{EncState, Encounter, Layout, Patient};

pub use feed::Feed;

/// Relative frequencies of ADT events in [`PasSimulator::next`].
///
/// Events that fill beds (admit, outpatient to inpatient, cancel discharge)
/// and those that empty them (discharge, inpatient to outpatient, cancel
/// admit) are further scaled up or down to hold occupancy near
/// [`PasConfig::target_occupancy`]. An event that is impossible at the time
/// (no one on leave to return, say) is skipped in favour of another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMix {
    /// A01 admit (about a quarter elective, some of those after an A05).
    pub admit: f64,
    /// A05 pre-admit for a planned admission.
    pub pre_admit: f64,
    /// A02 transfer.
    pub transfer: f64,
    /// A03 discharge.
    pub discharge: f64,
    /// A08 update patient information.
    pub update: f64,
    /// A04 register an emergency or outpatient attendance.
    pub register: f64,
    /// A06 change an attendance into an admission.
    pub outpatient_to_inpatient: f64,
    /// A07 change an inpatient into an outpatient.
    pub inpatient_to_outpatient: f64,
    /// A11 cancel a recent admission.
    pub cancel_admit: f64,
    /// A12 cancel a recent transfer.
    pub cancel_transfer: f64,
    /// A13 cancel a recent discharge.
    pub cancel_discharge: f64,
    /// A17 swap two inpatients' beds.
    pub swap_beds: f64,
    /// A21 leave of absence starts.
    pub leave_start: f64,
    /// A22 return from leave of absence.
    pub leave_return: f64,
    /// A40 merge a duplicate hospital number into the surviving record.
    pub merge: f64,
}

impl Default for EventMix {
    fn default() -> Self {
        EventMix {
            admit: 13.0,
            pre_admit: 3.0,
            transfer: 9.0,
            discharge: 13.0,
            update: 20.0,
            register: 25.0,
            outpatient_to_inpatient: 3.0,
            inpatient_to_outpatient: 0.4,
            cancel_admit: 0.6,
            cancel_transfer: 0.6,
            cancel_discharge: 0.5,
            swap_beds: 0.8,
            leave_start: 0.8,
            leave_return: 0.8,
            merge: 0.5,
        }
    }
}

/// Simulator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasConfig {
    /// MSH-3.
    pub sending_application: String,
    /// MSH-4; empty means the trust's ODS code.
    pub sending_facility: String,
    /// MSH-5.
    pub receiving_application: String,
    /// MSH-6; empty means the trust's ODS code.
    pub receiving_facility: String,
    /// Share of [`PasSimulator::next`] messages that are anomalous: one of
    /// five kinds of malformed message, or a message type the platform does
    /// not process (ORU^R01), in equal parts.
    pub malformed_share: f64,
    /// Share of open beds to keep occupied.
    pub target_occupancy: f64,
    /// Relative event frequencies.
    pub mix: EventMix,
    /// Which NHS numbers new patients get.
    pub nhs_number_range: NhsNumberRange,
    /// How many past patients to remember for readmissions. Beyond this,
    /// new patients replace forgotten ones so memory stays bounded on long
    /// runs.
    pub max_known_patients: usize,
}

impl Default for PasConfig {
    fn default() -> Self {
        PasConfig {
            sending_application: "PAS".to_string(),
            sending_facility: String::new(),
            receiving_application: "OPENFDP".to_string(),
            receiving_facility: String::new(),
            malformed_share: 0.005,
            target_occupancy: 0.90,
            mix: EventMix::default(),
            nhs_number_range: NhsNumberRange::default(),
            max_known_patients: 100_000,
        }
    }
}

impl PasConfig {
    /// The default configuration with both facilities set to the trust's
    /// ODS code (what [`PasSimulator::new`] does with empty facilities).
    pub fn for_trust(trust: &Trust) -> Self {
        PasConfig {
            sending_facility: trust.ods_code.clone(),
            receiving_facility: trust.ods_code.clone(),
            ..PasConfig::default()
        }
    }

    fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: &str| Err(SynthError::InvalidPasConfig(m.to_string()));
        if !(0.0..=1.0).contains(&self.malformed_share) {
            return bad("malformed_share must be between 0 and 1");
        }
        if !(self.target_occupancy > 0.0 && self.target_occupancy < 1.0) {
            return bad("target_occupancy must be strictly between 0 and 1");
        }
        let m = &self.mix;
        let weights = [
            m.admit,
            m.pre_admit,
            m.transfer,
            m.discharge,
            m.update,
            m.register,
            m.outpatient_to_inpatient,
            m.inpatient_to_outpatient,
            m.cancel_admit,
            m.cancel_transfer,
            m.cancel_discharge,
            m.swap_beds,
            m.leave_start,
            m.leave_return,
            m.merge,
        ];
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return bad("event mix weights must be finite and not negative");
        }
        if m.register <= 0.0 {
            // Registration is the fallback when nothing else is possible.
            return bad("mix.register must be positive");
        }
        if self.max_known_patients < 100 {
            return bad("max_known_patients must be at least 100");
        }
        for (name, v) in [
            ("sending_application", &self.sending_application),
            ("sending_facility", &self.sending_facility),
            ("receiving_application", &self.receiving_application),
            ("receiving_facility", &self.receiving_facility),
        ] {
            if v.contains(['|', '^', '~', '\\', '&', '\r', '\n']) {
                return Err(SynthError::InvalidPasConfig(format!(
                    "{name} must not contain HL7 delimiters"
                )));
            }
        }
        Ok(())
    }
}

/// Why a message is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MalformedReason {
    /// An A08 whose PID-3 NHS number fails the modulus 11 check. The one
    /// anomaly a receiver must not refuse: the patient is known by the
    /// hospital number, so the message is accepted and flagged, and the
    /// valid NHS number already on record is kept.
    InvalidNhsNumber,
    /// An A03 whose MSH stops after MSH-9, so it has no control id.
    MissingControlId,
    /// An A02 whose PID segment id is `P1D`.
    BadSegmentId,
    /// An A08 with a field (PID-11) longer than 70,000 bytes.
    OversizedField,
    /// An A08 with bytes that are not UTF-8 in PID-5.
    InvalidUtf8,
}

/// How a receiver should treat a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Well formed and meant to be processed; reflected in
    /// [`PasSimulator::expected_occupancy`].
    Valid,
    /// Must be rejected (except [`MalformedReason::InvalidNhsNumber`], which
    /// is accepted and flagged); never changes the simulator's state, so a
    /// receiver that applies what it says will diverge from the oracle.
    Malformed(MalformedReason),
    /// Well formed but of a type the platform does not process (ORU^R01);
    /// it must be kept, not rejected, and changes no state.
    Unprocessed,
}

/// One message as it would arrive over MLLP (without the framing bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdtMessage {
    /// Message text; not always UTF-8 (see [`MalformedReason::InvalidUtf8`]).
    pub bytes: Vec<u8>,
    /// MSH-10. For [`MalformedReason::MissingControlId`] this is the id the
    /// message would have carried; it does not appear in `bytes`.
    pub control_id: String,
    /// Trigger event, e.g. `A02` (`R01` for the unprocessed ORU).
    pub event: String,
    /// Valid, malformed or unprocessed.
    pub kind: MessageKind,
    /// Wall-clock time the message was produced (MSH-7).
    pub at: DateTime<Utc>,
}

impl AdtMessage {
    /// The message as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }

    /// Whether the message is [`MessageKind::Valid`].
    pub fn is_valid(&self) -> bool {
        self.kind == MessageKind::Valid
    }
}

/// Who is in a bed, as the bed board should show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OccupantSummary {
    /// NHS number (PID-3, `NH` identifier).
    pub nhs_number: String,
    /// Hospital number the spell is recorded under (PID-3, `MR`
    /// identifier); after an A40 merge, the surviving number.
    pub mrn: String,
    /// Hospital spell number (PV1-19).
    pub spell_id: String,
    /// Admission time (PV1-44).
    pub admitted_at: DateTime<Utc>,
    /// On leave of absence (A21 without a later A22); the bed stays theirs.
    pub on_leave: bool,
}

/// A deterministic PAS for one trust.
///
/// The same trust, seed, config and sequence of calls (with the same `now`
/// values) produce byte-identical messages. Cloning gives an independent
/// simulator in the same state, which then produces the same stream as the
/// original would.
#[derive(Clone)]
pub struct PasSimulator {
    cfg: PasConfig,
    rng: SynthRng,
    layout: Layout,
    catchment: Catchment,
    nhs_numbers: NhsNumberAllocator,
    mrns: MrnAllocator,
    next_visit: u64,
    next_control: u64,

    /// Encounter index per bed (all beds, closed ones stay `None`).
    bed_occupant: Vec<Option<u32>>,
    /// Free open beds per ward.
    ward_free: Vec<u32>,
    occupied: u32,

    patients: Vec<Patient>,
    encounters: Vec<Encounter>,
    free_encounters: Vec<u32>,

    /// Current inpatients (encounter indices), for uniform sampling.
    inpatients: Vec<u32>,
    on_leave: Vec<u32>,
    /// Open attendances and pre-admissions, oldest first, as
    /// (encounter, visit) so stale entries can be recognised.
    attendances: VecDeque<(u32, u64)>,
    pre_admits: VecDeque<(u32, u64)>,
    recent_admits: VecDeque<(u32, u64)>,
    recent_transfers: VecDeque<(u32, u64)>,
    recent_discharges: VecDeque<(u32, u64)>,
    /// Patients holding a duplicate hospital number.
    pending_merges: Vec<u32>,
    /// Reused weight buffer for ward choices.
    scratch: Vec<f64>,
}

impl PasSimulator {
    /// A simulator for `trust`. Empty `sending_facility` and
    /// `receiving_facility` become the trust's ODS code.
    pub fn new(trust: &Trust, seed: u64, config: PasConfig) -> Result<Self, SynthError> {
        let mut cfg = config;
        cfg.validate()?;
        if cfg.sending_facility.is_empty() {
            cfg.sending_facility = trust.ods_code.clone();
        }
        if cfg.receiving_facility.is_empty() {
            cfg.receiving_facility = trust.ods_code.clone();
        }
        let layout = Layout::new(trust)?;
        let mut rng = rng_for(seed, stream::PAS);
        let nhs_numbers = NhsNumberAllocator::new(&mut rng, cfg.nhs_number_range);
        let mrns = MrnAllocator::new(&mut rng, &trust.mrn_prefix);
        let next_visit = rand::Rng::random_range(&mut rng, 10_000_000..20_000_000);
        let ward_free = layout.wards.iter().map(|w| w.open_beds).collect();
        Ok(PasSimulator {
            bed_occupant: vec![None; layout.beds.len()],
            ward_free,
            occupied: 0,
            cfg,
            rng,
            catchment: trust.catchment.clone(),
            layout,
            nhs_numbers,
            mrns,
            next_visit,
            next_control: 1,
            patients: Vec::new(),
            encounters: Vec::new(),
            free_encounters: Vec::new(),
            inpatients: Vec::new(),
            on_leave: Vec::new(),
            attendances: VecDeque::new(),
            pre_admits: VecDeque::new(),
            recent_admits: VecDeque::new(),
            recent_transfers: VecDeque::new(),
            recent_discharges: VecDeque::new(),
            pending_merges: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// The configuration in force (facilities filled in).
    pub fn config(&self) -> &PasConfig {
        &self.cfg
    }

    /// Open beds.
    pub fn open_beds(&self) -> usize {
        self.layout.open_beds as usize
    }

    /// Occupied open beds, including those of patients on leave.
    pub fn occupied_beds(&self) -> usize {
        self.occupied as usize
    }

    /// Occupied share of open beds.
    pub fn occupancy(&self) -> f64 {
        if self.layout.open_beds == 0 {
            return 0.0;
        }
        f64::from(self.occupied) / f64::from(self.layout.open_beds)
    }

    /// Inpatients currently on leave of absence.
    pub fn on_leave_count(&self) -> usize {
        self.on_leave.len()
    }

    /// Messages produced so far (census and [`next`](Self::next)).
    pub fn messages_emitted(&self) -> u64 {
        self.next_control - 1
    }

    /// The bed board every valid message so far implies: every bed of the
    /// trust (closed ones always empty), keyed by bed id.
    pub fn expected_occupancy(&self) -> BTreeMap<String, Option<OccupantSummary>> {
        self.layout
            .beds
            .iter()
            .zip(&self.bed_occupant)
            .map(|(bed, occ)| {
                let summary = occ.map(|e| {
                    let enc = &self.encounters[e as usize];
                    let patient = &self.patients[enc.patient as usize];
                    OccupantSummary {
                        nhs_number: patient.person.nhs_number.clone(),
                        mrn: self.mrn_of(enc).to_string(),
                        spell_id: enc.visit.to_string(),
                        admitted_at: enc.started_at,
                        on_leave: enc.on_leave,
                    }
                });
                (bed.id.clone(), summary)
            })
            .collect()
    }

    /// Checks the internal indexes agree with each other; for tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut occupied = 0;
        for (b, occ) in self.bed_occupant.iter().enumerate() {
            let Some(e) = occ else { continue };
            if !self.layout.beds[b].open {
                return Err(format!("closed bed {b} occupied"));
            }
            occupied += 1;
            let enc = &self.encounters[*e as usize];
            if !matches!(enc.state, EncState::Inpatient { bed } if bed as usize == b) {
                return Err(format!(
                    "bed {b} holds encounter {e} in state {:?}",
                    enc.state
                ));
            }
            if self.inpatients.get(enc.list_pos as usize) != Some(e) {
                return Err(format!("encounter {e} missing from inpatient list"));
            }
            if self.patients[enc.patient as usize].open != Some(*e) {
                return Err(format!("patient of encounter {e} does not point back"));
            }
        }
        if occupied != self.occupied || occupied as usize != self.inpatients.len() {
            return Err(format!(
                "occupied count {} / list {} / beds {occupied}",
                self.occupied,
                self.inpatients.len()
            ));
        }
        for (w, ward) in self.layout.wards.iter().enumerate() {
            let free = (ward.beds.clone())
                .filter(|b| {
                    self.layout.beds[*b as usize].open && self.bed_occupant[*b as usize].is_none()
                })
                .count() as u32;
            if free != self.ward_free[w] {
                return Err(format!(
                    "ward {w} free count {} != {free}",
                    self.ward_free[w]
                ));
            }
        }
        for e in &self.on_leave {
            let enc = &self.encounters[*e as usize];
            if !enc.on_leave || !matches!(enc.state, EncState::Inpatient { .. }) {
                return Err(format!("on-leave list holds encounter {e} not on leave"));
            }
        }
        let leave_flags = self
            .inpatients
            .iter()
            .filter(|e| self.encounters[**e as usize].on_leave)
            .count();
        if leave_flags != self.on_leave.len() {
            return Err("on-leave list out of step".to_string());
        }
        Ok(())
    }
}
