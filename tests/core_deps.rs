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
