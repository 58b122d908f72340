#!/usr/bin/env bash
# Fifty brands on the event driver over DAYS simulated days (issue 16 part
# 5; the goal is 30): two workers, every fault class on, production cadence,
# one seed, with its wall time and peak memory (GNU time). Not run by CI.
#
#   benches/month.sh [DAYS] [SEED] [BRANDS]   # default: 1 day, seed 0, 50 brands
#
# BRANDS below 50 keeps eight ads a brand.
# The faults of benches/month.toml are drawn over the whole run, whatever
# its length. Exit status: dlft's (0 when every invariant held, leak 0).
set -euo pipefail
cd "$(dirname "$0")/.."
days="${1:-1}"
seed="${2:-0}"
brands="${3:-50}"
ids="$(for ((i = 0; i < brands; i++)); do printf '"b%02d", ' "$i"; done)"
scenario="$(mktemp --suffix .toml)"
trap 'rm -f "$scenario"' EXIT
sed -e "s/^duration_s = .*/duration_s = $((days * 86400))/" -e "s/^ads = 400$/ads = $((brands * 8))/" \
    -e "s/^ids = .*/ids = [${ids%, }]/" benches/month.toml > "$scenario"
cargo build --release --bin dlft
target="${CARGO_TARGET_DIR:-target}"
/usr/bin/time -f 'wall %e s, CPU %U s user + %S s system, peak RSS %M KiB' \
    "$target/release/dlft" sim run "$scenario" --seeds "$seed..$((seed + 1))" --threads 1
