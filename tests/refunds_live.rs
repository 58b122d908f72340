//! `dlft run` refunds customers' claims through the live Shopify adapter,
//! against the sandbox's shop: a claim file dropped into the brand's claims
//! folder is judged (identity graph, tier, policy, envelope, the refund
//! cap), refunded once under its idempotency key, read back and committed;
//! the claim moves to `done/` with its settlement; after a chargeback on
//! another of the customer's orders (read through Shopify's disputes), her
//! next claim gets no automatic refund; a malformed claim file is moved
//! aside with the field named, nothing refunded.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

const REFUNDS: &str = r#"
[refunds]
shopify_url = "SANDBOX/shopify"
token_env = "SHOPIFY_ACCESS_TOKEN"
store = "brand-shop"
claims_dir = "CLAIMS"
identity_key_env = "DLFT_IDENTITY_KEY"
watch_cap_cents = 3000
high_cap_cents = 1000
every_s = 1
"#;

/// The orders the run's shop mirror holds (the embedded store in `dir`).
fn mirrored(dir: &std::path::Path) -> Vec<dlft_core::estimate::identity::OrderRecord> {
    use dlft_core::store::Store;
    let url = format!("sqlite://{}", dir.join("dlft.db").display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = dlft_live::store::open_sqlite(&url, &Default::default()).await.unwrap();
        let rows = store.state(&Default::default(), dlft_core::jobs::mirror::ORDERS_SCOPE).await.unwrap();
        rows.into_iter().map(|(_, body)| serde_json::from_str(&body).unwrap()).collect()
    })
}

fn truth(addr: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { reqwest::get(format!("http://{addr}/shopify/_truth")).await.unwrap().json().await.unwrap() })
}

fn claim(id: &str, order: &str, claimed: &str, total: &str) -> String {
    format!(
        r#"{{ "id": "{id}", "store": "brand-shop", "order_id": "{order}", "claim": "wrong_item",
             "claimed": "{claimed}", "order_total": "{total}", "currency": "EUR", "tracking": "delivered",
             "days_since_shipped": 6, "opened_at": "2026-01-01T00:00:00Z",
             "customer": {{ "email": "jane@example.com", "address": "Hauptstraße 5, Berlin" }} }}"#
    )
}

