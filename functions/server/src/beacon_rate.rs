//! Per-site beacon rate limits: one site flooding `POST /api/e` (a bug in
//! its page, a replay) must not take the commit queue from every other site.
//! A GCRA bucket per site in this process (governor): `rate` beacons a
//! second, twice that in a burst; past it the beacon gets a 429 with
//! `Retry-After: 1`, which the tracking script treats like any other refusal.
//! Signed batches from the edge are not limited here: the edge batches them.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use shared::SiteId;

pub struct SiteBeaconRate {
    limiter: DefaultKeyedRateLimiter<SiteId>,
    per_second: NonZeroU32,
    /// Beacons judged; every [`SWEEP_EVERY`]th sweeps out quiet sites' buckets.
    judged: AtomicU64,
}

/// Counting the buckets walks every shard of the map: too dear for each beacon.
const SWEEP_EVERY: u64 = 65_536;

impl SiteBeaconRate {
    pub fn new(per_second: NonZeroU32) -> Self {
        let burst = per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1));
        Self { limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)), per_second, judged: AtomicU64::new(0) }
    }

    /// Takes one beacon from the site's bucket: false when it is empty.
    pub fn admit(&self, site: SiteId) -> bool {
        let admitted = self.limiter.check_key(&site).is_ok();
        // Buckets of sites that went quiet are full again: dropping them changes nothing but memory.
        if self.judged.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        admitted
    }

    pub fn per_second(&self) -> NonZeroU32 {
        self.per_second
    }
}

#[derive(Debug, thiserror::Error)]
#[error("ENGAGETRACK_SITE_BEACON_RATE must be a whole number of beacons per second (0 or unset: no limit), not `{0}`")]
pub struct BeaconRateError(String);

/// `ENGAGETRACK_SITE_BEACON_RATE`.
pub fn rate_from_env() -> Result<Option<NonZeroU32>, BeaconRateError> {
    std::env::var("ENGAGETRACK_SITE_BEACON_RATE").ok().map_or(Ok(None), |v| parse_rate(&v))
}

fn parse_rate(value: &str) -> Result<Option<NonZeroU32>, BeaconRateError> {
    value.trim().parse::<u32>().map(NonZeroU32::new).map_err(|_| BeaconRateError(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_gets_its_burst_then_waits_and_other_sites_are_untouched() {
        let rate = SiteBeaconRate::new(NonZeroU32::new(5).unwrap());
        let (busy, quiet) = (SiteId::from_uuid(uuid::Uuid::new_v4()), SiteId::from_uuid(uuid::Uuid::new_v4()));
        let admitted = (0..100).filter(|_| rate.admit(busy)).count();
        // A burst of twice the rate; at most a beacon or two refills while the loop runs.
        assert!((10..=12).contains(&admitted), "admitted {admitted} of 100 at 5/s");
        assert!((0..10).all(|_| rate.admit(quiet)), "another site keeps its own bucket");
    }

    #[test]
    fn the_setting_is_a_whole_number_and_zero_means_no_limit() {
        assert_eq!(parse_rate("250").unwrap(), NonZeroU32::new(250));
        assert_eq!(parse_rate(" 0 ").unwrap(), None);
        for bad in ["-1", "1.5", "fast", ""] {
            assert!(parse_rate(bad).unwrap_err().to_string().contains(&format!("`{bad}`")));
        }
    }
}
