//! The four payment providers as a test sees them: each one's webhook
//! signing, written here from the provider's documentation (not with the
//! server's code, so a shared mistake cannot hide), and the event bodies of
//! a subscription's life in each provider's own shape.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::TestApp;

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Stripe,
    Paddle,
    LemonSqueezy,
    Polar,
}

impl Provider {
    pub const ALL: [Provider; 4] = [Provider::Stripe, Provider::Paddle, Provider::LemonSqueezy, Provider::Polar];

    pub fn path(self) -> &'static str {
        match self {
            Provider::Stripe => "/webhooks/stripe",
            Provider::Paddle => "/webhooks/paddle",
            Provider::LemonSqueezy => "/webhooks/lemonsqueezy",
            Provider::Polar => "/webhooks/polar",
        }
    }

    pub fn secret_name(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe-webhook-secret",
            Provider::Paddle => "paddle-webhook-secret",
            Provider::LemonSqueezy => "lemonsqueezy-webhook-secret",
            Provider::Polar => "polar-webhook-secret",
        }
    }

    /// A secret in the form the provider's dashboard shows.
    pub fn test_secret(self) -> String {
        match self {
            Provider::Stripe => "whsec_test_5f3c1d0e9a8b7c6d5e4f3a2b1c0d9e8f".into(),
            Provider::Paddle => "pdl_ntfset_01hv8wq2r9_test_k3y".into(),
            Provider::LemonSqueezy => "lemon-signing-secret-for-tests".into(),
            Provider::Polar => format!("whsec_{}", STANDARD.encode(b"polar test key, 24 bytes")),
        }
    }

    /// A secret of the same form that is not the one configured.
    pub fn wrong_secret(self) -> String {
        match self {
            Provider::Polar => format!("whsec_{}", STANDARD.encode(b"some other key, 24 bytes")),
            _ => self.test_secret().replace("test", "TEST"),
        }
    }

    /// The price (Stripe), price (Paddle), variant (LemonSqueezy) or product (Polar) of our Growth plan.
    pub fn growth_price(self) -> &'static str {
        match self {
            Provider::Stripe => "price_1GrowthMonthly",
            Provider::Paddle => "pri_01growthmonthly",
            Provider::LemonSqueezy => "777",
            Provider::Polar => "prod_growth_0001",
        }
    }
}

/// The app with all four providers' secrets in its secret store and the
/// Growth plan priced at each.
pub async fn spawn_billing_app() -> TestApp {
    spawn_billing_app_with(None).await
}

/// As [`spawn_billing_app`], with each provider's API key and its API at
/// `payments` (checkout and portal links).
pub async fn spawn_billing_app_with(payments: Option<&crate::payment_api_fake::PaymentApiFake>) -> TestApp {
    let mut secrets: Vec<(String, String)> = Provider::ALL.iter().map(|p| (p.secret_name().to_owned(), p.test_secret())).collect();
    let mut config = engagetrack_server::AppConfig::default();
    if let Some(fake) = payments {
        secrets.extend(fake.secrets());
        config.payments = fake.config();
    }
    let extra: Vec<(&str, &[u8])> = secrets.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect();
    let app = TestApp::spawn_with_secrets(config, &extra).await;
    let prices = json!(
        Provider::ALL.iter().map(|p| (format!("{p:?}").to_lowercase(), Value::from(p.growth_price()))).collect::<serde_json::Map<_, _>>()
    );
    app.db.client().await.execute("UPDATE plans SET price_ids = $1 WHERE id = 'growth'", &[&prices]).await.expect("prices");
    app
}

/// A new organisation (on its trial, as every new one is).
pub async fn create_organization(app: &TestApp) -> Uuid {
    let org = Uuid::new_v4();
    let slug = format!("org-{}", &org.simple().to_string()[..12]);
    app.db.client().await.execute("INSERT INTO organizations (id, name, slug) VALUES ($1, 'Billing org', $2)", &[&org, &slug]).await.expect("org");
    org
}

