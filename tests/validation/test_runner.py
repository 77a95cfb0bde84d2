"""Validating files and streams: findings, quarantine, blocks, reports, cross-batch duplicates."""

import csv
import json
import unicodedata
from pathlib import Path

import pandas as pd
import pytest

from population.extract import export_csv, extract_columns
from tests.validation.conftest import AS_OF
from validation.reports import FindingsCsv, neutralise
from validation.runner import DatasetBlocked, StreamValidation, check_file, extract_batches, read_batches
from validation.suites import build_suite


def _citizen(personal_id: str, **values) -> dict:
    row = dict.fromkeys(extract_columns())
    row.update(personal_id=personal_id, full_name="Nguyễn Văn An", date_of_birth="1990-05-01", sex="M",
               place_of_birth="Hà Nội", birth_registration_province="001", hometown="Hà Nội", ethnicity_code="01",
               religion="Không", nationality="VN", permanent_ward_code="00070", current_ward_code="00070",
               updated_at="2026-07-01T00:00:00+00:00")  # fmt: skip
    row.update(values)
    return row


def _write_csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows, columns=extract_columns()).to_csv(path, index=False)
    return path


def _findings(out: Path) -> list[dict]:
    with (out / "quarantine.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_check_file_writes_summary_quarantine_csv_and_data_docs(tmp_path):
    rows = [
        _citizen("001090000001"),
        _citizen("001090000002", full_name=unicodedata.normalize("NFD", "Nguyễn Văn Bích")),
        _citizen("001090000003", full_name='=HYPERLINK("http://x")', permanent_ward_code="99999"),
        _citizen(
            "001190000004", full_name="Trần Văn Bình"
        ),  # the ID says female, the record male: a warning, it still goes out
        _citizen("001090000005", full_name="\u00d0ỗ Văn Hùng", date_of_death="2026-01-01", card_status="active"),
    ]
    out = tmp_path / "out"
    outcome = check_file("citizen-extract", _write_csv(tmp_path / "in.csv", rows), out, as_of=AS_OF)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["rows"] == 5 and summary["quarantined"] == 3 and summary["passed"] == 2
    assert set(summary["scores"]) == {"đúng", "đủ", "sạch", "sống"}
    assert summary["scores"]["sống"] == pytest.approx(0.8)
    counts = {e["rule"]: e["unexpected"] for e in summary["expectations"]}
    assert counts["expect_column_values_to_be_nfc(full_name)"] == 1
    findings = _findings(out)
    assert {(f["row_number"], f["expectation"], f["severity"]) for f in findings} == {
        ("2", "expect_column_values_to_be_nfc(full_name)", "quarantine"),
        ("3", "expect_administrative_unit_in_force(permanent_ward_code, updated_at)", "quarantine"),
        ("4", "expect_personal_id_to_agree_with_record(personal_id, sex)", "warn"),
        ("5", "expect_column_values_to_be_free_of_legacy_d(full_name)", "quarantine"),
        ("5", "expect_no_active_card_after_death(date_of_death, card_status)", "quarantine"),
    }
    assert list(findings[0]) == ["row_number", "personal_id", "column", "expectation", "dimension", "severity",
                                 "reason", "value"]  # fmt: skip
    assert all(f["dimension"] in ("đúng", "đủ", "sạch", "sống") and f["reason"] for f in findings)
    assert (out / "data-docs" / "index.html").exists() and outcome.data_docs.endswith("index.html")
    docs = "".join(p.read_text(encoding="utf-8") for p in (out / "data-docs" / "validations").rglob("*.html"))
    assert "full_name is stored in NFC" in docs and "001090000002" not in docs  # samples are masked
    page = (out / "summary.html").read_text(encoding="utf-8")
    assert "<script" not in page and "sống" in page


def test_exported_cells_cannot_run_as_formulas(tmp_path):
    assert [neutralise(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "Lan", None)] == [
        "'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "Lan", ""]  # fmt: skip
    sink = FindingsCsv(tmp_path / "f.csv")
    finding = dict(row_number=1, personal_id="=cmd", rule="r", expectation="e", column="c", value="-2+3",
                   dimension="đúng", severity="warn", reason="@x")  # fmt: skip
    sink.add(pd.DataFrame([finding]), pd.DataFrame())
    sink.finish(None)
    with (tmp_path / "f.csv").open(encoding="utf-8") as handle:
        line = list(csv.DictReader(handle))[0]
    assert line["personal_id"] == "'=cmd" and line["value"] == "'-2+3" and line["reason"] == "'@x"


def test_jsonl_input_and_row_numbers(tmp_path):
    path = tmp_path / "in.jsonl"
    rows = [_citizen("001090000001"), _citizen("12345", sex="F")]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(DatasetBlocked):  # one bad ID in two is more than the 1% a dataset may have
        check_file("citizen-extract", path, tmp_path / "out", as_of=AS_OF)
    rules = {(f["row_number"], f["personal_id"], f["expectation"]) for f in _findings(tmp_path / "out")}
    assert ("2", "12345", "expect_column_values_to_match_code_pattern(personal_id)") in rules


def test_wrong_columns_block_the_dataset_at_once(tmp_path):
    path = tmp_path / "in.csv"
    pd.DataFrame([{"personal_id": "001090000001", "name": "An"}]).to_csv(path, index=False)
    with pytest.raises(DatasetBlocked, match="expect_table_columns_to_match_set") as blocked:
        check_file("citizen-extract", path, tmp_path / "out", as_of=AS_OF)
    assert blocked.value.outcome.blocked
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["blocked"] is True


def test_too_many_bad_personal_ids_block_the_dataset_with_figures(tmp_path):
    rows = [_citizen(f"0010900000{i:02d}") for i in range(90)] + [_citizen(f"BAD{i}") for i in range(10)]
    with pytest.raises(DatasetBlocked, match=r"10 of 100 rows \(10.00%\), more than the 1% allowed"):
        check_file("citizen-extract", _write_csv(tmp_path / "in.csv", rows), tmp_path / "out", as_of=AS_OF)


def test_passing_rows_leave_out_held_ones_and_duplicates_are_found_across_batches(population, tmp_path):
    suite = build_suite("citizen-extract", as_of=AS_OF)
    held, flagged = [], []

    class Collect:
        def add(self, findings, records):
            held.extend(records.index)
            flagged.extend(findings["row_number"])

        def finish(self, outcome):
            pass

    run = StreamValidation(suite, [Collect()])
    passed = pd.concat(run.passing(extract_batches(population, batch_rows=700)))
    assert len(passed) + len(held) == run.outcome.rows == len(set(passed.index) | set(held))
    assert not set(passed.index) & set(held)
    assert list(passed.columns) == extract_columns()
    # the same findings whatever the batch size: cross-row checks see across batches
    again = StreamValidation(suite, [FindingsCsv(tmp_path / "one.csv")])
    for _ in again.passing(extract_batches(population, batch_rows=100_000)):
        pass
    one_batch = pd.read_csv(tmp_path / "one.csv", dtype=str)
    assert sorted(one_batch["row_number"].astype(int)) == sorted(flagged)
    assert run.outcome.flagged_by_dimension == again.outcome.flagged_by_dimension


def test_an_agreement_subset_drops_rules_on_columns_it_does_not_send(tmp_path):
    suite = build_suite("citizen-extract", as_of=AS_OF, columns=["personal_id", "full_name", "date_of_birth", "sex",
                                                                 "nationality", "updated_at"])  # fmt: skip
    assert all(set(r["columns"]) <= {"personal_id", "full_name", "date_of_birth", "sex", "nationality", "updated_at",
                                     "repeat_of_row"} for r in suite.rules())  # fmt: skip
    assert suite.households is None and "duplicate_of" not in suite.derived_columns
    frame = pd.DataFrame([_citizen("001090000001")])[suite.columns]
    frame.index = pd.RangeIndex(1, 2)
    run = StreamValidation(suite)
    assert len(pd.concat(run.passing([frame]))) == 1


def test_read_batches_rejects_other_files(tmp_path):
    with pytest.raises(ValueError, match="csv or .jsonl"):
        read_batches(tmp_path / "x.xlsx")


def test_the_stream_sees_the_extract_as_the_csv_export_writes_it(population, tmp_path):
    export_csv(population, tmp_path / "e.csv", limit=50)
    from_file = next(read_batches(tmp_path / "e.csv"))
    from_db = next(extract_batches(population, limit=50))
    pd.testing.assert_frame_equal(from_file, from_db, check_dtype=False)


def test_the_readers_read_a_file_in_batches_as_pandas_did(tmp_path):
    rows = [_citizen(f"0010900000{n:02d}", other_names=None if n % 2 else "Tí") for n in range(1, 8)]
    path = _write_csv(tmp_path / "in.csv", rows)
    expected = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    expected.index = expected.index + 1
    pd.testing.assert_frame_equal(pd.concat(read_batches(path, batch_rows=3)), expected)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "\n")
    from_jsonl = pd.concat(read_batches(tmp_path / "in.jsonl", batch_rows=3))
    assert from_jsonl.index.tolist() == list(range(1, 9)) and from_jsonl.loc[8].isna().all()  # a blank line
    header_only = tmp_path / "header.csv"
    header_only.write_text("personal_id,full_name\n", encoding="utf-8")
    assert [list(frame.columns) for frame in read_batches(header_only)] == [["personal_id", "full_name"]]


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("in.csv", "personal_id,full name\n001090000001,An\n", "in.csv line 1: field 2 of the header is not a name"),
        ("in.csv", "personal_id,full_name\n001090000001\n", "in.csv line 2: 1 fields where the header has 2"),
        ("in.jsonl", '{"personal_id": "1"}\n{"a": ' + "[" * 20 + "]" * 20 + "}\n", "in.jsonl line 2: nested"),
        ("in.jsonl", '{"personal_id": "001090000001", "personal_id": "x"}\n', "in.jsonl line 1: an object has a key"),
    ],
)
def test_a_file_the_readers_refuse_is_an_invalid_document_naming_the_line(tmp_path, name, content, problem):
    from exchange.safe_xml import InvalidDocument

    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(InvalidDocument) as refused:
        list(read_batches(tmp_path / name))
    assert str(refused.value).startswith(problem) and "001090000001" not in str(refused.value)


