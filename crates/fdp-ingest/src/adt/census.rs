//! The hospital census: patients, spells, ward stays and beds as the ADT
//! feed describes them.
//!
//! This is the declared transform from raw ADT to the canonical model. It is
//! a pure function of the records applied, in sequence order: the same raw
//! history always yields the same census, which is how the canonical tables
//! are rebuilt after a restart and how lineage stays truthful.
//!
//! Real PAS feeds are not tidy. Messages arrive for spells the census never
//! saw admitted, cancellations arrive for events that were never sent, a bed
//! is given to a second patient before the first one's transfer is
//! recorded. The census never refuses such a message (it was valid HL7 and
//! the PAS is the source of truth for where patients are); it applies what
//! the message says, keeps the invariants below, and records a warning that
//! the data engineer can see.
//!
//! Invariants: a bed holds at most one spell; a spell occupies at most one
//! bed; a patient occupies at most one bed; a bed's occupant is an admitted
//! spell whose current ward stay is in that bed.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::event::{AdtEvent, Location, NhsNumberStatus, PatientDetails, VisitDetails};

/// Where a spell stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpellStatus {
    PreAdmitted,
    Admitted,
    Discharged,
    /// The admission was cancelled (A11): it never happened.
    Cancelled,
    /// Changed from inpatient to outpatient (A07).
    Outpatient,
}

impl SpellStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SpellStatus::PreAdmitted => "pre-admitted",
            SpellStatus::Admitted => "admitted",
            SpellStatus::Discharged => "discharged",
            SpellStatus::Cancelled => "cancelled",
            SpellStatus::Outpatient => "outpatient",
        }
    }
}

/// A period in one place (bed, or ward when no bed was named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stay {
    pub location: Location,
    pub start_us: i64,
    pub end_us: Option<i64>,
}

/// A hospital spell (the CDM's Admission).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spell {
    pub admission_id: String,
    pub patient_id: String,
    pub status: SpellStatus,
    pub patient_class: String,
    pub admitted_at_us: Option<i64>,
    pub discharged_at_us: Option<i64>,
    pub admission_method: Option<String>,
    pub specialty: Option<String>,
    pub consultant: Option<String>,
    /// Every place the spell has been, oldest first.
    pub stays: Vec<Stay>,
    pub on_leave: bool,
    /// The bed currently held, if any.
    pub bed_id: Option<String>,
}

impl Spell {
    pub fn current_stay(&self) -> Option<&Stay> {
        self.stays.last().filter(|s| s.end_us.is_none())
    }
}

/// Whether a bed can take a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BedStatus {
    Open,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bed {
    pub bed_id: String,
    pub site: String,
    pub ward: String,
    /// The ward's name as the bed register gives it (empty if unknown).
    pub ward_name: String,
    pub room: String,
    pub label: String,
    pub bed_type: String,
    pub status: BedStatus,
    pub closed_reason: Option<String>,
    /// The admission in the bed.
    pub occupant: Option<String>,
}

/// Discharge readiness as staff record it on the bed board.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DischargeReadiness {
    pub admission_id: String,
    pub medically_optimised: bool,
    /// ISO date the patient became medically optimised for discharge.
    pub medically_optimised_date: Option<String>,
    /// Discharge pathway 0–3.
    pub discharge_pathway: Option<u8>,
    pub waiting_for: Vec<String>,
    pub expected_discharge_date: Option<String>,
    pub updated_by: String,
    pub updated_at_us: i64,
}

/// Something the census applied but found inconsistent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub seq: u64,
    pub trigger: String,
    pub message: String,
}

const KEPT_WARNINGS: usize = 500;

const DAY_US: i64 = 86_400_000_000;

/// Spells and patients retired from the live census, and what the canonical
/// writer still has to do about them.
///
/// The live census holds what the bed board and the day's work need: who is
/// in hospital, and spells and patients seen within the retention period. A
/// spell that ended longer ago, and a patient with no spell left and not
/// heard of for as long, leave it, so a year of feed does not make the
/// census (its memory, its snapshot, a restart) a year large. Their rows are
/// not lost: they go to the canonical tables' archive parts, written before
/// the live parts drop them.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retired {
    /// Batches not yet written to the archive parts, oldest first. Shared,
    /// so that the copies the canonical writer and the snapshots take of
    /// the census do not copy them.
    pub pending: Vec<std::sync::Arc<RetiredBatch>>,
    /// The id the next batch will have. Retirement depends only on the
    /// records applied, so a census replayed from a snapshot gives its
    /// batches the same ids, and the archive recognises one already written.
    pub next_batch: u64,
    /// Every patient and spell retired, to know one that comes back.
    pub patients: BTreeSet<String>,
    pub spells: BTreeSet<String>,
    /// Retired patients and spells that a later message brought back: the
    /// live census has them again, so their archived rows must go.
    pub revived_patients: Vec<String>,
    pub revived_spells: Vec<String>,
}

