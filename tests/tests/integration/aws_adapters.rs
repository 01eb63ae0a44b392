//! The AWS adapters against a real AWS-API server on loopback (moto, started
//! per test by `engagetrack_tests::moto`): Secrets Manager (load, TTL,
//! rotation), DynamoDB (salt store, sign-in counters), S3 (blobs, presigned
//! links, geo databases) and the exports handed out as links through the API.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use engagetrack_server::adapters::aws::dynamodb::{DynamoSaltStore, DynamoSignInLimiter};
use engagetrack_server::adapters::aws::s3::S3BlobStore;
use engagetrack_server::adapters::aws::secrets_manager::SecretsManagerSource;
use engagetrack_server::adapters::aws::sdk_config;
use engagetrack_server::auth::credentials::Email;
use engagetrack_server::auth::rate_limit::{self, LoginKeys, PgSignInLimiter, SignInLimiter, Verdict};
use engagetrack_server::billing::Provider;
use engagetrack_server::blobs::{BlobError, BlobMeta, BlobStore};
use engagetrack_server::salt::{self, SaltError, SaltStore};
use engagetrack_server::secrets::{CachedSecrets, SecretSource, SecretsError};
use engagetrack_server::adapters::{AdapterConfig, Ports};
use engagetrack_server::state::StateError;
use engagetrack_server::{AppConfig, AppState};
use engagetrack_tests::moto::{Moto, S3rver};
use engagetrack_tests::{TestApp, TestDb};
use serde_json::{Value, json};
use uuid::Uuid;

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

fn random_hex() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// A full set of required names, as an operator creates the secret once.
fn required_secret() -> serde_json::Map<String, Value> {
    ["field-key-1", "jwt-key-1", "edge-signing-key", "ip-hash-key"].iter().map(|n| (n.to_string(), Value::from(random_hex()))).collect()
}

async fn secrets_client(moto: &Moto) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&sdk_config(&moto.aws_settings()).await)
}

async fn dynamodb(moto: &Moto) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config(&moto.aws_settings()).await)
}

/// The salts table as template.yaml makes it.
async fn create_salts_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(AttributeDefinition::builder().attribute_name("day").attribute_type(ScalarAttributeType::S).build().unwrap())
        .key_schema(KeySchemaElement::builder().attribute_name("day").key_type(KeyType::Hash).build().unwrap())
        .send()
        .await
        .expect("create the salts table");
}

/// The rate-limits table as template.yaml makes it.
async fn create_rate_limits_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(AttributeDefinition::builder().attribute_name("key").attribute_type(ScalarAttributeType::S).build().unwrap())
        .attribute_definitions(AttributeDefinition::builder().attribute_name("minute").attribute_type(ScalarAttributeType::N).build().unwrap())
        .key_schema(KeySchemaElement::builder().attribute_name("key").key_type(KeyType::Hash).build().unwrap())
        .key_schema(KeySchemaElement::builder().attribute_name("minute").key_type(KeyType::Range).build().unwrap())
        .send()
        .await
        .expect("create the rate-limits table");
}

async fn create_bucket(moto: &Moto, name: &str) -> aws_sdk_s3::Client {
    let sdk = sdk_config(&moto.aws_settings()).await;
    let client = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    client
        .create_bucket()
        .bucket(name)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder().location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuCentral1).build(),
        )
        .send()
        .await
        .expect("create the bucket");
    client
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

// ---------------------------------------------------------------- secrets

