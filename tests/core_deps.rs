//! dlft-core stays free of I/O and heavy crates: its normal dependency tree
//! must not contain any of these.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

const FORBIDDEN: [&str; 6] = ["reqwest", "sqlx", "turmoil", "arrow", "parquet", "polars"];

#[test]
fn core_dependency_tree_has_no_io_or_heavy_crates() {
    // Only the host's dependencies: a clean checkout has downloaded no
    // other platform's crates, and metadata over every platform would need them.
    let rustc = Command::new("rustc").arg("-vV").output().expect("rustc runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    // id -> (name, normal/build dependency ids)
    let mut graph: BTreeMap<&str, (String, Vec<&str>)> = BTreeMap::new();
    for n in nodes {
        let id = n["id"].as_str().unwrap();
        let deps = n["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null() || k["kind"] == "build"))
            .map(|d| d["pkg"].as_str().unwrap())
            .collect();
        let name = meta["packages"].as_array().unwrap().iter().find(|p| p["id"] == id).unwrap()["name"]
            .as_str()
            .unwrap()
            .to_string();
        graph.insert(id, (name, deps));
    }
    let root = graph.iter().find(|(_, (name, _))| name == "dlft-core").map(|(id, _)| *id).expect("dlft-core");
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if seen.insert(id) {
            stack.extend(graph[id].1.iter().copied());
        }
    }
    let names: BTreeSet<&str> = seen.iter().map(|id| graph[id].0.as_str()).collect();
    for bad in FORBIDDEN {
        assert!(!names.contains(bad), "dlft-core depends on {bad}: {names:?}");
    }
    // The walk itself works: it finds what core does depend on.
    assert!(names.contains("serde") && names.contains("rand"), "{names:?}");
}

/// Core's modules in the loop's order: each may import only from itself and
/// the ones before it (see core/src/lib.rs). Keeps the blocks acyclic: the
/// store port below the jobs, the jobs below the worker, the envelope below
/// the actuator.
const LAYERS: [&str; 18] = [
    "ids",
    "money",
    "time",
    "probe",
    "telemetry",
    "sense",
    "estimate",
    "propose",
    "envelope",
    "act",
    "schedule",
    "store",
    "config",
    "decide",
    "jobs",
    "backtest",
    "worker",
    "lib",
];

/// The first path segment of every `crate::` path in `code` (comments
/// skipped; `crate::{a, b::c}` gives `a` and `b`).
fn crate_refs(code: &str) -> BTreeSet<String> {
    let code: String = code.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut refs = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue; // `dlft_core::`-style paths of other crates end in "crate" only by accident
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        refs.insert(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            refs.insert(ident(rest));
        }
    }
    refs.retain(|r| !r.is_empty());
    refs
}

/// The layer of a file under core/src (`act/kill.rs` → `act`).
fn layer_of(path: &str) -> &str {
    let first = path.split('/').next().unwrap_or(path);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Every import in `files` (path under core/src → source) that goes up the
/// layers, as "file imports layer".
fn upward_imports(files: &BTreeMap<String, String>) -> Vec<String> {
    let rank = |l: &str| LAYERS.iter().position(|x| *x == l);
    let mut bad = Vec::new();
    for (path, code) in files {
        let own = layer_of(path);
        let Some(own_rank) = rank(own) else {
            bad.push(format!("{path}: layer {own:?} is not in LAYERS"));
            continue;
        };
        for r in crate_refs(code) {
            match rank(&r) {
                Some(k) if k <= own_rank => {}
                Some(_) => bad.push(format!("{path} imports crate::{r}, a later block")),
                None => bad.push(format!("{path} imports crate::{r}, which is not in LAYERS")),
            }
        }
    }
    bad
}

fn core_sources(dir: &std::path::Path, root: &std::path::Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            core_sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.insert(rel, std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn core_blocks_import_only_earlier_blocks() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("core/src");
    let mut files = BTreeMap::new();
    core_sources(&root, &root, &mut files);
    assert!(files.len() > 30, "found core's sources: {}", files.len());
    let bad = upward_imports(&files);
    assert!(bad.is_empty(), "imports against the loop's order:\n{}", bad.join("\n"));
}

#[test]
fn the_layer_check_catches_the_old_cycles() {
    // Before the blocks: the envelope judged against the store's intents
    // while the store held the envelope's verdicts, and the jobs imported
    // the worker that imported them.
    let files: BTreeMap<String, String> = [
        ("envelope/mod.rs", "use crate::act::intent::Intent;\nuse crate::ids::AdId; // crate::worker in a comment"),
        ("jobs/tick.rs", "use crate::{config::LoopConfig, worker::{Attempt, Ports}};"),
        ("store/mod.rs", "pub fn f() -> crate::schedule::task::Task { todo!() }"),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_string(), c.to_string()))
    .collect();
    assert_eq!(
        upward_imports(&files),
        vec!["envelope/mod.rs imports crate::act, a later block", "jobs/tick.rs imports crate::worker, a later block"]
    );
}

/// What `Cargo.toml` promises: the workspace's crates are built with debug
/// assertions and overflow checks, also with `--release` (how the tests and
/// the production binary are built). This test is part of the root crate,
/// built with the same profile as core, sim and live.
#[test]
fn workspace_crates_keep_assertions_and_overflow_checks() {
    assert!(std::hint::black_box(cfg!(debug_assertions)), "debug assertions are off for the workspace");
    let max = std::hint::black_box(u8::MAX);
    let wrapped = std::panic::catch_unwind(|| max + std::hint::black_box(1));
    assert!(wrapped.is_err(), "u8::MAX + 1 did not panic: overflow checks are off");
    // And in core itself (a separate crate, the same profile): its own check.
    assert!(std::hint::black_box(dlft_core::ASSERTIONS_ON), "dlft-core was built without debug assertions");
}