/// One delivery: the headers the provider sends and the raw body.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Signs `body` as `provider` does, with `secret`, at unix time `at`;
/// `delivery_id` is Polar's `webhook-id` (the others carry ids in the body).
pub fn sign(provider: Provider, secret: &str, body: &[u8], at: i64, delivery_id: &str) -> Delivery {
    let headers = match provider {
        // Stripe: t=<ts>,v1=hex(HMAC-SHA256(secret, "<ts>.<body>")).
        Provider::Stripe => {
            let v1 = hex::encode(hmac_sha256(secret.as_bytes(), &[format!("{at}.").as_bytes(), body].concat()));
            vec![("stripe-signature", format!("t={at},v1={v1}"))]
        }
        // Paddle Billing: ts=<ts>;h1=hex(HMAC-SHA256(secret, "<ts>:<body>")).
        Provider::Paddle => {
            let h1 = hex::encode(hmac_sha256(secret.as_bytes(), &[format!("{at}:").as_bytes(), body].concat()));
            vec![("paddle-signature", format!("ts={at};h1={h1}"))]
        }
        // LemonSqueezy: hex(HMAC-SHA256(secret, body)).
        Provider::LemonSqueezy => vec![("x-signature", hex::encode(hmac_sha256(secret.as_bytes(), body)))],
        // Standard Webhooks: key = base64-decoded part after `whsec_`;
        // v1,base64(HMAC-SHA256(key, "<id>.<ts>.<body>")).
        Provider::Polar => {
            let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ secret")).expect("base64 secret");
            let sig = STANDARD.encode(hmac_sha256(&key, &[format!("{delivery_id}.{at}.").as_bytes(), body].concat()));
            vec![("webhook-id", delivery_id.to_owned()), ("webhook-timestamp", at.to_string()), ("webhook-signature", format!("v1,{sig}"))]
        }
    };
    Delivery { headers, body: body.to_vec() }
}

/// POSTs a delivery; (status, JSON body).
pub async fn deliver(app: &TestApp, provider: Provider, delivery: &Delivery) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(app.url(provider.path())).header("content-type", "application/json").body(delivery.body.clone());
    for (name, value) in &delivery.headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("deliver");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Signs with the test secret at now and delivers.
pub async fn send(app: &TestApp, provider: Provider, event: &Event) -> (u16, Value) {
    let now = chrono::Utc::now().timestamp();
    let delivery = sign(provider, &provider.test_secret(), event.body.to_string().as_bytes(), now, &event.delivery_id);
    deliver(app, provider, &delivery).await
}

/// A provider event: its body and (for Polar) its delivery id.
#[derive(Debug, Clone)]
pub struct Event {
    pub body: Value,
    pub delivery_id: String,
}

/// What identifies one subscription at a provider, and its periods.
#[derive(Debug, Clone)]
pub struct Life {
    pub provider: Provider,
    pub organization: Uuid,
    pub subscription: String,
    pub customer: String,
    /// Period boundaries p0 < p1 < p2 (unix seconds).
    pub periods: [i64; 3],
    /// Event times advance one second per event.
    clock: i64,
    counter: u32,
}

