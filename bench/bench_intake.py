"""Benchmark (issue 15): what ``synchronous=FULL`` costs a partner's intake, against ``NORMAL`` in the same run.

A partner signs and sends its receipt after the commit that stores the package. In WAL mode with
``synchronous=NORMAL`` a power loss may take the last commits: the sender then holds a receipt for records the
partner no longer has. ``FULL`` puts every commit on disk (an fsync of the WAL) before it returns. The cost is one
fsync per package, so it shows on many small packages (the event-driven feeds' windows), not on big ones.

The same packages (health, CSV, encrypted, sealed once by the population side) are received by a fresh partner
store in each mode, alternating, best of ``--rounds``:

    .venv/bin/python bench/bench_intake.py [--small 200] [--small-records 20] [--large 2] [--large-records 100000]

Prints progress on stderr and one JSON line on stdout; figures go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exchange.agreements import load_agreements  # noqa: E402
from exchange.package import PackageBuilder, SchemaRef, zip_package  # noqa: E402
from exchange.pki import ENCRYPTION, init_pki, load_certificate, load_signer  # noqa: E402
from partners.intake import PackageIntake, PartnerKeys  # noqa: E402
from partners.store import RegistryStore  # noqa: E402
from population.db import SYNCHRONOUS, create_population_engine  # noqa: E402
from population.migrate import upgrade  # noqa: E402

PASSWORD = b"bench key password"
AGREEMENT = "health-identity"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


def fsync_ms(folder: Path, times: int = 200) -> float:
    """What one 4 KiB write and its fsync take on this disk: what FULL adds to each commit, at most a few times."""
    path = folder / "fsync.probe"
    handle = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        started = time.perf_counter()
        for _ in range(times):
            os.write(handle, b"x" * 4096)
            os.fsync(handle)
        return round(1000 * (time.perf_counter() - started) / times, 3)
    finally:
        os.close(handle)
        path.unlink()


def records(count: int, start: int, fields: list[str]) -> list[dict]:
    """``count`` records of the agreement's fields, personal IDs from ``start``."""
    values = {"full_name": "Nguyễn Thị Thuỷ", "date_of_birth": "1990-01-02", "died": None, "gender": "female",
              "province_code": "01", "ward_code": "00004", "updated_at": "2026-12-01T00:00:00+00:00"}  # fmt: skip
    return [{field: (f"0010900{start + i:05d}" if field == "personal_id" else values.get(field, "x"))
             for field in fields} for i in range(count)]  # fmt: skip


def build(work: Path, pki, sizes: list[int]) -> list[Path]:
    """The packages, one feed from sequence 1, sealed by the population side in a scratch database."""
    agreement = load_agreements()[AGREEMENT]
    direction = agreement.directions["outbound"]
    fields = list(direction.fields)
    engine = create_population_engine(f"sqlite:///{work / 'population.db'}")
    upgrade(engine)
    signer = load_signer(pki, "population", PASSWORD)
    encrypt_for = load_certificate(pki.certificate(agreement.partner, ENCRYPTION))
    packages, start = [], 0
    for count in sizes:
        with PackageBuilder(work / "packages", agreement=AGREEMENT, recipient=agreement.partner,
                            schema=SchemaRef(direction.dataset, str(direction.schema_version)), signer=signer,
                            encrypt_for=encrypt_for) as builder:  # fmt: skip
            builder.add_records("citizens.csv", records(count, start, fields))
            built = builder.seal(engine)
        packages.append(zip_package(built.path))
        start += count
    engine.dispose()
    return packages


def receive_all(work: Path, pki, packages: list[Path], synchronous: str) -> list[float]:
    """A fresh partner store in ``synchronous`` mode receives every package in order: each one's seconds."""
    store = RegistryStore(work / f"registry-{synchronous}-{time.monotonic_ns()}.db", synchronous=synchronous)
    intake = PackageIntake(PartnerKeys.load(pki, "health", PASSWORD), store, work / "intake")
    seconds = []
    try:
        for package in packages:
            started = time.perf_counter()
            result = intake.receive(package)
            seconds.append(time.perf_counter() - started)
            if result.status != "accepted":
                raise RuntimeError(f"{package.name}: {result.status}")
    finally:
        store.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=200, help="small packages (one event-driven window each)")
    parser.add_argument("--small-records", type=int, default=20)
    parser.add_argument("--large", type=int, default=2)
    parser.add_argument("--large-records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="each mode this many times, alternating; best kept")
    arguments = parser.parse_args()
    os.environ["LIENTHONG_KEY_PASSWORD"] = PASSWORD.decode()
    figures: dict = {"benchmark": "intake", "machine": machine(), "rounds": arguments.rounds}
    with tempfile.TemporaryDirectory(prefix="bench-intake-", dir=ROOT / "var" if (ROOT / "var").is_dir() else None) \
            as temporary:  # fmt: skip
        work = Path(temporary)  # on the project's disk, not a tmpfs: fsync must reach a device
        figures["fsync_ms"] = fsync_ms(work)
        pki = init_pki(work / "pki", PASSWORD)
        groups = {
            "small": [arguments.small_records] * arguments.small,
            "large": [arguments.large_records] * arguments.large,
        }
        for group, sizes in groups.items():
            if not sizes:
                continue
            log(f"{group}: building {len(sizes)} package(s) of {sizes[0]:,} records")
            packages = build(work / group, pki, sizes)
            best: dict[str, float] = {}
            for round_ in range(arguments.rounds):
                for mode in SYNCHRONOUS if round_ % 2 == 0 else SYNCHRONOUS[::-1]:
                    total = sum(receive_all(work / group, pki, packages, mode))
                    log(f"  round {round_ + 1}, {mode}: {total:.3f} s")
                    best[mode] = min(best.get(mode, total), total)
            figures[group] = {
                "packages": len(sizes), "records_each": sizes[0],
                **{f"{mode.lower()}_s": round(best[mode], 3) for mode in SYNCHRONOUS},
                **{f"{mode.lower()}_ms_per_package": round(1000 * best[mode] / len(sizes), 2) for mode in SYNCHRONOUS},
                "full_vs_normal": round(best["FULL"] / best["NORMAL"], 3),
            }  # fmt: skip
            log(f"{group}: {figures[group]}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
