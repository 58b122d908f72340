//! Shared by the CLI test files.

use std::process::{Command, Output};

/// Runs the built `dlft` from the repository root.
pub fn dlft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dlft"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("dlft runs")
}
