"""Benchmark (issue 15): what the checked CSV reading costs ``quality check`` and the inbound validation.

Since the hostile-input work, a CSV is read through the payload's bounded, strict reader
(``exchange.payload.csv_rows``: field and record limits, UTF-8, one width) before pandas builds the frames
(``validation.runner.read_csv_batches``). The baseline, measured in the same run on the same file, is pandas
reading it alone (``pd.read_csv`` in the same batches, no checks). Best of ``--rounds``:

    .venv/bin/python bench/bench_csv_read.py [--rows 1000000] [--rounds 3]

Prints progress on stderr and one JSON line on stdout; figures go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from validation.runner import BATCH_ROWS, read_csv_batches  # noqa: E402

HEADER = ["personal_id", "full_name", "date_of_birth", "sex", "permanent_ward_code", "updated_at"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_file(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for n in range(rows):
            writer.writerow([f"0010900{n:05d}", "Nguyễn Thị Thuỷ", "1990-01-02", "female", "00004",
                             "2026-12-01T00:00:00+00:00"])  # fmt: skip


def timed(read) -> tuple[float, int]:
    started = time.perf_counter()
    rows = sum(len(batch) for batch in read())
    return time.perf_counter() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-csv-") as temporary:
        path = Path(temporary) / "citizens.csv"
        write_file(path, arguments.rows)
        ways = {
            "checked": lambda: read_csv_batches(path),
            "pandas": lambda: pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], chunksize=BATCH_ROWS),
        }  # fmt: skip
        best: dict[str, float] = {}
        for round_ in range(arguments.rounds):
            for way in ways if round_ % 2 == 0 else reversed(list(ways)):
                seconds, rows = timed(ways[way])
                assert rows == arguments.rows, (way, rows)
                log(f"round {round_ + 1}, {way}: {seconds:.3f} s")
                best[way] = min(best.get(way, seconds), seconds)
    figures = {
        "benchmark": "csv_read", "rows": arguments.rows, "rounds": arguments.rounds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "pandas": pd.__version__},
        **{f"{way}_s": round(seconds, 3) for way, seconds in best.items()},
        **{f"{way}_s_per_100k": round(seconds * 100_000 / arguments.rows, 3) for way, seconds in best.items()},
        "checked_vs_pandas": round(best["checked"] / best["pandas"], 3),
    }  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