/// What one retirement took out of the live census.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetiredBatch {
    pub id: u64,
    pub patients: Vec<PatientDetails>,
    pub spells: Vec<Spell>,
    pub readiness: Vec<DischargeReadiness>,
}

/// The state derived from every ADT event and staff action so far.
///
/// It serialises whole, so that a snapshot taken at `applied_seq` and the
/// records after it rebuild exactly the census a full replay would.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Census {
    pub patients: BTreeMap<String, PatientDetails>,
    /// Retired patient id → the id it was merged into.
    merged_into: HashMap<String, String>,
    /// Patient id → the spell through which they hold a bed (an index, so
    /// that placing a patient need not scan every spell).
    bed_holder: HashMap<String, String>,
    pub spells: BTreeMap<String, Spell>,
    /// Patient id → their spells (an index, so that a merge need not scan
    /// every spell). Derived from `spells`: neither saved nor compared, and
    /// built on first use after a census is read back.
    #[serde(skip)]
    spells_by_patient: SpellIndex,
    pub beds: BTreeMap<String, Bed>,
    pub readiness: BTreeMap<String, DischargeReadiness>,
    /// Every readiness record staff have made, oldest first: who said what,
    /// when.
    pub readiness_history: BTreeMap<String, Vec<DischargeReadiness>>,
    /// Sequence number of the last record applied.
    pub applied_seq: u64,
    /// Events applied, by trigger.
    pub events: BTreeMap<String, u64>,
    pub recent_warnings: VecDeque<Warning>,
    pub warning_count: u64,
    /// Days a finished spell, and a patient not heard of, stay in the live
    /// census; `None` keeps everything.
    #[serde(default)]
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub retired: Retired,
    /// The census's own time: the latest event applied (never more than a
    /// day past when it arrived, so one bad timestamp cannot age the rest).
    #[serde(default)]
    clock_us: i64,
    #[serde(default)]
    next_retirement_us: i64,
    /// When each patient and spell was last the subject of a message.
    #[serde(default)]
    patient_seen_us: HashMap<String, i64>,
    #[serde(default)]
    spell_seen_us: HashMap<String, i64>,
}

/// See [`Census::spells_by_patient`]. `None` until first used.
#[derive(Debug, Default, Clone)]
struct SpellIndex(Option<HashMap<String, BTreeSet<String>>>);

impl PartialEq for SpellIndex {
    /// Always equal: the index is derived from the spells, which are
    /// compared themselves.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Census {
    pub fn new() -> Self {
        Self::default()
    }

    /// The spell index, built from the spells if it has not been yet.
    fn spell_index(&mut self) -> &mut HashMap<String, BTreeSet<String>> {
        let spells = &self.spells;
        self.spells_by_patient.0.get_or_insert_with(|| {
            let mut index: HashMap<String, BTreeSet<String>> = HashMap::new();
            for s in spells.values() {
                index
                    .entry(s.patient_id.clone())
                    .or_default()
                    .insert(s.admission_id.clone());
            }
            index
        })
    }

    /// Note in the index (if built) that `admission_id` is now `patient_id`'s.
    fn index_spell(&mut self, patient_id: &str, admission_id: &str) {
        if let Some(index) = &mut self.spells_by_patient.0 {
            index
                .entry(patient_id.to_string())
                .or_default()
                .insert(admission_id.to_string());
        }
    }

    /// Note in the index (if built) that `admission_id` is no longer
    /// `patient_id`'s.
    fn unindex_spell(&mut self, patient_id: &str, admission_id: &str) {
        if let Some(index) = &mut self.spells_by_patient.0 {
            if let Some(set) = index.get_mut(patient_id) {
                set.remove(admission_id);
                if set.is_empty() {
                    index.remove(patient_id);
                }
            }
        }
    }

    /// Add a bed from the bed register (or update its description).
    pub fn register_bed(&mut self, mut bed: Bed) {
        if let Some(existing) = self.beds.get(&bed.bed_id) {
            bed.occupant = existing.occupant.clone();
        }
        self.beds.insert(bed.bed_id.clone(), bed);
    }

    /// Open or close a bed (a bed manager's action).
    pub fn set_bed_status(
        &mut self,
        bed_id: &str,
        status: BedStatus,
        reason: Option<String>,
    ) -> bool {
        match self.beds.get_mut(bed_id) {
            Some(b) => {
                b.status = status;
                b.closed_reason = if status == BedStatus::Closed {
                    reason
                } else {
                    None
                };
                true
            }
            None => false,
        }
    }

    pub fn set_readiness(&mut self, r: DischargeReadiness) {
        self.readiness_history
            .entry(r.admission_id.clone())
            .or_default()
            .push(r.clone());
        self.readiness.insert(r.admission_id.clone(), r);
    }

