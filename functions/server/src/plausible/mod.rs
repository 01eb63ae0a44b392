//! Plausible compatibility, so sites can switch in without changing their
//! integrations: its Events API (`POST /api/event`, what its tracker and
//! server-side libraries send) and its Stats API v1 (what many dashboards
//! and plugins still read). Both map onto our own pipeline and stats engine.

pub mod events;
pub mod stats_v1;
