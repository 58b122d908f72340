//! The backtest runner: history from the catalog, one policy or a sweep of
//! variants, each replayed per entity through `dlft_core::backtest` on as
//! many threads as asked. Results come back in variant order whatever the
//! thread count.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use dlft_core::backtest::refunds::{self, RefundCase, RefundSummary};
use dlft_core::backtest::{BacktestResult, HistoryRow, Point, run};
use dlft_core::ids::BrandId;
use dlft_core::sense::claims::{ClaimRecord, Dispute};

use crate::policy::{KillSection, RefundSection};

#[derive(Clone, Debug, Serialize)]
pub struct Variant {
    /// The swept parameters' values (empty without a sweep).
    pub params: BTreeMap<String, i64>,
    pub currency: String,
    pub totals: Summary,
    /// Summed over entities, by tick.
    pub series: Vec<Point>,
    pub entities: BTreeMap<String, BacktestResult>,
}

/// Totals over all entities, in minor units.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub ads: usize,
    pub rows: usize,
    pub kills: usize,
    pub losers_killed: usize,
    pub winners_killed: usize,
    pub losers_missed: usize,
    pub spend_history_cents: i64,
    pub revenue_history_cents: i64,
    pub spend_saved_cents: i64,
    pub purchases_forgone: u64,
    pub revenue_forgone_cents: i64,
    pub profit_history_cents: i64,
    pub profit_policy_cents: i64,
    pub profit_oracle_cents: i64,
    /// profit_oracle - profit_policy.
    pub regret_cents: i64,
}

/// Every combination of the sweeps' values, in order (the last sweep varies fastest).
pub fn grid(sweeps: &[(String, Vec<i64>)]) -> Vec<BTreeMap<String, i64>> {
    let mut out = vec![BTreeMap::new()];
    for (name, values) in sweeps {
        out = out
            .into_iter()
            .flat_map(|base| {
                values.iter().map(move |v| {
                    let mut m = base.clone();
                    m.insert(name.clone(), *v);
                    m
                })
            })
            .collect();
    }
    out
}

pub fn run_all(
    history: &BTreeMap<String, Vec<HistoryRow>>,
    policy: &KillSection,
    sweeps: &[(String, Vec<i64>)],
    threads: usize,
) -> Result<Vec<Variant>, String> {
    run_all_with(history, policy, sweeps, threads, &|_, _| {})
}

/// `run_all`, telling `done(finished, of)` after each (variant, entity)
/// replay (a progress bar's feed; called from the worker threads).
pub fn run_all_with(
    history: &BTreeMap<String, Vec<HistoryRow>>,
    policy: &KillSection,
    sweeps: &[(String, Vec<i64>)],
    threads: usize,
    done: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Variant>, String> {
    let variants = grid(sweeps);
    let mut configs = Vec::new();
    for params in &variants {
        let mut k = policy.clone();
        for (name, v) in params {
            k.set(name, *v)?;
        }
        configs.push(k.config().map_err(|e| format!("sweep {params:?}: {e}"))?);
    }
    let jobs: Vec<(usize, &String)> = (0..variants.len()).flat_map(|v| history.keys().map(move |e| (v, e))).collect();
    let results = par_map(&jobs, threads, done, |(v, entity)| {
        run(&history[*entity], &configs[*v]).map_err(|e| format!("{entity}: {e}"))
    });
    let mut by_variant: Vec<BTreeMap<String, BacktestResult>> = vec![BTreeMap::new(); variants.len()];
    for ((v, entity), r) in jobs.iter().zip(results) {
        by_variant[*v].insert((*entity).clone(), r?);
    }
    Ok(variants
        .into_iter()
        .zip(by_variant)
        .zip(&configs)
        .map(|((params, entities), cfg)| {
            let totals = summarize(&entities);
            let series = merge_series(&entities);
            Variant { params, currency: cfg.kill_rule.kill_cpa.currency.to_string(), totals, series, entities }
        })
        .collect())
}

/// `f` over `jobs` on up to `threads` threads; results in `jobs`' order
/// whatever the thread count; `done(finished, of)` after each job.
fn par_map<T: Sync, R: Send>(
    jobs: &[T],
    threads: usize,
    done: &(dyn Fn(usize, usize) + Sync),
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let results: Mutex<BTreeMap<usize, R>> = Mutex::new(BTreeMap::new());
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, 256).min(jobs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let r = f(job);
                    results.lock().expect("no panics hold this lock").insert(i, r);
                    done(finished.fetch_add(1, Ordering::Relaxed) + 1, jobs.len());
                }
            });
        }
    });
    let out: Vec<R> = results.into_inner().expect("threads joined").into_values().collect();
    assert_eq!(out.len(), jobs.len(), "one result per job");
    out
}

/// One variant of a refund backtest: its parameters, its score over every
/// brand and per brand, and every case as judged.
#[derive(Clone, Debug, Serialize)]
pub struct RefundVariant {
    pub params: BTreeMap<String, i64>,
    pub currency: String,
    pub totals: RefundSummary,
    pub entities: BTreeMap<String, RefundSummary>,
    #[serde(skip)]
    pub cases: BTreeMap<String, Vec<RefundCase>>,
}