#[tokio::test]
async fn secrets_load_from_secrets_manager_and_rotate_after_the_ttl() {
    let moto = Moto::start();
    let sm = secrets_client(&moto).await;
    let mut secret = required_secret();
    sm.create_secret().name("engagetrack/prod").secret_string(Value::from(secret.clone()).to_string()).send().await.unwrap();

    let db = TestDb::create().await;
    let pool = db.pool();
    engagetrack_server::adapters::postgres::migrate(&pool).await.unwrap();
    let adapters = AdapterConfig {
        secret_id: Some("engagetrack/prod".into()),
        secrets_ttl: Some(Duration::from_secs(2)),
        aws: moto.aws_settings(),
        ..AdapterConfig::default()
    };
    let ports = Ports::from_config(&pool, &adapters).await.unwrap();
    let state = AppState::from_ports(pool, AppConfig::default(), ports).await.unwrap();
    let old_edge_key = hex::decode(secret["edge-signing-key"].as_str().unwrap()).unwrap();
    assert_eq!(state.keys.current().edge_signing_key(), old_edge_key, "the secret's key, not a generated one");
    assert!(state.keys.current().metrics_token.is_none(), "a deployment's metrics token is optional");
    assert!(state.keys.current().webhooks.get(Provider::Stripe).is_none());
    assert_eq!(state.cipher.key_ids(), vec![1]);

    // Before the rotation: a field sealed with key 1, a token signed with key 1.
    let sealed = state.cipher.encrypt(b"ann@example.com", b"row-1").unwrap();
    assert_eq!(sealed[1], 1);
    let (user, family) = (Uuid::new_v4(), Uuid::new_v4());
    let old_token = state.access_tokens.issue(user, family, Utc::now()).unwrap();

    // The operator puts a new version that adds the next keys, rotates the
    // edge's key (keeping the old one as previous), the address-hash key, and
    // adds a metrics token and a Stripe webhook secret.
    secret.insert("field-key-2".into(), random_hex().into());
    secret.insert("jwt-key-2".into(), random_hex().into());
    let old_ip_key = state.keys.current().ip_hash.clone();
    let new_edge_key = random_hex();
    secret.insert("edge-signing-key-previous".into(), secret["edge-signing-key"].clone());
    secret.insert("edge-signing-key".into(), new_edge_key.clone().into());
    secret.insert("ip-hash-key".into(), random_hex().into());
    secret.insert("metrics-token".into(), random_hex().into());
    secret.insert("stripe-webhook-secret".into(), hex::encode("whsec_rotated").into());
    sm.put_secret_value().secret_id("engagetrack/prod").secret_string(Value::from(secret.clone()).to_string()).send().await.unwrap();

    // Inside the TTL the cached version is still used.
    state.refresh_keys().await.unwrap();
    assert_eq!(state.cipher.key_ids(), vec![1], "re-read before the TTL passed");
    assert_eq!(state.access_tokens.key_ids(), vec!["1".to_owned()]);

    tokio::time::sleep(Duration::from_millis(2_200)).await;
    state.refresh_keys().await.unwrap();
    assert_eq!(state.cipher.key_ids(), vec![1, 2]);
    // New writes use key 2; what key 1 sealed still opens.
    assert_eq!(state.cipher.encrypt(b"bob@example.com", b"row-2").unwrap()[1], 2);
    assert_eq!(state.cipher.decrypt(&sealed, b"row-1").unwrap(), b"ann@example.com");
    // New tokens are signed with key 2; the old token still verifies.
    let new_token = state.access_tokens.issue(user, family, Utc::now()).unwrap();
    assert!(new_token.starts_with("ey"));
    assert_eq!(state.access_tokens.verify(&old_token).unwrap().sub, user);
    assert_eq!(state.access_tokens.verify(&new_token).unwrap().sub, user);
    let header: Value = {
        use base64::Engine;
        let part = new_token.split('.').next().unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    assert_eq!(header["kid"], "2");
    // The service keys moved with the same version: batches signed with the
    // new edge key and with the one it replaced are both accepted.
    let keys = state.keys.current();
    let (now, body) = (Utc::now().timestamp(), br#"{"events":[]}"#.as_slice());
    let new_edge_key = hex::decode(&new_edge_key).unwrap();
    assert_eq!(keys.edge_signing_key(), new_edge_key);
    for key in [&new_edge_key, &old_edge_key] {
        let signature = shared::batch::sign(key, now, body);
        assert_eq!(keys.verify_batch(&now.to_string(), &signature, body, now), Ok(now));
    }
    assert_ne!(keys.ip_hash, old_ip_key);
    assert_eq!(hex::encode(keys.metrics_token.as_deref().unwrap()), secret["metrics-token"].as_str().unwrap());
    assert_eq!(keys.webhooks.get(Provider::Stripe), Some(b"whsec_rotated".as_slice()));

    // A version that forgets key 1 does not make old rows unreadable...
    secret.remove("field-key-1");
    sm.put_secret_value().secret_id("engagetrack/prod").secret_string(Value::from(secret.clone()).to_string()).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    // ...but it lacks a required name, so the re-read fails and the last good copy stays.
    state.refresh_keys().await.unwrap();
    assert_eq!(state.cipher.decrypt(&sealed, b"row-1").unwrap(), b"ann@example.com");

    // A version that changes key 1's bytes is refused: rows sealed with it would no longer open.
    let mut changed = secret.clone();
    changed.insert("field-key-1".into(), random_hex().into());
    sm.put_secret_value().secret_id("engagetrack/prod").secret_string(Value::from(changed).to_string()).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let err = state.refresh_keys().await.unwrap_err();
    assert!(matches!(err, StateError::Cipher(_)), "{err}");
    assert!(err.to_string().contains("field-key-1"), "{err}");
    assert_eq!(state.cipher.decrypt(&sealed, b"row-1").unwrap(), b"ann@example.com");
}

#[tokio::test]
async fn the_secret_cache_reads_once_per_ttl() {
    let moto = Moto::start();
    let sm = secrets_client(&moto).await;
    let mut secret = required_secret();
    sm.create_secret().name("s").secret_string(Value::from(secret.clone()).to_string()).send().await.unwrap();
    let sdk = sdk_config(&moto.aws_settings()).await;
    let cache = CachedSecrets::new(Arc::new(SecretsManagerSource::new(&sdk, "s")), Duration::from_secs(1));
    assert!(cache.current().await.unwrap().get("field-key-2").is_none());
    secret.insert("field-key-2".into(), random_hex().into());
    sm.put_secret_value().secret_id("s").secret_string(Value::from(secret).to_string()).send().await.unwrap();
    assert!(cache.current().await.unwrap().get("field-key-2").is_none(), "served from the cache within the TTL");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(cache.current().await.unwrap().get("field-key-2").unwrap().len(), 32, "re-read after the TTL");
}

#[tokio::test]
async fn a_secret_missing_required_names_fails_naming_them() {
    let moto = Moto::start();
    let sm = secrets_client(&moto).await;
    sm.create_secret().name("partial").secret_string(json!({"field-key-1": random_hex()}).to_string()).send().await.unwrap();
    let sdk = sdk_config(&moto.aws_settings()).await;

    let err = SecretsManagerSource::new(&sdk, "partial").load().await.unwrap_err();
    let SecretsError::Missing { names, .. } = &err else { panic!("{err}") };
    assert_eq!(names, &["edge-signing-key", "jwt-key-1", "ip-hash-key"].map(String::from));
    for name in ["jwt-key-1", "edge-signing-key", "ip-hash-key"] {
        assert!(err.to_string().contains(name), "{err}");
    }
    // Nothing was added to the secret behind the operator's back.
    let stored = sm.get_secret_value().secret_id("partial").send().await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(stored.secret_string().unwrap()).unwrap().as_object().unwrap().len(), 1);

    let err = SecretsManagerSource::new(&sdk, "no-such-secret").load().await.unwrap_err();
    assert!(matches!(err, SecretsError::Unavailable { .. }) && err.to_string().contains("no-such-secret"), "{err}");

    sm.create_secret().name("not-hex").secret_string(json!({"field-key-1": "zz"}).to_string()).send().await.unwrap();
    let err = SecretsManagerSource::new(&sdk, "not-hex").load().await.unwrap_err();
    assert!(matches!(err, SecretsError::Invalid { .. }) && err.to_string().contains("field-key-1"), "{err}");
}

// ---------------------------------------------------------------- salts

#[tokio::test]
async fn two_salt_stores_agree_on_one_salt_per_day() {
    let moto = Moto::start();
    let client = dynamodb(&moto).await;
    create_salts_table(&client, "salts").await;
    let sdk = sdk_config(&moto.aws_settings()).await;
    let (a, b) = (DynamoSaltStore::new(&sdk, "salts"), DynamoSaltStore::new(&sdk, "salts"));
    let now = at(2026, 12, 2, 12, 0);
    let (today, tomorrow) = (now.date_naive(), now.date_naive().succ_opt().unwrap());

    // Two Lambdas cold-starting at once: both make a salt, one conditional put wins.
    for _ in 0..5 {
        let (x, y) = tokio::join!(a.salt_for(today, now), b.salt_for(today, now));
        assert_eq!(x.unwrap(), y.unwrap());
    }
    let (x, y) = tokio::join!(b.salt_for(tomorrow, now), a.salt_for(tomorrow, now));
    let tomorrows = x.unwrap();
    assert_eq!(tomorrows, y.unwrap());
    assert_ne!(tomorrows, a.salt_for(today, now).await.unwrap(), "each day has its own salt");

    // A third store with no cache reads the same salt back.
    let c = DynamoSaltStore::new(&sdk, "salts");
    assert_eq!(c.salt_for(today, now).await.unwrap(), a.salt_for(today, now).await.unwrap());

    // Days out of range are never made.
    assert!(matches!(a.salt_for(today - chrono::Duration::days(2), now).await, Err(SaltError::Expired(_))));
    assert!(matches!(a.salt_for(today + chrono::Duration::days(2), now).await, Err(SaltError::Expired(_))));

    // The TTL attribute: numeric, at the end of the day's grace hour, within 48 h of the day's start.
    for day in [today, tomorrow] {
        let item = client.get_item().table_name("salts").key("day", AttributeValue::S(day.to_string())).send().await.unwrap().item.unwrap();
        let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
        assert_eq!(expires, salt::destroy_at(day).timestamp());
        assert_eq!(expires - salt::day_start(day).timestamp(), 25 * 3600);
        assert!(expires - salt::day_start(day).timestamp() <= 48 * 3600);
        assert_eq!(item["salt"].as_b().unwrap().as_ref().len(), 32);
    }
}

#[tokio::test]
async fn a_salt_past_its_ttl_is_gone_even_before_dynamodb_deletes_it() {
    let moto = Moto::start();
    let client = dynamodb(&moto).await;
    create_salts_table(&client, "salts").await;
    let sdk = sdk_config(&moto.aws_settings()).await;
    let store = DynamoSaltStore::new(&sdk, "salts");
    let yesterday = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();

    // Yesterday's salt, made yesterday: still usable in the first hour of today.
    let made = store.salt_for(yesterday, at(2026, 12, 1, 18, 0)).await.unwrap();
    let fresh = DynamoSaltStore::new(&sdk, "salts");
    assert_eq!(fresh.salt_for(yesterday, at(2026, 12, 2, 0, 30)).await.unwrap(), made);

    // Its TTL passed while the item lingers (DynamoDB deletes lazily): a read treats it as gone.
    client
        .update_item()
        .table_name("salts")
        .key("day", AttributeValue::S(yesterday.to_string()))
        .update_expression("SET expires_at = :past")
        .expression_attribute_values(":past", AttributeValue::N(at(2026, 12, 2, 0, 10).timestamp().to_string()))
        .send()
        .await
        .unwrap();
    let other = DynamoSaltStore::new(&sdk, "salts");
    assert!(matches!(other.salt_for(yesterday, at(2026, 12, 2, 0, 30)).await, Err(SaltError::Expired(_))));
}

#[tokio::test]
async fn rotation_destroys_salts_whose_day_is_over() {
    let moto = Moto::start();
    let client = dynamodb(&moto).await;
    create_salts_table(&client, "salts").await;
    let sdk = sdk_config(&moto.aws_settings()).await;
    let store = DynamoSaltStore::new(&sdk, "salts");
    let day = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();

    // A stale salt from days ago that the TTL sweeper has not removed yet.
    client
        .put_item()
        .table_name("salts")
        .item("day", AttributeValue::S("2026-11-27".into()))
        .item("salt", AttributeValue::B(vec![7u8; 32].into()))
        .item("expires_at", AttributeValue::N(salt::destroy_at(NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()).timestamp().to_string()))
        .send()
        .await
        .unwrap();

    let first = store.rotate(at(2026, 12, 2, 12, 0)).await.unwrap();
    assert_eq!(first, vec![NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()]);
    let todays = store.salt_for(day, at(2026, 12, 2, 12, 0)).await.unwrap();

    // Within the grace hour after midnight yesterday's salt is kept...
    assert!(store.rotate(at(2026, 12, 3, 0, 30)).await.unwrap().is_empty());
    assert_eq!(DynamoSaltStore::new(&sdk, "salts").salt_for(day, at(2026, 12, 3, 0, 30)).await.unwrap(), todays);
    // ...and destroyed after it.
    assert_eq!(store.rotate(at(2026, 12, 3, 1, 30)).await.unwrap(), vec![day]);
    let gone = client.get_item().table_name("salts").key("day", AttributeValue::S(day.to_string())).consistent_read(true).send().await.unwrap();
    assert!(gone.item.is_none(), "the item itself is deleted, not only hidden");
    assert!(matches!(store.salt_for(day, at(2026, 12, 3, 1, 30)).await, Err(SaltError::Expired(_))));
    let mut left: Vec<String> = client.scan().table_name("salts").send().await.unwrap().items().iter().map(|i| i["day"].as_s().unwrap().clone()).collect();
    left.sort();
    assert_eq!(left, ["2026-12-03", "2026-12-04"]);
}

// ---------------------------------------------------------------- rate limits

fn keys(email: &str, ip: &str) -> LoginKeys {
    LoginKeys::new(&Email::parse(email).unwrap(), ip.parse::<IpAddr>().unwrap(), b"ip-hash-key")
}

/// One script, run against each store: the same verdicts.
async fn rate_limit_script(limiter: &dyn SignInLimiter) {
    let t0 = at(2026, 12, 2, 12, 0);
    let minute = |m: i64| t0 + chrono::Duration::seconds(m * 60 + 7);
    let ann = keys("ann@example.com", "203.0.113.7");

    // Ten failures are allowed (each counted before the password check), the eleventh is not.
    for i in 0..rate_limit::MAX_FAILURES_PER_ACCOUNT {
        assert_eq!(limiter.attempt(&ann, minute(i)).await.unwrap(), Verdict::Allowed, "attempt {i}");
    }
    assert_eq!(limiter.attempt(&ann, minute(10)).await.unwrap(), Verdict::Limited);
    // Once the window has passed the old failures no longer count.
    assert_eq!(limiter.attempt(&ann, minute(10) + rate_limit::WINDOW + chrono::Duration::minutes(1)).await.unwrap(), Verdict::Allowed);

    // A success takes its own attempt back and restarts the account's counter.
    let bob = keys("bob@example.com", "203.0.113.8");
    for i in 0..5 {
        limiter.attempt(&bob, minute(i)).await.unwrap();
    }
    // The right password, as a sign-in goes: counted first, then taken back.
    assert_eq!(limiter.attempt(&bob, minute(5)).await.unwrap(), Verdict::Allowed);
    limiter.succeeded(&bob, minute(5)).await.unwrap_or_else(|e| panic!("{e}"));
    let later = minute(6);
    for i in 0..rate_limit::MAX_FAILURES_PER_ACCOUNT {
        assert_eq!(limiter.attempt(&bob, later).await.unwrap(), Verdict::Allowed, "after the success, attempt {i}");
    }
    assert_eq!(limiter.attempt(&bob, later).await.unwrap(), Verdict::Limited);

    // Per address: many accounts from one address are limited past the address's maximum.
    let t1 = t0 + chrono::Duration::hours(2);
    for i in 0..rate_limit::MAX_FAILURES_PER_IP {
        let k = keys(&format!("user{i}@example.com"), "198.51.100.9");
        assert_eq!(limiter.attempt(&k, t1).await.unwrap(), Verdict::Allowed, "account {i}");
    }
    assert_eq!(limiter.attempt(&keys("one-more@example.com", "198.51.100.9"), t1).await.unwrap(), Verdict::Limited);
    assert_eq!(limiter.attempt(&keys("one-more@example.com", "198.51.100.10"), t1).await.unwrap(), Verdict::Allowed, "another address is not limited");
}

#[tokio::test]
async fn dynamodb_counts_sign_in_failures_like_postgres() {
    let moto = Moto::start();
    let client = dynamodb(&moto).await;
    create_rate_limits_table(&client, "rate-limits").await;
    let sdk = sdk_config(&moto.aws_settings()).await;
    let dynamo = DynamoSignInLimiter::new(&sdk, "rate-limits");
    rate_limit_script(&dynamo).await;

    // Counters carry a numeric TTL and never the address itself.
    let items = client.scan().table_name("rate-limits").send().await.unwrap();
    assert!(!items.items().is_empty());
    for item in items.items() {
        let key = item["key"].as_s().unwrap();
        assert!(!key.contains("203.0.113") && !key.contains("198.51.100"), "{key}");
        let minute: i64 = item["minute"].as_n().unwrap().parse().unwrap();
        let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
        assert_eq!(expires, (minute + 1) * 60 + rate_limit::WINDOW.num_seconds());
    }

    let db = TestDb::create().await;
    let pool = db.pool();
    engagetrack_server::adapters::postgres::migrate(&pool).await.unwrap();
    rate_limit_script(&PgSignInLimiter::new(pool)).await;
}

// No parallel-attempts test here: moto's UpdateItem `ADD` is not atomic
// under concurrent requests (it lost 3 of 20 in a trial), so it cannot show
// DynamoDB's documented atomicity; the sequential script above checks counts.

// ---------------------------------------------------------------- blobs

#[tokio::test]
async fn s3_blobs_put_get_and_presigned_links() {
    let moto = Moto::start();
    create_bucket(&moto, "engagetrack-test").await;
    let sdk = sdk_config(&moto.aws_settings()).await;
    let store = S3BlobStore::new(&sdk, "engagetrack-test");
    let meta = BlobMeta { content_type: "text/csv; charset=utf-8".into(), filename: Some("example.com-stats.csv".into()) };
    store.put("exports/abc/example.com-stats.csv", b"section,key\nday,2026-12-01\n".to_vec(), &meta).await.unwrap();
    assert_eq!(store.get("exports/abc/example.com-stats.csv").await.unwrap(), b"section,key\nday,2026-12-01\n");
    assert!(matches!(store.get("exports/abc/none.csv").await, Err(BlobError::NotFound(_))));
    assert!(matches!(store.put("../escape", vec![], &meta).await, Err(BlobError::BadKey(_))));

    let before = Utc::now();
    let link = store.link("exports/abc/example.com-stats.csv", Duration::from_secs(60)).await.unwrap().expect("S3 hands out links");
    assert!(link.url.starts_with(&format!("{}/engagetrack-test/exports/abc/", moto.url())), "{}", link.url);
    let expires_in = (link.expires_at - before).num_seconds();
    assert!((59..=61).contains(&expires_in), "{expires_in}");
    // The expiry is part of what is signed, so S3 refuses the link after it.
    let url = reqwest::Url::parse(&link.url).unwrap();
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["X-Amz-Expires"], "60");
    assert!(query["X-Amz-SignedHeaders"].contains("host"));
    assert!(query.contains_key("X-Amz-Signature") && query.contains_key("X-Amz-Date"));

    // The link works with no credentials, and downloads under the export's name.
    let response = reqwest::get(&link.url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-disposition"], "attachment; filename=\"example.com-stats.csv\"");
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(response.text().await.unwrap(), "section,key\nday,2026-12-01\n");
}

