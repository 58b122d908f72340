//! Backtest, off-policy evaluation and Beta sampling throughput.
//!
//! - `beta/<sampler>/<a>,<b>`: samples per second. Jöhnk only where it is
//!   meant to run (both parameters below 1) plus (1,1) and (2,10) to show
//!   its acceptance rate collapsing; Cheng (rand_distr) everywhere; the
//!   dispatching sampler core uses, everywhere.
//! - `backtest/*`: history rows per second through core's engine (one run of
//!   the kill loop over a generated 28-day, 4-brand catalog), and through
//!   the Parquet loader.
//! - `refund_backtest/*`: claims per second replayed through the refund
//!   chain (a generated 28-day, 1-brand catalog: 2,016 claims), beside the
//!   identity graph alone built whole at each claim's instant, as the
//!   replay did before it grew one graph as its clock moved.
//! - `ope/*`: logged rounds per second on the Open Bandit sample (bts/men):
//!   building rounds for a policy, and the full evaluation with 1,000
//!   bootstrap resamples (10,000 rounds each).

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use dlft_core::estimate::bandit::{TsConfig, beta_cheng, beta_johnk, sample_beta, stream};
use dlft_core::estimate::ope::{OpeConfig, Target, evaluate, rounds_for};

const SAMPLES: u64 = 10_000;

fn beta(c: &mut Criterion) {
    let mut g = c.benchmark_group("beta");
    g.throughput(Throughput::Elements(SAMPLES));
    type Sampler = fn(f64, f64, &mut rand_chacha::ChaCha8Rng) -> f64;
    type Case = (&'static str, Sampler, &'static [(f64, f64)]);
    let samplers: [Case; 3] = [
        ("johnk", beta_johnk, &[(0.1, 0.1), (0.5, 0.5), (0.9, 0.9), (1.0, 1.0), (2.0, 10.0)]),
        (
            "cheng",
            beta_cheng,
            &[(0.1, 0.1), (0.5, 0.5), (0.9, 0.9), (1.0, 1.0), (2.0, 10.0), (10.0, 10.0), (5.0, 50.0)],
        ),
        (
            "dispatch",
            sample_beta,
            &[(0.1, 0.1), (0.5, 0.5), (0.9, 0.9), (1.0, 1.0), (2.0, 10.0), (10.0, 10.0), (5.0, 50.0)],
        ),
    ];
    for (name, f, params) in samplers {
        for &(a, b) in params {
            g.bench_with_input(BenchmarkId::new(name, format!("{a},{b}")), &(a, b), |bench, &(a, b)| {
                let mut rng = stream(1, "bench", 0, 0);
                bench.iter(|| {
                    let mut acc = 0.0;
                    for _ in 0..SAMPLES {
                        acc += f(a, b, &mut rng);
                    }
                    black_box(acc)
                });
            });
        }
    }
    g.finish();
}

fn backtest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let spec = dlft_datasets::generate::Spec { seed: 1, days: 28, brands: 4, bandit_per_hour: 10 };
    dlft_datasets::generate::generate(&spec, dir.path()).unwrap();
    let history = dlft_datasets::load_insights(dir.path()).unwrap();
    let rows: usize = history.values().map(Vec::len).sum();
    let policy =
        dlft_datasets::policy::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/kill.toml")).unwrap();
    let kill = policy.kill.unwrap();
    let mut g = c.benchmark_group("backtest");
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(10);
    g.bench_function("engine_28d_4_brands", |b| {
        b.iter(|| black_box(dlft_datasets::backtest::run_all(&history, &kill, &[], 1).unwrap()))
    });
    g.bench_function("parquet_load_28d_4_brands", |b| {
        b.iter(|| black_box(dlft_datasets::load_insights(dir.path()).unwrap()))
    });
    g.finish();
}

fn refund_backtest(c: &mut Criterion) {
    use dlft_core::estimate::identity::Profile;
    let dir = tempfile::tempdir().unwrap();
    let spec = dlft_datasets::generate::Spec { seed: 1, days: 28, brands: 1, bandit_per_hour: 10 };
    dlft_datasets::generate::generate(&spec, dir.path()).unwrap();
    let claims = dlft_datasets::load_claims(dir.path()).unwrap();
    let disputes = dlft_datasets::load_disputes(dir.path()).unwrap();
    let (entity, rows) = claims.iter().next().unwrap();
    let mut records: Vec<_> = rows.iter().map(|(c, _)| c.clone()).collect();
    records.sort_by(|a, b| (a.opened_at, &a.id).cmp(&(b.opened_at, &b.id)));
    let none = Vec::new();
    let disputes = disputes.get(entity).unwrap_or(&none);
    let policy =
        dlft_datasets::policy::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/refund.toml")).unwrap();
    let cfg = policy.refund.unwrap().config().unwrap();
    let brand = dlft_core::ids::BrandId::new(entity.as_str());
    let mut g = c.benchmark_group("refund_backtest");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.sample_size(10);
    g.bench_function("replay_28d", |b| {
        b.iter(|| black_box(dlft_core::backtest::refunds::replay(&cfg, &brand, &records, disputes)))
    });
    // The graph alone, built whole at each claim's instant from the claims
    // opened by then (the replay's work before, without the chain).
    g.bench_function("graph_per_claim_28d", |b| {
        b.iter(|| {
            let mut tiers = 0usize;
            for (n, claim) in records.iter().enumerate() {
                let p = Profile::build(cfg.identity_key.as_bytes(), &records[..=n], disputes, &[], claim.opened_at);
                tiers += p.facts_of(&claim.customer).1.orders as usize;
            }
            black_box(tiers)
        })
    });
    g.finish();
}

fn ope(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let campaign = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/open-bandit-sample/bts/men");
    dlft_datasets::obd::import(&campaign, dir.path()).unwrap();
    let log = dlft_datasets::load_bandit(dir.path()).unwrap().remove(0);
    let n = log.rounds.len() as u64;
    let mut g = c.benchmark_group("ope");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("rounds_uniform", |b| {
        b.iter(|| black_box(rounds_for(&log.rounds, log.n_arms, log.n_positions, &Target::Uniform, 0).unwrap()))
    });
    let ts = Target::Ts { cfg: TsConfig { mc_samples: 1_000, ..TsConfig::default() }, seed: 0 };
    g.bench_function("rounds_ts_mc1000", |b| {
        b.iter(|| black_box(rounds_for(&log.rounds, log.n_arms, log.n_positions, &ts, 0).unwrap()))
    });
    let rounds = rounds_for(&log.rounds, log.n_arms, log.n_positions, &Target::Uniform, 0).unwrap();
    // Throughput counted per logged round per resample (the bootstrap's work).
    g.throughput(Throughput::Elements(n * 1_000));
    g.bench_function("evaluate_1000_resamples_1_thread", |b| {
        let cfg = OpeConfig { resamples: 1_000, threads: 1, ..OpeConfig::default() };
        b.iter(|| black_box(evaluate(&rounds, &cfg).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, beta, backtest, refund_backtest, ope);
criterion_main!(benches);
