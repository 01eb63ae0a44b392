//! Checkout and portal links through each provider's API (a loopback fake of
//! its wire format, `engagetrack_tests::payment_api_fake`), a whole
//! subscription life that starts at our checkout with the quota following
//! the plan, the event quota (notices at 80 % and 100 %, the pause past the
//! grace with counted drops, lifted at once by an upgrade), and the plan's
//! site and member limits.

use chrono::Utc;
use engagetrack_server::jobs::Job;
use engagetrack_tests::TestApp;
use engagetrack_tests::payment_api_fake::PaymentApiFake;
use engagetrack_tests::payment_fakes::{Life, Provider, Step, send, spawn_billing_app, spawn_billing_app_with};
use engagetrack_tests::users::TestUser;
use serde_json::{Value, json};
use shared::batch::{self, Batch, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use shared::{EventId, Pipeline, Processed, Salt, SiteId, Visit};
use uuid::Uuid;

const CHROME: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

fn name(p: Provider) -> &'static str {
    match p {
        Provider::Stripe => "stripe",
        Provider::Paddle => "paddle",
        Provider::LemonSqueezy => "lemonsqueezy",
        Provider::Polar => "polar",
    }
}

/// Where each provider's request carries our organisation id.
fn organization_in(p: Provider, body: &Value) -> Option<String> {
    let at = match p {
        Provider::Stripe => "/subscription_data[metadata][organization_id]",
        Provider::Paddle => "/custom_data/organization_id",
        Provider::LemonSqueezy => "/data/attributes/checkout_data/custom/organization_id",
        Provider::Polar => "/metadata/organization_id",
    };
    // A form field name is one key, brackets and all.
    match p {
        Provider::Stripe => body.get(&at[1..]).and_then(Value::as_str).map(str::to_owned),
        _ => body.pointer(at).and_then(Value::as_str).map(str::to_owned),
    }
}

async fn owner(app: &TestApp) -> TestUser {
    app.sign_up_verified(&format!("owner-{}@example.com", Uuid::new_v4().simple())).await
}

async fn billing(app: &TestApp, user: &TestUser) -> Value {
    app.as_user(user).get(&format!("/api/organizations/{}/billing", user.organization_id)).await.expect(200)
}

async fn send_all(app: &TestApp, provider: Provider, events: &[engagetrack_tests::payment_fakes::Event]) {
    for e in events {
        let (status, body) = send(app, provider, e).await;
        assert_eq!((status, body["outcome"].as_str()), (200, Some("applied")), "{provider:?} {}: {body}", e.body);
    }
}

fn cancelled_status(p: Provider) -> &'static str {
    match p {
        Provider::LemonSqueezy => "expired",
        _ => "canceled",
    }
}

