//! Fuzz targets for the code that reads what strangers send: beacons, signed
//! batches, Stats API queries and their SQL, webhook deliveries, User-Agents,
//! referrers and the cross-domain visitor and session ids.
//!
//! Each target is a bolero check over raw bytes with a property beyond "no
//! panic". Under `cargo nextest` (the normal test run) each one replays its
//! seed corpus in `fuzz/corpus/<corpus>/`, then runs a fixed number of random
//! inputs and of mutants of the seeds; under `cargo bolero test --engine
//! libfuzzer` the same check is the libFuzzer target (see the README's
//! "Fuzzing" section and `scripts/fuzz-long.sh`).

#[cfg(test)]
mod corpus;
#[cfg(test)]
mod targets;
