"""Each benchmark runs, bounded, in the suite: a benchmark is run by hand, months apart, and one that has rotted
(bench_snapshot's land agreement did, once partners refused agreements they do not have) is found here, not on the
day its figures are needed. The sizes are tiny, so the figures mean nothing: only that each runs end to end, with
its baseline, and prints its JSON line. The full runs: ``make bench``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

# benchmark -> (bounded arguments, a figure its JSON line must carry: the comparison with its baseline)
BOUNDED = {
    "bench_package.py": (["--citizens", "2000", "--payload-mib", "16"], "package"),
    "bench_population_load.py": (["--citizens", "2000"], "targets_met"),
    "bench_sftp.py": (["--megabytes", "4", "--rounds", "1"], "share"),
    "bench_validation.py": (["--citizens", "2000", "--memory-citizens", "2000"], None),
    "bench_snapshot.py": (["--citizens", "2000", "--workers", "1"], "ours_throughput_vs_stock"),
    "bench_intake.py": (["--small", "3", "--large", "1", "--large-records", "100", "--rounds", "1"], "small"),
    # Airflow's scheduler, triggerer and DAG processor on loopback with the four partners: a few minutes
    "bench_latency.py": (["--events", "2", "--burst", "20", "--gap", "1", "--citizens", "300"], "burst_result"),
    "bench_csv_read.py": (["--rows", "1000", "--rounds", "1"], "checked_vs_pandas"),
    "bench_disclosure_index.py": (["--citizens", "2000", "--workers", "1", "--rounds", "1"], "index_share"),
    "bench_workbench.py": (
        ["--citizens", "3000", "--held", "1000", "--mismatches", "1000", "--requests", "3"],
        "target_met",
    ),
    "bench_disclosure_lookup.py": (
        ["--rows", "20000", "--citizens", "4000", "--packages", "100", "--lookups", "20"],
        "lookup_p95_vs_baseline_p95",
    ),
}
# run bounded by another test: the cluster's benchmark brings the native cluster up, and there is one per machine,
# so the cluster's own test runs it once it has taken its cluster down
RUN_ELSEWHERE = {"bench_cluster.py": "tests/lienthong/test_cluster.py"}


def test_every_benchmark_is_run_here():
    assert sorted([*BOUNDED, *RUN_ELSEWHERE]) == sorted(path.name for path in BENCH.glob("bench_*.py"))
    for benchmark, test in RUN_ELSEWHERE.items():
        assert benchmark in (BENCH.parent / test).read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("benchmark", sorted(BOUNDED))
def test_a_benchmark_runs_end_to_end_with_its_baseline(benchmark, tmp_path):
    arguments, figure = BOUNDED[benchmark]
    run = subprocess.run([sys.executable, str(BENCH / benchmark), *arguments], capture_output=True, text=True,
                         cwd=tmp_path, timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert isinstance(figures, dict)
    if figure is not None:
        assert figure in json.dumps(figures), f"{benchmark}: no {figure} in its figures"
