"""Row selection, a feed's start and its package cap in agreements, as the loader reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.agreements import (
    BEGINNING,
    DEFAULT_MAX_PACKAGE_CITIZENS,
    HEAD,
    AgreementError,
    load_agreement,
    load_agreements,
)
from lienthong.settings import schema_file
from population.extract import FieldCondition

HEALTH = schema_file("agreements/health.yaml").read_text(encoding="utf-8")


def test_the_deaths_agreement_selects_deaths_and_the_others_select_every_row():
    agreements = load_agreements()
    deaths = agreements["health-deaths"].directions["outbound"]
    assert deaths.rows.events == ("death",) and deaths.rows.where == () and deaths.start == BEGINNING
    assert not agreements["health-identity"].directions["outbound"].rows
    assert {a.partner for a in agreements.values() if a.name.startswith("health-")} == {"health"}


def test_field_tests_are_read_in_order_and_start_defaults_to_the_head(tmp_path):
    text = "".join(line for line in HEALTH.splitlines(keepends=True) if "start: beginning" not in line).replace(
        "    fields:\n",
        "    select:\n      where:\n        sex: {equals: F}\n        permanent_ward_code: {prefix: ['00', '01']}\n"
        "        card_status: {in: [active, replaced]}\n    fields:\n",
        1,
    )
    path = tmp_path / "health.yaml"
    path.write_text(text, encoding="utf-8")
    outbound = load_agreement(path).directions["outbound"]
    assert outbound.start == HEAD and outbound.rows.events == ()
    assert outbound.rows.where == (
        FieldCondition("sex", "equals", ("F",)),
        FieldCondition("permanent_ward_code", "prefix", ("00", "01")),
        FieldCondition("card_status", "in", ("active", "replaced")),
    )


@pytest.mark.parametrize("key", ["select:\n      events: [death]", "start: head", "max_package_citizens: 10"])
def test_an_inbound_direction_neither_selects_nor_starts_nor_caps(tmp_path, key):
    text = HEALTH.replace("    dataset: health-insured\n", f"    dataset: health-insured\n    {key}\n")
    path = tmp_path / "health.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AgreementError, match="only an outbound direction has it") as caught:
        load_agreement(path)
    inbound = text[: text.index("  inbound:")].count("\n") + 1
    key_line = next(n for n, line in enumerate(text.splitlines(), 1) if n > inbound and key.split(":")[0] in line)
    assert caught.value.line == key_line


def test_a_personal_id_in_a_field_test_is_never_echoed(tmp_path):
    selection = "    select:\n      where:\n        personal_id: {in: ['0790912345']}\n"
    text = HEALTH.replace("    fields:\n", selection + "    fields:\n", 1)
    path = tmp_path / "health.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AgreementError) as caught:
        load_agreement(path)
    assert "value 1 does not fit the field's schema (pattern)" in str(caught.value)
    assert "0790912345" not in str(caught.value)


def with_cap(tmp_path: Path, value: str) -> tuple[str, Path]:
    """The health agreement whose outbound direction caps its packages at ``value`` citizens, written and its path."""
    text = HEALTH.replace("    start: beginning", f"    max_package_citizens: {value}\n    start: beginning", 1)
    path = tmp_path / "health.yaml"
    path.write_text(text, encoding="utf-8")
    return text, path


def test_a_package_cap_is_read_and_defaults_to_fifty_thousand_citizens(tmp_path):
    outbound = load_agreements()["health-identity"].directions["outbound"]
    assert outbound.max_package_citizens == DEFAULT_MAX_PACKAGE_CITIZENS == 50_000
    _, path = with_cap(tmp_path, "1200")
    assert load_agreement(path).directions["outbound"].max_package_citizens == 1200


@pytest.mark.parametrize(
    ("value", "rule"),
    [("0", "0 is less than the minimum of 1"), ("many", "'many' is not of type 'integer'"),
     ("2.5", "2.5 is not of type 'integer'")],
)  # fmt: skip
def test_a_package_cap_that_is_not_a_whole_number_of_citizens_is_refused_by_file_and_line(tmp_path, value, rule):
    text, path = with_cap(tmp_path, value)
    with pytest.raises(AgreementError) as caught:
        load_agreement(path)
    line = next(n for n, each in enumerate(text.splitlines(), 1) if "max_package_citizens" in each)
    assert str(caught.value) == f"{path}:{line}: directions.outbound.max_package_citizens: {rule}"