    /// The id a patient is known by now, after any merges.
    pub fn resolve_patient<'a>(&'a self, id: &'a str) -> &'a str {
        let mut id = id;
        // Merge chains are short; the bound guards against a cycle.
        for _ in 0..32 {
            match self.merged_into.get(id) {
                Some(next) => id = next,
                None => break,
            }
        }
        id
    }

    /// Move the census's clock to an event that happened at `occurred_us`
    /// and arrived at `received_us`, retiring (once a day, by that clock:
    /// a retirement looks at every spell and patient) what has been
    /// finished for longer than the retention period.
    pub fn advance_clock(&mut self, occurred_us: i64, received_us: i64) {
        let t = occurred_us.min(received_us.saturating_add(DAY_US));
        self.clock_us = self.clock_us.max(t);
        if self.retention_days.is_some() && self.clock_us >= self.next_retirement_us {
            self.retire();
            self.next_retirement_us = self.clock_us.saturating_add(DAY_US);
        }
    }

    /// Retire spells that ended, and patients last heard of, before the
    /// retention period; returns how many of each.
    pub fn retire(&mut self) -> (usize, usize) {
        let Some(days) = self.retention_days else {
            return (0, 0);
        };
        let cutoff = self.clock_us.saturating_sub(i64::from(days) * DAY_US);
        let seen = |id: &str, map: &HashMap<String, i64>| map.get(id).copied().unwrap_or(i64::MIN);
        let old_spells: Vec<String> = self
            .spells
            .values()
            .filter(|s| s.status != SpellStatus::Admitted && s.bed_id.is_none())
            .filter(|s| {
                let last = [s.admitted_at_us, s.discharged_at_us]
                    .into_iter()
                    .flatten()
                    .chain(
                        s.stays
                            .iter()
                            .flat_map(|st| [Some(st.start_us), st.end_us])
                            .flatten(),
                    )
                    .chain([seen(&s.admission_id, &self.spell_seen_us)])
                    .max()
                    .unwrap_or(i64::MIN);
                last < cutoff
            })
            .map(|s| s.admission_id.clone())
            .collect();
        let mut batch = RetiredBatch {
            id: self.retired.next_batch,
            ..Default::default()
        };
        for id in old_spells {
            if let Some(spell) = self.spells.remove(&id) {
                self.unindex_spell(&spell.patient_id, &id);
                self.spell_seen_us.remove(&id);
                self.readiness_history.remove(&id);
                if let Some(r) = self.readiness.remove(&id) {
                    batch.readiness.push(r);
                }
                self.retired.spells.insert(id);
                batch.spells.push(spell);
            }
        }
        let with_spells: std::collections::HashSet<&str> = self
            .spells
            .values()
            .map(|s| s.patient_id.as_str())
            .collect();
        let old_patients: Vec<String> = self
            .patients
            .keys()
            .filter(|id| !with_spells.contains(id.as_str()) && !self.bed_holder.contains_key(*id))
            .filter(|id| seen(id, &self.patient_seen_us) < cutoff)
            .cloned()
            .collect();
        for id in old_patients {
            if let Some(p) = self.patients.remove(&id) {
                self.patient_seen_us.remove(&id);
                self.retired.patients.insert(id);
                batch.patients.push(p);
            }
        }
        let counts = (batch.spells.len(), batch.patients.len());
        if counts != (0, 0) {
            self.retired.next_batch += 1;
            self.retired.pending.push(std::sync::Arc::new(batch));
        }
        counts
    }

    /// Apply one ADT event committed under `seq`.
    pub fn apply(&mut self, seq: u64, ev: &AdtEvent) {
        self.applied_seq = self.applied_seq.max(seq);
        *self.events.entry(ev.trigger.clone()).or_default() += 1;
        for problem in &ev.problems {
            self.warn(seq, &ev.trigger, problem.clone());
        }
        let mut cx = Cx {
            census: self,
            seq,
            trigger: &ev.trigger,
        };
        cx.apply(ev);
    }

    /// Record a warning for the data engineer about record `seq`.
    pub fn note(&mut self, seq: u64, trigger: &str, message: String) {
        self.warn(seq, trigger, message);
    }

    fn warn(&mut self, seq: u64, trigger: &str, message: String) {
        self.warning_count += 1;
        if self.recent_warnings.len() == KEPT_WARNINGS {
            self.recent_warnings.pop_front();
        }
        self.recent_warnings.push_back(Warning {
            seq,
            trigger: trigger.to_string(),
            message,
        });
    }

    /// The spell currently in a bed.
    pub fn occupant(&self, bed_id: &str) -> Option<&Spell> {
        self.beds
            .get(bed_id)
            .and_then(|b| b.occupant.as_ref())
            .and_then(|a| self.spells.get(a))
    }