/// Claims (with their labels) and disputes per entity, replayed through the
/// refund chain under `policy` and every combination of `sweeps`.
pub fn run_refunds(
    claims: &BTreeMap<String, Vec<(ClaimRecord, String)>>,
    disputes: &BTreeMap<String, Vec<Dispute>>,
    policy: &RefundSection,
    sweeps: &[(String, Vec<i64>)],
    threads: usize,
) -> Result<Vec<RefundVariant>, String> {
    run_refunds_with(claims, disputes, policy, sweeps, threads, &|_, _| {})
}

/// `run_refunds`, telling `done(finished, of)` after each (variant, brand)
/// replay.
pub fn run_refunds_with(
    claims: &BTreeMap<String, Vec<(ClaimRecord, String)>>,
    disputes: &BTreeMap<String, Vec<Dispute>>,
    policy: &RefundSection,
    sweeps: &[(String, Vec<i64>)],
    threads: usize,
    done: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<RefundVariant>, String> {
    let variants = grid(sweeps);
    let mut configs = Vec::new();
    let mut budgets = Vec::new();
    for params in &variants {
        let mut r = policy.clone();
        for (name, v) in params {
            r.set(name, *v)?;
        }
        configs.push(r.config().map_err(|e| format!("sweep {params:?}: {e}"))?);
        budgets.push(r.budgets().map_err(|e| format!("sweep {params:?}: {e}"))?);
    }
    let none = Vec::new();
    let jobs: Vec<(usize, &String)> = (0..variants.len()).flat_map(|v| claims.keys().map(move |e| (v, e))).collect();
    let results = par_map(&jobs, threads, done, |(v, entity)| {
        let records: Vec<ClaimRecord> = claims[*entity].iter().map(|(c, _)| c.clone()).collect();
        let brand = BrandId::new(entity.as_str());
        refunds::replay_within(
            &configs[*v],
            budgets[*v].as_ref(),
            &brand,
            &records,
            disputes.get(*entity).unwrap_or(&none),
        )
    });
    let mut out: Vec<RefundVariant> = variants
        .into_iter()
        .zip(&configs)
        .map(|(params, cfg)| RefundVariant {
            params,
            currency: cfg.caps.currency.to_string(),
            totals: RefundSummary::default(),
            entities: BTreeMap::new(),
            cases: BTreeMap::new(),
        })
        .collect();
    let labels: BTreeMap<&String, BTreeMap<String, String>> = claims
        .iter()
        .map(|(e, list)| {
            (e, list.iter().filter(|(_, l)| !l.is_empty()).map(|(c, l)| (c.id.clone(), l.clone())).collect())
        })
        .collect();
    for ((v, entity), cases) in jobs.iter().zip(results) {
        let summary = refunds::summarize(&cases, &labels[entity], disputes.get(*entity).unwrap_or(&none));
        out[*v].totals.add(&summary);
        out[*v].entities.insert((*entity).clone(), summary);
        out[*v].cases.insert((*entity).clone(), cases);
    }
    Ok(out)
}

fn summarize(entities: &BTreeMap<String, BacktestResult>) -> Summary {
    let mut s = Summary::default();
    for r in entities.values() {
        let t = &r.totals;
        s.ads += t.ads;
        s.rows += t.rows;
        s.kills += t.kills;
        s.losers_killed += t.losers_killed;
        s.winners_killed += t.winners_killed;
        s.losers_missed += t.losers_missed;
        s.spend_history_cents += t.spend_history.minor;
        s.revenue_history_cents += t.revenue_history.minor;
        s.spend_saved_cents += t.spend_saved.minor;
        s.purchases_forgone += t.purchases_forgone;
        s.revenue_forgone_cents += t.revenue_forgone.minor;
        s.profit_history_cents += t.profit_history.minor;
        s.profit_policy_cents += t.profit_policy.minor;
        s.profit_oracle_cents += t.profit_oracle.minor;
    }
    s.regret_cents = s.profit_oracle_cents - s.profit_policy_cents;
    s
}

/// Sums entity series by tick time (a missing tick carries its last value).
fn merge_series(entities: &BTreeMap<String, BacktestResult>) -> Vec<Point> {
    let times: std::collections::BTreeSet<_> = entities.values().flat_map(|r| r.series.iter().map(|p| p.at)).collect();
    times
        .into_iter()
        .map(|at| {
            let mut p = Point {
                at,
                spend_history: 0,
                revenue_history: 0,
                spend_policy: 0,
                revenue_policy: 0,
                regret: 0,
                kills: 0,
            };
            for r in entities.values() {
                let i = r.series.partition_point(|q| q.at <= at);
                if i == 0 {
                    continue;
                }
                let q = &r.series[i - 1];
                p.spend_history += q.spend_history;
                p.revenue_history += q.revenue_history;
                p.spend_policy += q.spend_policy;
                p.revenue_policy += q.revenue_policy;
                p.regret += q.regret;
                if q.at == at {
                    p.kills += q.kills;
                }
            }
            p
        })
        .collect()
}
