//! Synthetic NHS data for OpenFDP demos, tests and benchmarks.
//!
//! This crate owns the synthetic world the platform is exercised against:
//!
//! - [`trust`]: a realistic, seeded acute trust (sites, wards, bays, beds,
//!   consultants, PAS users) and its bed register CSV;
//! - [`people`]: UK-style people (names, addresses, postcodes, phone
//!   numbers, GP practices, ethnic categories, NHS numbers valid by
//!   modulus 11, local hospital numbers);
//! - [`pas`]: a patient administration system simulator that emits HL7 v2.4
//!   ADT messages (with a configurable share of malformed ones) and keeps an
//!   exact model of bed occupancy for tests to compare against;
//! - [`hl7`]: the message text building those messages use;
//! - [`elective`]: a trust's elective waiting list and its pathways'
//!   RTT activity, with planted validation problems as known truth;
//! - [`extracts`]: the flat files a trust's other systems send (theatre
//!   sessions and bookings, consultant leave, rosters, Capacity Tracker and
//!   virtual-ward capacity, vaccine and supplies stock, supplies
//!   transactions), each with a few faulty lines of the kinds real ones carry;
//! - [`ihtc`]: admission and theatre scheduling problems in the IHTC-2024
//!   competition's format, each with a feasible schedule planted;
//! - [`population`]: an ICB's registered population built on its areas'
//!   real structure, with diabetes, care processes, flu and MMR records and
//!   uptake gaps planted as known truth.
//!
//! It will grow into a whole synthetic federation (community and mental
//! health providers, GP practices, an ICB) built from the same pieces.
//!
//! Everything is deterministic: the same seed, inputs and sequence of calls
//! give byte-identical output.
//!
//! What it must not do: any I/O beyond returning data. No files, no
//! sockets, no clocks (callers pass the time in); streaming messages over
//! MLLP lives in the instance binary.
//!
//! ```
//! use chrono::{Duration, TimeZone, Utc};
//! use fdp_synth::{MessageKind, PasConfig, PasSimulator, Trust, TrustSpec};
//!
//! let trust = Trust::generate(42, TrustSpec::default())?;
//! let mut pas = PasSimulator::new(&trust, 7, PasConfig::for_trust(&trust))?;
//! let start = Utc.with_ymd_and_hms(2025, 3, 10, 8, 0, 0).unwrap();
//! let census = pas.census(start);
//! assert_eq!(census.len() - census.iter().filter(|m| m.event == "A02").count(), pas.occupied_beds());
//! for i in 0..100 {
//!     let msg = pas.next(start + Duration::seconds(30 * i));
//!     if msg.kind == MessageKind::Valid {
//!         assert!(msg.bytes.starts_with(b"MSH|^~\\&|PAS|RXX|OPENFDP|RXX|"));
//!     }
//! }
//! let board = pas.expected_occupancy();
//! assert_eq!(board.len(), trust.bed_count());
//! # Ok::<(), fdp_synth::SynthError>(())
//! ```

#![warn(missing_docs)]

pub mod elective;
pub mod error;
pub mod extracts;
pub mod fhir_export;
pub mod hl7;
pub mod ihtc;
pub mod pas;
pub mod people;
pub mod population;
mod rng;
pub mod trust;

pub use elective::{ElectiveList, ElectiveSpec, PreOpAssessment, Problem};
pub use error::SynthError;
pub use extracts::{ExtractFile, ExtractSpec, Fault, FaultKind};
pub use pas::{
    AdtMessage, EventMix, MalformedReason, MessageKind, OccupantSummary, PasConfig, PasSimulator,
};
pub use people::{Cohort, NhsNumberRange, Person, Sex};
pub use rng::Xorshift;
pub use trust::{Trust, TrustSpec};
