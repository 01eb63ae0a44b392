//! The stats engine: Plausible Stats API v2 queries over daily rollups and raw
//! events, the realtime view and the CSV export. The HTTP layer parses the
//! body with [`QueryRequest::from_json`], resolves `site_id` to a
//! [`StatsSite`] (checking the caller may read it) and calls [`query`]; a
//! [`StatsError`] with [`StatsError::is_client_error`] is a 400.

mod engine;
mod error;
mod export;
pub mod filters;
pub mod funnels;
pub mod goals;
mod imported;
mod realtime;
pub mod request;
pub mod response;
pub mod sessions;

pub use engine::{Source, StatsSite, query, query_with};
pub use error::StatsError;
pub use export::export_csv;
pub use funnels::{Funnel, FunnelRequest, FunnelResponse, funnel};
pub use realtime::{Realtime, RecentEvent, current_visitors, realtime};
pub use request::{Query, QueryRequest};
pub use response::{QueryResponse, ResultRow};