fn decimal(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

#[test]
#[allow(clippy::disallowed_methods, reason = "waits for a real process in real time")]
fn a_claim_in_the_folder_is_refunded_once_through_the_sandbox() {
    let (_sb, addr) = common::sandbox(5);
    let dir = tempfile::tempdir().unwrap();
    let claims = dir.path().join("claims");
    std::fs::create_dir_all(&claims).unwrap();
    let order = truth(&addr)["orders"][0].clone();
    let (id, total) = (order["id"].as_str().unwrap().to_string(), order["amount_minor"].as_i64().unwrap());
    let claimed = total / 3;
    std::fs::write(claims.join("t-1.json"), claim("t-1", &id, &decimal(claimed), &decimal(total))).unwrap();
    std::fs::write(claims.join("t-2.json"), claim("t-2", &id, "1.005", &decimal(total))).unwrap();
    // One order the shop sends with money that is no amount: the mirror
    // logs it and reads the rest.
    let garbled = truth(&addr)["orders"][4]["id"].as_str().unwrap().to_string();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(common::garble(&addr, &garbled));
    // The example declares a refund cap of 500 EUR a day.
    let config = common::sandbox_config(dir.path(), &addr)
        + &REFUNDS.replace("SANDBOX", &format!("http://{addr}")).replace("CLAIMS", &claims.display().to_string());
    let path = dir.path().join("dlft.toml");
    std::fs::write(&path, config).unwrap();
    let (mut child, log) = common::dlft_run(&path, dir.path(), &[("DLFT_IDENTITY_KEY", "a long random key")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let marker = format!("dlft:refund/default/brand-shop/{id}/t-1");
    let settled = claims.join("done/t-1.json");
    let refunded = loop {
        let t = truth(&addr);
        let ours: Vec<Value> =
            t["refunds"].as_array().unwrap().iter().filter(|r| r["note"] == marker.as_str()).cloned().collect();
        if settled.exists() && !ours.is_empty() || Instant::now() > deadline {
            break ours;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // A chargeback of the same customer on another order (weeks later in
    // life): her next claim, in any store, gets no automatic refund.
    let other = truth(&addr)["orders"][1].clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dispute = serde_json::json!({ "order_id": other["id"], "email": "Jane@Example.com", "status": "open" });
    rt.block_on(async {
        let r =
            reqwest::Client::new().post(format!("http://{addr}/shopify/_dispute")).json(&dispute).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    });
    let other_total = other["amount_minor"].as_i64().unwrap();
    let (other_id, third) = (other["id"].as_str().unwrap().to_string(), claims.join("done/t-3.json"));
    std::fs::write(claims.join("t-3.json"), claim("t-3", &other_id, &decimal(other_total / 2), &decimal(other_total)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !third.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the read-back commit the first and the mirror's next pass (15 s
    // after its last) read the settled refund, then stop.
    let deadline = Instant::now() + Duration::from_secs(40);
    std::thread::sleep(Duration::from_secs(4));
    while !mirrored(dir.path()).iter().any(|r| r.order_id == id && r.refunded.minor == claimed)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let log = log.join().unwrap().join("\n");
    assert!(status.success(), "dlft run: {status}\n{log}");
    assert_eq!(refunded.len(), 1, "one refund for the claim: {refunded:?}\n{log}");
    assert_eq!(refunded[0]["amount_minor"].as_i64(), Some(claimed), "the claim's value, in full (a trusted identity)");
    assert_eq!(refunded[0]["parent_id"], order["payment_id"], "back to the original payment");
    let done: Value = serde_json::from_str(&std::fs::read_to_string(&settled).unwrap()).unwrap();
    assert_eq!(done["settled"]["settled"], "refunded", "{done}");
    let blocked: Value = serde_json::from_str(&std::fs::read_to_string(&third).unwrap()).unwrap();
    assert_eq!(blocked["settled"]["settled"], "no_refund", "{blocked}");
    assert!(blocked["settled"]["why"].as_str().unwrap().contains("chargeback"), "{blocked}");
    let after = truth(&addr);
    assert!(
        !after["refunds"].as_array().unwrap().iter().any(|r| r["order_id"] == other_id.as_str()),
        "nothing refunded to a customer with an open chargeback: {after}"
    );
    let note = std::fs::read_to_string(claims.join("rejected/t-2.json.error.txt")).unwrap();
    assert!(note.contains("field `claimed`"), "{note}");
    // The shop mirror read every order of the store, its buyer hashed, and
    // the refund once it settled.
    let rows = mirrored(dir.path());
    assert_eq!(rows.len(), after["orders"].as_array().unwrap().len() - 1, "every readable order mirrored: {rows:?}");
    assert!(!rows.iter().any(|r| r.order_id == garbled), "nothing mirrored on a guess");
    let row = rows.iter().find(|r| r.order_id == id).expect("the refunded order");
    assert_eq!((row.store.as_str(), row.refunded.minor), ("brand-shop", claimed), "{row:?}");
    let keys = dlft_core::estimate::identity::IdentityKeys::of(b"a long random key", &dlft_sim::shop::buyer(1));
    assert_eq!(rows.iter().find(|r| r.order_id == "gid://shopify/Order/1001").map(|r| &r.keys), Some(&keys));
    assert!(!serde_json::to_string(&rows).unwrap().contains("shop.example"), "no raw email kept");
    assert!(!log.contains("THROTTLED"), "the mirror paced under the bucket: {log}");
    // The operator sees it: `dlft status` names the store, its orders and
    // the newest change read.
    let url = format!("sqlite://{}", dir.path().join("dlft.db").display());
    let out = common::dlft(&["status", "--store", &url, "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &status["brands"]["default"]["shop_mirror"]["brand-shop"];
    assert_eq!(m["orders"].as_u64(), Some(rows.len() as u64), "{status}");
    assert!(m["newest_change_read"].is_string(), "{status}");
    assert_eq!(m["unreadable_orders"], 1, "{status}");
    assert_eq!(m["latest_unreadable"]["order"], garbled.as_str(), "{status}");
    assert!(m["latest_unreadable"]["why"].as_str().unwrap().contains("totalPriceSet"), "{status}");
    let out = common::dlft(&["status", "--store", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mirror     store brand-shop: "), "{out:?}");
    assert!(text.contains("1 orders unreadable, latest"), "{text}");
    // The ledger posted it against the brand's refund cap.
    let out =
        common::dlft(&["budgets", "--store", &format!("sqlite://{}", dir.path().join("dlft.db").display()), "--json"]);
    let budgets = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && budgets.contains("refund"), "{budgets}");
    assert!(budgets.contains(&decimal(claimed)) || budgets.contains(&claimed.to_string()), "{budgets}");
}

/// A Shopify webhook: its `X-Shopify-Hmac-Sha256` made with `secret`.
async fn shop_hook(url: &str, secret: &str, id: Option<&str>, topic: &str, body: &str) -> (u16, String) {
    let sig = dlft_live::webhook::sign_shopify(&dlft_live::meta::Secret::new(secret.into()), body.as_bytes());
    let mut req = reqwest::Client::new()
        .post(url)
        .header("X-Shopify-Hmac-Sha256", sig)
        .header("X-Shopify-Topic", topic)
        .body(body.to_string());
    if let Some(id) = id {
        req = req.header("X-Shopify-Webhook-Id", id);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// With the shop's webhook secret set, `dlft run` serves
/// `/webhooks/shopify/<brand>`: a verified order webhook brings the claims
/// review forward (the schedule's first slot is up to a day away) and the
/// review reads the shop itself; a forged, garbage, unnamed or other
/// brand's webhook moves nothing, another topic is ignored, and a
/// redelivery refunds nothing more.
#[test]
#[allow(clippy::disallowed_methods, reason = "waits for a real process in real time")]
fn a_verified_shop_webhook_brings_the_claims_review_forward_and_a_forged_one_nothing() {
    let (_sb, addr) = common::sandbox(7);
    let dir = tempfile::tempdir().unwrap();
    let claims = dir.path().join("claims");
    std::fs::create_dir_all(&claims).unwrap();
    let order = truth(&addr)["orders"][0].clone();
    let (id, total) = (order["id"].as_str().unwrap().to_string(), order["amount_minor"].as_i64().unwrap());
    std::fs::write(claims.join("w-1.json"), claim("w-1", &id, &decimal(total / 4), &decimal(total))).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refunds = REFUNDS
        .replace("SANDBOX", &format!("http://{addr}"))
        .replace("CLAIMS", &claims.display().to_string())
        .replace("every_s = 1\n", "every_s = 86400\nwebhook_secret_env = \"SHOPIFY_WEBHOOK_SECRET\"\n");
    let config =
        common::sandbox_config(dir.path(), &addr).replace("127.0.0.1:0", &format!("127.0.0.1:{port}")) + &refunds;
    let path = dir.path().join("dlft.toml");
    std::fs::write(&path, config).unwrap();
    let secret = "shpss_test_app_secret";
    let (mut child, log) = common::dlft_run(
        &path,
        dir.path(),
        &[("DLFT_IDENTITY_KEY", "a long random key"), ("SHOPIFY_WEBHOOK_SECRET", secret)],
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.block_on(reqwest::get(format!("{base}/health"))).is_err() {
        assert!(Instant::now() < deadline, "the runner never served /health");
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("{base}/webhooks/shopify/default");
    let body = serde_json::json!({"id": 820_982_911_946_154_508_u64, "admin_graphql_api_id": id}).to_string();
    let refunds_now =
        || truth(&addr)["refunds"].as_array().unwrap().iter().filter(|r| r["order_id"] == id.as_str()).count();
    rt.block_on(async {
        assert_eq!(shop_hook(&url, "another-secret", Some("wh-0"), "orders/updated", &body).await.0, 401, "forged");
        assert_eq!(shop_hook(&url, secret, Some("wh-0"), "orders/updated", "not json").await.0, 400, "signed garbage");
        assert_eq!(shop_hook(&url, secret, None, "orders/updated", &body).await.0, 400, "no webhook id");
        let other = format!("{base}/webhooks/shopify/nobody");
        assert_eq!(shop_hook(&other, secret, Some("wh-0"), "orders/updated", &body).await.0, 404, "another brand");
        let (status, text) = shop_hook(&url, secret, Some("wh-9"), "products/update", &body).await;
        assert_eq!((status, text.contains("ignored")), (200, true), "{text}");
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(!claims.join("done/w-1.json").exists(), "nothing but a verified order webhook moves the review");
    assert_eq!(refunds_now(), 0);
    let (status, text) = rt.block_on(shop_hook(&url, secret, Some("wh-1"), "orders/updated", &body));
    assert_eq!(status, 200, "{text}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(claims.join("done/w-1.json").exists() && refunds_now() == 1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (again, _) = rt.block_on(shop_hook(&url, secret, Some("wh-1"), "orders/updated", &body));
    std::thread::sleep(Duration::from_secs(3));
    let after = refunds_now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let _ = child.wait();
    let log = log.join().unwrap().join("\n");
    assert!(claims.join("done/w-1.json").exists(), "the webhook brought the review forward\n{log}");
    assert_eq!((again, after), (200, 1), "a redelivery refunds nothing more\n{log}");
}

fn tracks(addr: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { reqwest::get(format!("http://{addr}/17track/_truth")).await.unwrap().json().await.unwrap() })
}

/// A "did not arrive" claim is judged against the carrier, not the claim
/// file: with the brand's 17TRACK configured, the refund job reads each
/// order's tracking numbers from Shopify, registers and reads them at the
/// sandbox's 17TRACK (the same world's parcels), keeps what the tracker
/// said in the settlement, and stops tracking a parcel delivered.
#[test]
#[allow(clippy::disallowed_methods, reason = "waits for a real process in real time")]
fn a_claim_is_judged_against_the_carriers_tracking() {
    let (_sb, addr) = common::sandbox(5);
    let dir = tempfile::tempdir().unwrap();
    let claims = dir.path().join("claims");
    std::fs::create_dir_all(&claims).unwrap();
    // The sandbox's order n ships as its parcel n (`DL…DE`): one delivered,
    // one still in transit (lost, or not yet delivered).
    let orders = truth(&addr)["orders"].as_array().unwrap().clone();
    let parcels = tracks(&addr)["parcels"].as_array().unwrap().clone();
    let status_of = |order: &Value| {
        let n: u64 = order["id"].as_str().unwrap().rsplit('/').next().unwrap().parse::<u64>().unwrap() - 1000;
        let number = format!("DL{:09}DE", 100_000 + n);
        let p = parcels.iter().find(|p| p["number"] == number.as_str()).expect("every order ships a parcel");
        (number, p["status"].as_str().unwrap().to_string())
    };
    let delivered = orders.iter().find(|o| status_of(o).1 == "Delivered").expect("a delivered parcel");
    let moving = orders.iter().find(|o| status_of(o).1 == "InTransit").expect("a parcel in transit");
    let dna = |id: &str, order: &Value, told: &str, email: &str| {
        let total = order["amount_minor"].as_i64().unwrap();
        format!(
            r#"{{ "id": "{id}", "store": "brand-shop", "order_id": "{}", "claim": "did_not_arrive",
                 "claimed": "{}", "order_total": "{}", "currency": "EUR", "tracking": "{told}",
                 "days_since_shipped": 5, "opened_at": "2026-01-01T00:00:00Z",
                 "customer": {{ "email": "{email}" }} }}"#,
            order["id"].as_str().unwrap(),
            decimal(total / 2),
            decimal(total)
        )
    };
    // The customer says lost; the carrier says delivered. And the other way round.
    std::fs::write(claims.join("d-1.json"), dna("d-1", delivered, "lost", "ann@example.com")).unwrap();
    std::fs::write(claims.join("d-2.json"), dna("d-2", moving, "delivered", "bob@example.com")).unwrap();
    let config = common::sandbox_config(dir.path(), &addr)
        + &REFUNDS.replace("SANDBOX", &format!("http://{addr}")).replace("CLAIMS", &claims.display().to_string())
        + &format!("tracking_url = \"http://{addr}/17track\"\ntracking_token_env = \"TRACK17_TOKEN\"\n");
    let path = dir.path().join("dlft.toml");
    std::fs::write(&path, config).unwrap();
    let env = [("DLFT_IDENTITY_KEY", "a long random key"), ("TRACK17_TOKEN", "sandbox-17token")];
    let (mut child, log) = common::dlft_run(&path, dir.path(), &env);
    let (first, second) = (claims.join("done/d-1.json"), claims.join("done/d-2.json"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let stopped = |number: &str| {
        tracks(&addr)["parcels"].as_array().unwrap().iter().any(|p| p["number"] == number && p["stopped"] == true)
    };
    // The run stops the delivered parcel after it settles the claims.
    while !(first.exists() && second.exists() && stopped(&status_of(delivered).0)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let log = log.join().unwrap().join("\n");
    assert!(status.success(), "dlft run: {status}\n{log}");
    let read = |p: &std::path::Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}\n{log}", p.display())))
            .unwrap()
    };
    let (d1, d2) = (read(&first), read(&second));
    assert_eq!(d1["settled"]["settled"], "no_refund", "lost by the customer's word, delivered by the carrier's: {d1}");
    assert_eq!(d1["settled"]["tracked"], "delivered", "{d1}");
    assert!(d1["settled"]["why"].as_str().unwrap().contains("tracking says delivered"), "{d1}");
    assert_eq!(d2["settled"]["tracked"], "moving", "the carrier's word, not the file's: {d2}");
    assert!(d2["settled"]["why"].as_str().unwrap().contains("in transit"), "{d2}");
    let refunds = truth(&addr)["refunds"].as_array().unwrap().clone();
    assert!(refunds.is_empty(), "nothing refunded against the carrier's word: {refunds:?}");
    let after = tracks(&addr);
    let parcel = |number: &str| after["parcels"].as_array().unwrap().iter().find(|p| p["number"] == number).cloned();
    let (done, moving) = (parcel(&status_of(delivered).0).unwrap(), parcel(&status_of(moving).0).unwrap());
    assert_eq!(done["stopped"], true, "a delivered parcel is no longer tracked: {done}");
    assert_eq!(moving["registered"], true, "a parcel still moving stays tracked: {moving}");
    assert_eq!(after["rate_limited"], 0, "paced under 17TRACK's rate");
}
