#!/usr/bin/env bash
# Fingerprints of commitd's backtest decisions over the generated sweep, to show that a change
# keeps behaviour figure for figure (docs/benchmarks/backtest.md, "The one-engine restructure").
#
#   bench/backtest_fingerprint.sh -b BIN -g GEN_BIN -o DIR [-s "SEEDS"] [SHAPE...] [-- BACKTEST_ARGS...]
#
# For every (shape, seed) it generates the 8-group scenario once (`GEN_BIN synth`, i.e.
# `commitd-dev synth`; an older `commitd` that still had `synth` works too), runs commitd's planner
# (`BIN backtest --json --no-baselines`), and prints one line: scenario, ESR, lowest monthly
# utilization, purchases, exchanges, returns, sales, and the sha256 of the whole JSON without its
# timings. Two binaries that decide alike print the same lines (diff them).
set -euo pipefail
bin=commitd
gen=commitd-dev
out=/tmp/bt-fingerprint
seeds="1 2 3 21 22 41 42 51 52 61 62 71 72 81 82 91 92 101 102 111 112"
shapes=()
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    -b) bin=$2; shift 2 ;;
    -g) gen=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    -s) seeds=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) shapes+=("$1"); shift ;;
  esac
done
[ ${#shapes[@]} -gt 0 ] || shapes=(steady growth migration drop noisy spiky mixed seasonal step-up decline region-move)
mkdir -p "$out"
for shape in "${shapes[@]}"; do
  for seed in $seeds; do
    dir="$out/$shape-8-$seed"
    [ -f "$dir/scenario.toml" ] || "$gen" synth --out "$dir" --shape "$shape" --groups 8 --seed "$seed" >/dev/null
    json=$("$bin" backtest --scenario "$dir" --json --no-baselines ${extra[@]+"${extra[@]}"})
    fp=$(jq -S 'del(.seconds, .planner_stats.solve_seconds?)' <<<"$json" | sha256sum | cut -c1-16)
    jq -r --arg n "$shape-8-$seed" --arg fp "$fp" '
      (if has("commitd") then .commitd else . end) as $r
      | [$n, ($r.esr // $r.total.esr // "?"), ($r.min_monthly_utilization // "?"),
         $r.purchases,
         ($r.exchanges // 0), (($r.returns // []) | length), (($r.sales // []) | length), $fp]
      | map(tostring) | join("\t")' <<<"$json"
  done
done
