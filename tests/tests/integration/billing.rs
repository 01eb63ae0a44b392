//! The billing API: subscription, plan and usage, billing records and
//! billing details; who may see them; the details encrypted at rest; the
//! account purge keeping billing records with only what tax law needs.

use chrono::{Duration, Utc};
use engagetrack_tests::payment_fakes::{Life, Provider, Step, send, spawn_billing_app};
use serde_json::json;

const VAT_ID: &str = "DE136695976";
const ADDRESS_LINE: &str = "Kastanienallee 71, Hinterhaus";
const POSTAL: &str = "10435";

fn details() -> serde_json::Value {
    json!({"company": "Kastanie Analytics GmbH", "vat_id": "DE 136 695 976", "country": "de", "city": "Berlin",
           "postal_code": POSTAL, "address_lines": [ADDRESS_LINE]})
}

#[tokio::test]
async fn owners_and_billing_members_only() {
    let app = spawn_billing_app().await;
    let owner = app.sign_up_verified("owner@billing.example").await;
    let org = owner.organization_id;
    let path = format!("/api/organizations/{org}/billing");
    let details_path = format!("{path}/details");

    // A new organisation is on the trial.
    let sub = app.as_user(&owner).get(&path).await.expect(200);
    assert_eq!((sub["plan"]["id"].as_str(), sub["status"].as_str()), (Some("trial"), Some("trialing")), "{sub}");
    assert_eq!(sub["usage"]["members"], 1);
    app.as_user(&owner).get(&details_path).await.expect_error(404, "no billing details");

    let saved = app.as_user(&owner).send(reqwest::Method::PUT, &details_path, Some(&details())).await.expect(200);
    assert_eq!((saved["vat_id"].as_str(), saved["country"].as_str()), (Some(VAT_ID), Some("DE")), "normalised: {saved}");
    assert_eq!(app.as_user(&owner).get(&details_path).await.expect(200), saved);

    let billing = app.sign_up_verified("billing@billing.example").await;
    let admin = app.sign_up_verified("admin@billing.example").await;
    let viewer = app.sign_up_verified("viewer@billing.example").await;
    let stranger = app.sign_up_verified("stranger@billing.example").await;
    app.add_member(org, billing.id, "billing").await;
    app.add_member(org, admin.id, "admin").await;
    app.add_member(org, viewer.id, "viewer").await;

    app.as_user(&billing).get(&details_path).await.expect(200);
    app.as_user(&billing).get(&format!("{path}/records")).await.expect(200);
    app.as_user(&billing).send(reqwest::Method::PUT, &details_path, Some(&details())).await.expect(200);
    for (who, user) in [("admin", &admin), ("viewer", &viewer)] {
        for p in [&path, &details_path, &format!("{path}/records")] {
            let reason = app.as_user(user).get(p).await.expect_error(403, "does not allow");
            assert!(reason.contains(who), "{reason}");
        }
        app.as_user(user).send(reqwest::Method::PUT, &details_path, Some(&details())).await.expect_error(403, "does not allow");
    }
    app.as_user(&stranger).get(&details_path).await.expect_error(404, "organization not found");
    app.anonymous().get(&details_path).await.expect(401);

    // Audited, without the values.
    let rows = app
        .db
        .client()
        .await
        .query("SELECT actor_user_id, details::text FROM audit_log WHERE organization_id = $1 AND action = 'billing.details_changed' ORDER BY id", &[&org])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].get::<_, Option<uuid::Uuid>>(0), Some(billing.id));
    assert!(rows.iter().all(|r| !r.get::<_, String>(1).contains("136695976")));
}

#[tokio::test]
async fn bad_details_get_a_clear_400() {
    let app = spawn_billing_app().await;
    let owner = app.sign_up_verified("owner@vat.example").await;
    let path = format!("/api/organizations/{}/billing/details", owner.organization_id);
    let put = |body: serde_json::Value| {
        let client = app.as_user(&owner);
        let path = path.clone();
        async move { client.send(reqwest::Method::PUT, &path, Some(&body)).await }
    };
    let with = |field: &str, value: serde_json::Value| {
        let mut d = details();
        d[field] = value;
        d
    };
    put(with("vat_id", json!("DE136695977"))).await.expect_error(400, "not a valid VAT id for DE");
    put(with("vat_id", json!("FR12345678901"))).await.expect_error(400, "not a valid VAT id for DE");
    put(with("vat_id", json!("<script>"))).await.expect_error(400, "letters and digits");
    put(with("country", json!("Germany"))).await.expect_error(400, "ISO 3166-1");
    put(with("address_lines", json!([]))).await.expect_error(400, "address_lines");
    put(with("city", json!("Ber\u{7}lin"))).await.expect_error(400, "city");
    put(with("postal_code", json!("1".repeat(21)))).await.expect_error(400, "postal_code");
    put(json!({"country": "DE"})).await.expect_error(400, "missing field");
    // Valid elsewhere: a French id with its check digits.
    let mut french = with("country", json!("FR"));
    french["vat_id"] = json!("FR40303265045");
    assert_eq!(put(french).await.expect(200)["vat_id"], "FR40303265045");
    // No VAT id is fine (a consumer).
    put(with("vat_id", serde_json::Value::Null)).await.expect(200);
}

