//! Mail over SMTP (issue 13): the product's SMTP adapter and outbox worker
//! against a real SMTP server (aiosmtpd on loopback, see
//! tests/src/smtp_server.rs). The mailed links are followed through the API;
//! refusals, dropped connections, 4xx answers and racing workers each end in
//! one delivery. The worker process killed mid-send is in
//! functions/engagetrack/tests/mail_worker.rs.

use chrono::{DateTime, Utc};
use engagetrack_server::AppConfig;
use engagetrack_server::adapters::smtp::SmtpSettings;
use engagetrack_server::mail::worker::{Drained, drain};
use engagetrack_server::mail::{Mail, Unsubscribe};
use engagetrack_tests::smtp_server::{Received, SinkOptions, SinkTls, SmtpSink};
use engagetrack_tests::{TestApp, free_port, token_from_mail};
use serde_json::json;

const PASSWORD: &str = "violet anchor drifts 42 lanterns";

async fn app_sending_to(smtp: SmtpSettings) -> TestApp {
    TestApp::spawn_with(AppConfig { smtp: Some(smtp), ..AppConfig::default() }).await
}

/// One round of the mail worker as the `send-mail` job runs it, at `now`.
async fn send_due(app: &TestApp, now: DateTime<Utc>) -> Drained {
    let transport = app.state.mail_transport().expect("transport").expect("SMTP is configured");
    drain(&app.state.pool, &*transport, now, 200).await.expect("drain")
}

fn sent(n: u32) -> Drained {
    Drained { sent: n, ..Drained::default() }
}

fn retrying(n: u32) -> Drained {
    Drained { retrying: n, ..Drained::default() }
}

/// The only message `to` received.
#[track_caller]
fn only_mail(sink: &SmtpSink, to: &str) -> Received {
    let mut mails = sink.received_by(to);
    assert_eq!(mails.len(), 1, "{to} got {} messages: {mails:?}", mails.len());
    mails.remove(0)
}

struct Row {
    status: String,
    attempts: i32,
    body: Option<String>,
    html: Option<String>,
    message_id: Option<String>,
    last_error: Option<String>,
}

async fn outbox_row(app: &TestApp, to: &str) -> Row {
    let row = app
        .db
        .client()
        .await
        .query_one("SELECT status, attempts, body, html_body, message_id, last_error FROM mail_outbox WHERE to_address = $1", &[&to])
        .await
        .expect("one outbox row");
    Row { status: row.get(0), attempts: row.get(1), body: row.get(2), html: row.get(3), message_id: row.get(4), last_error: row.get(5) }
}

#[track_caller]
fn assert_multipart_with_link(mail: &Received, path: &str) -> String {
    assert_eq!(mail.content_type, "multipart/alternative", "{mail:?}");
    let text = mail.text.as_deref().expect("a text/plain part");
    let html = mail.html.as_deref().expect("a text/html part");
    assert!(text.contains(&format!("{path}?token=")), "{text}");
    let token = token_from_mail(text);
    assert!(html.contains(&format!("{path}?token={token}\"")), "the HTML part links the same token: {html}");
    assert_eq!(mail.list_unsubscribe, None, "a mail one cannot opt out of has no List-Unsubscribe");
    assert_eq!(mail.from, "EngageTrack <no-reply@engagetrack.test>");
    token
}

