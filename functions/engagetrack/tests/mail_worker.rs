//! The mail worker as a process: `engagetrack send-mail` killed between its
//! claim and the server's answer still ends in one delivery (after the
//! lease), and `engagetrack serve` with SMTP sends a sign-up's mail by itself.
//! Against a real SMTP server (aiosmtpd, tests/src/smtp_server.rs).

use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use engagetrack_server::AppConfig;
use engagetrack_server::mail::outbox::LEASE;
use engagetrack_server::mail::worker::{Drained, drain};
use engagetrack_tests::lambda_emulator::database_url;
use engagetrack_tests::smtp_server::{MAIL_FROM, SinkOptions, SmtpSink};
use engagetrack_tests::{TestApp, free_port, token_from_mail};
use serde_json::json;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_engagetrack");
const PASSWORD: &str = "violet anchor drifts 42 lanterns";

fn engagetrack(app: &TestApp, sink: &SmtpSink) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("DATABASE_URL", database_url(&app.db.config))
        .env("ENGAGETRACK_SECRETS_FILE", app.secrets_file())
        .env("ENGAGETRACK_SMTP_URL", sink.url())
        .env("ENGAGETRACK_MAIL_FROM", MAIL_FROM)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn a_sender_killed_between_claim_and_answer_leaves_one_delivery_after_the_lease() {
    // The server holds the first DATA without answering: the sender has
    // claimed the message and is mid-send when it is killed.
    let sink = SmtpSink::start(SinkOptions { plan: vec!["stall"], ..SinkOptions::default() });
    let app = TestApp::spawn_with(AppConfig { smtp: Some(sink.settings()), ..AppConfig::default() }).await;
    app.sign_up("kim@example.com", PASSWORD).await;

    let mut sender = engagetrack(&app, &sink).arg("send-mail").spawn().expect("start engagetrack send-mail");
    sink.wait_for_stall(1);
    let db = app.db.client().await;
    let (status, attempts, leased): (String, i32, bool) = {
        let r = db
            .query_one("SELECT status, attempts, claimed_until > now() FROM mail_outbox WHERE to_address = 'kim@example.com'", &[])
            .await
            .expect("the row");
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((status.as_str(), attempts, leased), ("sending", 1, true));
    sender.start_kill().expect("SIGKILL");
    let _ = sender.wait().await;

    // Within the lease nobody takes it over; after it, the next sender does.
    let transport = app.state.mail_transport().expect("transport").expect("SMTP configured");
    let now = Utc::now();
    assert_eq!(drain(&app.state.pool, &*transport, now, 10).await.expect("drain"), Drained::default());
    let after_lease = now + chrono::Duration::from_std(LEASE).expect("a lease") + chrono::Duration::seconds(1);
    let drained = drain(&app.state.pool, &*transport, after_lease, 10).await.expect("drain");
    assert_eq!(drained, Drained { sent: 1, ..Drained::default() });
    assert_eq!(drain(&app.state.pool, &*transport, after_lease, 10).await.expect("drain"), Drained::default());

    assert_eq!(sink.attempts(), ["stall", "accept"]);
    let mails = sink.received_by("kim@example.com");
    assert_eq!(mails.len(), 1, "{mails:?}");
    let token = token_from_mail(mails[0].text.as_deref().expect("text"));
    app.anonymous().post("/api/auth/verify-email", json!({"token": token})).await.expect(200);
    let r = db
        .query_one("SELECT status, attempts, body IS NULL FROM mail_outbox WHERE to_address = 'kim@example.com'", &[])
        .await
        .expect("row");
    assert_eq!((r.get::<_, String>(0).as_str(), r.get::<_, i32>(1), r.get::<_, bool>(2)), ("sent", 2, true));
}

#[tokio::test]
async fn serve_with_smtp_sends_the_sign_up_mail_by_itself() {
    let sink = SmtpSink::start(SinkOptions::default());
    // The app here only makes the database and the secrets file; the served process is the one tested.
    let app = TestApp::spawn().await;
    let port = free_port();
    let _serve = engagetrack(&app, &sink).args(["serve", "--addr", &format!("127.0.0.1:{port}")]).spawn().expect("start engagetrack serve");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(started.elapsed() < Duration::from_secs(60), "serve did not become healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let signup = http.post(format!("{base}/api/auth/signup")).json(&json!({"email": "lee@example.com", "password": PASSWORD})).send().await;
    assert_eq!(signup.expect("sign up").status().as_u16(), 201);
    // No job is run by the test: the server's own worker sends it.
    let started = Instant::now();
    while sink.received_by("lee@example.com").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "the sign-up mail did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mail = &sink.received_by("lee@example.com")[0];
    assert!(mail.text.as_deref().is_some_and(|t| t.contains(&format!("{base}/verify-email?token="))), "{mail:?}");
}
