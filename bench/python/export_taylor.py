"""Export the Taylor half-hourly electricity demand series (England and Wales, 5 June to
27 August 2000, MW) bundled in PyPI's pmdarima as an hourly CSV for `commitd-dev bench-forecast`.

Run in a throwaway venv, never in CI:
    python3 -m venv /tmp/fcvenv && /tmp/fcvenv/bin/pip install pmdarima statsforecast pandas
    /tmp/fcvenv/bin/python bench/python/export_taylor.py bench/data/taylor_hourly.csv

Half-hours are averaged in pairs (MW, mean over the hour). The series starts on Monday
2000-06-05 00:00 (local time in the source; treated as UTC here: only the weekly and daily
shape matters).
"""
import sys
from datetime import datetime, timedelta

from pmdarima.datasets import load_taylor


def main(out: str) -> None:
    y = load_taylor(as_series=False)
    assert len(y) == 4032, len(y)
    start = datetime(2000, 6, 5)
    with open(out, "w") as f:
        f.write("timestamp,value\n")
        for i in range(len(y) // 2):
            t = start + timedelta(hours=i)
            f.write(f"{t:%Y-%m-%dT%H:%M:%SZ},{(y[2 * i] + y[2 * i + 1]) / 2.0:.1f}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/data/taylor_hourly.csv")
