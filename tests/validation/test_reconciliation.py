"""Reconciliation of partner datasets derived from a generated population with deliberate disagreements."""

import csv
import io

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from population.db import session_factory
from population.models import RegistryLink
from tests.partners.social_insurance import PARTNER, write_partner_files
from tests.validation.conftest import AS_OF
from validation.models import ReconciliationMismatch, ReconciliationRun
from validation.partner_sample import partner_sample
from validation.reconciliation import (
    CLASSES,
    MismatchFilter,
    Reconciler,
    ResolutionError,
    list_mismatches,
    mismatch_counts,
    reconcile,
    resolve_mismatches,
    write_corrections_csv,
    write_mismatch_csv,
)
from validation.suites import build_suite

EXPECTED = {"missing_id": "matched"}  # a row without ID is linked by folded name and date of birth


@pytest.mark.parametrize("partner", ["health", "tax", "land", "business"])
def test_each_disagreement_is_classified(population, partner, tmp_path):
    sample = partner_sample(population, partner, 600, seed=4, disagreement_rate=0.15)
    reconciler = Reconciler(population, partner, "sample")
    classes = reconciler.add(sample.rows)
    report = reconciler.finish()
    assert sample.truth
    for row, kind in sample.truth.items():
        expected = EXPECTED.get(kind, kind)
        assert expected in classes[row] or (kind == "missing_id" and classes[row] == ["unmatched"]), (row, kind)
    clean = [row for row in sample.rows.index if row not in sample.truth]
    assert sum(classes[row] == ["matched"] for row in clean) >= 0.99 * len(clean)
    assert report.rows == 600 and set(report.counts) == set(CLASSES)
    assert sum(report.rates.values()) >= 1.0 - 1e-9
    with session_factory(population)() as session:
        links = session.scalars(select(RegistryLink).where(RegistryLink.partner == partner)).all()
        assert len(links) == report.links_written > 500
        assert {link.status for link in links} <= {"active", "disputed", "inactive"}
        run = session.get(ReconciliationRun, report.run_id)
        assert run.classes == report.counts and run.finished_at is not None
        mismatches = session.scalar(select(func.count()).where(ReconciliationMismatch.run_id == report.run_id))
        assert mismatches == sum(n for c, n in report.counts.items() if c != "matched")
    assert write_mismatch_csv(population, report.run_id, tmp_path / "m.csv") == mismatches


def test_a_second_delivery_linking_a_known_identifier_to_someone_else_is_a_duplicate_link(population):
    sample = partner_sample(population, "health", 50, seed=1, disagreement_rate=0.0)
    first = reconcile(population, "health", [sample.rows])
    assert first.counts["matched"] == 50 and first.counts["duplicate_link"] == 0
    swapped = sample.rows.copy()
    swapped.loc[1, "social_insurance_number"] = sample.rows.loc[2, "social_insurance_number"]
    second = reconcile(population, "health", [swapped])
    assert second.counts["duplicate_link"] == 2  # row 1 takes row 2's number; row 2 now shares it
    again = reconcile(population, "health", [sample.rows])  # the same delivery again adds nothing new
    assert again.counts["duplicate_link"] == 2


def test_an_agency_from_an_operators_folder_is_sampled_validated_and_reconciled(population, tmp_path, monkeypatch):
    """A fifth partner from files alone: its identifier's kind (10 digits, one holder) makes its sample, its rule and
    its duplicate links."""
    monkeypatch.setenv("LIENTHONG_SCHEMAS_PATH", str(write_partner_files(tmp_path / "operator-schemas")))
    sample = partner_sample(population, PARTNER, 300, seed=4, disagreement_rate=0.15)
    numbers = sample.rows["social_insurance_number"]
    assert numbers.str.fullmatch(r"[0-9]{10}").all() and "duplicate_link" in sample.truth.values()
    suite = build_suite("social-insured", as_of=AS_OF)
    assert "expect_column_values_to_match_code_pattern(social_insurance_number)" in {r["rule"] for r in suite.rules()}
    report = reconcile(population, PARTNER, [sample.rows])
    assert report.counts["duplicate_link"] >= 1 and report.links_written > 250
    with session_factory(population)() as session:
        kinds = set(session.scalars(select(RegistryLink.identifier_kind).where(RegistryLink.partner == PARTNER)))
    assert kinds == {"social_insurance_number"}


def test_stewards_resolve_mismatches_and_the_partners_corrections_export_as_csv(population):
    sample = partner_sample(population, "tax", 400, seed=5, disagreement_rate=0.15)
    sample.rows.loc[sample.rows.index[0], "full_name"] = '=HYPERLINK("http://x","click")'  # a partner's formula
    report = reconcile(population, "tax", [sample.rows], "sample")
    with session_factory(population)() as session:
        counts = mismatch_counts(session, MismatchFilter(partner="tax", run=report.run_id))
        assert counts == {c: n for c, n in report.counts.items() if c != "matched" and n}
        names = list_mismatches(session, MismatchFilter("tax", report.run_id, "name_differs"), limit=1000)
        assert names and all(m.mismatch == "name_differs" and resolution is None for m, _, resolution in names)
        formula = next(m for m, _, _ in names if m.partner_value.startswith("="))
        plain = next(m for m, _, _ in names if m is not formula)
        with pytest.raises(ResolutionError, match="needs a reason"):
            resolve_mismatches(session, [plain.id], "partner_must_correct", " ", "lan.nguyen")
        with pytest.raises(ResolutionError, match="no mismatch 99999999"):
            resolve_mismatches(session, [99999999], "escalate", "why", "lan.nguyen")
        resolve_mismatches(session, [plain.id], "escalate", "the name differs in the civil register too", "lan")
        resolve_mismatches(session, [plain.id, formula.id], "partner_must_correct", "the register is right", "minh")
        unresolved = list_mismatches(
            session, MismatchFilter("tax", report.run_id, resolution="unresolved"), limit=10_000
        )
        assert {plain.id, formula.id}.isdisjoint(m.id for m, _, _ in unresolved)
        handle = io.StringIO()
        assert write_corrections_csv(session, "tax", handle) == 2
        assert write_corrections_csv(session, "health", io.StringIO()) == 0
    # the partner sends its registry again: the same disagreements stand resolved, and the page shows the latest run
    again = reconcile(population, "tax", [sample.rows], "sample again")
    with session_factory(population)() as session:
        latest = {c: n for c, n in again.counts.items() if c != "matched" and n}  # not both runs'
        assert mismatch_counts(session, MismatchFilter("tax")) == latest
        still = list_mismatches(session, MismatchFilter("tax", resolution="partner_must_correct"), limit=100)
        assert {m.run_id for m, _, _ in still} == {again.run_id} and len(still) == 2
        assert write_corrections_csv(session, "tax", io.StringIO()) == 2
    lines = list(csv.DictReader(io.StringIO(handle.getvalue())))
    assert [line["reason"] for line in lines] == ["the register is right"] * 2  # the latest resolution
    assert {line["partner_value"][0] for line in lines} != {"="} and any(
        v["partner_value"].startswith("'=") for v in lines
    )
    with pytest.raises(DBAPIError, match="append-only"), population.begin() as connection:
        connection.execute(text("UPDATE mismatch_resolution SET reason = 'changed'"))
