"""Row selection and a feed's start in agreements, as the loader reads them."""

from __future__ import annotations

import pytest

from exchange.agreements import BEGINNING, HEAD, AgreementError, load_agreement, load_agreements
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


@pytest.mark.parametrize("key", ["select:\n      events: [death]", "start: head"])
def test_an_inbound_direction_neither_selects_nor_starts(tmp_path, key):
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
