//! A short soak under faults (`engagetrack-bench soak` runs the long one):
//! beacons at a steady rate against `engagetrack serve` while PostgreSQL is
//! restarted and frozen past the pool's timeouts, the commit queue is
//! flooded and the server is restarted and killed. No accepted beacon is
//! lost and none is stored twice, across every fault.

use std::num::NonZeroUsize;
use std::time::Duration;

use engagetrack_tests::soak::{self, FaultKind, SoakConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_beacon_is_lost_or_stored_twice_across_faults() {
    let server = engagetrack_tests::cargo_build(&[("engagetrack", "engagetrack")]).remove("engagetrack").expect("cargo built engagetrack");
    let queue = NonZeroUsize::new(500).unwrap();
    let config = SoakConfig {
        rate: 300,
        duration: Duration::from_secs(36),
        pause: Duration::from_secs(7),
        queue,
        burst: 4 * queue.get(),
        faults: vec![FaultKind::PgRestart, FaultKind::ServerRestart, FaultKind::PgPause, FaultKind::ServerKill, FaultKind::QueueFill],
        ..SoakConfig::new(server)
    };
    let report = soak::run(&config).await.unwrap();
    println!("{report}");
    let total = &report.total;
    assert_eq!(total.sent, 36 * 300 + 4 * 500, "the steady load and the burst were all sent");
    assert_eq!((total.lost, total.duplicates, report.unknown_rows), (0, 0, 0), "{report}");
    assert!(total.accepted > total.sent / 2, "most beacons were accepted: {report}");
    assert_eq!(total.stored, total.accepted + total.refused_stored + total.unanswered_stored);
    let during =
        |kind: FaultKind| &report.faults.iter().find(|f| f.fault == kind).unwrap_or_else(|| panic!("no {kind:?} in {report}")).answers;
    // Each fault was felt: beacons were refused or went unanswered while it lasted.
    for kind in config.faults.iter().copied() {
        let a = during(kind);
        assert!(a.refused_total() + a.unanswered() > 0, "{} was not felt: {report}", kind.name());
    }
    // The queue and the pause answered 503 at once rather than hanging.
    assert!(during(FaultKind::QueueFill).refused.get(&503).is_some_and(|n| *n > 0), "{report}");
    assert!(during(FaultKind::PgPause).refused.get(&503).is_some_and(|n| *n > 0), "{report}");
    // Refusals are 503s (retry later) only: no 4xx for a valid beacon, no other 5xx.
    assert!(report.faults.iter().all(|f| f.answers.refused.keys().all(|code| *code == 503)), "{report}");
    assert!(total.refused.keys().all(|code| *code == 503), "{report}");
    // The server recovered: after the last fault (and the backlog it left) the load is accepted.
    let after = &report.after_faults;
    assert!(after.sent > 0 && after.accepted * 10 >= after.sent * 9, "the load was accepted again after the last fault: {report}");
    assert_eq!(report.lives.len(), 3, "one server process per start: {report}");
}
