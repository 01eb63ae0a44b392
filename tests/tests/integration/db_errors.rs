//! How database failures reach API callers: a transaction PostgreSQL undoes
//! to break a deadlock is a 503 the caller may retry, never a 500.

use axum::http::StatusCode;
use engagetrack_server::error::ApiError;
use engagetrack_tests::TestDb;

#[tokio::test]
async fn a_deadlock_victim_is_told_to_retry() {
    let db = TestDb::create().await;
    let setup = db.client().await;
    setup.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)").await.unwrap();
    let (mut a, mut b) = (db.client().await, db.client().await);
    let ta = a.transaction().await.unwrap();
    let tb = b.transaction().await.unwrap();
    ta.execute("UPDATE t SET id = id WHERE id = 1", &[]).await.unwrap();
    tb.execute("UPDATE t SET id = id WHERE id = 2", &[]).await.unwrap();
    // Each now waits for the row the other holds; PostgreSQL undoes one of them.
    let (ra, rb) = tokio::join!(ta.execute("UPDATE t SET id = id WHERE id = 2", &[]), tb.execute("UPDATE t SET id = id WHERE id = 1", &[]));
    let victim = match (ra, rb) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
        other => panic!("expected exactly one deadlock victim, got {other:?}"),
    };
    let answer = ApiError::from(victim);
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.message.contains("retry"), "{}", answer.message);
}
