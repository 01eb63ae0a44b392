//! Notices to account holders (issue 13 part 3): a material notice reaches
//! each holder once over a real SMTP server (aiosmtpd, tests/src/smtp_server.rs)
//! however often or concurrently its mailing runs, and after a crash midway;
//! the dashboard API shows each holder their notices until they dismiss them.

use chrono::{Duration, Utc};
use engagetrack_server::AppConfig;
use engagetrack_server::jobs::Job;
use engagetrack_server::mail::worker::drain;
use engagetrack_server::notices::{self, NewNotice, NoticeError, NoticeReport};
use engagetrack_tests::TestApp;
use engagetrack_tests::smtp_server::{SinkOptions, SmtpSink};
use serde_json::json;
use uuid::Uuid;

const SUBJECT: &str = "EngageTrack: Privacy policy update";

fn policy_change(material: bool) -> NewNotice {
    NewNotice::parse(
        "Privacy policy update",
        "We now keep exports for 7 days instead of 30.\n\nNothing else changes.\n",
        Some("https://engagetrack.test/privacy"),
        material,
    )
    .expect("valid notice")
}

/// `n` accounts made a day ago, straight in the table (bcrypt per sign-up
/// would make this slow); their addresses.
async fn make_holders(app: &TestApp, prefix: &str, n: i32) -> Vec<String> {
    let rows = app
        .db
        .client()
        .await
        .query(
            "INSERT INTO users (id, email, created_at)
             SELECT gen_random_uuid(), $1 || i || '@example.com', now() - interval '1 day' FROM generate_series(1, $2) i
             RETURNING email",
            &[&prefix, &n],
        )
        .await
        .expect("insert holders");
    rows.iter().map(|r| r.get(0)).collect()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.db.client().await.query_one(sql, &[]).await.expect(sql).get(0)
}

async fn report(app: &TestApp) -> Vec<NoticeReport> {
    notices::list(&app.state.pool).await.expect("list")
}

#[tokio::test]
async fn a_material_notice_reaches_each_holder_once_over_smtp_and_a_rerun_sends_none() {
    let sink = SmtpSink::start(SinkOptions::default());
    let app = TestApp::spawn_with(AppConfig { smtp: Some(sink.settings()), ..AppConfig::default() }).await;
    let holders = make_holders(&app, "holder", 6).await;
    // Deleted (awaiting erasure): not a holder any more.
    app.db.client().await.execute("UPDATE users SET deleted_at = now() WHERE email = $1", &[&holders[5]]).await.expect("delete one");
    let pool = &app.state.pool;
    let public_url = Some("https://app.engagetrack.test");

    let published = notices::publish(pool, &*app.state.mailer, &policy_change(true), public_url, Utc::now()).await.expect("publish");
    assert_eq!((published.already_published, published.mailed), (false, 5));
    // Made after the notice: accepted the new policy at sign-up, so not mailed.
    let newcomer = make_holders(&app, "newcomer", 1).await.remove(0);
    app.db
        .client()
        .await
        .execute("UPDATE users SET created_at = now() + interval '1 second' WHERE email = $1", &[&newcomer])
        .await
        .expect("a newcomer");

    let transport = app.state.mail_transport().expect("transport").expect("SMTP configured");
    assert_eq!(drain(pool, &*transport, Utc::now(), 200).await.expect("drain").sent, 5);
    for to in &holders[..5] {
        let mails = sink.received_by(to);
        assert_eq!(mails.len(), 1, "{to}: {mails:?}");
        let text = mails[0].text.as_deref().expect("a text part").replace("\r\n", "\n");
        assert_eq!(mails[0].subject, SUBJECT);
        assert!(text.starts_with("We now keep exports for 7 days instead of 30.\n\nNothing else changes.\n"), "{text}");
        assert!(text.contains("Read more: https://engagetrack.test/privacy") && text.contains("https://app.engagetrack.test/"), "{text}");
        assert_eq!(mails[0].list_unsubscribe, None, "a legal notice is not opt-out mail");
    }
    assert!(sink.received_by(&holders[5]).is_empty() && sink.received_by(&newcomer).is_empty());

    // Publishing again (the operator retrying), the scheduled job, another worker round: nothing more.
    let again = notices::publish(pool, &*app.state.mailer, &policy_change(true), public_url, Utc::now()).await.expect("publish again");
    assert_eq!((again.already_published, again.mailed, again.notice.id), (true, 0, published.notice.id));
    assert_eq!(Job::NoticeMail.run(&app.state, Utc::now()).await.expect("job"), json!({"job": "notice-mail", "mailed": 0}));
    assert_eq!(drain(pool, &*transport, Utc::now(), 200).await.expect("drain").sent, 0);
    assert_eq!(sink.received().iter().filter(|m| m.subject == SUBJECT).count(), 5);

    // Each mailing names its outbox row (sent now).
    let linked = count(
        &app,
        "SELECT count(*) FROM notice_mailings m JOIN mail_outbox o ON o.id = m.outbox_id JOIN users u ON u.id = m.user_id
         WHERE o.to_address = u.email AND o.status = 'sent' AND m.mailed_at IS NOT NULL",
    )
    .await;
    assert_eq!(linked, 5);
    let [listed] = <[_; 1]>::try_from(report(&app).await).expect("one notice");
    assert_eq!((listed.holders, listed.mailed, listed.seen, listed.dismissed), (5, 5, 0, 0));

    // The same title and body as a non-material notice is a mistake to say, not a second notice.
    let err = notices::publish(pool, &*app.state.mailer, &policy_change(false), None, Utc::now()).await.expect_err("differs");
    assert!(matches!(err, NoticeError::Differs(id) if id == published.notice.id), "{err}");
}

