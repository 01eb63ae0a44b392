//! Every integration test, in one binary: one link of the server instead of one
//! per file keeps the build fast on two cores and small on disk.

mod accounts;
mod attacks;
mod authorization;
mod aws_adapters;
mod beacon;
mod billing;
mod billing_checkout;
mod billing_webhooks;
mod cache;
mod client_ip;
mod db_errors;
mod db_tls;
mod durability;
mod edge_to_lambda;
mod edge_worker;
mod funnels;
mod imports;
mod ingest_batch;
mod lambdas;
mod mail;
mod metrics;
mod notices;
mod plausible_events;
mod reports;
mod rollups;
mod sites;
mod soak;
mod stats;
mod stats_http;
mod stats_v1;
mod storage;
mod teams;
mod visitor_requests;
