#!/usr/bin/env bash
# The soak (not in CI): two `dlft run` processes on one PostgreSQL serve three
# brands of the sandbox's world through `dlft sandbox chaos` (latency, 503s,
# replies lost after the effect, connection resets, 30 s stalls) for 30
# minutes, one of them SIGKILLed every 2-4 minutes, then the truth check.
# Prints memory over time, MTTR per kill, the faults injected per vendor,
# the runners' retry causes and the leak counter (tests/crash.rs, `soak`).
#
#   benches/soak.sh            # 30 minutes, seed 1
#   benches/soak.sh 60 7       # 60 minutes, seed 7
#
# Needs PostgreSQL (DLFT_TEST_PG_URL, default the local test database).
set -euo pipefail
cd "$(dirname "$0")/.."
export DLFT_SOAK_MINUTES="${1:-30}" DLFT_SOAK_SEED="${2:-1}"
export DLFT_TEST_PG_URL="${DLFT_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
exec cargo test --release --test crash -- --ignored --exact soak --nocapture
