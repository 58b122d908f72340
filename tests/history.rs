//! History end to end through the CLI: generate and import catalogs,
//! backtest the kill loop on them, evaluate bandit policies off-policy
//! against values computed independently (tests/fixtures/obd_reference.py).

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::dlft;

fn ok(out: &Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "dlft failed: {stderr}\n{stdout}");
    stdout.into_owned()
}

fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "expected exit 2 (bad input): {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("history").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const OBD: &str = "../shared/datasets/open-bandit-sample";

fn import(out: &Path, policy: &str, campaign: &str) {
    ok(&dlft(&["datasets", "import-obd", &format!("{OBD}/{policy}/{campaign}"), "--out", out.to_str().unwrap()]));
}

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-9 * want.abs(), "{what}: got {got}, reference {want}");
}

#[test]
fn ope_matches_the_independent_reference_on_the_open_bandit_sample() {
    let dir = scratch("obd");
    import(&dir, "bts", "men");
    import(&dir, "random", "men");
    let logs = dir.to_str().unwrap();
    let json = |entity: &str| -> serde_json::Value {
        let out =
            dlft(&["ope", "--logs", logs, "--policy", "uniform", "--entity", entity, "--json", "--resamples", "2000"]);
        serde_json::from_str(&ok(&out)).expect("one JSON object")
    };
    let bts = json("bts-men");
    assert_eq!(bts["n_rounds"], 10_000);
    let names: Vec<&str> = bts["estimators"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(names, ["dm", "dr", "ips", "rm", "sndr", "snips", "switch_dr"]);
    for (name, e) in bts["estimators"].as_object().unwrap() {
        for k in ["value", "ci_low", "ci_high"] {
            assert!(e[k].is_number(), "{name}.{k} is a number");
        }
    }
    // From tests/fixtures/obd_reference.py (Python, standard library).
    close(bts["estimators"]["ips"]["value"].as_f64().unwrap(), 0.0030086263272564827, "IPS of uniform on bts logs");
    close(bts["estimators"]["snips"]["value"].as_f64().unwrap(), 0.0031894231622774096, "SNIPS");
    close(bts["ess"].as_f64().unwrap(), 655.7098495873233, "ESS");
    // The uniform policy's on-policy click rate (random logs) is 0.0046:
    // the bootstrap interval of the estimate from the bts logs covers it.
    let rnd = json("random-men");
    assert_eq!(rnd["logged_policy_value"], 0.0046);
    for name in ["ips", "snips"] {
        let e = &bts["estimators"][name];
        let (lo, hi) = (e["ci_low"].as_f64().unwrap(), e["ci_high"].as_f64().unwrap());
        assert!(lo <= 0.0046 && 0.0046 <= hi, "{name}: [{lo}, {hi}] misses the on-policy 0.0046");
    }
    // On its own uniform logs, IPS and SNIPS are exactly the click rate.
    close(rnd["estimators"]["ips"]["value"].as_f64().unwrap(), 0.0046, "IPS on-policy");
    close(rnd["estimators"]["snips"]["value"].as_f64().unwrap(), 0.0046, "SNIPS on-policy");

    // Thompson Sampling, by name and from a policy file, runs and is seeded.
    let ts_args = [
        "ope",
        "--logs",
        logs,
        "--policy",
        "policies/ts.toml",
        "--entity",
        "random-men",
        "--json",
        "--resamples",
        "500",
    ];
    let ts = ok(&dlft(&ts_args));
    let again = ok(&dlft(&[&ts_args[..], &["--threads", "1"]].concat()));
    assert_eq!(ts, again, "one seed, one answer, whatever the threads");

    // Several entities and --json without --entity: refused, naming them.
    let err = refused(&dlft(&["ope", "--logs", logs, "--policy", "uniform", "--json"]));
    assert!(err.contains("bts-men") && err.contains("--entity"), "{err}");
}

#[test]
fn low_effective_sample_size_is_reported() {
    let dir = scratch("obd-women");
    import(&dir, "bts", "women");
    let out = ok(&dlft(&["ope", "--logs", dir.to_str().unwrap(), "--policy", "uniform", "--resamples", "200"]));
    // The reference ESS is 2.08 of 10,000 rounds (one propensity is 1e-6).
    assert!(out.contains("ESS 2.1"), "{out}");
    assert!(out.contains("unreliable"), "{out}");
}

#[test]
fn backtest_end_to_end_is_deterministic_and_parallel_safe() {
    let dir = scratch("generated");
    let data = dir.join("catalog");
    let data = data.to_str().unwrap();
    let generated = ok(&dlft(&["datasets", "generate", "--seed", "5", "--days", "4", "--brands", "2", "--out", data]));
    assert!(generated.contains("insights") && generated.contains("bandit"), "{generated}");
    let args = |threads: &str| {
        dlft(&[
            "backtest",
            "--data",
            data,
            "--policy",
            "policies/kill.toml",
            "--sweep",
            "envelope_floor_cents=3000..9000:3000",
            "--json",
            "--threads",
            threads,
        ])
    };
    let one = ok(&args("1"));
    assert_eq!(one, ok(&args("4")), "sweep results do not depend on threads");
    let v: serde_json::Value = serde_json::from_str(&one).unwrap();
    let variants = v.as_array().unwrap();
    assert_eq!(variants.len(), 3);
    assert_eq!(variants[0]["params"]["envelope_floor_cents"], 3000);
    let kills: Vec<u64> = variants.iter().map(|x| x["totals"]["kills"].as_u64().unwrap()).collect();
    assert!(kills[0] > 0, "the default world has losers to kill");
    assert!(kills[0] >= kills[2], "a higher envelope floor never allows more kills: {kills:?}");
    for x in variants {
        let t = &x["totals"];
        let delta = t["profit_policy_cents"].as_i64().unwrap() - t["profit_history_cents"].as_i64().unwrap();
        let saved = t["spend_saved_cents"].as_i64().unwrap() - t["revenue_forgone_cents"].as_i64().unwrap();
        assert_eq!(delta, saved, "profit change = spend saved - revenue forgone");
    }

    let report = dir.join("report.html");
    let out = ok(&dlft(&[
        "backtest",
        "--data",
        data,
        "--policy",
        "policies/kill.toml",
        "--report",
        report.to_str().unwrap(),
    ]));
    assert!(out.contains("kills") && out.contains("hindsight best"), "{out}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(html.matches("<svg").count(), 4, "the variants compared; spend/revenue, regret, decisions");
    assert!(html.contains("★") && html.contains("Decisions of the best variant"), "best marked, ads listed");
    assert!(html.contains("days since the history's start"), "axes titled");

    // The OPE of the generated bandit logs runs on the same catalog.
    ok(&dlft(&["ope", "--logs", data, "--policy", "ts", "--entity", "brand-1", "--resamples", "200"]));
}

#[test]
fn bad_history_input_is_refused_clearly() {
    let dir = scratch("bad");
    // A policy file with an unknown key.
    let policy = dir.join("p.toml");
    std::fs::write(&policy, "[kill]\ncurrency = \"EUR\"\nkill_cpa = 1\n").unwrap();
    let err = refused(&dlft(&["backtest", "--data", ".", "--policy", policy.to_str().unwrap()]));
    assert!(err.contains("p.toml") && err.contains("kill_cpa"), "{err}");
    // A directory with no history.
    let err = refused(&dlft(&["backtest", "--data", dir.to_str().unwrap(), "--policy", "policies/kill.toml"]));
    assert!(err.contains("no `insights` history"), "{err}");
    // A bandit policy file asked to backtest.
    let err = refused(&dlft(&["backtest", "--data", ".", "--policy", "policies/ts.toml"]));
    assert!(err.contains("no [kill] or [refund] section"), "{err}");
    // A refund policy on a catalog without claims.
    let err = refused(&dlft(&["backtest", "--data", dir.to_str().unwrap(), "--policy", "policies/refund.toml"]));
    assert!(err.contains("no `claims` history"), "{err}");
    // A bad sweep.
    let err =
        refused(&dlft(&["backtest", "--data", ".", "--policy", "policies/kill.toml", "--sweep", "currency=1..2:1"]));
    assert!(err.contains("cannot be swept"), "{err}");
    // Generating over existing history.
    let out = dir.join("gen");
    let out = out.to_str().unwrap();
    ok(&dlft(&["datasets", "generate", "--seed", "1", "--days", "1", "--out", out]));
    let err = refused(&dlft(&["datasets", "generate", "--seed", "2", "--days", "1", "--out", out]));
    assert!(err.contains("overlap") && err.contains("nothing was written"), "{err}");
    // A broken Parquet file in the catalog is named.
    let victim = std::fs::read_dir(Path::new(out).join("insights/brand-1")).unwrap().next().unwrap().unwrap().path();
    std::fs::write(&victim, b"not parquet").unwrap();
    let err = refused(&dlft(&["backtest", "--data", out, "--policy", "policies/kill.toml"]));
    assert!(err.contains(victim.file_name().unwrap().to_str().unwrap()) && err.contains("Parquet"), "{err}");
    // A missing campaign directory.
    let err = refused(&dlft(&["datasets", "import-obd", "no/such/campaign", "--out", out]));
    assert!(err.contains("item_context.csv"), "{err}");
}

/// The refund chain backtested on generated history (claims labelled by
/// the sim's refund world, chargebacks days to weeks later): the sweep's
/// results do not depend on threads, a lower high-risk cap never pays the
/// abusers more, and the report draws the variants' costs and the best
/// variant's decision per case.
#[test]
fn refund_backtest_replays_claims_and_scores_abuse_stopped() {
    let dir = scratch("refunds");
    let data = dir.join("catalog");
    let data = data.to_str().unwrap();
    let generated = ok(&dlft(&["datasets", "generate", "--seed", "3", "--days", "21", "--brands", "1", "--out", data]));
    assert!(generated.contains("claims") && generated.contains("disputes"), "{generated}");
    let args = |threads: &str| {
        dlft(&[
            "backtest",
            "--data",
            data,
            "--policy",
            "policies/refund.toml",
            "--sweep",
            "high_cap_cents=0..2000:2000",
            "--json",
            "--threads",
            threads,
        ])
    };
    let one = ok(&args("1"));
    assert_eq!(one, ok(&args("2")), "sweep results do not depend on threads");
    let v: serde_json::Value = serde_json::from_str(&one).unwrap();
    let variants = v.as_array().unwrap();
    assert_eq!(variants.len(), 2);
    let t = |i: usize, k: &str| variants[i]["totals"][k].as_i64().unwrap();
    let all = |i: usize, k: &str| variants[i]["totals"]["all"][k].as_i64().unwrap();
    assert!(all(0, "claims") > 500, "three weeks of claims");
    assert_eq!(all(0, "claims"), all(0, "refunded") + all(0, "refused"));
    assert!(t(0, "abuse_stopped") > 0, "the profile stops some abuse");
    assert!(t(0, "chargebacks_avoided") + t(0, "paid_twice") > 0, "claims on orders charged back later");
    let paid_to = |i: usize, label: &str| variants[i]["totals"]["by_label"][label]["paid_minor"].as_i64().unwrap_or(0);
    assert!(
        paid_to(0, "abuser") + paid_to(0, "ring") <= paid_to(1, "abuser") + paid_to(1, "ring"),
        "a lower high-risk cap never pays abuse more"
    );
    assert!(t(0, "abuse_stopped") >= t(1, "abuse_stopped"));
    // Under a daily refund budget (the policy's `daily_cap_cents`, booked
    // per day in its time zone): 21 days (22 calendar days at most) of at
    // most 100.00 each, and less paid
    // than without it.
    let capped = ok(&dlft(&[
        "backtest",
        "--data",
        data,
        "--policy",
        "policies/refund.toml",
        "--sweep",
        "daily_cap_cents=10000..10000:1",
        "--json",
    ]));
    let capped: serde_json::Value = serde_json::from_str(&capped).unwrap();
    let paid = capped[0]["totals"]["all"]["paid_minor"].as_i64().unwrap();
    assert!(paid > 0 && paid <= 22 * 10_000 && paid < all(1, "paid_minor"), "paid {paid} under 100.00 a day");

    let report = dir.join("refunds.html");
    let out = ok(&dlft(&[
        "backtest",
        "--data",
        data,
        "--policy",
        "policies/refund.toml",
        "--sweep",
        "watch_cap_cents=1000..3000:2000",
        "--report",
        report.to_str().unwrap(),
    ]));
    assert!(out.contains("abuse") && out.lines().any(|l| l.starts_with('*')), "the best variant is marked: {out}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(html.matches("<svg").count(), 1, "the variants' costs");
    assert_eq!(html.matches("<rect").count(), 4, "two bars per variant");
    assert!(html.contains("★") && html.contains("Decisions of the best variant"), "best marked, cases listed");
    // A refund policy with a bad value is refused, naming it.
    let bad = dir.join("bad-refund.toml");
    std::fs::write(&bad, "[refund]\ndamaged_share_bp = 20000\n").unwrap();
    let err = refused(&dlft(&["backtest", "--data", data, "--policy", bad.to_str().unwrap()]));
    assert!(err.contains("damaged_share_bp"), "{err}");
}