/// The steps of a subscription's life the tests walk through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Created,
    Renewed,
    PaymentFailed,
    Recovered,
    CancelAtPeriodEnd,
    Refund,
    CustomerUpdated,
    Unknown,
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).expect("time").to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Life {
    pub fn new(provider: Provider, organization: Uuid) -> Self {
        let tag = &Uuid::new_v4().simple().to_string()[..10];
        let (subscription, customer) = match provider {
            Provider::Stripe => (format!("sub_{tag}"), format!("cus_{tag}")),
            Provider::Paddle => (format!("sub_01{tag}"), format!("ctm_01{tag}")),
            Provider::LemonSqueezy => (format!("{}", 100_000 + (u32::from_str_radix(&tag[..6], 16).unwrap_or(1) % 800_000)), "55123".into()),
            Provider::Polar => (Uuid::new_v4().to_string(), Uuid::new_v4().to_string()),
        };
        let p0 = chrono::Utc::now().timestamp() - 86_400;
        Self { provider, organization, subscription, customer, periods: [p0, p0 + 30 * 86_400, p0 + 60 * 86_400], clock: p0, counter: 0 }
    }

    /// The next event time, one second later than the last.
    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    fn id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}_{}", &self.subscription.replace('-', "")[..8.min(self.subscription.len())], self.counter)
    }

    /// Moves the event clock (to make an older or newer event).
    pub fn set_clock(&mut self, t: i64) {
        self.clock = t;
    }

    pub fn clock(&self) -> i64 {
        self.clock
    }

    /// The deliveries of one step, in the order the provider sends them.
    pub fn step(&mut self, step: Step) -> Vec<Event> {
        match self.provider {
            Provider::Stripe => self.stripe(step),
            Provider::Paddle => self.paddle(step),
            Provider::LemonSqueezy => self.lemonsqueezy(step),
            Provider::Polar => self.polar(step),
        }
        .into_iter()
        .map(|body| {
            self.counter += 1;
            Event { body, delivery_id: format!("msg_{}_{}", Uuid::new_v4().simple(), self.counter) }
        })
        .collect()
    }

    /// A subscription-state event on its own (for ordering tests).
    pub fn status_event(&mut self, status: &str) -> Event {
        let [_, p1, p2] = self.periods;
        let body = match self.provider {
            Provider::Stripe => self.stripe_subscription("customer.subscription.updated", status, p1, p2, false),
            Provider::Paddle => self.paddle_subscription("subscription.updated", status, p1, p2, false),
            Provider::LemonSqueezy => self.lemon_subscription("subscription_updated", status, p2),
            Provider::Polar => self.polar_subscription("subscription.updated", status, p1, p2, false),
        };
        Event { body, delivery_id: format!("msg_{}", Uuid::new_v4().simple()) }
    }

    // Stripe: https://docs.stripe.com/api/events/object shapes.
    fn stripe_event(&mut self, kind: &str, object: Value) -> Value {
        let id = self.id("evt_");
        json!({"id": id, "object": "event", "api_version": "2024-06-20", "type": kind, "created": self.tick(), "livemode": false,
               "data": {"object": object}})
    }

    fn stripe_subscription(&mut self, kind: &str, status: &str, start: i64, end: i64, cancel: bool) -> Value {
        let object = json!({"id": self.subscription, "object": "subscription", "customer": self.customer, "status": status,
            "cancel_at_period_end": cancel, "current_period_start": start, "current_period_end": end,
            "metadata": {"organization_id": self.organization.to_string()},
            "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": Provider::Stripe.growth_price()}}]}});
        self.stripe_event(kind, object)
    }

    fn stripe_invoice(&mut self, kind: &str, invoice: &str, start: i64, end: i64) -> Value {
        let object = json!({"id": invoice, "object": "invoice", "customer": self.customer, "subscription": self.subscription,
            "amount_paid": 1900, "currency": "eur", "billing_reason": "subscription_cycle", "customer_email": "ap@customer.example",
            "lines": {"data": [{"period": {"start": start, "end": end}}]}});
        self.stripe_event(kind, object)
    }

    fn stripe(&mut self, step: Step) -> Vec<Value> {
        let [p0, p1, p2] = self.periods;
        match step {
            Step::Created => vec![self.stripe_subscription("customer.subscription.created", "active", p0, p1, false)],
            Step::Renewed => vec![self.stripe_invoice("invoice.paid", "in_renew1", p1, p2)],
            Step::PaymentFailed => {
                vec![self.stripe_invoice("invoice.payment_failed", "in_retry2", p1, p2)]
            }
            Step::Recovered => vec![self.stripe_invoice("invoice.paid", "in_retry2", p1, p2)],
            Step::CancelAtPeriodEnd => vec![self.stripe_subscription("customer.subscription.updated", "active", p1, p2, true)],
            Step::Refund => {
                let object = json!({"id": "ch_refund1", "object": "charge", "customer": self.customer, "amount_refunded": 1900, "currency": "eur"});
                vec![self.stripe_event("charge.refunded", object)]
            }
            Step::CustomerUpdated => {
                let object = json!({"id": self.customer, "object": "customer", "email": "new-ap@customer.example"});
                vec![self.stripe_event("customer.updated", object)]
            }
            Step::Unknown => {
                vec![self.stripe_event("payment_method.attached", json!({"id": "pm_1"}))]
            }
        }
    }

    // Paddle Billing: https://developer.paddle.com/webhooks shapes.
    fn paddle_event(&mut self, kind: &str, data: Value) -> Value {
        let id = self.id("evt_01");
        let t = self.tick();
        json!({"event_id": id, "event_type": kind, "occurred_at": rfc3339(t), "notification_id": format!("ntf_{id}"), "data": data})
    }

    fn paddle_subscription(&mut self, kind: &str, status: &str, start: i64, end: i64, cancel: bool) -> Value {
        let scheduled = if cancel { json!({"action": "cancel", "effective_at": rfc3339(end), "resume_at": null}) } else { Value::Null };
        let data = json!({"id": self.subscription, "status": status, "customer_id": self.customer,
            "current_billing_period": {"starts_at": rfc3339(start), "ends_at": rfc3339(end)}, "scheduled_change": scheduled,
            "custom_data": {"organization_id": self.organization.to_string()},
            "items": [{"status": "active", "quantity": 1, "price": {"id": Provider::Paddle.growth_price()}}]});
        self.paddle_event(kind, data)
    }

    fn paddle_transaction(&mut self, kind: &str, txn: &str, start: i64, end: i64) -> Value {
        let data = json!({"id": txn, "status": "completed", "subscription_id": self.subscription, "customer_id": self.customer,
            "origin": "subscription_recurring", "currency_code": "EUR", "details": {"totals": {"total": "1900", "currency_code": "EUR"}},
            "billing_period": {"starts_at": rfc3339(start), "ends_at": rfc3339(end)}});
        self.paddle_event(kind, data)
    }

    fn paddle(&mut self, step: Step) -> Vec<Value> {
        let [p0, p1, p2] = self.periods;
        match step {
            Step::Created => {
                vec![self.paddle_subscription("subscription.created", "active", p0, p1, false)]
            }
            Step::Renewed => {
                vec![self.paddle_transaction("transaction.completed", "txn_01renew", p1, p2)]
            }
            Step::PaymentFailed => {
                let data = json!({"id": "txn_01retry", "status": "past_due", "subscription_id": self.subscription, "customer_id": self.customer});
                vec![self.paddle_event("transaction.payment_failed", data)]
            }
            Step::Recovered => {
                vec![self.paddle_transaction("transaction.completed", "txn_01retry", p1, p2)]
            }
            Step::CancelAtPeriodEnd => {
                vec![self.paddle_subscription("subscription.updated", "active", p1, p2, true)]
            }
            Step::Refund => {
                let data = json!({"id": "adj_01refund", "action": "refund", "status": "approved", "transaction_id": "txn_01renew",
                    "subscription_id": self.subscription, "customer_id": self.customer, "currency_code": "EUR",
                    "totals": {"total": "1900", "currency_code": "EUR"}});
                vec![self.paddle_event("adjustment.created", data)]
            }
            Step::CustomerUpdated => {
                let data = json!({"id": self.customer, "email": "new-ap@customer.example", "status": "active"});
                vec![self.paddle_event("customer.updated", data)]
            }
            Step::Unknown => vec![self.paddle_event("address.created", json!({"id": "add_01"}))],
        }
    }

    // LemonSqueezy: https://docs.lemonsqueezy.com/help/webhooks shapes.
    fn lemon_event(&mut self, kind: &str, kind_type: &str, id: &str, attributes: Value) -> Value {
        json!({"meta": {"event_name": kind, "custom_data": {"organization_id": self.organization.to_string()}},
               "data": {"type": kind_type, "id": id, "attributes": attributes}})
    }

    fn lemon_subscription(&mut self, kind: &str, status: &str, renews: i64) -> Value {
        let t = self.tick();
        let attributes = json!({"store_id": 1, "customer_id": self.customer.parse::<i64>().unwrap_or(1), "variant_id": 777,
            "status": status, "cancelled": status == "cancelled", "renews_at": rfc3339(renews),
            "ends_at": if status == "cancelled" { Value::String(rfc3339(renews)) } else { Value::Null },
            "user_email": "ap@customer.example", "created_at": rfc3339(self.periods[0]), "updated_at": rfc3339(t)});
        let id = self.subscription.clone();
        self.lemon_event(kind, "subscriptions", &id, attributes)
    }

    fn lemon_invoice(&mut self, kind: &str, id: &str) -> Value {
        let t = self.tick();
        let attributes = json!({"subscription_id": self.subscription.parse::<i64>().unwrap_or(1), "customer_id": 55123,
            "status": "paid", "billing_reason": "renewal", "total": 1900, "currency": "EUR", "refunded": false,
            "refunded_amount": 1900, "user_email": "ap@customer.example", "created_at": rfc3339(t), "updated_at": rfc3339(t)});
        self.lemon_event(kind, "subscription-invoices", id, attributes)
    }

    fn lemonsqueezy(&mut self, step: Step) -> Vec<Value> {
        let [_, p1, p2] = self.periods;
        match step {
            Step::Created => vec![self.lemon_subscription("subscription_created", "active", p1)],
            Step::Renewed => vec![self.lemon_invoice("subscription_payment_success", "9001"), self.lemon_subscription("subscription_updated", "active", p2)],
            Step::PaymentFailed => vec![self.lemon_invoice("subscription_payment_failed", "9002")],
            Step::Recovered => vec![self.lemon_invoice("subscription_payment_recovered", "9002")],
            Step::CancelAtPeriodEnd => {
                vec![self.lemon_subscription("subscription_cancelled", "cancelled", p2)]
            }
            Step::Refund => vec![self.lemon_invoice("subscription_payment_refunded", "9001")],
            // LemonSqueezy has no customer event: the email rides on subscription_updated.
            Step::CustomerUpdated => {
                vec![self.lemon_subscription("subscription_updated", "active", p2)]
            }
            Step::Unknown => {
                let t = self.tick();
                vec![self.lemon_event("license_key_created", "license-keys", "31", json!({"created_at": rfc3339(t), "updated_at": rfc3339(t)}))]
            }
        }
    }

    // Polar: https://docs.polar.sh/api-reference/webhooks shapes.
    fn polar_event(&mut self, kind: &str, data: Value) -> Value {
        let t = self.tick();
        json!({"type": kind, "timestamp": rfc3339(t), "data": data})
    }

    fn polar_subscription(&mut self, kind: &str, status: &str, start: i64, end: i64, cancel: bool) -> Value {
        let data = json!({"id": self.subscription, "status": status, "customer_id": self.customer, "product_id": Provider::Polar.growth_price(),
            "current_period_start": rfc3339(start), "current_period_end": rfc3339(end), "cancel_at_period_end": cancel,
            "metadata": {"organization_id": self.organization.to_string()}, "customer": {"id": self.customer, "email": "ap@customer.example"}});
        self.polar_event(kind, data)
    }

    fn polar_order(&mut self, kind: &str, id: &str) -> Value {
        let data = json!({"id": id, "status": "paid", "subscription_id": self.subscription, "customer_id": self.customer,
            "billing_reason": "subscription_cycle", "total_amount": 1900, "refunded_amount": 1900, "currency": "eur",
            "customer": {"id": self.customer, "email": "ap@customer.example"}});
        self.polar_event(kind, data)
    }

    fn polar(&mut self, step: Step) -> Vec<Value> {
        let [p0, p1, p2] = self.periods;
        match step {
            Step::Created => {
                vec![self.polar_subscription("subscription.created", "active", p0, p1, false)]
            }
            Step::Renewed => {
                vec![self.polar_order("order.paid", "ord_renew1"), self.polar_subscription("subscription.updated", "active", p1, p2, false)]
            }
            Step::PaymentFailed => {
                vec![self.polar_subscription("subscription.updated", "past_due", p1, p2, false)]
            }
            Step::Recovered => vec![self.polar_order("order.paid", "ord_retry2")],
            Step::CancelAtPeriodEnd => {
                vec![self.polar_subscription("subscription.canceled", "active", p1, p2, true)]
            }
            Step::Refund => vec![self.polar_order("order.refunded", "ord_renew1")],
            Step::CustomerUpdated => {
                let data = json!({"id": self.customer, "email": "new-ap@customer.example"});
                vec![self.polar_event("customer.updated", data)]
            }
            Step::Unknown => vec![self.polar_event("benefit.created", json!({"id": "ben_1"}))],
        }
    }
}
