//! Billing webhooks, for each of the four providers: deliveries signed the
//! way the provider signs them are applied exactly once; a wrong secret, a
//! tampered body, a stale timestamp or a missing header is refused with a
//! reason and changes nothing; a whole subscription life maps onto our
//! model; out-of-order delivery never moves a subscription backwards.

use engagetrack_tests::TestApp;
use engagetrack_tests::payment_fakes::{
    Delivery, Event, Life, Provider, Step, create_organization, deliver, send, sign, spawn_billing_app,
};
use uuid::Uuid;

#[derive(Debug, PartialEq)]
struct Sub {
    plan: String,
    provider: Option<String>,
    status: String,
    period_end: i64,
    cancel_at_period_end: bool,
}

async fn subscription(app: &TestApp, org: Uuid) -> Sub {
    let row = app
        .db
        .client()
        .await
        .query_one(
            "SELECT plan_id, provider, status, extract(epoch FROM current_period_end)::bigint, cancel_at_period_end
             FROM subscriptions WHERE organization_id = $1",
            &[&org],
        )
        .await
        .expect("subscription");
    Sub { plan: row.get(0), provider: row.get(1), status: row.get(2), period_end: row.get(3), cancel_at_period_end: row.get(4) }
}

async fn count(app: &TestApp, sql: &str, org: Uuid) -> i64 {
    app.db.client().await.query_one(sql, &[&org]).await.expect("count").get(0)
}

async fn records(app: &TestApp, org: Uuid) -> i64 {
    count(app, "SELECT count(*) FROM billing_records WHERE organization_id = $1", org).await
}

async fn send_all(app: &TestApp, provider: Provider, events: &[Event]) {
    for e in events {
        let (status, body) = send(app, provider, e).await;
        assert_eq!(status, 200, "{provider:?} {}: {body}", e.body);
        assert_eq!(body["outcome"], "applied", "{provider:?} {}: {body}", e.body);
    }
}

fn provider_name(p: Provider) -> &'static str {
    match p {
        Provider::Stripe => "stripe",
        Provider::Paddle => "paddle",
        Provider::LemonSqueezy => "lemonsqueezy",
        Provider::Polar => "polar",
    }
}

#[tokio::test]
async fn every_new_organisation_starts_on_the_trial() {
    let app = spawn_billing_app().await;
    let org = create_organization(&app).await;
    let s = subscription(&app, org).await;
    assert_eq!((s.plan.as_str(), s.status.as_str(), s.provider), ("trial", "trialing", None));
}

#[tokio::test]
async fn a_whole_life_per_provider() {
    let app = spawn_billing_app().await;
    for provider in Provider::ALL {
        let org = create_organization(&app).await;
        let mut life = Life::new(provider, org);
        let [_, p1, p2] = life.periods;
        let ctx = |step: &str| format!("{provider:?} after {step}");

        send_all(&app, provider, &life.step(Step::Created)).await;
        let s = subscription(&app, org).await;
        assert_eq!(
            s,
            Sub {
                plan: "growth".into(),
                provider: Some(provider_name(provider).into()),
                status: "active".into(),
                period_end: p1,
                cancel_at_period_end: false
            },
            "{}",
            ctx("created")
        );

        send_all(&app, provider, &life.step(Step::Renewed)).await;
        let s = subscription(&app, org).await;
        assert_eq!((s.status.as_str(), s.period_end), ("active", p2), "{}", ctx("renewed"));
        assert_eq!(records(&app, org).await, 1, "{}", ctx("renewed"));

        send_all(&app, provider, &life.step(Step::PaymentFailed)).await;
        assert_eq!(subscription(&app, org).await.status, "past_due", "{}", ctx("payment failed"));

        send_all(&app, provider, &life.step(Step::Recovered)).await;
        let s = subscription(&app, org).await;
        assert_eq!((s.status.as_str(), s.period_end), ("active", p2), "{}", ctx("recovered"));
        assert_eq!(records(&app, org).await, 2, "{}", ctx("recovered"));

        send_all(&app, provider, &life.step(Step::CancelAtPeriodEnd)).await;
        let s = subscription(&app, org).await;
        assert_eq!((s.status.as_str(), s.period_end, s.cancel_at_period_end), ("active", p2, true), "{}", ctx("cancelled at period end"));

        send_all(&app, provider, &life.step(Step::Refund)).await;
        assert_eq!(
            count(&app, "SELECT count(*) FROM billing_records WHERE organization_id = $1 AND kind = 'refund'", org).await,
            1,
            "{}",
            ctx("refund")
        );
        // The refund changed money, not the subscription.
        assert!(subscription(&app, org).await.cancel_at_period_end);

        send_all(&app, provider, &life.step(Step::CustomerUpdated)).await;
        assert_eq!(
            count(&app, "SELECT count(*) FROM subscriptions WHERE organization_id = $1 AND customer_email IS NOT NULL", org).await,
            1
        );

        // An event type we do not act on: 200, recorded as ignored.
        for e in life.step(Step::Unknown) {
            let (status, body) = send(&app, provider, &e).await;
            assert_eq!((status, body["outcome"].as_str()), (200, Some("ignored")), "{provider:?}: {body}");
        }
        let ignored: i64 = app
            .db
            .client()
            .await
            .query_one(
                "SELECT count(*) FROM billing_webhook_events WHERE provider = $1 AND outcome = 'ignored'",
                &[&provider_name(provider)],
            )
            .await
            .unwrap()
            .get(0);
        assert!(ignored >= 1, "{provider:?}: the unknown event is recorded");
    }
}

