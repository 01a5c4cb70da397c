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

/// A writer re-reading the raw records it wrote itself (which FHIR versions
/// and extract files it already holds), so that a re-sent record is
/// recognised and not stored twice. This and the sessions it runs on
/// (`fhir::datafusion_session`, `extract::already_loaded`) are the only
/// table reads outside a governed session; the architecture test allows
/// exactly these and nothing else.
pub(crate) async fn writer_read(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
) -> Result<Vec<fdp_store::RecordBatch>, fdp_store::StoreError> {
    Ok(ctx.sql(sql).await?.collect().await?)
}
