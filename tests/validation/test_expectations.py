"""Each custom expectation gives the same answer in pandas, in SQLite and in PostgreSQL, on awkward values."""

import unicodedata

import pandas as pd
import pytest
import sqlalchemy as sa

from population.db import is_sqlite
from validation import expectations as vx
from validation.context import new_context, unique_name

NFD = unicodedata.normalize("NFD", "Nguyễn Thị Bích")
ROWS = [
    # pid, dob, sex, prov, name, ward, on, death, card, tax, household, relation
    ("001090000001", "1990-05-01", "M", "001", "Nguyễn Văn An", "00070", "2026-07-01T00:00:00", None, "active",
     "0100109106", "HK1", "head"),
    ("001190000001", "1991-02-29", "M", "002", NFD, "99999", "2026-07-01", "2020-01-01", "active", "0100109107",
     None, "head"),
    ("00109000000x", "2000-02-29", "F", "001", "\u00d0ỗ Văn Cường", "00070", "2025-06-01", None, None,
     "001090000001", None, None),
    ("001290000001", "1990-13-01", "X", None, "Lê ð", None, None, "2019-01-01", "cancelled", "001290000001",
     "HK2", None),
    ("٠٠١٠٩٠٠٠٠٠٠١", "1900-02-29", "F", "001", "Trần Lan", "00070", "2026-07-01 10:00:00+00", None, None,
     "0100109106001", None, None),
    ("001390000001", "2400-02-29T00:00", "F", "001", "Trần", "00070", "2026-07-01 10:00:00+00", None, None,
     "0100109106000", None, None),
    ("001300000002", "2000-01-31", "F", "001", "Hoà", "00070", "2026-07-01", "1999-12-31", "expired",
     "001300000002", "HK3", "child"),
    (None, None, None, None, None, None, None, None, None, None, None, None),
]  # fmt: skip
COLUMNS = ["pid", "dob", "sex", "prov", "name", "ward", "on", "death", "card", "tax", "household", "relation"]

CASES = {
    "pid is 12 digits": (vx.ExpectColumnValuesToMatchCodePattern(column="pid", pattern="^[0-9]{12}$"), [3, 5]),
    "NFC": (vx.ExpectColumnValuesToBeNfc(column="name"), [2]),
    "no legacy Đ": (vx.ExpectColumnValuesToBeFreeOfLegacyD(column="name"), [3, 4]),
    "ISO dates": (vx.ExpectColumnValuesToBeIsoDates(column="dob"), [2, 4, 5]),
    "ISO date-times": (vx.ExpectColumnValuesToBeIsoDates(column="on"), []),
    "fresh": (vx.ExpectColumnValuesToBeOnOrAfter(column="on", since="2026-01-01"), [3]),
    "born plausibly": (vx.ExpectDateOfBirthToBePlausible(column_A="dob", column_B="on"), [6]),
    "ID and birth year": (vx.ExpectPersonalIdToAgreeWithRecord(column_A="pid", column_B="dob", part="birth_year"),
                          [2, 4, 6]),
    "ID and sex": (vx.ExpectPersonalIdToAgreeWithRecord(column_A="pid", column_B="sex", part="sex"), [2]),
    "ID and province": (vx.ExpectPersonalIdToAgreeWithRecord(column_A="pid", column_B="prov",
                                                             part="birth_registration_province"), [2]),
    "ward in force": (vx.ExpectAdministrativeUnitInForce(column_A="ward", column_B="on", level="ward"), [2, 3]),
    "no active card after death": (vx.ExpectNoActiveCardAfterDeath(column_A="death", column_B="card"), [2]),
    "no active card past expiry": (vx.ExpectNoActiveCardPastExpiry(column_A="death", column_B="card",
                                                                   on="2026-01-01"), [2]),
    "an active card not yet expired": (vx.ExpectNoActiveCardPastExpiry(column_A="death", column_B="card",
                                                                       on="2019-06-01"), []),
    "household and relation": (vx.ExpectColumnPairValuesToBePresentTogether(column_A="household",
                                                                            column_B="relation"), [2, 4]),
    "death not before birth": (vx.ExpectColumnPairValuesToCompare(column_A="death", column_B="dob",
                                                                  comparison=">="), [7]),
    "tax code": (vx.ExpectColumnValuesToBeTaxCode(column="tax"), [2, 3, 4, 6, 7]),
    "personal tax code": (vx.ExpectPersonalTaxCodeToBeValid(column_list=["tax", "pid", "on"]), [2, 3, 4, 6]),
}  # fmt: skip


def _frame() -> pd.DataFrame:
    frame = pd.DataFrame(ROWS, columns=COLUMNS, dtype="str")
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    frame["rn"] = frame.index
    return frame


def _failing(batch, expectation) -> list[int]:
    result = batch.validate(expectation, result_format={"result_format": "COMPLETE",
                                                        "unexpected_index_column_names": ["rn"]})  # fmt: skip
    assert not (result.exception_info or {}).get("raised_exception"), result.exception_info
    return sorted(
        int(row["rn"]) if isinstance(row, dict) else int(row) for row in result.result["unexpected_index_list"]
    )


@pytest.fixture(scope="module")
def pandas_batch():
    context = new_context()
    asset = context.data_sources.add_pandas(unique_name("p")).add_dataframe_asset("values")
    return asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": _frame()})


def _sql_batch(engine):
    table = unique_name("expectation_values").replace("-", "_")
    frame = _frame()
    frame["rn"] = frame["rn"].astype(int)
    frame.to_sql(table, engine, index=False, dtype={c: sa.Text() for c in COLUMNS})
    url = engine.url.render_as_string(hide_password=False)
    context = new_context()
    add = context.data_sources.add_sqlite if is_sqlite(engine) else context.data_sources.add_postgres
    asset = add(unique_name("db"), connection_string=url).add_table_asset("values", table_name=table)
    return asset.add_batch_definition_whole_table("all").get_batch()


@pytest.mark.parametrize("case", CASES)
def test_pandas_implementation(pandas_batch, case):
    expectation, failing = CASES[case]
    assert _failing(pandas_batch, expectation) == failing


def test_sql_implementations_agree_with_pandas(db):
    batch = _sql_batch(db)
    for case, (expectation, failing) in CASES.items():
        assert _failing(batch, expectation) == failing, case


def test_code_patterns_are_limited_to_what_sqlite_can_run():
    with pytest.raises(ValueError, match="code patterns"):
        vx.ExpectColumnValuesToMatchCodePattern(column="pid", pattern="^\\d+$")


def test_tax_codes_agree_with_python_stdnum():
    import random

    from stdnum.vn import mst

    from validation.partner_sample import tax_code

    rng = random.Random(5)
    codes = [tax_code(rng) for _ in range(200)] + [f"{rng.randrange(10**10):010d}" for _ in range(200)]
    frame = pd.Series(codes, dtype="str")
    assert vx._tax_code_pandas(frame).tolist() == [mst.is_valid(c) for c in codes]
    assert all(mst.is_valid(c) for c in codes[:200])