#[tokio::test]
async fn a_non_material_notice_is_not_mailed() {
    let app = TestApp::spawn().await;
    make_holders(&app, "quiet", 3).await;
    let published = notices::publish(&app.state.pool, &*app.state.mailer, &policy_change(false), None, Utc::now()).await.expect("publish");
    assert_eq!(published.mailed, 0);
    assert_eq!(Job::NoticeMail.run(&app.state, Utc::now()).await.expect("job")["mailed"], 0);
    assert_eq!(count(&app, "SELECT count(*) FROM mail_outbox").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM notice_mailings").await, 0);
}

#[tokio::test]
async fn a_mailing_that_crashed_midway_is_finished_by_reruns_racing_each_other_and_nobody_gets_two() {
    let app = TestApp::spawn().await;
    let holders = make_holders(&app, "many", 25).await;
    let (pool, mailer) = (&app.state.pool, &*app.state.mailer);
    // The database fails the 16th message queued, in whatever transaction.
    app.db
        .client()
        .await
        .batch_execute(
            "CREATE FUNCTION fail_midway() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF (SELECT count(*) FROM mail_outbox) >= 15 THEN RAISE EXCEPTION 'simulated crash'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER fail_midway BEFORE INSERT ON mail_outbox FOR EACH ROW EXECUTE FUNCTION fail_midway();",
        )
        .await
        .expect("trigger");

    // Publish fails on its first page of 500: the notice stays, no mail, no record.
    let err = notices::publish(pool, mailer, &policy_change(true), None, Utc::now()).await.expect_err("the crash");
    assert!(format!("{err:?}").contains("simulated crash"), "{err:?}");
    let notice = report(&app).await.remove(0).notice;
    assert_eq!(count(&app, "SELECT count(*) FROM notice_mailings").await, 0);
    // In pages of 10: the first commits, the second fails with its records.
    notices::mail_holders(pool, mailer, &notice, None, 10).await.expect_err("the crash again");
    assert_eq!(count(&app, "SELECT count(*) FROM notice_mailings").await, 10);
    assert_eq!(count(&app, "SELECT count(*) FROM mail_outbox").await, 10);

    // Back up: two runs in small pages and the scheduled job at once, then the operator's retry of publish.
    app.db.client().await.batch_execute("DROP TRIGGER fail_midway ON mail_outbox").await.expect("drop trigger");
    let (a, b, job) = tokio::join!(
        notices::mail_holders(pool, mailer, &notice, None, 4),
        notices::mail_holders(pool, mailer, &notice, None, 3),
        Job::NoticeMail.run(&app.state, Utc::now()),
    );
    let by_job = job.expect("the notice-mail job")["mailed"].as_u64().expect("a count");
    assert_eq!(a.expect("run a") + b.expect("run b") + by_job, 15);
    let retry = notices::publish(pool, mailer, &policy_change(true), None, Utc::now()).await.expect("retry");
    assert_eq!((retry.already_published, retry.mailed), (true, 0));

    for to in &holders {
        assert_eq!(app.mails_to(to).await.len(), 1, "{to}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM mail_outbox").await, 25);
    assert_eq!(count(&app, "SELECT count(*) FROM notice_mailings WHERE outbox_id IS NOT NULL").await, 25);
}

#[tokio::test]
async fn holders_see_each_notice_until_they_dismiss_it() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up_verified("ann@example.com").await;
    let bob = app.sign_up_verified("bob@example.com").await;
    let published =
        notices::publish(&app.state.pool, &*app.state.mailer, &policy_change(false), None, Utc::now()).await.expect("publish").notice;
    let carl = app.sign_up_verified("carl@example.com").await;
    let dismiss = format!("/api/notices/{}/dismiss", published.id);
    let first_seen =
        |user: Uuid| format!("SELECT first_seen_at::text FROM notice_views WHERE user_id = '{user}' AND notice_id = {}", published.id);

    let shown = app.as_user(&ann).get("/api/notices").await.expect(200);
    assert_eq!(shown["notices"].as_array().map(Vec::len), Some(1), "{shown}");
    let notice = &shown["notices"][0];
    assert_eq!((notice["id"].as_i64(), notice["title"].as_str()), (Some(published.id), Some("Privacy policy update")));
    assert_eq!(notice["body"], "We now keep exports for 7 days instead of 30.\n\nNothing else changes.");
    assert_eq!((notice["link"].as_str(), notice["material"].as_bool()), (Some("https://engagetrack.test/privacy"), Some(false)));
    // Shown again until dismissed; seen is recorded the first time only.
    let seen_at: String = app.db.client().await.query_one(&first_seen(ann.id), &[]).await.expect("seen").get(0);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(app.as_user(&ann).get("/api/notices").await.expect(200)["notices"][0]["id"], published.id);
    let seen_again: String = app.db.client().await.query_one(&first_seen(ann.id), &[]).await.expect("seen").get(0);
    assert_eq!(seen_at, seen_again);

    // Signed out, someone else's, made later, unknown.
    app.anonymous().get("/api/notices").await.expect_error(401, "sign in");
    app.anonymous().post(&dismiss, json!({})).await.expect(401);
    assert_eq!(app.as_user(&carl).get("/api/notices").await.expect(200), json!({"notices": []}));
    app.as_user(&carl).post(&dismiss, json!({})).await.expect_error(404, "no notice");
    app.as_user(&ann).post("/api/notices/987654321/dismiss", json!({})).await.expect_error(404, "no notice");
    app.as_user(&ann).post("/api/notices/not-a-number/dismiss", json!({})).await.expect(404);

    // Dismissed: gone for Ann (twice is the same), still there for Bob.
    app.as_user(&ann).post(&dismiss, json!({})).await.expect(204);
    let dismissed_at = format!("SELECT dismissed_at::text FROM notice_views WHERE user_id = '{}' AND dismissed_at IS NOT NULL", ann.id);
    let first: String = app.db.client().await.query_one(&dismissed_at, &[]).await.expect("dismissed").get(0);
    app.as_user(&ann).post(&dismiss, json!({})).await.expect(204);
    let second: String = app.db.client().await.query_one(&dismissed_at, &[]).await.expect("dismissed").get(0);
    assert_eq!(first, second, "a second dismissal keeps the first time");
    assert_eq!(app.as_user(&ann).get("/api/notices").await.expect(200), json!({"notices": []}));
    assert_eq!(app.as_user(&bob).get("/api/notices").await.expect(200)["notices"][0]["id"], published.id);

    let [listed] = <[_; 1]>::try_from(report(&app).await).expect("one notice");
    assert_eq!((listed.holders, listed.seen, listed.dismissed, listed.mailed), (2, 2, 1, 0));
    // What we recorded about Ann is in her export.
    let export = app.as_user(&ann).get("/api/me/export").await.expect(200);
    let [noted] = <[_; 1]>::try_from(export["notices"].as_array().cloned().unwrap_or_default()).expect("one notice in the export");
    assert_eq!((noted["notice"].as_i64(), noted["mailed_at"].is_null()), (Some(published.id), true));
    assert!(noted["first_seen_at"].is_string() && noted["dismissed_at"].is_string(), "{noted}");
    assert_eq!(count(&app, "SELECT count(*) FROM mail_outbox WHERE subject LIKE 'EngageTrack: %'").await, 0);

    // Withdrawn: nobody sees it; unknown ids cannot be withdrawn.
    let withdrawn = notices::withdraw(&app.state.pool, published.id, Utc::now() + Duration::seconds(1)).await.expect("withdraw");
    assert!(withdrawn.withdrawn_at.is_some());
    assert_eq!(app.as_user(&bob).get("/api/notices").await.expect(200), json!({"notices": []}));
    assert!(matches!(notices::withdraw(&app.state.pool, 987_654_321, Utc::now()).await, Err(NoticeError::NotFound(_))));

    // Documented with their answers.
    let doc = app.anonymous().get("/api/openapi.json").await.expect(200);
    assert!(doc["paths"]["/api/notices"]["get"]["responses"]["200"].is_object(), "{}", doc["paths"]["/api/notices"]);
    let responses = &doc["paths"]["/api/notices/{notice_id}/dismiss"]["post"]["responses"];
    for status in ["204", "401", "403", "404", "503"] {
        assert!(responses[status].is_object(), "{status} undocumented: {responses}");
    }
}