#[tokio::test]
async fn refused_deliveries_change_nothing() {
    let app = spawn_billing_app().await;
    for provider in Provider::ALL {
        let org = create_organization(&app).await;
        let mut life = Life::new(provider, org);
        let event = life.step(Step::Created).remove(0);
        let body = event.body.to_string();
        let now = chrono::Utc::now().timestamp();
        let good = sign(provider, &provider.test_secret(), body.as_bytes(), now, &event.delivery_id);

        let wrong_secret = sign(provider, &provider.wrong_secret(), body.as_bytes(), now, &event.delivery_id);
        let tampered = Delivery { headers: good.headers.clone(), body: body.replace("active", "trialing").into_bytes() };
        let stale = sign(provider, &provider.test_secret(), body.as_bytes(), now - 301, &event.delivery_id);
        let future = sign(provider, &provider.test_secret(), body.as_bytes(), now + 301, &event.delivery_id);
        // Paddle allows 5 s (its SDKs' default); the others 300 s.
        let just_late = sign(provider, &provider.test_secret(), body.as_bytes(), now - 20, &event.delivery_id);
        let missing = Delivery { headers: vec![], body: body.clone().into_bytes() };

        let mut cases = vec![
            ("wrong secret", wrong_secret, 401, "signature"),
            ("tampered body", tampered, 401, "signature"),
            ("missing header", missing, 400, "missing"),
        ];
        // LemonSqueezy signs no timestamp: nothing can be stale.
        if provider != Provider::LemonSqueezy {
            cases.push(("stale timestamp", stale, 401, "window"));
            cases.push(("future timestamp", future, 401, "window"));
        }
        if provider == Provider::Paddle {
            cases.push(("20 s old", just_late.clone(), 401, "outside the 5 s window"));
        }
        for (name, delivery, status, reason) in cases {
            let (got, answer) = deliver(&app, provider, &delivery).await;
            assert_eq!(got, status, "{provider:?} {name}: {answer}");
            let error = answer["error"].as_str().unwrap_or_default().to_lowercase();
            assert!(error.contains(reason), "{provider:?} {name}: `{error}` lacks `{reason}`");
        }
        let s = subscription(&app, org).await;
        assert_eq!((s.plan.as_str(), s.status.as_str()), ("trial", "trialing"), "{provider:?}: nothing applied");
        assert_eq!(count(&app, "SELECT count(*) FROM billing_webhook_events WHERE organization_id = $1", org).await, 0);

        // And the good one still applies (20 s old is within 300 s for the others).
        let fresh = sign(provider, &provider.test_secret(), body.as_bytes(), chrono::Utc::now().timestamp(), &event.delivery_id);
        let (got, answer) = deliver(&app, provider, if provider == Provider::Paddle { &fresh } else { &just_late }).await;
        assert_eq!((got, answer["outcome"].as_str()), (200, Some("applied")), "{provider:?}: {answer}");
        assert_eq!(subscription(&app, org).await.status, "active");
    }
}

