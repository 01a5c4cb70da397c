//! # fdp-products: what staff use the instance for
//!
//! One module per national priority. Each owns its queries and algorithms
//! and returns plain, serialisable views that the API, the web UI and tests
//! share. A product never opens a table itself and never writes: it reads
//! the state it is given and computes.
//!
//! - [`care`]: care coordination: the live bed board, long stays and
//!   discharge readiness.

pub mod care;
