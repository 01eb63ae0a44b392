//! Pure EngageTrack logic: no tokio, no I/O, compiles to wasm32.
//!
//! The edge worker and the server both run [`pipeline`]: a beacon body goes in,
//! an [`event::AnonymisedEvent`] comes out, and the IP address and raw
//! User-Agent stay behind.

pub mod beacon;
pub mod event;
pub mod pipeline;
pub mod site;
pub mod visitor;

pub use beacon::{Beacon, BeaconError, EventKind};
pub use event::{AnonymisedEvent, EventId};
pub use pipeline::{Visit, anonymise};
pub use site::SiteId;
pub use visitor::{Salt, SessionHash, VisitorHash};
