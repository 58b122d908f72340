//! The support decision path, from a message's arrival to the gate's
//! verdict (sanitise, language, manipulation scan, ceilings, prompt, model,
//! parse and repairs, gate), on the shipped corpora.
//!
//! `cargo bench --bench support [-- --rounds N]`
//!
//! Two figures per vendor and corpus: our own compute per message (wall
//! clock, the sim vendor answering instantly) and the decision latency
//! with the sim vendor's latency distribution added per call (virtual
//! time: `SimModel::latency_ms`, an assumption, not a vendor measurement).
//! The ratio says how much of a decision is ours.

#![allow(clippy::disallowed_methods, reason = "a benchmark measures wall time")]

use std::time::Instant;

use dlft_core::config::Sabotage;
use dlft_core::jobs::support::answer;
use dlft_core::propose::support::{SupportOrder, SupportPolicy};
use dlft_core::sense::inbox::InboundMessage;
use dlft_sim::support::{Behaviour, SimModel};

fn load(path: &str) -> Vec<InboundMessage> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("corpus line");
            let id = v["id"].as_str().unwrap().to_string();
            InboundMessage { id: id.clone(), thread: id, text: v["text"].as_str().unwrap().to_string() }
        })
        .collect()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let order = SupportOrder::standard();
    let policy = SupportPolicy::default();
    println!(
        "| vendor | corpus | messages × rounds | ours p50 | ours p99 | with vendor p50 | with vendor p99 | ours / decision (p50) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (vendor, behaviour) in [("sim-honest", Behaviour::Honest), ("sim-compromised", Behaviour::Compromised)] {
        for corpus in ["benign", "hostile"] {
            let msgs = load(&format!("corpora/support/{corpus}.jsonl"));
            let mut ours = Vec::with_capacity(msgs.len() * rounds);
            let mut total = Vec::with_capacity(msgs.len() * rounds);
            for round in 0..rounds {
                let model = SimModel::new(behaviour, round as u64);
                for m in &msgs {
                    let t = Instant::now();
                    let a = rt.block_on(answer(&model, &order, &policy, m, Sabotage::None));
                    let us = t.elapsed().as_secs_f64() * 1e6;
                    let vendor_ms: u64 = a.calls.iter().map(|c| model.latency_ms(&c.call_id)).sum();
                    ours.push(us);
                    total.push(us / 1000.0 + vendor_ms as f64);
                }
            }
            ours.sort_by(f64::total_cmp);
            total.sort_by(f64::total_cmp);
            println!(
                "| {vendor} | {corpus} | {} × {rounds} | {:.0} µs | {:.0} µs | {:.0} ms | {:.0} ms | {:.3}% |",
                msgs.len(),
                pct(&ours, 0.5),
                pct(&ours, 0.99),
                pct(&total, 0.5),
                pct(&total, 0.99),
                pct(&ours, 0.5) / 1000.0 / pct(&total, 0.5) * 100.0
            );
        }
    }
}
