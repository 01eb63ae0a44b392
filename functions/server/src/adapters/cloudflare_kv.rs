//! Cloudflare KV REST API adapter of the edge KV port (salts, site list).