#[tokio::test]
async fn the_same_event_five_times_at_once_has_one_effect() {
    let app = spawn_billing_app().await;
    for provider in Provider::ALL {
        let org = create_organization(&app).await;
        let mut life = Life::new(provider, org);
        send_all(&app, provider, &life.step(Step::Created)).await;
        // A payment: its effect (a billing record) would show any double apply.
        let renewal = life.step(Step::Renewed).remove(0);
        let now = chrono::Utc::now().timestamp();
        let delivery = sign(provider, &provider.test_secret(), renewal.body.to_string().as_bytes(), now, &renewal.delivery_id);
        let answers = futures_join(&app, provider, &delivery, 5).await;
        let applied = answers.iter().filter(|(s, b)| *s == 200 && b["outcome"] == "applied").count();
        let duplicate = answers.iter().filter(|(s, b)| *s == 200 && b["outcome"] == "duplicate").count();
        assert_eq!((applied, duplicate), (1, 4), "{provider:?}: {answers:?}");
        assert_eq!(records(&app, org).await, 1, "{provider:?}");
        assert_eq!(
            count(&app, "SELECT count(*) FROM audit_log WHERE organization_id = $1 AND action = 'billing.record_added'", org).await,
            1
        );
        // And later, once more: still one.
        let (status, body) = deliver(&app, provider, &delivery).await;
        assert_eq!((status, body["outcome"].as_str()), (200, Some("duplicate")));
        assert_eq!(records(&app, org).await, 1);
    }
}

async fn futures_join(app: &TestApp, provider: Provider, delivery: &Delivery, n: usize) -> Vec<(u16, serde_json::Value)> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let url = app.url(provider.path());
        let d = delivery.clone();
        tasks.spawn(async move {
            let mut request = reqwest::Client::new().post(url).body(d.body.clone());
            for (name, value) in &d.headers {
                request = request.header(*name, value);
            }
            let response = request.send().await.expect("deliver");
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap_or_default())
        });
    }
    tasks.join_all().await
}

#[tokio::test]
async fn out_of_order_events_do_not_move_it_back() {
    let app = spawn_billing_app().await;
    for provider in Provider::ALL {
        let org = create_organization(&app).await;
        let mut life = Life::new(provider, org);
        send_all(&app, provider, &life.step(Step::Created)).await;
        let t = life.clock();
        // Made first, delivered last: a past-due state from before the cancellation.
        life.set_clock(t + 5);
        let older = life.status_event("past_due");
        life.set_clock(t + 10);
        send_all(&app, provider, &life.step(Step::CancelAtPeriodEnd)).await;
        let before = subscription(&app, org).await;
        let (status, body) = send(&app, provider, &older).await;
        assert_eq!((status, body["outcome"].as_str()), (200, Some("stale")), "{provider:?}: {body}");
        assert_eq!(subscription(&app, org).await, before, "{provider:?}: an older event changed the subscription");
    }
}

#[tokio::test]
async fn an_unconfigured_provider_answers_404() {
    let app = TestApp::spawn().await;
    for provider in Provider::ALL {
        let org = create_organization(&app).await;
        let mut life = Life::new(provider, org);
        let (status, body) = send(&app, provider, &life.step(Step::Created).remove(0)).await;
        assert_eq!(status, 404, "{provider:?}: {body}");
        assert!(body["error"].as_str().unwrap_or_default().contains("not configured"), "{body}");
    }
    let (status, _) = deliver(&app, Provider::Stripe, &Delivery { headers: vec![], body: b"{}".to_vec() }).await;
    assert_eq!(status, 404);
}
