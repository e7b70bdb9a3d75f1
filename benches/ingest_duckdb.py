"""DuckDB's equivalent of commitd's FOCUS ingest group-by, for docs/benchmarks/ingest.md.

Usage: python ingest_duckdb.py FILE.parquet [threads]
Prints one JSON line: rows scanned, groups x hours produced, seconds, peak RSS (MiB) of this
process (the interpreter's own baseline is printed too, measured before DuckDB is imported).
"""
import json
import resource
import sys
import time

baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
import duckdb  # noqa: E402  (imported after the baseline on purpose)

path = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
# The same work as commitd's reader: eligible compute instance-hours (Usage rows, not Unused
# commitment rows, priced per hour, with an instance type) grouped by usage group and hour,
# with on-demand-equivalent cost and its covered part; plus a count of every row.
query = f"""
SELECT ProviderName, RegionId,
       json_extract_string(SkuPriceDetails, '$.InstanceType') AS instance_type,
       json_extract_string(SkuPriceDetails, '$.OperatingSystem') AS os,
       json_extract_string(SkuPriceDetails, '$.x_Tenancy') AS tenancy,
       ChargePeriodStart AS hour,
       sum(ConsumedQuantity) AS quantity,
       sum(ListCost) AS ode,
       sum(CASE WHEN PricingCategory = 'Committed' THEN ListCost ELSE 0 END) AS covered
FROM read_parquet('{path}')
WHERE ChargeCategory = 'Usage'
  AND ServiceCategory = 'Compute'
  AND CommitmentDiscountStatus IS DISTINCT FROM 'Unused'
  AND ConsumedUnit = 'Hours'
  AND json_extract_string(SkuPriceDetails, '$.InstanceType') IS NOT NULL
GROUP BY ALL
"""
t0 = time.perf_counter()
rows = con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0]
# Materialised inside DuckDB (groups x hours rows), as commitd's model is, not fetched into Python.
con.execute(f"CREATE TEMP TABLE model AS {query}")
group_hours, total_ode = con.execute("SELECT count(*), sum(ode) FROM model").fetchone()
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({
    "engine": f"duckdb {duckdb.__version__}",
    "threads": threads,
    "rows": rows,
    "group_hours": group_hours,
    "total_ode": round(total_ode, 2),
    "seconds": round(seconds, 3),
    "rows_per_second": round(rows / seconds),
    "peak_rss_mib": round(peak, 1),
    "interpreter_baseline_mib": round(baseline, 1),
}))