#[tokio::test]
async fn details_are_encrypted_and_records_outlive_the_purge() {
    let app = spawn_billing_app().await;
    let owner = app.sign_up_verified("owner@purge.example").await;
    let org = owner.organization_id;
    app.as_user(&owner)
        .send(reqwest::Method::PUT, &format!("/api/organizations/{org}/billing/details"), Some(&details()))
        .await
        .expect(200);
    let mut life = Life::new(Provider::Stripe, org);
    for step in [Step::Created, Step::Renewed] {
        for e in life.step(step) {
            let (status, body) = send(&app, Provider::Stripe, &e).await;
            assert_eq!((status, body["outcome"].as_str()), (200, Some("applied")), "{body}");
        }
    }
    let sub = app.as_user(&owner).get(&format!("/api/organizations/{org}/billing")).await.expect(200);
    assert_eq!(
        (sub["plan"]["id"].as_str(), sub["provider"].as_str(), sub["status"].as_str()),
        (Some("growth"), Some("stripe"), Some("active"))
    );
    let records = app.as_user(&owner).get(&format!("/api/organizations/{org}/billing/records")).await.expect(200);
    assert_eq!(records.as_array().map(Vec::len), Some(1), "{records}");
    assert_eq!((records[0]["amount_minor"].as_i64(), records[0]["currency"].as_str()), (Some(1900), Some("EUR")));

    // A dump shows no VAT id, address line, company or customer email (the
    // postal code's digits could turn up in ciphertext hex by chance).
    let dump = app.db.dump().await;
    assert!(dump.contains("billing_details"), "the dump reads the table");
    for secret in [VAT_ID, "136695976", ADDRESS_LINE, "Kastanienallee", "ap@customer.example", "Kastanie Analytics"] {
        assert!(!dump.contains(secret), "`{secret}` is in the dump in clear");
    }

    // The organisation is deleted and, 30 days on, purged.
    let db = app.db.client().await;
    db.execute("UPDATE organizations SET deleted_at = $2 WHERE id = $1", &[&org, &(Utc::now() - Duration::days(31))]).await.unwrap();
    let purged = engagetrack_server::retention::run(&app.state.pool, Utc::now()).await.unwrap();
    assert!(purged.organizations >= 1 && purged.billing >= 1, "{purged:?}");
    assert_eq!(db.query_one("SELECT count(*) FROM organizations WHERE id = $1", &[&org]).await.unwrap().get::<_, i64>(0), 0);
    assert_eq!(db.query_one("SELECT count(*) FROM billing_details", &[]).await.unwrap().get::<_, i64>(0), 0);
    let row = db
        .query_one("SELECT id, organization_id, customer_email, buyer, buyer_country, amount_minor, retain_until > now() + interval '9 years' FROM billing_records", &[])
        .await
        .unwrap();
    let id: uuid::Uuid = row.get(0);
    assert_eq!(row.get::<_, Option<uuid::Uuid>>(1), None, "the link to the erased organisation is cut");
    assert_eq!(row.get::<_, Option<Vec<u8>>>(2), None, "the customer email is gone");
    assert_eq!((row.get::<_, Option<String>>(4).as_deref(), row.get::<_, i64>(5), row.get::<_, bool>(6)), (Some("DE"), 1900, true));
    // What the invoice must name is still there, sealed.
    let buyer = app.state.cipher.decrypt(&row.get::<_, Vec<u8>>(3), format!("billing_record_buyer:{id}").as_bytes()).unwrap();
    let buyer: serde_json::Value = serde_json::from_slice(&buyer).unwrap();
    assert_eq!((buyer["company"].as_str(), buyer["vat_id"].as_str()), (Some("Kastanie Analytics GmbH"), Some(VAT_ID)));

    // Ten years (and the rest of that year) later, it goes.
    engagetrack_server::retention::run(&app.state.pool, Utc::now() + Duration::days(366 * 11 + 2)).await.unwrap();
    assert_eq!(db.query_one("SELECT count(*) FROM billing_records", &[]).await.unwrap().get::<_, i64>(0), 0);
}
