//! Shared by the test files (each uses part of it).

#![allow(dead_code, reason = "each test binary uses part of this module")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

/// Runs the built `dlft` from the repository root.
pub fn dlft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dlft"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("dlft runs")
}

/// `dlft run --config <config>` in `dir` with the sandbox's Meta, Revolut
/// and Shopify secrets and `env`, its stderr collected by a thread (the
/// log, once the process ends).
pub fn dlft_run(
    config: &std::path::Path,
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (Child, std::thread::JoinHandle<Vec<String>>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlft"));
    cmd.args(["run", "--config", config.to_str().unwrap()])
        .current_dir(dir)
        .env("META_ACCESS_TOKEN", "sandbox-token")
        .env("REVOLUT_ACCESS_TOKEN", "sandbox-bank-token")
        .env("SHOPIFY_ACCESS_TOKEN", "sandbox-token")
        .env("RUST_LOG", "info,sqlx=warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("dlft run starts");
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect());
    (child, log)
}

/// A `dlft sandbox serve` process, killed and reaped when dropped.
pub struct Sandbox(Child);

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the sandbox with `seed` on an ephemeral port; returns it and its address.
pub fn sandbox(seed: u64) -> (Sandbox, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlft"))
        .args(["sandbox", "serve", "--seed", &seed.to_string(), "--addr", "127.0.0.1:0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the sandbox starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").expect("the sandbox prints its address").to_string();
    (Sandbox(child), addr)
}

/// Writes `contents` to `name` in a scratch folder `dir` of the test
/// target's temporary directory; returns its path.
pub fn scratch(dir: &str, name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// The sandbox example config (`examples/dlft.sandbox.toml`) pointed at the
/// sandbox on `addr`, with its store, payables folder and a free metrics
/// port in `dir`.
pub fn sandbox_config(dir: &std::path::Path, addr: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dlft.sandbox.toml"))
        .unwrap()
        .replace("sqlite://dlft.db", &format!("sqlite://{}", dir.join("dlft.db").display()))
        .replace("127.0.0.1:9464", "127.0.0.1:0")
        .replace("http://127.0.0.1:8787", &format!("http://{addr}"))
        .replace("payables_dir = \"payables\"", &format!("payables_dir = \"{}\"", dir.join("payables").display()))
}

/// Has the sandbox send `order_id` with a malformed total from now on
/// (`POST /shopify/_garble`).
pub async fn garble(addr: &str, order_id: &str) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/shopify/_garble"))
        .json(&serde_json::json!({ "order_id": order_id }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "garbling {order_id}");
}
