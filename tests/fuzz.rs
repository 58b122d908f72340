//! Every decoder of outside input, fuzzed: arbitrary bytes and mutations of
//! a corpus of valid inputs must give a value or a clear error, never a
//! panic. proptest over bytes (cargo-fuzz needs a nightly toolchain, which
//! CI does not have); structure-aware mutations for JSON (a node replaced by
//! a value of another type, deleted, duplicated) reach the decoders behind
//! the JSON parser.
//!
//! Corpora: `tests/fuzz/corpus/<target>/` (plus `scenarios/` and
//! `examples/` for the TOML targets, and the Open Bandit sample for CSV);
//! proptest keeps every failure it finds in `tests/fuzz.proptest-regressions`
//! and replays it first on every run. CI runs each target for
//! `FUZZ_CASES` cases (default below); for a long run:
//! `FUZZ_CASES=200000 cargo test --release --test fuzz`.

#![allow(clippy::disallowed_methods, reason = "FUZZ_CASES sets the length of a run")]

use std::path::{Path, PathBuf};

use dlft_core::sense::wire::{anthropic, meta};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::Value;

/// Cases per target in CI; `FUZZ_CASES` overrides.
const CI_CASES: u32 = 2_000;

fn config(cases: u32) -> Config {
    let cases = std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/fuzz.proptest-regressions"))),
        ..Config::default()
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file of a corpus directory, by name.
fn corpus(dir: &Path, ext: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// A byte-level edit: what, where (a fraction of the length), and a byte.
type Edit = (u8, u32, u8);

fn apply_edits(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for &(op, at, b) in edits {
        let at = if bytes.is_empty() { 0 } else { at as usize % bytes.len() };
        match op % 6 {
            0 => bytes.truncate(at),
            1 if !bytes.is_empty() => bytes[at] = b,
            2 => bytes.insert(at, b),
            3 if !bytes.is_empty() => {
                bytes.remove(at);
            }
            4 => {
                // Duplicate a run (repeated keys, repeated rows).
                let end = (at + 1 + b as usize).min(bytes.len());
                let run = bytes[at..end].to_vec();
                bytes.splice(at..at, run);
            }
            _ => bytes.insert(at, [b'"', b'{', b'}', b'[', b']', b',', b'\n', b'\\', b'=', 0xff][b as usize % 10]),
        }
    }
    bytes
}

/// Arbitrary bytes, or a corpus entry with byte edits.
fn bytes_from(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = corpus.len();
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..512),
        4 => (0..n, proptest::collection::vec(any::<Edit>(), 0..6))
            .prop_map(move |(i, edits)| apply_edits(corpus[i].clone(), &edits)),
    ]
}

/// A JSON value of any type, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::from(u64::MAX)),
        "[ -~]{0,12}".prop_map(Value::String),
        Just(Value::String("1.005".into())),
        Just(Value::String("-0.01".into())),
        Just(Value::String("99999999999999999999.99".into())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every node of `v`, depth first, as JSON pointers.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| pointers(x, format!("{at}/{i}"), out)),
        Value::Object(o) => {
            o.iter().for_each(|(k, x)| pointers(x, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out))
        }
        _ => {}
    }
}

