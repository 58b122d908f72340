#!/usr/bin/env bash
# The month on the event driver (issue 16 part 5): thirty simulated days of
# fifty brands on two workers with every fault class on, one seed, with its
# wall time and peak memory (GNU time). Not run by CI: a seed takes minutes.
#
#   benches/month.sh [SEED] [SCENARIO]
#
# Exit status: dlft's (0 when every invariant held and the leak was 0).
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${1:-0}"
scenario="${2:-benches/month.toml}"
cargo build --release --bin dlft
target="${CARGO_TARGET_DIR:-target}"
/usr/bin/time -f 'wall %e s, CPU %U s user + %S s system, peak RSS %M KiB' \
    "$target/release/dlft" sim run "$scenario" --seeds "$seed..$((seed + 1))" --threads 1
