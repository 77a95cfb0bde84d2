"""Packing straight from the population database: the extract streamed through Python, or PostgreSQL's COPY;
and memory that does not grow with the number of records."""

import csv
import io
import tracemalloc

import pytest

from exchange.package import PackageBuilder, verify_package
from population.extract import export_csv, extract_columns, iter_extract
from population.generator import generate
from tests.exchange.conftest import SCHEMA


def _builder(out, signer, agreement="health-identity"):
    return PackageBuilder(out, agreement=agreement, recipient="health", schema=SCHEMA, signer=signer)


def test_the_citizen_extract_packs_from_a_server_side_cursor(exchange_engine, tmp_path, population_signer, trust):
    generate(exchange_engine, 300, seed=3)
    with _builder(tmp_path / "out", population_signer) as builder:
        builder.add_rows("citizens.csv", extract_columns(), iter_extract(exchange_engine))
        built = builder.seal(exchange_engine)
    assert built.manifest.record_count == 300
    verify_package(built.path, trust, engine=exchange_engine)
    packed = list(csv.reader(io.StringIO((built.path / "data" / "citizens.csv").read_text(encoding="utf-8"))))
    exported = tmp_path / "export.csv"
    export_csv(exchange_engine, exported)
    assert packed == list(csv.reader(io.StringIO(exported.read_text(encoding="utf-8"))))  # same cells as the export


@pytest.mark.postgres
def test_postgres_copy_packs_the_same_rows_deterministically(exchange_postgres, tmp_path, population_signer, trust):
    from population.extract import extract_query

    generate(exchange_postgres, 300, seed=4)
    built = []
    for attempt in range(2):
        with _builder(tmp_path / f"out-{attempt}", population_signer) as builder:
            builder.add_postgres_copy("citizens.csv", exchange_postgres, extract_query(None))
            built.append(builder.seal(exchange_postgres))
    first, second = built
    assert first.manifest.record_count == 300
    assert first.manifest.files == second.manifest.files  # byte-identical payloads
    verify_package(second.path, trust)
    copied = list(csv.reader(io.StringIO((first.path / "data" / "citizens.csv").read_text(encoding="utf-8"))))
    assert copied[0] == extract_columns()
    streamed = [["" if v is None else str(v) for v in row] for row in iter_extract(exchange_postgres)]
    by_id = {row[0]: row for row in streamed}
    for row in copied[1:]:
        expected = by_id[row[0]]
        updated_at = extract_columns().index("updated_at")
        assert row[:updated_at] + row[updated_at + 1 :] == expected[:updated_at] + expected[updated_at + 1 :]
    assert [row[0] for row in copied[1:]] == [row[0] for row in streamed]  # same order


def test_postgres_copy_needs_csv_and_postgres(exchange_engine, tmp_path, population_signer):
    with _builder(tmp_path / "out", population_signer) as builder:
        with pytest.raises(ValueError, match="COPY writes CSV"):
            builder.add_postgres_copy("citizens.jsonl", exchange_engine, "SELECT 1")
        if exchange_engine.dialect.name == "sqlite":
            with pytest.raises(ValueError, match="COPY needs PostgreSQL"):
                builder.add_postgres_copy("citizens.csv", exchange_engine, "SELECT 1")


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_records(exchange_engine, tmp_path, population_signer):
    """Peak traced memory while packing 20,000 and 200,000 generated records is about the same."""

    def records(n):
        for i in range(n):
            yield {"personal_id": f"{i:012d}", "full_name": "Nguyễn Thị Thuỷ", "address": "Số 1, phố Huế, Hà Nội " * 3}

    peaks = []
    for count in (20_000, 200_000):
        with _builder(tmp_path / f"out-{count}", population_signer, agreement=f"memory-{count}") as builder:
            tracemalloc.start()
            builder.add_records("citizens.csv", records(count))
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            builder.seal(exchange_engine)
    small, large = peaks
    assert large < small * 1.5, peaks
    assert large < 32 * 2**20, peaks
