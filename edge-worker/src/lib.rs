//! The Cloudflare Worker: `GET /et.js` and `POST /api/e` at the edge.
//!
//! A beacon is parsed, checked, enriched and hashed by `shared::pipeline`
//! right here, so the IP address and the raw User-Agent never travel past the
//! worker; the anonymised event gets its UUIDv7 id, is answered with `202` at
//! once, and is forwarded afterwards (inside `ctx.wait_until`) to the ingest
//! as a signed batch, with retries; a Cloudflare Queue is the durable path
//! when forwarding keeps failing.
//!
//! [`rules`] is the pure part (HTTP rules, salt keys, backoff, the tracker and
//! its ETag): it compiles and is unit-tested natively. The glue to the
//! `worker` crate is compiled only for `wasm32` (see the crate README for why).

pub mod rules;

#[cfg(target_arch = "wasm32")]
mod glue;