#[tokio::test]
async fn a_life_from_our_checkout_to_cancellation_per_provider_with_the_quota_following() {
    let fake = PaymentApiFake::start().await;
    let app = spawn_billing_app_with(Some(&fake)).await;
    let plans = app.as_user(&owner(&app).await).get("/api/billing/plans").await.expect(200);
    let growth = plans.as_array().unwrap().iter().find(|p| p["id"] == "growth").expect("growth");
    assert_eq!(growth["providers"].as_array().unwrap().len(), 4, "{growth}");
    assert_eq!(plans[0]["id"], "trial");
    assert_eq!(plans[0]["providers"], json!([]), "the trial is not bought");

    for provider in Provider::ALL {
        let user = owner(&app).await;
        let org = user.organization_id;
        let ctx = |step: &str| format!("{provider:?} at {step}");
        let before = billing(&app, &user).await;
        assert_eq!((before["quota"]["plan_id"].as_str(), before["quota"]["monthly_events"].as_i64()), (Some("trial"), Some(10_000)));

        // Before any provider event there is no portal.
        app.as_user(&user)
            .post(&format!("/api/organizations/{org}/billing/portal"), json!({}))
            .await
            .expect_error(409, "choose a plan first");

        // The checkout: the provider's own request shape, our id in its metadata field.
        let link = app
            .as_user(&user)
            .post(&format!("/api/organizations/{org}/billing/checkout"), json!({"plan_id": "growth", "provider": name(provider)}))
            .await
            .expect(201);
        let url = link["url"].as_str().unwrap();
        assert!(url.starts_with(&format!("http://{}/pay/{}", fake.addr, name(provider))), "{link}");
        let sent = fake.received(name(provider));
        let request = sent.last().expect("the provider was called");
        assert_eq!(request.bearer.as_deref(), Some(fake.keys[name(provider)].as_str()), "{}", ctx("checkout"));
        assert_eq!(organization_in(provider, &request.body), Some(org.to_string()), "{}: {:?}", ctx("checkout"), request.body);
        match provider {
            Provider::Stripe => {
                assert_eq!(request.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
                assert_eq!(request.body["line_items[0][price]"], "price_1GrowthMonthly");
                assert_eq!(request.body["customer_email"], user.email);
                assert!(request.idempotency_key.is_some());
            }
            Provider::Paddle => {
                assert_eq!(request.body["items"][0]["price_id"], "pri_01growthmonthly")
            }
            Provider::LemonSqueezy => {
                assert_eq!(request.accept.as_deref(), Some("application/vnd.api+json"));
                assert_eq!(request.body["data"]["relationships"]["variant"]["data"]["id"], "777");
            }
            Provider::Polar => assert_eq!(request.body["products"], json!(["prod_growth_0001"])),
        }
        let recorded: i64 = app
            .db
            .client()
            .await
            .query_one(
                "SELECT count(*) FROM billing_checkouts WHERE organization_id = $1 AND plan_id = 'growth' AND external_id = $2",
                &[&org, &link["external_id"].as_str()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(recorded, 1);

        // The provider's events follow, naming the organisation our checkout sent.
        let mut life = Life::new(provider, org);
        send_all(&app, provider, &life.step(Step::Created)).await;
        let s = billing(&app, &user).await;
        assert_eq!((s["status"].as_str(), s["provider"].as_str()), (Some("active"), Some(name(provider))), "{}", ctx("created"));
        assert_eq!(
            (s["quota"]["plan_id"].as_str(), s["quota"]["monthly_events"].as_i64()),
            (Some("growth"), Some(1_000_000)),
            "{}",
            ctx("created")
        );

        // Another provider cannot be chosen now, nor a second subscription.
        let other = if provider == Provider::Stripe { "paddle" } else { "stripe" };
        app.as_user(&user)
            .post(&format!("/api/organizations/{org}/billing/checkout"), json!({"plan_id": "growth", "provider": other}))
            .await
            .expect_error(409, "chooses its provider once");
        app.as_user(&user)
            .post(&format!("/api/organizations/{org}/billing/checkout"), json!({"plan_id": "growth", "provider": name(provider)}))
            .await
            .expect_error(409, "billing portal");

        // The portal: the provider's customer (or subscription) from its events.
        let portal = app.as_user(&user).post(&format!("/api/organizations/{org}/billing/portal"), json!({})).await.expect(200);
        assert!(portal["url"].as_str().unwrap().starts_with(&format!("http://{}/portal/{}", fake.addr, name(provider))), "{portal}");
        let call = fake.received(name(provider)).pop().unwrap();
        match provider {
            Provider::Stripe => assert_eq!(call.body["customer"], life.customer),
            Provider::Paddle => assert_eq!(call.path, format!("/paddle/customers/{}/portal-sessions", life.customer)),
            Provider::LemonSqueezy => assert_eq!(call.path, format!("/lemonsqueezy/v1/subscriptions/{}", life.subscription)),
            Provider::Polar => assert_eq!(call.body["customer_id"], life.customer),
        }

        for (step, status) in [(Step::Renewed, "active"), (Step::PaymentFailed, "past_due"), (Step::Recovered, "active")] {
            send_all(&app, provider, &life.step(step)).await;
            let s = billing(&app, &user).await;
            assert_eq!(s["status"], status, "{}", ctx(&format!("{step:?}")));
            assert_eq!(s["quota"]["monthly_events"], 1_000_000, "{}: a past-due subscription keeps its plan", ctx(&format!("{step:?}")));
        }
        send_all(&app, provider, &life.step(Step::CancelAtPeriodEnd)).await;
        let s = billing(&app, &user).await;
        assert_eq!(
            (s["cancel_at_period_end"].as_bool(), s["quota"]["monthly_events"].as_i64()),
            (Some(true), Some(1_000_000)),
            "{}",
            ctx("cancel at period end")
        );

        // The period ends: cancelled, and the limits are the default plan's again.
        let (status, body) = send(&app, provider, &life.status_event(cancelled_status(provider))).await;
        assert_eq!((status, body["outcome"].as_str()), (200, Some("applied")), "{body}");
        let s = billing(&app, &user).await;
        assert_eq!(s["status"], "cancelled", "{}", ctx("ended"));
        assert_eq!(
            (s["quota"]["plan_id"].as_str(), s["quota"]["monthly_events"].as_i64()),
            (Some("trial"), Some(10_000)),
            "{}",
            ctx("ended")
        );

        let audited: i64 = app
            .db
            .client()
            .await
            .query_one("SELECT count(*) FROM audit_log WHERE organization_id = $1 AND action IN ('billing.checkout_started', 'billing.portal_opened')", &[&org])
            .await
            .unwrap()
            .get(0);
        assert_eq!(audited, 2, "{}", ctx("audit"));
    }
}

#[tokio::test]
async fn checkout_refusals_name_their_reason() {
    let fake = PaymentApiFake::start().await;
    let app = spawn_billing_app_with(Some(&fake)).await;
    let user = owner(&app).await;
    let path = format!("/api/organizations/{}/billing/checkout", user.organization_id);
    let as_owner = app.as_user(&user);
    as_owner.post(&path, json!({"plan_id": "platinum", "provider": "stripe"})).await.expect_error(400, "no plan `platinum`");
    as_owner.post(&path, json!({"plan_id": "trial", "provider": "stripe"})).await.expect_error(400, "has no stripe price");
    as_owner.post(&path, json!({"plan_id": "growth", "provider": "paypal"})).await.expect(400);

    // The provider refuses or fails: a gateway error with its message, and nothing recorded.
    fake.fail_next("paddle", 500);
    let answer = as_owner
        .post(&path, json!({"plan_id": "growth", "provider": "paddle"}))
        .await
        .expect_error(502, "paddle refused the request (500)");
    assert!(answer.contains("told to fail"), "{answer}");
    assert!(!answer.contains(&fake.keys["paddle"]), "the key never shows");
    app.db
        .client()
        .await
        .execute("UPDATE plans SET price_ids = price_ids || '{\"stripe\": \"nope\"}' WHERE id = 'starter'", &[])
        .await
        .unwrap();
    as_owner.post(&path, json!({"plan_id": "starter", "provider": "stripe"})).await.expect_error(502, "No such price");
    let recorded: i64 = app.db.client().await.query_one("SELECT count(*) FROM billing_checkouts", &[]).await.unwrap().get(0);
    assert_eq!(recorded, 0);

    // Roles: a viewer of the organisation and an outsider get no checkout.
    let viewer = app.sign_up_verified(&format!("viewer-{}@example.com", Uuid::new_v4().simple())).await;
    app.add_member(user.organization_id, viewer.id, "viewer").await;
    app.as_user(&viewer).post(&path, json!({"plan_id": "growth", "provider": "stripe"})).await.expect(403);
    let outsider = owner(&app).await;
    app.as_user(&outsider).post(&path, json!({"plan_id": "growth", "provider": "stripe"})).await.expect(404);
    let billing_member = app.sign_up_verified(&format!("billing-{}@example.com", Uuid::new_v4().simple())).await;
    app.add_member(user.organization_id, billing_member.id, "billing").await;
    app.as_user(&billing_member).post(&path, json!({"plan_id": "growth", "provider": "stripe"})).await.expect(201);

    // A deployment without a provider's API key: that provider is not offered.
    let bare = spawn_billing_app().await;
    let user = owner(&bare).await;
    let plans = bare.as_user(&user).get("/api/billing/plans").await.expect(200);
    assert!(plans.as_array().unwrap().iter().all(|p| p["providers"] == json!([])), "{plans}");
    bare.as_user(&user)
        .post(&format!("/api/organizations/{}/billing/checkout", user.organization_id), json!({"plan_id": "growth", "provider": "stripe"}))
        .await
        .expect_error(404, "no `stripe-api-key`");
}

// ---------------------------------------------------------------- quotas

fn pageview(site: SiteId, n: usize) -> String {
    json!({"site": site.to_string(), "type": "pageview", "url": format!("https://example.com/p{n}"), "sid": format!("quota-visit-{n}")})
        .to_string()
}

async fn beacon(app: &TestApp, site: SiteId, n: usize) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(app.url("/api/e"))
        .header("content-type", "text/plain")
        .header("user-agent", CHROME)
        .header("x-forwarded-for", "203.0.113.9")
        .body(pageview(site, n))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn run_quota_job(app: &TestApp) -> Value {
    Job::Quota.run(&app.state, Utc::now()).await.expect("the quota job")
}

async fn signed_batch(app: &TestApp, site: SiteId, n: u8) -> Value {
    let salt = Salt::from_bytes([7; 32]);
    let events = (0..n)
        .map(|i| {
            let body = pageview(site, 1000 + usize::from(i));
            let visit = Visit { ip: "192.0.2.80".parse().unwrap(), user_agent: CHROME };
            match Pipeline::default().process(body.as_bytes(), visit, &salt, EventId::new(Utc::now(), [i; 10])).unwrap() {
                Processed::Event(e) => *e,
                Processed::Bot(r) => panic!("{r}"),
            }
        })
        .collect();
    let body = serde_json::to_vec(&Batch { events }).unwrap();
    let now = Utc::now().timestamp();
    reqwest::Client::new()
        .post(app.url("/ingest/batch"))
        .header(TIMESTAMP_HEADER, now.to_string())
        .header(SIGNATURE_HEADER, batch::sign(&app.edge_signing_key(), now, &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_quota_notices_at_80_and_100_pauses_past_the_grace_and_an_upgrade_lifts_it_at_once() {
    let app = spawn_billing_app().await;
    let user = owner(&app).await;
    let org = user.organization_id;
    // A small trial quota, so a test can fill it: 20 events, grace to 22.
    app.db.client().await.execute("UPDATE plans SET monthly_events = 20 WHERE id = 'trial'", &[]).await.unwrap();
    let site: Value =
        app.as_user(&user).post(&format!("/api/organizations/{org}/sites"), json!({"domain": "example.com"})).await.expect(201);
    let site = SiteId::from_uuid(site["id"].as_str().unwrap().parse().unwrap());

    let mut sent = 0;
    let mut send_beacons = async |n: usize| {
        for _ in 0..n {
            let (status, body) = beacon(&app, site, sent).await;
            assert_eq!(status, 202, "beacon {sent}: {body}");
            sent += 1;
        }
    };
    send_beacons(15).await;
    let run = run_quota_job(&app).await;
    assert_eq!(run["quota"]["notices"], 0, "75 %: no notice yet: {run}");
    send_beacons(1).await;
    let run = run_quota_job(&app).await;
    assert_eq!((run["quota"]["notices"].as_u64(), run["quota"]["mails"].as_u64()), (Some(1), Some(1)), "80 %: {run}");
    let mail = app.last_mail_to(&user.email).await;
    assert!(mail.subject.contains("80 %") && mail.body.contains("16 of its 20 events"), "{mail:?}");
    assert_eq!(run_quota_job(&app).await["quota"]["notices"], 0, "each threshold once per period");

    send_beacons(4).await; // 20: 100 %, still stored
    let run = run_quota_job(&app).await;
    assert_eq!(run["quota"]["notices"], 1, "{run}");
    assert!(app.last_mail_to(&user.email).await.subject.contains("used up"));
    send_beacons(2).await; // 22: the grace is used up
    let view = billing(&app, &user).await;
    assert_eq!((view["quota"]["state"].as_str(), view["usage"]["events"].as_i64()), (Some("paused"), Some(22)), "{view}");
    assert_eq!(view["notices"].as_array().unwrap().len(), 2, "{view}");
    let run = run_quota_job(&app).await;
    assert_eq!(run["quota"]["paused"], 1, "{run}");

    // Paused: a clear 402, nothing stored, every refused event counted.
    for n in 0..3 {
        let (status, body) = beacon(&app, site, 500 + n).await;
        assert_eq!(status, 402, "{body}");
        assert!(body.contains("used its event quota") && body.contains("20 events"), "{body}");
    }
    let batch = signed_batch(&app, site, 4).await;
    assert_eq!((batch["stored"].as_u64(), batch["over_quota"].as_u64()), (Some(0), Some(4)), "{batch}");
    assert_eq!(app.count_events(site).await, 22, "exactly the accepted events");
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await; // the drop counter's flush
    assert_eq!(billing(&app, &user).await["quota"]["dropped_events"], 7);

    // An upgrade lifts the pause at once (within the 1 s paused-site cache), without the job.
    let mut life = Life::new(Provider::Stripe, org);
    send_all(&app, Provider::Stripe, &life.step(Step::Created)).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (status, body) = beacon(&app, site, 900).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(billing(&app, &user).await["quota"]["state"], "ok");
    assert_eq!(app.count_events(site).await, 23);
}

#[tokio::test]
async fn a_free_period_that_ended_moves_on_and_its_count_starts_again() {
    let app = spawn_billing_app().await;
    let user = owner(&app).await;
    let org = user.organization_id;
    // A trial that started 45 days ago: its first 30-day period is over.
    app.db
        .client()
        .await
        .execute(
            "UPDATE subscriptions SET current_period_start = now() - interval '45 days', current_period_end = now() - interval '15 days',
                    period_events = 999999, usage_period_start = now() - interval '45 days' WHERE organization_id = $1",
            &[&org],
        )
        .await
        .unwrap();
    let site: Value = app.as_user(&user).post(&format!("/api/organizations/{org}/sites"), json!({"domain": "example.com"})).await.expect(201);
    let site = SiteId::from_uuid(site["id"].as_str().unwrap().parse().unwrap());
    let (status, body) = beacon(&app, site, 1).await;
    assert_eq!(status, 402, "the old period's count still applies: {body}");
    let run = run_quota_job(&app).await;
    assert_eq!(run["quota"]["periods_advanced"], 1, "{run}");
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await; // the paused site's cache
    let (status, body) = beacon(&app, site, 2).await;
    assert_eq!(status, 202, "a new period, a new count: {body}");
    let view = billing(&app, &user).await;
    let start = chrono::DateTime::parse_from_rfc3339(view["current_period_start"].as_str().unwrap()).unwrap();
    let age = Utc::now().signed_duration_since(start);
    assert!(age > chrono::Duration::days(14) && age < chrono::Duration::days(16), "the window 30 days after the start: {view}");
    assert_eq!((view["quota"]["state"].as_str(), view["usage"]["events"].as_i64()), (Some("ok"), Some(1)), "{view}");
}

// ---------------------------------------------------------------- limits

#[tokio::test]
async fn the_plans_site_and_member_limits_hold_even_when_raced() {
    let app = spawn_billing_app().await;
    let user = owner(&app).await;
    let org = user.organization_id;
    let sites = format!("/api/organizations/{org}/sites");
    for i in 0..2 {
        app.as_user(&user).post(&sites, json!({"domain": format!("site{i}.example.com")})).await.expect(201);
    }
    // Two creations at once for the last place (the trial allows 3): exactly one wins.
    let (first, second) = (app.as_user(&user), app.as_user(&user));
    let (a, b) = tokio::join!(first.post(&sites, json!({"domain": "a.example.com"})), second.post(&sites, json!({"domain": "b.example.com"})));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [201, 402]);
    app.as_user(&user).post(&sites, json!({"domain": "c.example.com"})).await.expect_error(402, "allows 3 sites");

    // Members: the owner and two open invitations fill the trial's 3 places.
    let invitations = format!("/api/organizations/{org}/invitations");
    let invite = |email: &str| json!({"email": email, "role": "viewer"});
    app.as_user(&user).post(&invitations, invite("one@example.com")).await.expect(201);
    app.as_user(&user).post(&invitations, invite("two@example.com")).await.expect(201);
    app.as_user(&user).post(&invitations, invite("three@example.com")).await.expect_error(402, "allows 3 members");

    // An upgrade raises both limits.
    let mut life = Life::new(Provider::Stripe, org);
    send_all(&app, Provider::Stripe, &life.step(Step::Created)).await;
    app.as_user(&user).post(&sites, json!({"domain": "c.example.com"})).await.expect(201);
    app.as_user(&user).post(&invitations, invite("three@example.com")).await.expect(201);
}
