//! # fdp-ingest: sources into the instance
//!
//! Owns the way in: the MLLP listener ([`mllp`]), reading and judging each
//! HL7 v2 message ([`hl7v2`]), the declared transform from ADT events to the
//! canonical model ([`adt`]), and keeping that derived state live ([`live`]).
//!
//! The rule it keeps: a message is answered only after the store has made it
//! durable, and a message that cannot be used is quarantined with its reason
//! and raw bytes, never dropped. It must not decide who may read what (that
//! is `fdp-govern`) nor render anything (that is `fdp-server`).

pub mod adt;
pub mod extract;
pub mod fhir;
pub mod hl7v2;
pub mod live;
pub mod mllp;
pub mod quarantine;
pub mod runs;