#[tokio::test]
async fn verification_reset_and_invitation_links_arrive_over_smtp_and_work() {
    let sink = SmtpSink::start(SinkOptions::default());
    let app = app_sending_to(sink.settings()).await;
    let anonymous = app.anonymous();

    // Sign-up: the mail reaches the server once; its link verifies the address.
    let (_, org) = app.sign_up("ann@example.com", PASSWORD).await;
    assert_eq!(send_due(&app, Utc::now()).await, sent(1));
    let mail = only_mail(&sink, "ann@example.com");
    assert_eq!(mail.subject, "Confirm your email address for EngageTrack");
    let token = assert_multipart_with_link(&mail, "/verify-email");
    anonymous.post("/api/auth/login", json!({"email": "ann@example.com", "password": PASSWORD})).await.expect(403);
    anonymous.post("/api/auth/verify-email", json!({"token": token})).await.expect(200);
    let (access, _) = app.log_in("ann@example.com", PASSWORD).await;

    // Sent: the row keeps who, what and the Message-ID; the link is gone from it.
    let row = outbox_row(&app, "ann@example.com").await;
    assert_eq!((row.status.as_str(), row.attempts, row.body, row.html), ("sent", 1, None, None));
    assert_eq!(row.message_id.as_deref(), Some(mail.message_id.as_str()));
    assert!(mail.message_id.ends_with("@engagetrack.test>"), "{}", mail.message_id);
    assert!(!app.db.dump().await.contains(&token), "the database still holds the mailed token");

    // Password reset.
    anonymous.post("/api/auth/password-reset", json!({"email": "ann@example.com"})).await.expect(202);
    assert_eq!(send_due(&app, Utc::now()).await, sent(1));
    let reset = sink.received_by("ann@example.com").pop().expect("the reset mail");
    assert_eq!(reset.subject, "Reset your EngageTrack password");
    let token = assert_multipart_with_link(&reset, "/reset-password");
    let new_password = "quiet harbour 77 copper kites";
    anonymous.post("/api/auth/password-reset/confirm", json!({"token": token, "password": new_password})).await.expect(200);
    let (access_after_reset, _) = app.log_in("ann@example.com", new_password).await;
    assert_ne!(access, access_after_reset);

    // Invitation: Grace signs up (her link arrives over SMTP too), then accepts.
    app.sign_up("grace@example.com", PASSWORD).await;
    assert_eq!(send_due(&app, Utc::now()).await, sent(1));
    let token = assert_multipart_with_link(&only_mail(&sink, "grace@example.com"), "/verify-email");
    anonymous.post("/api/auth/verify-email", json!({"token": token})).await.expect(200);
    let ann = app.with_bearer(&access_after_reset);
    ann.post(&format!("/api/organizations/{org}/invitations"), json!({"email": "grace@example.com", "role": "editor"})).await.expect(201);
    assert_eq!(send_due(&app, Utc::now()).await, sent(1));
    let invitation = sink.received_by("grace@example.com").pop().expect("the invitation");
    assert!(invitation.subject.starts_with("You are invited to"), "{}", invitation.subject);
    let token = assert_multipart_with_link(&invitation, "/accept-invite");
    let (grace, _) = app.log_in("grace@example.com", PASSWORD).await;
    app.with_bearer(&grace).post("/api/invitations/accept", json!({"token": token})).await.expect(200);
    let members = ann.get(&format!("/api/organizations/{org}/members")).await.expect(200);
    assert!(members.to_string().contains("grace@example.com"), "{members}");

    assert_eq!(sink.received().len(), 4, "every mail once, nothing more");
    assert_eq!(send_due(&app, Utc::now()).await, Drained::default());
}

#[tokio::test]
async fn refused_then_dropped_then_deferred_still_ends_in_one_delivery() {
    // Nothing listens on the port at first: the connection is refused.
    let port = free_port();
    let settings = SmtpSettings::parse(&format!("smtp://127.0.0.1:{port}?tls=none"), "EngageTrack <no-reply@engagetrack.test>", None)
        .expect("settings");
    let app = app_sending_to(settings).await;
    app.sign_up("bo@example.com", PASSWORD).await;
    let start = Utc::now();
    assert_eq!(send_due(&app, start).await, retrying(1));
    let row = outbox_row(&app, "bo@example.com").await;
    assert_eq!((row.status.as_str(), row.attempts), ("queued", 1));
    assert!(row.body.as_deref().is_some_and(|b| b.contains("token=")), "kept for the retry");
    assert!(row.last_error.is_some(), "the reason is kept");
    // Not again before its backoff ends.
    assert_eq!(send_due(&app, start).await, Drained::default());

    // Now a server: it drops the first connection mid-DATA, answers 451 to
    // the second, and takes the third.
    let sink = SmtpSink::start_on(port, SinkOptions { plan: vec!["drop", "defer"], ..SinkOptions::default() });
    let hour = chrono::Duration::hours(1);
    assert_eq!(send_due(&app, start + hour).await, retrying(1));
    assert_eq!(send_due(&app, start + hour * 2).await, retrying(1));
    let row = outbox_row(&app, "bo@example.com").await;
    assert!(row.last_error.as_deref().is_some_and(|e| e.contains("451")), "{:?}", row.last_error);
    assert_eq!(send_due(&app, start + hour * 3).await, sent(1));
    assert_eq!(send_due(&app, start + hour * 4).await, Drained::default());

    assert_eq!(sink.attempts(), ["drop", "defer", "accept"]);
    let mail = only_mail(&sink, "bo@example.com");
    let token = token_from_mail(mail.text.as_deref().expect("text"));
    app.anonymous().post("/api/auth/verify-email", json!({"token": token})).await.expect(200);
    let row = outbox_row(&app, "bo@example.com").await;
    assert_eq!((row.status.as_str(), row.attempts, row.body, row.last_error), ("sent", 4, None, None));
    assert_eq!(row.message_id.as_deref(), Some(mail.message_id.as_str()));
}

