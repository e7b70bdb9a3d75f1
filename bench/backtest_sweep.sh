#!/usr/bin/env bash
# Backtest sweep over generated scenarios: several shapes x several seeds, so that a planner change
# is judged on shapes, not on one seed (docs/benchmarks/backtest.md).
#
#   bench/backtest_sweep.sh [-g GROUPS] [-s "SEEDS"] [-o DIR] [-b BIN] [-t] [SHAPE...] [-- BACKTEST_ARGS...]
#   (-t: only print the table of the last run's results)
#
# For every (shape, seed) it generates the scenario once (`commitd-dev synth`), runs the baselines once
# (cached in DIR/<shape>-<groups>-<seed>/baselines.json: hindsight_static is the slow part) and
# commitd's planner every time (`--no-baselines`, plus BACKTEST_ARGS), then prints one table row
# with the acceptance checks:
#   vsCE   commitd ESR - ce_quarterly ESR, points        (target >= +4)
#   ofHS   commitd ESR / hindsight_static ESR            (target >= 95%)
#   util   commitd's lowest monthly utilization          (target >= 95%, or >= CE's where usage
#          collapses: the row shows CE's figure beside it)
# The public scenarios are never used here: tune on generated shapes only.
set -euo pipefail

groups=8
seeds="1 2 3"
out=/tmp/bt-sweep
bin=${COMMITD_BIN:-commitd}
gen=${COMMITD_DEV_BIN:-commitd-dev}   # the generator (commitd-testkit)
shapes=()
extra=()
table_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    -g) groups=$2; shift 2 ;;
    -s) seeds=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    -b) bin=$2; shift 2 ;;
    -t) table_only=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) shapes+=("$1"); shift ;;
  esac
done
[ ${#shapes[@]} -gt 0 ] || shapes=(steady growth migration drop noisy spiky mixed seasonal step-up decline region-move)
mkdir -p "$out"

# One table row from a scenario directory's baselines.json and commitd.json.
row() {
  jq -r --slurpfile b "$1/baselines.json" --arg name "$2" '
    def pct: . * 1000 | round / 10;
    ($b[0].baselines) as $bl
    | ((.esr - $bl.ce_quarterly.esr) * 100) as $vs
    | (if $bl.hindsight_static.esr > 0 then .esr / $bl.hindsight_static.esr else 1 end) as $of
    | .min_monthly_utilization as $u
    | $bl.ce_quarterly.min_monthly_utilization as $cu
    | ([$vs >= 4, $of >= 0.95, ($u >= 0.95 or $u >= $cu)] | all) as $ok
    | [$name, (.esr|pct), ($bl.ce_quarterly.esr|pct), ($bl.hindsight_static.esr|pct),
       ($vs * 10 | round / 10), ($of|pct), ($u|pct), ($cu|pct), .purchases,
       (if $ok then "yes" else "NO" end)]
    | map(tostring) | join("\t")' "$1/commitd.json" |
    awk -F'\t' '{printf "%-18s %7s %7s %7s %6s %5s %6s %6s %4s %4s\n", $1,$2,$3,$4,$5,$6,$7,$8,$9,$10}'
}

printf '%-18s %7s %7s %7s %6s %5s %6s %6s %4s %4s\n' scenario commitd ce hs vsCE ofHS util ceUtil buys ok
for shape in "${shapes[@]}"; do
  for seed in $seeds; do
    dir="$out/$shape-$groups-$seed"
    if [ "$table_only" = 1 ]; then row "$dir" "$shape-$groups-$seed"; continue; fi
    if [ ! -f "$dir/scenario.toml" ]; then
      "$gen" synth --out "$dir" --shape "$shape" --groups "$groups" --seed "$seed" >/dev/null 2>&1
    fi
    if [ ! -s "$dir/baselines.json" ]; then
      "$bin" backtest --scenario "$dir" --json >"$dir/baselines.json.tmp"
      mv "$dir/baselines.json.tmp" "$dir/baselines.json"
    fi
    "$bin" backtest --scenario "$dir" --json --no-baselines ${extra[@]+"${extra[@]}"} >"$dir/commitd.json"
    row "$dir" "$shape-$groups-$seed"
  done
done