/// moto serves a presigned link after its expiry (it checks neither expiry
/// nor signature), so the refusal is checked against s3rver, which does.
#[tokio::test]
async fn a_presigned_link_is_refused_after_it_expires() {
    let server = S3rver::start("engagetrack-links");
    let sdk = sdk_config(&server.aws_settings()).await;
    let store = S3BlobStore::new(&sdk, "engagetrack-links");
    let meta = BlobMeta { content_type: "application/json".into(), filename: Some("export.json".into()) };
    store.put("exports/x/export.json", b"{}".to_vec(), &meta).await.unwrap();
    let short = store.link("exports/x/export.json", Duration::from_secs(2)).await.unwrap().unwrap();
    let long = store.link("exports/x/export.json", Duration::from_secs(600)).await.unwrap().unwrap();
    assert_eq!(reqwest::get(&short.url).await.unwrap().status(), 200, "fresh link");
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let expired = reqwest::get(&short.url).await.unwrap();
    assert_eq!(expired.status(), 403);
    assert!(expired.text().await.unwrap().contains("Request has expired"));
    assert_eq!(reqwest::get(&long.url).await.unwrap().status(), 200, "a link with time left still works");
}

#[tokio::test]
async fn geo_databases_are_read_from_the_bucket_at_cold_start() {
    let moto = Moto::start();
    let s3 = create_bucket(&moto, "engagetrack-geo").await;
    let mmdb = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/testdata/GeoIP2-City-Test.mmdb")).unwrap();
    s3.put_object().bucket("engagetrack-geo").key("geo/city.mmdb").body(mmdb.into()).send().await.unwrap();

    let db = TestDb::create().await;
    let pool = db.pool();
    let dir = tempfile::tempdir().unwrap();
    let (files, objects) = engagetrack_server::adapters::split_geo("s3://engagetrack-geo/geo/city.mmdb");
    assert!(files.is_empty());
    let adapters = AdapterConfig {
        secrets_file: Some(dir.path().join("secrets.json")),
        geo_objects: objects,
        aws: moto.aws_settings(),
        ..AdapterConfig::default()
    };
    let ports = Ports::from_config(&pool, &adapters).await.unwrap();
    let state = AppState::from_ports(pool.clone(), AppConfig::default(), ports).await.unwrap();
    let explained = serde_json::to_value(state.ingest.pipeline().explain(CHROME, Some("81.2.69.142".parse().unwrap()), None, None)).unwrap();
    assert_eq!(explained["country"], "GB", "{explained}");

    // A missing object fails the cold start, naming it.
    let missing = AdapterConfig { geo_objects: vec!["s3://engagetrack-geo/geo/none.mmdb".into()], ..adapters };
    let err = Ports::from_config(&pool, &missing).await.err().expect("an error");
    assert!(err.to_string().contains("s3://engagetrack-geo/geo/none.mmdb"), "{err}");
}