/// A structural edit of a JSON document: pick a node, then replace it with
/// another value, delete it, or put a copy of it beside itself.
fn mutate_json(mut v: Value, edits: &[(u32, u8, Value)]) -> Value {
    for (at, op, with) in edits {
        let mut all = Vec::new();
        pointers(&v, String::new(), &mut all);
        let target = all[*at as usize % all.len()].clone();
        if target.is_empty() {
            if op % 3 == 0 {
                v = with.clone();
            }
            continue;
        }
        let (parent, key) = target.rsplit_once('/').expect("non-root pointers have a parent");
        let copy = v.pointer(&target).cloned();
        let Some(p) = v.pointer_mut(parent) else { continue };
        match (op % 3, p) {
            (0, Value::Array(a)) => a[key.parse::<usize>().unwrap()] = with.clone(),
            (0, Value::Object(o)) => {
                o.insert(key.replace("~1", "/").replace("~0", "~"), with.clone());
            }
            (1, Value::Array(a)) => {
                a.remove(key.parse::<usize>().unwrap());
            }
            (1, Value::Object(o)) => {
                o.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
            (_, Value::Array(a)) => a.extend(copy),
            (_, Value::Object(o)) => {
                o.insert(format!("{key}_"), copy.unwrap_or(Value::Null));
            }
            _ => {}
        }
    }
    v
}

/// Documents for a JSON decoder: a corpus entry with structural edits, raw
/// bytes that happen to parse, or any value.
fn json_from(dir: &str) -> impl Strategy<Value = Value> {
    let docs: Vec<Value> = corpus(&root().join("tests/fuzz/corpus").join(dir), "json")
        .iter()
        .map(|b| serde_json::from_slice(b).expect("corpus entries are valid JSON"))
        .collect();
    let raw: Vec<Vec<u8>> = docs.iter().map(|d| serde_json::to_vec(d).unwrap()).collect();
    let n = docs.len();
    prop_oneof![
        6 => (0..n, proptest::collection::vec((any::<u32>(), any::<u8>(), any_json()), 1..5))
            .prop_map(move |(i, edits)| mutate_json(docs[i].clone(), &edits)),
        2 => bytes_from(raw).prop_map(|b| serde_json::from_slice(&b).unwrap_or(Value::Null)),
        1 => any_json(),
    ]
}

#[test]
fn meta_decoders_never_panic() {
    proptest!(config(CI_CASES), |(body in json_from("meta"), n in 0usize..60, status in 100u16..600,
                                  header in proptest::option::of("[ -~]{0,80}"))| {
        let _ = meta::decode_insights(&body);
        let _ = meta::decode_status(&body);
        let _ = meta::decode_pause(&body);
        let _ = meta::decode_archive(&body);
        if let Ok(p) = meta::decode_parents(&body) {
            prop_assert!(!p.adset.is_empty() && !p.campaign.is_empty(), "no empty parent id");
        }
        if let Ok(hints) = meta::decode_status_webhook(&body) {
            prop_assert!(hints.len() <= meta::MAX_WEBHOOK_HINTS);
        }
        if let Ok(items) = meta::decode_pause_batch(&body, n) {
            prop_assert_eq!(items.len(), n, "a batch reply answers every request or is refused");
        }
        let _ = meta::classify_error(status, &body, header.as_deref());
        if let Some(text) = body.as_str() {
            let _ = meta::parse_pause_batch(text);
        }
    });
}

#[test]
fn meta_batch_requests_never_panic() {
    // `POST /` with `batch=[…]`: what the sandbox decodes from our adapter.
    let corpus = corpus(&root().join("tests/fuzz/corpus/meta-batch"), "txt");
    proptest!(config(CI_CASES), |(bytes in bytes_from(corpus))| {
        let _ = meta::parse_pause_batch(&String::from_utf8_lossy(&bytes));
    });
}

#[test]
fn revolut_decoders_never_panic() {
    use dlft_core::money::Currency;
    use dlft_core::sense::wire::revolut;
    proptest!(config(CI_CASES), |(body in json_from("revolut"), status in 100u16..600,
                                  retry in proptest::option::of(0u64..100_000), id in "[ -~]{0,50}")| {
        let _ = revolut::decode_pay_reply(&body);
        if let Ok(Some(t)) = revolut::decode_transactions(&body, &id) {
            prop_assert_eq!(&t.request_id, &id, "only the asked request id reads back");
            prop_assert!(t.amount.minor >= 0, "an outgoing amount is positive");
        }
        let _ = revolut::classify_error(status, &body, retry);
        if let Ok(p) = revolut::decode_payment(&body) {
            prop_assert!(p.amount.minor > 0 && p.request_id.chars().count() <= 40);
        }
        if let Some(n) = body.as_number() {
            let _ = revolut::money_of(n, Currency::EUR);
        }
    });
}

#[test]
fn shopify_decoders_never_panic() {
    use dlft_core::sense::shop::ShopError;
    use dlft_core::sense::wire::shopify;
    proptest!(config(CI_CASES), |(body in json_from("shopify"), status in 100u16..600)| {
        match shopify::decode_refund_create(status, &body) {
            Ok(r) => prop_assert!(r.amount.minor >= 0 && !r.id.is_empty(), "a refund read is whole"),
            Err(ShopError::Throttled { retry_after }) => prop_assert!(retry_after.0 < 3_600_000, "a bounded wait"),
            Err(_) => {}
        }
        let _ = shopify::decode_order_refunds(status, &body);
        if let Ok(o) = shopify::decode_order(status, &body) {
            prop_assert!(o.max_refundable.minor >= 0 && o.max_refundable.minor <= o.total.minor, "a bound within the total");
        }
        let _ = shopify::classify_errors(status, &body);
        if let Ok(p) = shopify::decode_disputes(status, &body, "eu") {
            prop_assert!(p.disputes.iter().all(|d| !d.id.is_empty()), "every dispute read has its id");
        }
        if let Ok(p) = dlft_core::sense::wire::shopify_orders::decode_orders_page(status, &body) {
            prop_assert!(
                p.orders.iter().all(|o| !o.id.is_empty() && o.refunded.minor >= 0 && o.refunded.minor <= o.total.minor),
                "every mirrored order has its id and refunds within its total"
            );
        }
        if let Some(t) = shopify::throttle_status(&body) {
            let _ = shopify::wait_for(shopify::MUTATION_COST, &t);
        }
        let _ = shopify::money_of(&body);
    });
}

#[test]
fn track17_decoders_never_panic() {
    use dlft_core::sense::wire::track17;
    proptest!(config(CI_CASES), |(body in json_from("track17"), status in 100u16..600, number in "[ -~]{0,60}")| {
        if track17::decode_register(status, &body).is_ok() {
            prop_assert!(status == 200, "only a 200 carries numbers: {}", status);
        }
        if let Ok((shipments, _)) = track17::decode_trackinfo(status, &body) {
            prop_assert!(status == 200);
            prop_assert!(shipments.iter().all(|s| track17::TrackStatus::parse(s.status.as_str()) == Some(s.status)));
        }
        let _ = track17::valid_number(&number);
    });
}

#[test]
fn payables_files_never_panic() {
    use dlft_core::sense::payables::{parse_csv, parse_json};
    let mut files = corpus(&root().join("tests/fuzz/corpus/payables"), "csv");
    files.extend(corpus(&root().join("tests/fuzz/corpus/payables"), "json"));
    proptest!(config(CI_CASES), |(bytes in bytes_from(files))| {
        let text = String::from_utf8_lossy(&bytes);
        for rows in [parse_csv(&text), parse_json(&text)].into_iter().flatten() {
            prop_assert!(rows.iter().all(|r| r.amount.minor > 0), "every payable read is positive");
        }
    });
}

#[test]
fn claim_files_never_panic() {
    use dlft_live::claims::decode_claim;
    let files = corpus(&root().join("tests/fuzz/corpus/claims"), "json");
    for f in &files {
        decode_claim(f).expect("every corpus claim is a valid claim");
    }
    assert!(files.len() >= 3, "the claims corpus is there");
    proptest!(config(CI_CASES), |(bytes in bytes_from(files))| {
        if let Ok(c) = decode_claim(&bytes) {
            prop_assert!(c.claimed.minor >= 0 && c.claimed.minor <= c.order_total.minor, "a claim read is within its order");
            prop_assert!(!c.id.trim().is_empty() && !c.store.trim().is_empty() && !c.order_id.trim().is_empty());
        }
    });
}

#[test]
fn anthropic_decoders_never_panic() {
    proptest!(config(CI_CASES), |(body in json_from("anthropic"), status in 100u16..600)| {
        let _ = anthropic::decode_summary(&body);
        let _ = anthropic::classify_error(status, &body);
        if let Ok(c) = anthropic::decode_completion(&body) {
            prop_assert!(serde_json::from_str::<Value>(&c.raw).is_ok(), "a tool input is JSON");
            // Whatever the vendor returns, the proposal parser decides.
            let _ = dlft_core::propose::support::parse_proposal(&c.raw);
        }
    });
}

#[test]
fn gemini_decoders_never_panic() {
    use dlft_core::sense::wire::gemini;
    proptest!(config(CI_CASES), |(body in json_from("gemini"), status in 100u16..600)| {
        if let Ok(c) = gemini::decode_completion(&body) {
            prop_assert!(!c.raw.trim().is_empty());
            let _ = dlft_core::propose::support::parse_proposal(&c.raw);
        }
        if let dlft_core::sense::models::ModelError::RateLimited { retry_after } = gemini::classify_error(status, &body) {
            prop_assert!(retry_after.0 <= 3_601_000, "a bounded wait");
        }
    });
}

#[test]
fn agentmail_decoders_never_panic() {
    use dlft_core::sense::wire::agentmail;
    proptest!(config(CI_CASES), |(body in json_from("agentmail"), status in 100u16..600, retry in proptest::option::of(any::<u64>()))| {
        if let Ok(p) = agentmail::decode_threads(status, &body) {
            prop_assert!(p.threads.iter().all(|t| !t.thread_id.is_empty()));
            prop_assert!(p.next_page_token.as_deref() != Some(""), "an empty token is the last page");
        }
        if let Ok(m) = agentmail::decode_thread(status, &body) {
            prop_assert!(m.windows(2).all(|w| w[0].timestamp <= w[1].timestamp), "oldest first");
        }
        let _ = agentmail::decode_sent(status, &body);
        if let agentmail::InboxError::RateLimited { retry_after } = agentmail::classify_error(status, &body, retry) {
            prop_assert!(retry_after.0 <= 3_600_000, "a bounded wait");
        }
    });
}

#[test]
fn svix_signatures_never_panic_and_only_the_signed_body_passes() {
    use dlft_live::svix::{sign, verify};
    let corpus = corpus(&root().join("tests/fuzz/corpus/agentmail"), "json");
    proptest!(config(CI_CASES), |(body in bytes_from(corpus), header in proptest::option::of("[ -~]{0,120}"),
                                  ts in proptest::option::of("[0-9a-z ]{0,12}"), now in 0i64..4_000_000_000,
                                  edits in proptest::collection::vec(any::<Edit>(), 1..3))| {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let _ = verify(secret, Some("msg_1"), ts.as_deref(), header.as_deref(), &body, now);
        let stamp = now.to_string();
        let good = sign(secret, "msg_1", &stamp, &body).unwrap();
        prop_assert!(verify(secret, Some("msg_1"), Some(&stamp), Some(&good), &body, now).is_ok());
        prop_assert!(verify(secret, Some("msg_1"), Some(&stamp), Some(&good), &body, now + 301).is_err(), "a replay");
        let other = apply_edits(body.clone(), &edits);
        if other != body {
            prop_assert!(verify(secret, Some("msg_1"), Some(&stamp), Some(&good), &other, now).is_err());
        }
    });
}

#[test]
fn webhook_signatures_never_panic_and_only_the_signed_body_passes() {
    use dlft_live::meta::Secret;
    use dlft_live::webhook::{sign, verify};
    let corpus = corpus(&root().join("tests/fuzz/corpus/meta"), "json");
    proptest!(config(CI_CASES), |(body in bytes_from(corpus), header in proptest::option::of("[ -~]{0,90}"),
                                  edits in proptest::collection::vec(any::<Edit>(), 1..3))| {
        let secret = Secret::new("fuzz-secret".into());
        let _ = verify(&secret, &body, header.as_deref());
        let good = sign(&secret, &body);
        prop_assert!(verify(&secret, &body, Some(&good)).is_ok());
        let other = apply_edits(body.clone(), &edits);
        if other != body {
            prop_assert!(verify(&secret, &other, Some(&good)).is_err(), "a signature covers its body only");
        }
        let forged = apply_edits(good.clone().into_bytes(), &edits);
        // Hex digits in either case are the same signature (found by this test).
        if forged.to_ascii_lowercase() != good.as_bytes() {
            prop_assert!(verify(&secret, &body, Some(&String::from_utf8_lossy(&forged))).is_err());
        }
    });
}

#[test]
fn scenario_files_never_panic() {
    let corpus = corpus(&root().join("scenarios"), "toml");
    proptest!(config(CI_CASES), |(bytes in bytes_from(corpus))| {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(scn) = dlft_sim::scenario::Scenario::parse(&text, Path::new("fuzz.toml")) {
            // What a run derives from a file it accepted must not panic either.
            let _ = scn.loop_config();
            let _ = scn.worker_config(dlft_core::config::Sabotage::None);
        }
    });
}

#[test]
fn run_configs_never_panic() {
    let corpus = corpus(&root().join("examples"), "toml");
    proptest!(config(CI_CASES), |(bytes in bytes_from(corpus))| {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(cfg) = dlft_live::config::RunConfig::parse(&text, "fuzz.toml") {
            let _ = cfg.loop_config();
            let _ = cfg.worker_config(1);
        }
    });
}

#[test]
fn policy_files_never_panic() {
    let corpus = corpus(&root().join("policies"), "toml");
    proptest!(config(CI_CASES), |(bytes in bytes_from(corpus))| {
        let text = String::from_utf8_lossy(&bytes);
        let _ = dlft_datasets::policy::parse(&text, Path::new("fuzz.toml"));
        let _ = dlft_datasets::policy::parse_sweep(&text);
    });
}

#[test]
fn sim_rpc_frames_never_panic() {
    use dlft_core::act::intent::{Action, Evidence, IntentOp, NewIntent};
    use dlft_core::envelope::{Decision, Verdict};
    use dlft_core::estimate::estimator::AdEstimate;
    use dlft_core::ids::{AdId, ClaimToken, IdempotencyKey, JobId, WorkerId};
    use dlft_core::money::{Currency, Money};
    use dlft_core::store::{Lease, WriteBatch};
    use dlft_core::time::Timestamp;
    use dlft_sim::rpc::{AdsRequest, StoreReply, StoreRequest};
    // The corpus is built from the frames' own types, so it follows them.
    let ad = AdId::new("ad-1");
    let key = IdempotencyKey::new("kill/ad-1");
    let eur = |m| Money::new(m, Currency::EUR);
    let estimate = AdEstimate {
        ad: ad.clone(),
        first_bucket: Timestamp(0),
        matured_until: Timestamp(60_000),
        matured_spend: eur(9_000),
        matured_purchases: 1,
        matured_revenue: eur(3_000),
        in_learning: false,
    };
    let verdict =
        Verdict { ad: ad.clone(), key: key.clone(), decision: Decision::Approve, at: Timestamp(1), reason: "r".into() };
    let open = IntentOp::Open(NewIntent {
        key: key.clone(),
        action: Action::KillAd { ad: ad.clone() },
        evidence: Evidence::Kill(estimate),
        verdict: verdict.clone(),
        reserve: None,
    });
    let lease = Lease { job: JobId(3), token: ClaimToken(9) };
    let batch = WriteBatch { verdicts: vec![verdict], intents: vec![open], ..WriteBatch::default() };
    let frames: Vec<Vec<u8>> = vec![
        serde_json::to_vec(&StoreRequest::Boot { worker: WorkerId::new("w-1") }).unwrap(),
        serde_json::to_vec(&StoreRequest::Write { lease: lease.clone(), batch }).unwrap(),
        serde_json::to_vec(&StoreRequest::Intent { key: key.clone() }).unwrap(),
        serde_json::to_vec(&StoreReply::Done).unwrap(),
        serde_json::to_vec(&AdsRequest::Pause { ad: ad.clone(), key: key.clone() }).unwrap(),
        serde_json::to_vec(&AdsRequest::PauseBatch { items: vec![(ad, key)] }).unwrap(),
    ];
    let corpus = frames;
    proptest!(config(CI_CASES), |(bytes in bytes_from(corpus))| {
        let _ = serde_json::from_slice::<StoreRequest>(&bytes);
        let _ = serde_json::from_slice::<StoreReply>(&bytes);
        let _ = serde_json::from_slice::<AdsRequest>(&bytes);
    });
}

/// Parquet catalogs from disk: a damaged file is a clear error naming it.
#[test]
fn parquet_catalogs_never_panic() {
    let good = tempfile::tempdir().unwrap();
    let spec = dlft_datasets::generate::Spec { seed: 7, days: 1, brands: 1, bandit_per_hour: 4 };
    dlft_datasets::generate::generate(&spec, good.path()).unwrap();
    let mut files = Vec::new();
    walk(good.path(), &mut files);
    let file = files.into_iter().find(|p| p.to_string_lossy().contains("insights")).expect("an insights file");
    let rel = file.strip_prefix(good.path()).unwrap().to_path_buf();
    let bytes = std::fs::read(&file).unwrap();
    proptest!(config(CI_CASES / 10), |(edits in proptest::collection::vec(any::<Edit>(), 1..4))| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, apply_edits(bytes.clone(), &edits)).unwrap();
        if let Err(e) = dlft_datasets::load_insights(dir.path()) {
            prop_assert!(e.to_string().contains(".parquet"), "the error names the file: {e}");
        }
    });
}

