"""Second reference for `commitd-dev bench-forecast`: statsforecast's MSTL (AutoETS trend) and
AutoETS, and its SeasonalNaive as a check of our baseline, on the same series, origins and
scored horizons. Prints the same figures (pinball at P10/P50/P90 divided by the mean
actual, averaged over series; P10..P90 coverage pooled over hours).

Run in a throwaway venv, never in CI:
    python3 -m venv /tmp/fcvenv && /tmp/fcvenv/bin/pip install pmdarima statsforecast pandas
    commitd-dev bench-forecast --synthetic 48 --speed-groups 0 --export /tmp/fcexport \
        --scenario ../shared/scenarios/steady-growth --scenario ../shared/scenarios/mixed-fleet
    /tmp/fcvenv/bin/python bench/python/statsforecast_ref.py --export /tmp/fcexport \
        --csv bench/data/taylor_hourly.csv --dataset synthetic --max-series 16 \
        --dataset scenario-steady-growth --dataset scenario-mixed-fleet

The 80 % model interval is used as P10..P90 (that is what these models offer), the point
forecast as P50.
"""
import argparse
import json
import time

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import MSTL, AutoETS, SeasonalNaive

DAY = 24


def pinball(y, q, tau):
    d = y - q
    return np.where(d >= 0, tau * d, (tau - 1) * d)


def models():
    return [
        MSTL(season_length=[24, 168], trend_forecaster=AutoETS(model="ZZN"), alias="MSTL"),
        AutoETS(season_length=24, alias="AutoETS"),
        SeasonalNaive(season_length=168, alias="SeasonalNaive"),
    ]


def evaluate(values, proto):
    """Per-model (pinball sums per level, covered, hours, actual sum) for one series."""
    out = {}
    for o in proto["origins"]:
        if o + proto["horizon"] > len(values):
            continue
        hist = values[:o]
        df = pd.DataFrame(
            {"unique_id": "s", "ds": np.arange(len(hist)), "y": hist}
        )
        sf = StatsForecast(models=models(), freq=1, n_jobs=1)
        fc = sf.forecast(df=df, h=proto["horizon"], level=[80])
        actual = np.asarray(values[o : o + proto["horizon"]])[proto["from_h"] :]
        for m in ["MSTL", "AutoETS", "SeasonalNaive"]:
            p10 = np.maximum(fc[f"{m}-lo-80"].to_numpy()[proto["from_h"] :], 0)
            p50 = np.maximum(fc[m].to_numpy()[proto["from_h"] :], 0)
            p90 = np.maximum(fc[f"{m}-hi-80"].to_numpy()[proto["from_h"] :], 0)
            acc = out.setdefault(m, np.zeros(6))
            acc[0] += pinball(actual, p10, 0.1).sum()
            acc[1] += pinball(actual, p50, 0.5).sum()
            acc[2] += pinball(actual, p90, 0.9).sum()
            acc[3] += ((actual >= p10) & (actual <= p90)).sum()
            acc[4] += len(actual)
            acc[5] += actual.sum()
    return out


def report(name, per_series):
    print(f"\n{name}: {len(per_series)} series")
    for m in ["MSTL", "AutoETS", "SeasonalNaive"]:
        rows = [s[m] for s in per_series if m in s]
        scaled = np.array([[r[i] / r[5] * 100 for i in range(3)] for r in rows])
        mean = scaled.mean(axis=0)
        cov = sum(r[3] for r in rows) / sum(r[4] for r in rows) * 100
        print(
            f"  {m:<14} pinball P10/P50/P90 % {mean[0]:.2f}/{mean[1]:.2f}/{mean[2]:.2f}"
            f"  mean {mean.mean():.2f}  coverage {cov:.1f} %"
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export")
    ap.add_argument("--csv", action="append", default=[])
    ap.add_argument("--max-series", type=int, default=1000)
    ap.add_argument(
        "--dataset",
        action="append",
        default=[],
        help="name of an exported dataset: synthetic, scenario-steady-growth, ...",
    )
    a = ap.parse_args()
    t = time.time()
    for path in a.csv:
        v = pd.read_csv(path)["value"].to_numpy(dtype=float)
        days = len(v) // DAY
        horizon = min(30, days // 3) * DAY
        last = len(v) - horizon
        proto = {
            "origins": [last - 12 * DAY, last - 6 * DAY, last],
            "horizon": horizon,
            "from_h": 7 * DAY,
        }
        report(path, [evaluate(v, proto)])
    for name in a.dataset:
        proto = json.load(open(f"{a.export}/{name}.protocol.json"))
        df = pd.read_csv(f"{a.export}/{name}.csv")
        groups = list(df.groupby("series", sort=True))[: a.max_series]
        per_series, kinds = [], {}
        for sid, g in groups:
            r = evaluate(g["value"].to_numpy(dtype=float), proto)
            per_series.append(r)
            kinds.setdefault(g["kind"].iloc[0], []).append(r)
        report(f"{name} (all)", per_series)
        if name == "synthetic":
            for k in sorted(kinds):
                report(f"synthetic: {k}", kinds[k])
    print(f"\n({time.time() - t:.0f} s)")


if __name__ == "__main__":
    main()
