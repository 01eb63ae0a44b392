//! Pure EngageTrack logic: no tokio, no I/O, compiles to wasm32.
//!
//! The edge worker and the server both run [`pipeline::Pipeline`]: a beacon
//! body goes in, an [`event::AnonymisedEvent`] comes out (or a bot is
//! dropped), and the IP address and raw User-Agent stay behind.

pub mod batch;
pub mod beacon;
pub mod bots;
pub mod event;
pub mod geo;
pub mod pipeline;
pub mod plausible_event;
pub mod site;
pub mod sources;
pub mod user_agent;
pub mod visitor;

pub use beacon::{Beacon, BeaconError, EventKind};
pub use event::{AnonymisedEvent, Enrichment, EventId, EventType};
pub use pipeline::{Pipeline, Processed, Visit};
pub use site::SiteId;
pub use visitor::{Salt, SessionHash, VisitorHash};