/// Open Bandit CSV logs: a damaged log is a clear error, never a panic.
#[test]
fn bandit_csv_logs_never_panic() {
    let sample = root().join("../shared/datasets/open-bandit-sample/random/men");
    let log = std::fs::read(sample.join("men.csv")).unwrap();
    let items = std::fs::read(sample.join("item_context.csv")).unwrap();
    // The first lines are enough to reach every column's parser.
    let head =
        |b: &[u8], lines: usize| -> Vec<u8> { b.split(|c| *c == b'\n').take(lines).collect::<Vec<_>>().join(&b'\n') };
    let (log, items) = (head(&log, 40), head(&items, 40));
    proptest!(config(CI_CASES / 10), |(edits in proptest::collection::vec(any::<Edit>(), 1..5), which in 0u8..2)| {
        let dir = tempfile::tempdir().unwrap();
        let campaign = dir.path().join("random").join("men");
        std::fs::create_dir_all(&campaign).unwrap();
        let (l, i) = if which == 0 {
            (apply_edits(log.clone(), &edits), items.clone())
        } else {
            (log.clone(), apply_edits(items.clone(), &edits))
        };
        std::fs::write(campaign.join("men.csv"), l).unwrap();
        std::fs::write(campaign.join("item_context.csv"), i).unwrap();
        let _ = dlft_datasets::obd::import(&campaign, &dir.path().join("out"));
    });
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The mutators do mutate: a fuzz run that only ever fed valid corpus
/// entries would prove nothing.
#[test]
fn the_mutators_change_their_input() {
    let doc: Value = serde_json::json!({"data": [{"spend": "1.50"}], "paging": {}});
    let changed = mutate_json(doc.clone(), &[(2, 0, Value::Null)]);
    assert_ne!(changed, doc);
    assert_ne!(apply_edits(b"abc".to_vec(), &[(0, 1, 0)]), b"abc".to_vec());
}