#[tokio::test]
async fn a_permanent_refusal_fails_the_message_at_once_with_the_reason() {
    let sink = SmtpSink::start(SinkOptions { plan: vec!["refuse"], ..SinkOptions::default() });
    let app = app_sending_to(sink.settings()).await;
    app.sign_up("cy@example.com", PASSWORD).await;
    let now = Utc::now();
    assert_eq!(send_due(&app, now).await, Drained { failed: 1, ..Drained::default() });
    assert_eq!(send_due(&app, now + chrono::Duration::hours(3)).await, Drained::default(), "no retry after a 5xx");
    let row = outbox_row(&app, "cy@example.com").await;
    assert_eq!((row.status.as_str(), row.attempts, row.body, row.html), ("failed", 1, None, None));
    let reason = row.last_error.expect("a reason");
    assert!(reason.contains("550") && reason.contains("Mailbox unavailable"), "{reason}");
    assert_eq!(sink.attempts(), ["refuse"]);
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn a_message_never_accepted_within_the_bound_is_failed() {
    let sink = SmtpSink::start(SinkOptions { plan: vec!["defer"; 40], ..SinkOptions::default() });
    let app = app_sending_to(sink.settings()).await;
    app.sign_up("di@example.com", PASSWORD).await;
    let start = Utc::now();
    let mut outcomes = Vec::new();
    for hour in 0..30 {
        outcomes.push(send_due(&app, start + chrono::Duration::hours(hour)).await);
    }
    let failed: u32 = outcomes.iter().map(|d| d.failed).sum();
    let retried: u32 = outcomes.iter().map(|d| d.retrying).sum();
    assert_eq!(failed, 1);
    assert!(retried > 10, "retried {retried} times in a day");
    let row = outbox_row(&app, "di@example.com").await;
    assert_eq!((row.status.as_str(), row.body), ("failed", None));
    let reason = row.last_error.expect("a reason");
    // Either the last try's backoff would pass the bound (that try reached
    // the server), or the bound passed before the next try (it did not).
    let last_try_sent = reason.starts_with("gave up");
    assert!(last_try_sent || reason.starts_with("not sent within 24 h"), "{reason}");
    assert!(reason.contains("451"), "{reason}");
    assert_eq!(sink.attempts().len() as u32, retried + u32::from(last_try_sent), "every try reached the server");
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn two_workers_racing_deliver_each_message_once() {
    let sink = SmtpSink::start(SinkOptions::default());
    let app = app_sending_to(sink.settings()).await;
    let recipients: Vec<String> = (0..24).map(|i| format!("racer{i}@example.com")).collect();
    for to in &recipients {
        app.state.mailer.send(Mail::transactional(to.clone(), "Race", "Hello")).await.expect("queued");
    }
    // Two senders, each with a pool and a transport of its own, as two processes would have.
    let (pool_a, pool_b) = (app.db.pool(), app.db.pool());
    let (transport_a, transport_b) = (app.state.mail_transport().unwrap().unwrap(), app.state.mail_transport().unwrap().unwrap());
    let now = Utc::now();
    let (a, b) = tokio::join!(drain(&pool_a, &*transport_a, now, 200), drain(&pool_b, &*transport_b, now, 200));
    let (a, b) = (a.expect("worker a"), b.expect("worker b"));
    assert_eq!(a.sent + b.sent, 24, "{a:?} {b:?}");
    assert_eq!(a.lease_lost + b.lease_lost, 0);
    let received = sink.received();
    assert_eq!(received.len(), 24);
    for to in &recipients {
        only_mail(&sink, to);
    }
    let mut ids: Vec<&str> = received.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 24, "one Message-ID per message");
}

/// The one window the queue cannot close: the server took the message and the
/// connection died before the answer. The copy sent again carries the same
/// Message-ID, so receivers can tell it for the same message.
#[tokio::test]
async fn a_copy_accepted_without_an_answer_is_sent_again_with_the_same_message_id() {
    let sink = SmtpSink::start(SinkOptions { plan: vec!["accept-drop"], ..SinkOptions::default() });
    let app = app_sending_to(sink.settings()).await;
    app.sign_up("ed@example.com", PASSWORD).await;
    let now = Utc::now();
    assert_eq!(send_due(&app, now).await, retrying(1));
    assert_eq!(send_due(&app, now + chrono::Duration::hours(1)).await, sent(1));
    let copies = sink.received_by("ed@example.com");
    assert_eq!(copies.len(), 2);
    assert_eq!(copies[0].message_id, copies[1].message_id);
    assert_eq!(copies[0].text, copies[1].text);
}

#[tokio::test]
async fn optional_mail_carries_list_unsubscribe_with_one_click() {
    let sink = SmtpSink::start(SinkOptions::default());
    let app = app_sending_to(sink.settings()).await;
    let unsubscribe = Unsubscribe::new("https://engagetrack.test/unsubscribe?t=abc").expect("valid");
    app.state.mailer.send(Mail::optional("fay@example.com", "Your weekly report", "Visitors: 12", unsubscribe)).await.expect("queued");
    assert_eq!(send_due(&app, Utc::now()).await, sent(1));
    let mail = only_mail(&sink, "fay@example.com");
    assert_eq!(mail.list_unsubscribe.as_deref(), Some("<https://engagetrack.test/unsubscribe?t=abc>"));
    assert_eq!(mail.list_unsubscribe_post.as_deref(), Some("List-Unsubscribe=One-Click"));
    assert_eq!(mail.content_type, "multipart/alternative");
    assert!(mail.html.as_deref().is_some_and(|h| h.contains("Visitors: 12")));
}

#[tokio::test]
async fn starttls_and_implicit_tls_with_auth_from_the_secret_store() {
    for tls in [SinkTls::StartTls, SinkTls::Implicit] {
        let auth = Some(("mailer".to_owned(), "s3cret-Pass".to_owned()));
        let sink = SmtpSink::start(SinkOptions { tls, auth, ..SinkOptions::default() });
        let config = AppConfig { smtp: Some(sink.settings()), ..AppConfig::default() };
        let app = TestApp::spawn_with_secrets(config, &[("smtp-password", "s3cret-Pass".as_bytes())]).await;
        app.sign_up("gus@example.com", PASSWORD).await;
        assert_eq!(send_due(&app, Utc::now()).await, sent(1), "{tls:?}");
        only_mail(&sink, "gus@example.com");

        // A wrong password is the operator's to fix: retried, not failed.
        let config = AppConfig { smtp: Some(sink.settings()), ..AppConfig::default() };
        let wrong = TestApp::spawn_with_secrets(config, &[("smtp-password", "wrong".as_bytes())]).await;
        wrong.sign_up("hal@example.com", PASSWORD).await;
        assert_eq!(send_due(&wrong, Utc::now()).await, retrying(1), "{tls:?}");
        assert!(sink.received_by("hal@example.com").is_empty());
    }
}

#[tokio::test]
async fn a_server_with_a_certificate_we_do_not_trust_is_not_sent_to() {
    let sink = SmtpSink::start(SinkOptions { tls: SinkTls::StartTls, ..SinkOptions::default() });
    let mut settings = sink.settings();
    settings.ca_file = None; // the public roots do not know the test CA
    let app = app_sending_to(settings).await;
    app.sign_up("ike@example.com", PASSWORD).await;
    assert_eq!(send_due(&app, Utc::now()).await, retrying(1));
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn without_smtp_mail_stays_in_the_outbox() {
    let app = TestApp::spawn().await;
    app.sign_up("jo@example.com", PASSWORD).await;
    let summary = engagetrack_server::jobs::Job::SendMail.run(&app.state, Utc::now()).await.expect("job");
    assert_eq!(summary, json!({"job": "send-mail", "smtp_configured": false}));
    let row = outbox_row(&app, "jo@example.com").await;
    assert_eq!((row.status.as_str(), row.attempts), ("queued", 0));
    assert!(row.body.is_some_and(|b| b.contains("/verify-email?token=")));
    assert!(row.html.is_some_and(|h| h.contains("/verify-email?token=")));
}
