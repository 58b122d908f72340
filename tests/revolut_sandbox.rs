//! The live Revolut adapter (reqwest) against the sandbox's Revolut
//! endpoints, over real HTTP, both built on the same wire shapes and the
//! sim's bank: a payment is created under its request id, a repeat is the
//! documented duplicate-request error and makes no second payment, the
//! read-back by request id follows the payment from created to completed,
//! a payment to an account not on record is refused, a request without a
//! token is unauthorized, and the sandbox's truth shows one debit.

use std::time::Duration;

use dlft_core::money::{Currency, Money};
use dlft_core::sense::bank::{Bank, BankError, Payment, TxState};
use dlft_core::time::{Clock, Timestamp};
use dlft_live::SystemClock;
use dlft_live::meta::Secret;
use dlft_live::revolut::{RevolutBank, RevolutConfig};

mod common;

fn sandbox() -> (common::Sandbox, String) {
    common::sandbox(3)
}

fn bank(addr: &str, token: &str) -> RevolutBank {
    RevolutBank::new(RevolutConfig {
        base_url: format!("http://{addr}/revolut"),
        token: Secret::new(token.into()),
        timeout: Duration::from_secs(5),
        refresh: None,
        min_interval: Duration::ZERO,
    })
    .unwrap()
}

fn payment(request_id: &str, account: &str) -> Payment {
    Payment {
        request_id: request_id.into(),
        account_id: "acc-brand".into(),
        counterparty_id: "cp-1".into(),
        counterparty_account: account.into(),
        amount: Money::new(125_050, Currency::EUR),
        reference: "INV-0042".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_pays_once_and_reads_back_against_the_sandbox() {
    let (_sb, addr) = sandbox();
    let b = bank(&addr, "sandbox-token");
    let start = SystemClock.now();
    let from = Timestamp(start.0 - 60_000);

    let first = b.pay(&payment("dlft-req-1", "cpa-1")).await.unwrap();
    assert_eq!(first.state, TxState::Created);
    assert_eq!(b.pay(&payment("dlft-req-1", "cpa-1")).await, Err(BankError::DuplicateRequest), "never paid twice");

    let now = b.transaction_by_request_id("dlft-req-1", from).await.unwrap().expect("the payment reads back");
    assert_eq!((now.id.as_str(), now.amount), (first.id.as_str(), Money::new(125_050, Currency::EUR)));
    assert!(now.state.in_flight(), "{:?}", now.state);
    assert_eq!(b.transaction_by_request_id("dlft-req-2", from).await.unwrap(), None, "no payment under another id");
    // The sandbox's payments settle 2.5 s after they are made.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let done = b.transaction_by_request_id("dlft-req-1", from).await.unwrap().unwrap();
    assert_eq!(done.state, TxState::Completed);
    assert!(done.completed_at.is_some());

    let refused = b.pay(&payment("dlft-req-3", "fraudster-account")).await;
    assert!(matches!(refused, Err(BankError::Rejected { code: 2101, .. })), "{refused:?}");
    let anonymous = bank(&addr, "").pay(&payment("dlft-req-4", "cpa-1")).await;
    assert!(matches!(anonymous, Err(BankError::Unauthorized(_))), "{anonymous:?}");

    let truth: serde_json::Value =
        reqwest::get(format!("http://{addr}/revolut/_truth")).await.unwrap().json().await.unwrap();
    let moves = truth["movements"].as_array().unwrap();
    assert_eq!(moves.len(), 1, "one debit: {truth}");
    assert_eq!(
        (moves[0]["request_id"].as_str(), moves[0]["amount_minor"].as_i64()),
        (Some("dlft-req-1"), Some(-125_050))
    );
    assert_eq!(truth["transactions"].as_array().unwrap().len(), 1, "the refused and the duplicate made nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_once_and_the_payment_goes_once() {
    use dlft_live::revolut::RefreshConfig;
    let (_sb, addr) = sandbox();
    let refreshing = |token: &str| {
        RevolutBank::new(RevolutConfig {
            base_url: format!("http://{addr}/revolut"),
            token: Secret::new(token.into()),
            timeout: Duration::from_secs(5),
            refresh: Some(RefreshConfig {
                refresh_token: Secret::new("refresh-1".into()),
                client_id: "client-1".into(),
                client_assertion: Secret::new("header.claims.signature".into()),
            }),
            min_interval: Duration::ZERO,
        })
        .unwrap()
    };
    let http = reqwest::Client::new();
    http.post(format!("http://{addr}/revolut/_expire?token=old-token")).send().await.unwrap();
    let b = refreshing("old-token");
    // Refused with 401 (code 1000), refreshed, sent again: one payment.
    let paid = b.pay(&payment("dlft-req-r1", "cpa-1")).await.unwrap();
    assert_eq!(paid.state, TxState::Created);
    let from = Timestamp(SystemClock.now().0 - 60_000);
    assert!(b.transaction_by_request_id("dlft-req-r1", from).await.unwrap().is_some(), "the new token is kept");
    let truth: serde_json::Value =
        http.get(format!("http://{addr}/revolut/_truth")).send().await.unwrap().json().await.unwrap();
    assert_eq!(truth["transactions"].as_array().unwrap().len(), 1, "{truth}");
    // The new token expires too: refreshed again.
    http.post(format!("http://{addr}/revolut/_expire?token=sandbox-access-1")).send().await.unwrap();
    assert!(b.transaction_by_request_id("dlft-req-r1", from).await.unwrap().is_some());
    // Without a refresh grant, an expired token is a clear error, and nothing is made.
    let stale = bank(&addr, "old-token").pay(&payment("dlft-req-r2", "cpa-1")).await;
    assert!(matches!(stale, Err(BankError::Unauthorized(_))), "{stale:?}");
    let listed = b.transactions(from, Timestamp(SystemClock.now().0 + 1_000)).await.unwrap();
    assert_eq!(listed.iter().map(|t| t.request_id.as_str()).collect::<Vec<_>>(), ["dlft-req-r1"], "the statement");
}

#[tokio::test]
async fn an_unreachable_bank_is_not_a_maybe() {
    // Nothing listens on port 1: the request never left, so nothing was made.
    let r = bank("127.0.0.1:1", "t").pay(&payment("dlft-req-9", "cpa-1")).await;
    assert!(matches!(r, Err(BankError::Unreachable(_))), "{r:?}");
    assert!(!r.unwrap_err().outcome_unknown());
}
