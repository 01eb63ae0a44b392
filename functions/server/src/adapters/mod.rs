//! One module per outside system. Each implements a port trait that lives in
//! the domain module using it; nothing outside `adapters/` names an SDK type.

pub mod aws;
pub mod cloudflare_kv;
pub mod payments;
pub mod postgres;
pub mod redis;
pub mod smtp;
