#!/usr/bin/env bash
# FOCUS ingest benchmark: commitd's Parquet reader vs DuckDB on the same file.
# Usage: benches/ingest.sh [COMMITD_BINARY] [WORKDIR]
# Writes a >= 2 million row FOCUS 1.2 Parquet bill with `commitd-dev synth`, then times
#   commitd usage --focus FILE --json   (full ingest: classification, usage model, commitments)
# and benches/ingest_duckdb.py (DuckDB's equivalent group-by) in a throwaway venv.
set -euo pipefail
bin=${1:-target/release/commitd}
work=${2:-/tmp/commitd-bench-ingest}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
if [ ! -f "$work/scenario/usage.parquet" ]; then
  "${COMMITD_DEV_BIN:-commitd-dev}" synth --out "$work/scenario" --shape mixed --groups 240 --seed 1 --months 3 --eval-months 9
fi
file="$work/scenario/usage.parquet"
ls -l "$file"
echo "== commitd (3 runs)"
for i in 1 2 3; do
  /usr/bin/time -f "wall %e s, peak RSS %M KiB" "$bin" usage --focus "$file" --json > "$work/commitd.json"
done
python3 -c "import json; d=json.load(open('$work/commitd.json')); print('rows', d['rows_read'], 'groups', len(d['groups']), 'hours', d['hours'], 'total_ode', round(d['total_on_demand_cost'], 2))"
echo "== duckdb (3 runs)"
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q duckdb
fi
for i in 1 2 3; do
  "$work/venv/bin/python" "$here/ingest_duckdb.py" "$file" "${DUCKDB_THREADS:-2}"
done