    /// Spells that are admitted now.
    pub fn admitted(&self) -> impl Iterator<Item = &Spell> {
        self.spells
            .values()
            .filter(|s| s.status == SpellStatus::Admitted)
    }
}

/// One event being applied: the census plus where the event came from, for
/// warnings.
struct Cx<'a> {
    census: &'a mut Census,
    seq: u64,
    trigger: &'a str,
}

impl Cx<'_> {
    fn warn(&mut self, message: String) {
        self.census.warn(self.seq, self.trigger, message);
    }

    fn apply(&mut self, ev: &AdtEvent) {
        let at = ev.occurred_at_us;
        let patient_id = self.upsert_patient(&ev.patient);
        let Some(visit) = &ev.visit else {
            match ev.trigger.as_str() {
                "A40" | "A34" | "A08" | "A28" | "A31" => {}
                _ => self.warn(format!(
                    "{} for patient {patient_id} has no PV1 visit; only the patient was updated",
                    ev.trigger
                )),
            }
            if matches!(ev.trigger.as_str(), "A40" | "A34") {
                self.merge(&patient_id, &ev.merged_ids);
            }
            return;
        };
        match ev.trigger.as_str() {
            "A01" | "A06" => self.admit(&patient_id, visit, at),
            "A05" => self.pre_admit(&patient_id, visit),
            "A02" => self.transfer(&patient_id, visit, at),
            "A03" => self.discharge(&patient_id, visit, at, SpellStatus::Discharged),
            "A07" => self.discharge(&patient_id, visit, at, SpellStatus::Outpatient),
            "A11" => self.cancel_admit(&patient_id, visit),
            "A12" => self.cancel_transfer(&patient_id, visit, at),
            "A13" => self.cancel_discharge(&patient_id, visit, at),
            "A17" => match &ev.swap_with {
                Some((other_patient, other_visit)) => {
                    let other_id = self.upsert_patient(other_patient);
                    self.swap(&patient_id, visit, &other_id, other_visit, at);
                }
                None => self.warn("A17 without a second patient: nothing swapped".into()),
            },
            "A21" => self.set_leave(&patient_id, visit, true),
            "A22" => self.set_leave(&patient_id, visit, false),
            "A08" => self.update_visit(&patient_id, visit),
            "A40" | "A34" => self.merge(&patient_id, &ev.merged_ids),
            // A04 registers an outpatient or emergency attendance: the
            // patient is updated above; it has no bed.
            _ => {}
        }
    }

    fn upsert_patient(&mut self, p: &PatientDetails) -> String {
        let id = self.census.resolve_patient(&p.patient_id).to_string();
        let is_new = !self.census.patients.contains_key(&id);
        if is_new && self.census.retired.patients.remove(&id) {
            self.census.retired.revived_patients.push(id.clone());
        }
        let clock = self.census.clock_us;
        self.census.patient_seen_us.insert(id.clone(), clock);
        let entry = self
            .census
            .patients
            .entry(id.clone())
            .or_insert_with(|| PatientDetails {
                patient_id: id.clone(),
                ..Default::default()
            });
        // A message fills what it says and leaves the rest as it was: ADT
        // updates often carry only part of the demographics.
        macro_rules! take {
            ($($f:ident),*) => {$( if p.$f.is_some() { entry.$f = p.$f.clone(); } )*};
        }
        take!(
            mrn,
            title,
            first_name,
            surname,
            date_of_birth,
            sex,
            address_line1,
            address_line2,
            address_city,
            postcode,
            phone_number,
            ethnic_category_code,
            registered_gp
        );
        let before = entry.nhs_number_status.clone();
        let had_number = entry.nhs_number.clone();
        match (&p.nhs_number, &p.nhs_number_status) {
            // A valid number (a trace has come back, or the PAS always had
            // it) links the record, whatever was known before.
            (Some(n), status) => {
                entry.nhs_number = Some(n.clone());
                entry.nhs_number_status = status.clone().or(Some(NhsNumberStatus::Verified));
            }
            // No usable number in this message: a number already known is
            // kept (updates often leave PID-3 short); otherwise the record
            // says why there is none.
            (None, Some(status)) if entry.nhs_number.is_none() => {
                entry.nhs_number_status = Some(status.clone());
            }
            (None, _) => {}
        }
        let after = entry.nhs_number_status.clone();
        let number = entry.nhs_number.clone();
        if after != before || is_new {
            match (&after, &had_number, &number) {
                (Some(status), _, None) if status.needs_attention() => self.warn(format!(
                    "patient {id} has no usable NHS number ({}); kept under the hospital number \
                     until the number is traced",
                    status.describe()
                )),
                (Some(NhsNumberStatus::Unverified { code }), _, Some(_)) => self.warn(format!(
                    "patient {id}'s NHS number is not verified ({})",
                    super::event::indicator_meaning(code)
                )),
                (_, None, Some(_)) if !is_new => self.warn(format!(
                    "patient {id} now has a verified NHS number; the record is linked"
                )),
                _ => {}
            }
        }
        if let (Some(NhsNumberStatus::Invalid { .. }), Some(_)) = (&p.nhs_number_status, &number) {
            self.warn(format!(
                "{} for patient {id} carries an invalid NHS number; the verified one on record \
                 is kept",
                self.trigger
            ));
        }
        id
    }

    /// The spell a message is about, created if the census has not seen it
    /// (with a warning when the event implies it should have).
    fn spell(&mut self, patient_id: &str, v: &VisitDetails, expect_known: bool) -> &mut Spell {
        let clock = self.census.clock_us;
        self.census
            .spell_seen_us
            .insert(v.admission_id.clone(), clock);
        if !self.census.spells.contains_key(&v.admission_id) {
            if self.census.retired.spells.remove(&v.admission_id) {
                self.census
                    .retired
                    .revived_spells
                    .push(v.admission_id.clone());
            }
            if expect_known {
                self.warn(format!(
                    "{} for spell {} which was never admitted; treating it as admitted",
                    self.trigger, v.admission_id
                ));
            }
            self.census.spells.insert(
                v.admission_id.clone(),
                Spell {
                    admission_id: v.admission_id.clone(),
                    patient_id: patient_id.to_string(),
                    status: if expect_known {
                        SpellStatus::Admitted
                    } else {
                        SpellStatus::PreAdmitted
                    },
                    patient_class: v.patient_class.clone(),
                    admitted_at_us: v.admit_at_us,
                    discharged_at_us: None,
                    admission_method: None,
                    specialty: None,
                    consultant: None,
                    stays: Vec::new(),
                    on_leave: false,
                    bed_id: None,
                },
            );
            self.census.index_spell(patient_id, &v.admission_id);
        }
        let previous = self.census.spells[&v.admission_id].patient_id.clone();
        if previous != patient_id {
            self.move_spell(&v.admission_id, &previous, patient_id);
        }
        let spell = self
            .census
            .spells
            .get_mut(&v.admission_id)
            .expect("inserted above");
        fill_visit(spell, v);
        spell
    }

    /// The PAS has put a spell under another patient: move it, and keep
    /// one bed per patient.
    fn move_spell(&mut self, admission_id: &str, from: &str, to: &str) {
        let holds_bed = {
            let spell = self.census.spells.get_mut(admission_id).expect("exists");
            spell.patient_id = to.to_string();
            spell.bed_id.is_some()
        };
        self.census.unindex_spell(from, admission_id);
        self.census.index_spell(to, admission_id);
        if !holds_bed {
            return;
        }
        if self.census.bed_holder.get(from).map(String::as_str) == Some(admission_id) {
            self.census.bed_holder.remove(from);
        }
        if let Some(other) = self.census.bed_holder.get(to).cloned() {
            if other != admission_id {
                self.warn(format!(
                    "spell {admission_id} moved from patient {from} to {to}, who already held a bed \
                     under spell {other}; freeing that bed"
                ));
                self.vacate(&other);
            }
        }
        self.census
            .bed_holder
            .insert(to.to_string(), admission_id.to_string());
    }

    fn admit(&mut self, patient_id: &str, v: &VisitDetails, at: i64) {
        let spell = self.spell(patient_id, v, false);
        let was = spell.status;
        spell.status = SpellStatus::Admitted;
        spell.discharged_at_us = None;
        let start = v.admit_at_us.unwrap_or(at);
        if spell.admitted_at_us.is_none() || was != SpellStatus::Admitted {
            spell.admitted_at_us = Some(start);
        }
        if was == SpellStatus::Admitted {
            let same_place = match (&v.location, spell.current_stay()) {
                (Some(l), Some(s)) => &s.location == l,
                (None, _) => true,
                _ => false,
            };
            if same_place {
                return; // the same admission sent again: nothing changes
            }
            self.warn(format!(
                "A01 for spell {} which is already admitted elsewhere; moving it",
                v.admission_id
            ));
        }
        if was == SpellStatus::Cancelled || was == SpellStatus::Discharged {
            // A new admission under an old visit number starts a fresh set
            // of stays.
            self.census
                .spells
                .get_mut(&v.admission_id)
                .expect("exists")
                .stays
                .clear();
        }
        match &v.location {
            Some(loc) => self.place(&v.admission_id, loc, start),
            None => self.warn(format!(
                "{} for spell {} names no location",
                self.trigger, v.admission_id
            )),
        }
    }

    fn pre_admit(&mut self, patient_id: &str, v: &VisitDetails) {
        let spell = self.spell(patient_id, v, false);
        if spell.status != SpellStatus::PreAdmitted {
            let id = spell.admission_id.clone();
            self.warn(format!(
                "A05 for spell {id} which is already past pre-admission; ignored"
            ));
        }
    }

    fn transfer(&mut self, patient_id: &str, v: &VisitDetails, at: i64) {
        let spell = self.spell(patient_id, v, true);
        if spell.status != SpellStatus::Admitted {
            let (id, st) = (spell.admission_id.clone(), spell.status);
            self.warn(format!(
                "A02 for spell {id} which is {}; treating it as admitted",
                st.as_str()
            ));
            let spell = self.census.spells.get_mut(&v.admission_id).expect("exists");
            spell.status = SpellStatus::Admitted;
            spell.discharged_at_us = None;
        }
        match &v.location {
            Some(loc) => self.place(&v.admission_id, loc, at),
            None => self.warn(format!(
                "A02 for spell {} names no new location",
                v.admission_id
            )),
        }
    }

    fn discharge(&mut self, patient_id: &str, v: &VisitDetails, at: i64, to: SpellStatus) {
        let spell = self.spell(patient_id, v, true);
        if spell.status != SpellStatus::Admitted {
            let (id, st) = (spell.admission_id.clone(), spell.status);
            self.warn(format!(
                "{} for spell {id} which is {}",
                self.trigger,
                st.as_str()
            ));
        }
        let end = if to == SpellStatus::Discharged {
            v.discharge_at_us.unwrap_or(at)
        } else {
            at
        };
        let spell = self.census.spells.get_mut(&v.admission_id).expect("exists");
        spell.status = to;
        spell.on_leave = false;
        if to == SpellStatus::Discharged {
            spell.discharged_at_us = Some(end);
        }
        if let Some(stay) = spell.stays.last_mut() {
            if stay.end_us.is_none() {
                stay.end_us = Some(end);
            }
        }
        let id = v.admission_id.clone();
        self.vacate(&id);
    }

    fn cancel_admit(&mut self, patient_id: &str, v: &VisitDetails) {
        if !self.census.spells.contains_key(&v.admission_id) {
            self.warn(format!(
                "A11 cancels spell {} which was never admitted; recorded as cancelled",
                v.admission_id
            ));
        }
        let spell = self.spell(patient_id, v, false);
        spell.status = SpellStatus::Cancelled;
        spell.on_leave = false;
        // A cancelled admission never happened: it has no stays to report.
        spell.stays.clear();
        spell.admitted_at_us = None;
        spell.discharged_at_us = None;
        let id = v.admission_id.clone();
        self.vacate(&id);
    }

    fn cancel_transfer(&mut self, patient_id: &str, v: &VisitDetails, at: i64) {
        let spell = self.spell(patient_id, v, true);
        let id = spell.admission_id.clone();
        if spell.stays.len() >= 2 && spell.status == SpellStatus::Admitted {
            spell.stays.pop();
            let prev = spell.stays.last_mut().expect("len >= 2");
            prev.end_us = None;
            let back_to = prev.location.clone();
            self.vacate_beds_of(&id);
            match &v.location {
                Some(loc) if *loc != back_to => {
                    self.warn(format!(
                        "A12 for spell {id}: the PAS says the patient returns to {}, not to the \
                         previous location {}; following the PAS",
                        describe(loc),
                        describe(&back_to)
                    ));
                    self.place(&id, loc, at);
                }
                _ => self.occupy(&id, &back_to),
            }
        } else {
            self.warn(format!(
                "A12 for spell {id} which has no transfer to cancel; placing it where the PAS says"
            ));
            if let Some(loc) = &v.location {
                self.place(&id, loc, at);
            }
        }
    }

    fn cancel_discharge(&mut self, patient_id: &str, v: &VisitDetails, at: i64) {
        let spell = self.spell(patient_id, v, true);
        let id = spell.admission_id.clone();
        let st = spell.status;
        if st != SpellStatus::Discharged {
            self.warn(format!(
                "A13 for spell {id} which is {}, not discharged",
                st.as_str()
            ));
        }
        let spell = self.census.spells.get_mut(&id).expect("exists");
        spell.status = SpellStatus::Admitted;
        spell.discharged_at_us = None;
        let reopened = match spell.stays.last_mut() {
            Some(stay) => {
                stay.end_us = None;
                Some(stay.location.clone())
            }
            None => None,
        };
        match (&v.location, reopened) {
            (Some(loc), Some(prev)) if *loc != prev => {
                // The patient came back to a different bed (theirs was taken).
                let spell = self.census.spells.get_mut(&id).expect("exists");
                if let Some(stay) = spell.stays.last_mut() {
                    stay.end_us = Some(at);
                }
                self.place(&id, loc, at);
            }
            (_, Some(prev)) => self.occupy(&id, &prev),
            (Some(loc), None) => self.place(&id, loc, at),
            (None, None) => self.warn(format!("A13 for spell {id} names no location")),
        }
    }

    fn swap(
        &mut self,
        a_patient: &str,
        a_visit: &VisitDetails,
        b_patient: &str,
        b_visit: &VisitDetails,
        at: i64,
    ) {
        self.spell(a_patient, a_visit, true);
        self.spell(b_patient, b_visit, true);
        // Free both beds before placing either, so neither displaces the other.
        self.vacate(&a_visit.admission_id);
        self.vacate(&b_visit.admission_id);
        for v in [a_visit, b_visit] {
            match &v.location {
                Some(loc) => self.place(&v.admission_id, loc, at),
                None => self.warn(format!(
                    "A17 names no new location for spell {}",
                    v.admission_id
                )),
            }
        }
    }

    fn set_leave(&mut self, patient_id: &str, v: &VisitDetails, on_leave: bool) {
        let spell = self.spell(patient_id, v, true);
        if spell.status != SpellStatus::Admitted {
            let (id, st) = (spell.admission_id.clone(), spell.status);
            self.warn(format!(
                "{} for spell {id} which is {}; ignored",
                self.trigger,
                st.as_str()
            ));
            return;
        }
        let was = spell.on_leave;
        spell.on_leave = on_leave;
        if was == on_leave {
            let what = if on_leave {
                "already on leave"
            } else {
                "not on leave"
            };
            let msg = format!(
                "{} for spell {} which is {what}",
                self.trigger, v.admission_id
            );
            self.warn(msg);
        }
    }

    fn update_visit(&mut self, patient_id: &str, v: &VisitDetails) {
        // A08 updates details; it does not move the patient.
        if self.census.spells.contains_key(&v.admission_id) {
            self.spell(patient_id, v, true);
        }
    }

    fn merge(&mut self, surviving: &str, retired_ids: &[String]) {
        if retired_ids.is_empty() {
            self.warn(format!(
                "{} for patient {surviving} names no record to merge",
                self.trigger
            ));
            return;
        }
        let mut merged = Vec::new();
        for retired in retired_ids {
            let retired = self.census.resolve_patient(retired).to_string();
            if retired == surviving {
                continue;
            }
            merged.push(retired.clone());
            // Merged away after it was retired: its archived row goes too.
            if self.census.retired.patients.remove(&retired) {
                self.census.retired.revived_patients.push(retired.clone());
            }
            self.census.patient_seen_us.remove(&retired);
            let Some(old) = self.census.patients.remove(&retired) else {
                self.warn(format!(
                    "merge of {retired} into {surviving}: {retired} is not known; recorded for later messages"
                ));
                self.census
                    .merged_into
                    .insert(retired.clone(), surviving.to_string());
                continue;
            };
            if let Some(s) = self.census.patients.get_mut(surviving) {
                macro_rules! fill {
                    ($($f:ident),*) => {$( if s.$f.is_none() { s.$f = old.$f.clone(); } )*};
                }
                fill!(
                    nhs_number,
                    first_name,
                    surname,
                    date_of_birth,
                    sex,
                    postcode
                );
            }
            let moved = self
                .census
                .spell_index()
                .remove(&retired)
                .unwrap_or_default();
            for id in &moved {
                if let Some(spell) = self.census.spells.get_mut(id) {
                    spell.patient_id = surviving.to_string();
                }
            }
            self.census
                .spell_index()
                .entry(surviving.to_string())
                .or_default()
                .extend(moved);
            self.census
                .merged_into
                .insert(retired.clone(), surviving.to_string());
        }
        // After a merge one person may hold two beds: keep the most recent.
        let theirs = self
            .census
            .spell_index()
            .get(surviving)
            .cloned()
            .unwrap_or_default();
        let mut held: Vec<(i64, String)> = theirs
            .iter()
            .filter_map(|id| self.census.spells.get(id))
            .filter(|s| s.bed_id.is_some())
            .map(|s| {
                (
                    s.current_stay().map(|st| st.start_us).unwrap_or(0),
                    s.admission_id.clone(),
                )
            })
            .collect();
        held.sort();
        if held.len() > 1 {
            for (_, id) in &held[..held.len() - 1] {
                self.warn(format!(
                    "after merging into {surviving}, spell {id} lost its bed to the patient's newer spell"
                ));
                self.vacate(id);
            }
        }
        // Set only now, from the beds actually held.
        for retired in &merged {
            self.census.bed_holder.remove(retired);
        }
        match held.last() {
            Some((_, id)) => {
                self.census
                    .bed_holder
                    .insert(surviving.to_string(), id.clone());
            }
            None => {
                self.census.bed_holder.remove(surviving);
            }
        }
    }

    /// Move a spell to a location from `at`: close its current stay, open a
    /// new one, and take the bed.
    fn place(&mut self, admission_id: &str, loc: &Location, at: i64) {
        if !self.is_admitted(admission_id, loc) {
            return;
        }
        let spell = self
            .census
            .spells
            .get_mut(admission_id)
            .expect("spell exists");
        match spell.stays.last_mut() {
            Some(stay) if stay.end_us.is_none() && stay.location == *loc => {}
            Some(stay) => {
                if stay.end_us.is_none() {
                    stay.end_us = Some(at.max(stay.start_us));
                }
                spell.stays.push(Stay {
                    location: loc.clone(),
                    start_us: at,
                    end_us: None,
                });
            }
            None => spell.stays.push(Stay {
                location: loc.clone(),
                start_us: at,
                end_us: None,
            }),
        }
        self.vacate_beds_of(admission_id);
        self.occupy(admission_id, loc);
    }

    /// Take the bed of `loc` for a spell, displacing anyone recorded there
    /// and freeing any other bed the same patient holds.
    fn occupy(&mut self, admission_id: &str, loc: &Location) {
        if !self.is_admitted(admission_id, loc) {
            return;
        }
        let Some(bed_id) = loc.bed_id() else {
            return;
        };
        let census = &mut *self.census;
        let bed = census.beds.entry(bed_id.clone()).or_insert_with(|| Bed {
            bed_id: bed_id.clone(),
            site: loc.site.clone(),
            ward: loc.ward.clone(),
            ward_name: String::new(),
            room: loc.room.clone(),
            label: loc.bed.clone(),
            bed_type: "general".into(),
            status: BedStatus::Open,
            closed_reason: None,
            occupant: None,
        });
        let displaced = bed.occupant.replace(admission_id.to_string());
        if let Some(other) = displaced.filter(|o| o != admission_id) {
            if let Some(s) = census.spells.get_mut(&other) {
                s.bed_id = None;
                if census.bed_holder.get(&s.patient_id) == Some(&other) {
                    census.bed_holder.remove(&s.patient_id);
                }
            }
            self.warn(format!(
                "bed {bed_id} given to spell {admission_id} while spell {other} was recorded in it; \
                 {other} now has no bed until the PAS says where it is"
            ));
        }
        let patient = self.census.spells[admission_id].patient_id.clone();
        if let Some(other) = self.census.bed_holder.get(&patient).cloned() {
            if other != admission_id {
                self.warn(format!(
                    "patient {patient} placed under spell {admission_id} while spell {other} still \
                     held a bed; freeing the older bed"
                ));
                self.vacate(&other);
            }
        }
        self.census
            .bed_holder
            .insert(patient, admission_id.to_string());
        let spell = self.census.spells.get_mut(admission_id).expect("exists");
        spell.bed_id = Some(bed_id);
    }

    /// Only admitted spells take a place: a late message about a discharged
    /// or cancelled spell must not put it back in a bed.
    fn is_admitted(&mut self, admission_id: &str, loc: &Location) -> bool {
        let status = self.census.spells[admission_id].status;
        if status == SpellStatus::Admitted {
            return true;
        }
        self.warn(format!(
            "{} would place spell {admission_id}, which is {}, at {}; ignored",
            self.trigger,
            status.as_str(),
            describe(loc)
        ));
        false
    }

    /// Free the bed a spell holds.
    fn vacate(&mut self, admission_id: &str) {
        self.vacate_beds_of(admission_id);
    }

    fn vacate_beds_of(&mut self, admission_id: &str) {
        // The spell says which bed it holds; only a spell the census does
        // not know is looked for among the beds.
        let bed_id = match self.census.spells.get(admission_id) {
            Some(spell) => spell.bed_id.clone(),
            None => self
                .census
                .beds
                .values()
                .find(|b| b.occupant.as_deref() == Some(admission_id))
                .map(|b| b.bed_id.clone()),
        };
        if let Some(bed) = bed_id.and_then(|b| self.census.beds.get_mut(&b)) {
            if bed.occupant.as_deref() == Some(admission_id) {
                bed.occupant = None;
            }
        }
        if let Some(spell) = self.census.spells.get_mut(admission_id) {
            spell.bed_id = None;
            if self
                .census
                .bed_holder
                .get(&spell.patient_id)
                .map(String::as_str)
                == Some(admission_id)
            {
                self.census.bed_holder.remove(&spell.patient_id);
            }
        }
    }
}

fn fill_visit(spell: &mut Spell, v: &VisitDetails) {
    if !v.patient_class.is_empty() {
        spell.patient_class = v.patient_class.clone();
    }
    if v.admission_method.is_some() {
        spell.admission_method = v.admission_method.clone();
    }
    if v.specialty.is_some() {
        spell.specialty = v.specialty.clone();
    }
    if v.consultant.is_some() {
        spell.consultant = v.consultant.clone();
    }
}

fn describe(l: &Location) -> String {
    [&l.site, &l.ward, &l.room, &l.bed]
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" / ")
}
