//! # fdp-federation: instances working together
//!
//! Each organisation's instance stays the controller of its data; this crate
//! is how instances speak to each other without giving that up. It owns:
//!
//! - **identity and trust** ([`identity`]): an instance's ODS code, role and
//!   Ed25519 key pair, certified by the federation's authority (`fdp peer
//!   ca` makes one for a demo or a test; `fdp peer init` certifies an
//!   instance);
//! - **signed messages** ([`envelope`]): every message carries a unique id
//!   and the time it was sent, and is signed by its sender; a bad
//!   signature, an unknown sender, a stale or replayed message is refused;
//! - **the durable outbox and inbox** ([`store`]): a message is committed
//!   before it is sent and retried with backoff until the peer has it; a
//!   message received is committed before the sender is answered, and
//!   taken once however often it is sent;
//! - **the wire** ([`transport`], [`node`]): HTTP over mutual TLS, where both
//!   ends present a certificate from the federation's authority and the
//!   receiver knows each configured peer by its certificate.
//!
//! - **federated questions** ([`questions`]): named, versioned aggregate
//!   questions, each member's approvals (audited, withdrawable), answers
//!   computed in a governed session of the member's own, and the asker's
//!   gathering of who answered, declined or could not be reached, and what
//!   each member has released to each asker ([`released`]), so that no two
//!   answers differ by a handful of patients;
//! - **discharge referrals** ([`referrals`]): a patient's record sent for
//!   direct care through the outbox, accepted or declined by the provider;
//! - **mutual aid** ([`mutual_aid`]): a booking request for another
//!   trust's free theatre time, with the pathway's record, and the answer
//!   that moves the pathway (RTT status 21) at both trusts;
//! - **supplies** ([`supplies`]): each trust's supplies position gathered
//!   by its ICB, and stock one trust can spare offered to another, recorded
//!   as on order at the one and dispatched at the other once accepted;
//! - **the marketplace** ([`marketplace`]): declared products offered to
//!   peers as signed packages, listed, and approved or declined by each
//!   member's IG lead before they are installed.
//!
//! What a message may carry is for governance to decide: an answer to a
//! peer's question passes the answering instance's own policy, opt-out and
//! disclosure control before it is put in an envelope.

pub mod capacity;
pub mod envelope;
pub mod handler;
pub mod icb_feed;
pub mod identity;
pub mod marketplace;
pub mod mutual_aid;
pub mod node;
pub mod questions;
pub mod referrals;
pub mod released;
pub mod returns;
pub mod store;
pub mod supplies;
pub mod transport;

pub use envelope::{Envelope, Refused, Signed, Window};
pub use identity::{FederationCa, InstanceIdentity, OrgRole};
pub use node::{Answer, Federation, FederationConfig, Handler, Peer, PeerConfig, SendError};
pub use store::{Arrival, Delivery, Inbox, Outbox, Outgoing};