#[test]
fn geo_entries_keep_s3_urls_whole() {
    let (files, objects) = engagetrack_server::adapters::split_geo("/a/v4.mmdb:s3://b/geo/v6.mmdb::/c.mmdb");
    assert_eq!(files, vec![std::path::PathBuf::from("/a/v4.mmdb"), "/c.mmdb".into()]);
    assert_eq!(objects, vec!["s3://b/geo/v6.mmdb".to_owned()]);
}

// ---------------------------------------------------------------- through the API

#[tokio::test]
async fn exports_are_handed_out_as_expiring_links_with_a_bucket() {
    let moto = Moto::start();
    create_bucket(&moto, "engagetrack-exports").await;
    let client = dynamodb(&moto).await;
    create_salts_table(&client, "salts").await;
    create_rate_limits_table(&client, "rate-limits").await;
    let adapters = AdapterConfig {
        bucket: Some("engagetrack-exports".into()),
        salts_table: Some("salts".into()),
        rate_limits_table: Some("rate-limits".into()),
        aws: moto.aws_settings(),
        ..AdapterConfig::default()
    };
    let app = TestApp::spawn_with_adapters(AppConfig::default(), adapters).await;
    // Signing in went through the DynamoDB counters.
    let user = app.sign_up_verified("owner@example.com").await;
    let counters = client.scan().table_name("rate-limits").send().await.unwrap();
    assert!(counters.items().iter().any(|i| i["key"].as_s().unwrap().starts_with("ip:")), "the sign-in was counted in DynamoDB");
    let api = app.as_user(&user);
    let site = api.post(&format!("/api/organizations/{}/sites", user.organization_id), json!({"domain": "shop.example"})).await.expect(201);
    let site_id = site["id"].as_str().unwrap();

    // A pageview: its visitor hash uses today's salt from DynamoDB.
    let beacon = json!({"site": site_id, "type": "pageview", "url": "https://shop.example/", "sid": "abcdefgh"});
    let sent = reqwest::Client::new()
        .post(app.url("/api/e"))
        .header("content-type", "text/plain")
        .header("user-agent", CHROME)
        .body(beacon.to_string())
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success(), "{}", sent.status());
    let today = Utc::now().date_naive().to_string();
    let salt = client.get_item().table_name("salts").key("day", AttributeValue::S(today)).send().await.unwrap();
    assert!(salt.item.is_some(), "today's salt was made in DynamoDB");

    // The CSV export as a link: a JSON answer, the file behind the link.
    let answer = api.get(&format!("/api/sites/{site_id}/export.csv?delivery=link&date_range=7d")).await.expect(200);
    let url = answer["url"].as_str().unwrap();
    assert!(url.contains("/engagetrack-exports/exports/") && url.contains("X-Amz-Expires=900"), "{url}");
    let expires_at: DateTime<Utc> = answer["expires_at"].as_str().unwrap().parse().unwrap();
    assert!((expires_at - Utc::now()).num_minutes() >= 14);
    let csv = reqwest::get(url).await.unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-disposition"].to_str().unwrap().contains("shop.example-stats.csv"));
    assert!(csv.text().await.unwrap().starts_with("section,key,visitors"));
    // The direct answer stays the default.
    let direct = reqwest::Client::new().get(app.url(&format!("/api/sites/{site_id}/export.csv"))).bearer_auth(&user.access_token).send().await.unwrap();
    assert_eq!(direct.headers()["content-type"], "text/csv; charset=utf-8");

    // The GDPR export as a link.
    let answer = api.get("/api/me/export?delivery=link").await.expect(200);
    let export: Value = reqwest::get(answer["url"].as_str().unwrap()).await.unwrap().json().await.unwrap();
    assert_eq!(export["account"]["email"], "owner@example.com");
    assert!(export["account"].get("password_hash").is_none());

    api.get("/api/me/export?delivery=carrier-pigeon").await.expect_error(400, "delivery");
}

#[tokio::test]
async fn without_a_bucket_links_are_refused_with_a_reason() {
    let app = TestApp::spawn().await;
    let user = app.sign_up_verified("local@example.com").await;
    let api = app.as_user(&user);
    api.get("/api/me/export?delivery=link").await.expect_error(400, "ENGAGETRACK_BUCKET");
    let site = api.post(&format!("/api/organizations/{}/sites", user.organization_id), json!({"domain": "local.example"})).await.expect(201);
    api.get(&format!("/api/sites/{}/export.csv?delivery=link", site["id"].as_str().unwrap())).await.expect_error(400, "delivery=link");
    assert_eq!(api.get("/api/me/export").await.expect(200)["account"]["email"], "local@example.com");
}