def test_song_asks_whether_known_events_reached_the_record_not_how_long_ago_it_changed(tmp_path):
    rows = [
        _citizen("001090000001", updated_at="2019-01-01T00:00:00+00:00"),  # unchanged for years: up to date
        _citizen("001090000002", full_name="Trần Văn Bình", card_number="001090000002", card_issued_on="2015-01-01",
                 card_expires_on="2025-05-01", card_status="active"),  # expired, still shown active: stale
    ]  # fmt: skip
    outcome = check_file("citizen-extract", _write_csv(tmp_path / "in.csv", rows), tmp_path / "out", as_of=AS_OF)
    song = [f for f in _findings(tmp_path / "out") if f["dimension"] == "sống"]
    assert [(f["row_number"], f["severity"]) for f in song] == [("2", "warn")]
    assert "expired before 2026-07-01" in song[0]["reason"] and outcome.scores["sống"] == pytest.approx(0.5)
    suite = build_suite("citizen-extract", as_of=AS_OF)
    assert not any(e.expectation_type == "expect_column_values_to_be_on_or_after" for e in suite.suite.expectations)
    # a partner's record date is when it last verified the record: that one must be within the window
    partner = build_suite("health-insured", as_of=AS_OF, freshness_days=30)
    (verified,) = [
        e for e in partner.suite.expectations if e.expectation_type == "expect_column_values_to_be_on_or_after"
    ]
    assert verified.since == "2026-06-01" and verified.meta["dimension"] == "sống"
