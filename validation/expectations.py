"""Custom Great Expectations for the population domain, each with a pandas and a SQL implementation.

Every dataset is validated as text, the way it travels in CSV or JSONL: dates are ISO 8601 strings, codes are
strings of digits. The SQL implementations therefore work on text columns too (``validation.runner`` casts the
database columns to text before validating in the database), and compute the same answer as the pandas ones on
PostgreSQL and SQLite; ``tests/validation/test_expectations.py`` runs both on the same values.

SQL conditions must be NULL-safe: Great Expectations counts a row as unexpected when ``NOT condition`` is true, so
a condition that evaluates to NULL would silently pass. Each one is written so that it is never NULL on the rows
it sees (nulls are filtered out by the domain, or handled explicitly).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa
from great_expectations.compatibility import pydantic
from great_expectations.execution_engine import PandasExecutionEngine, SqlAlchemyExecutionEngine
from great_expectations.expectations.expectation import (
    ColumnMapExpectation,
    ColumnPairMapExpectation,
    MulticolumnMapExpectation,
)
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    ColumnPairMapMetricProvider,
    MulticolumnMapMetricProvider,
    column_condition_partial,
    column_pair_condition_partial,
    multicolumn_condition_partial,
)
from stdnum.vn import mst

from population.admin_units import REFORM_DATE, catalogue_rows
from population.names import LEGACY_D

PERSONAL_TAX_CODE_SINCE = REFORM_DATE.isoformat()  # the 12-digit personal ID is the personal tax code from then
LEGACY_ETH = "\u00f0"  # ð, the lower-case form of the legacy Ð
COMBINING_MARKS = ("\u0300", "\u036f")  # the Combining Diacritical Marks block: what NFD leaves apart
_CODE_PATTERN = re.compile(r"\^\[([0-9A-Za-z-]+)\]\{(\d+)\}\$")

IdPart = Literal["birth_year", "sex", "birth_registration_province"]
UnitLevel = Literal["ward", "province"]


# -- shared pieces ---------------------------------------------------------------------------------------------
#
# pandas: the values are Python strings. Great Expectations copies the whole batch (every column) each time it
# filters rows by a column's nulls or a pair's missing values, many times per expectation; so these metrics do
# not ask it to (``filter_column_isnull = False``, ``ignore_row_if = "neither"``) and judge missing values
# themselves: a missing value is never this expectation's business (not-null expectations say what is
# required). Characters are compared as numpy arrays of code points rather than with regexes: a hundred times
# faster on a batch of 100,000.


def _dialect(kwargs: dict) -> str:
    name = kwargs["_sqlalchemy_engine"].dialect.name
    if name not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"the population expectations support PostgreSQL and SQLite, not {name}")
    return name


def _chars(series: pd.Series, width: int) -> np.ndarray:
    """The code points of each value's first ``width`` characters, shape (rows, width); 0 past the end (a
    missing value is all zeros)."""
    values = series.fillna("").to_numpy(dtype=f"<U{width}")
    return values.view(np.uint32).reshape(len(values), width)


def _ranges(char_class: str) -> list[tuple[int, int]]:
    """'0-9A-Z' → [(48, 57), (65, 90)]."""
    return [(ord(m[1]), ord(m[2] or m[1])) for m in re.finditer(r"(.)(?:-(.))?", char_class)]


def _in_class(chars: np.ndarray, char_class: str) -> np.ndarray:
    inside = np.zeros(chars.shape, dtype=bool)
    for low, high in _ranges(char_class):
        inside |= (chars >= low) & (chars <= high)
    return inside


def _exactly(series: pd.Series, char_class: str, length: int) -> np.ndarray:
    """pandas: the value is exactly ``length`` characters of ``char_class``."""
    chars = _chars(series, length + 1)
    return _in_class(chars[:, :length], char_class).all(axis=1) & (chars[:, length] == 0)


def _number(chars: np.ndarray) -> np.ndarray:
    """The integer written by rows of digit code points (check they are digits first)."""
    return (chars.astype(np.int64) - 48) @ (10 ** np.arange(chars.shape[1] - 1, -1, -1))


def _present(*columns: pd.Series) -> np.ndarray:
    present = np.ones(len(columns[0]), dtype=bool)
    for column in columns:
        present &= column.notna().to_numpy()
    return present


def _judged(series_index, present: np.ndarray, holds: np.ndarray) -> pd.Series:
    """pandas: the expectation's answer, true where there was nothing to judge."""
    return pd.Series(~present | holds, index=series_index)


def _date_part(series: pd.Series) -> np.ndarray:
    """The first ten characters (the date of an ISO date or date-time), as a numpy string array."""
    return series.fillna("").to_numpy(dtype="<U10")


def _all_of_class(column, char_class: str, length: int, dialect: str):
    """SQL: the value is exactly ``length`` characters of ``char_class`` (e.g. '0-9'). On PostgreSQL, trimming
    the class's characters off both ends leaves nothing: half the cost of the equivalent regular expression,
    which matters on a million rows checked by several rules."""
    if dialect == "postgresql":
        members = "".join(chr(code) for low, high in _ranges(char_class) for code in range(low, high + 1))
        return sa.and_(sa.func.length(column) == length, sa.func.btrim(column, members) == "")
    return sa.and_(sa.func.length(column) == length, sa.not_(column.op("GLOB")(f"*[^{char_class}]*")))


def _digit(column, position: int):
    """SQL: the integer value of one digit (1-based position); only evaluate on values known to be digits."""
    return sa.cast(sa.func.substr(column, position, 1), sa.Integer)


def _when(guard, condition):
    """SQL: ``condition`` where ``guard`` holds, true elsewhere. CASE keeps the casts in ``condition`` from running
    on values the guard rules out (PostgreSQL raises on CAST('x' AS INTEGER))."""
    return sa.case((guard, condition), else_=sa.true())


def _unless_missing(condition, *columns):
    """SQL: true where any of ``columns`` is NULL, else ``condition``."""
    return sa.or_(*(c.is_(None) for c in columns), condition)


def _date_prefix(column):
    """SQL: the first ten characters, the date of an ISO date or date-time."""
    return sa.func.substr(column, 1, 10)


def _check_code_pattern(pattern: str) -> tuple[str, int]:
    match = _CODE_PATTERN.fullmatch(pattern)
    if match is None:
        raise ValueError(f"code patterns look like '^[0-9]{{12}}$' (one character class, a length); got {pattern!r}")
    return match.group(1), int(match.group(2))


class _ColumnMetric(ColumnMapMetricProvider):
    filter_column_isnull = False  # each metric judges missing values itself (see above)


_NEITHER = "neither"  # pairs: Great Expectations drops no row; the metric skips rows with a missing value


# -- a code of fixed length from one character class (personal ID, social insurance number, ...) ---------------


class ColumnValuesMatchCodePattern(_ColumnMetric):
    condition_metric_name = "column_values.match_code_pattern"
    condition_value_keys = ("pattern",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, pattern, **kwargs):
        char_class, length = _check_code_pattern(pattern)
        return _judged(column.index, _present(column), _exactly(column, char_class, length))

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column, pattern, **kwargs):
        char_class, length = _check_code_pattern(pattern)
        return _unless_missing(_all_of_class(column, char_class, length, _dialect(kwargs)), column)


class ExpectColumnValuesToMatchCodePattern(ColumnMapExpectation):
    """Each value is a code of fixed length drawn from one ASCII character class, written as a pattern
    ``^[0-9]{12}$``. Unlike a general regex, it runs the same on PostgreSQL and on SQLite (which has no regex)."""

    pattern: str
    map_metric = "column_values.match_code_pattern"
    success_keys = ("pattern", "mostly")
    args_keys = ("column", "pattern")

    @pydantic.validator("pattern")
    def _supported(cls, value: str) -> str:
        _check_code_pattern(value)
        return value


# -- names: NFC, no legacy Ð --------------------------------------------------------------------------------------


class ColumnValuesNfc(_ColumnMetric):
    condition_metric_name = "column_values.nfc"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, **kwargs):
        return column.map(lambda value: not isinstance(value, str) or unicodedata.is_normalized("NFC", value))

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column, **kwargs):
        if _dialect(kwargs) == "postgresql":
            return _unless_missing(column.op("IS")(sa.literal_column("NFC NORMALIZED")), column)
        # SQLite cannot normalise. A Vietnamese name in NFC has no combining mark: every letter with its
        # diacritics has a precomposed form, so a mark left apart means the text is not NFC.
        low, high = COMBINING_MARKS
        return _unless_missing(sa.not_(column.op("GLOB")(f"*[{low}-{high}]*")), column)


class ExpectColumnValuesToBeNfc(ColumnMapExpectation):
    """Each value is stored in Unicode Normalization Form C (composed), as names must be."""

    map_metric = "column_values.nfc"


class ColumnValuesFreeOfLegacyD(_ColumnMetric):
    condition_metric_name = "column_values.free_of_legacy_d"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, **kwargs):
        return ~column.str.contains(f"[{LEGACY_D}{LEGACY_ETH}]", regex=True).fillna(False).astype(bool)

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column, **kwargs):
        return _unless_missing(sa.not_(sa.or_(column.contains(LEGACY_D), column.contains(LEGACY_ETH))), column)


class ExpectColumnValuesToBeFreeOfLegacyD(ColumnMapExpectation):
    """No value holds the Icelandic eth 'Ð' (U+00D0) or 'ð' that old systems typed for the Vietnamese 'Đ'."""

    map_metric = "column_values.free_of_legacy_d"


# -- dates --------------------------------------------------------------------------------------------------------


def _days_in_month(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    return np.where(month == 2, np.where(leap, 29, 28), np.where(np.isin(month, (4, 6, 9, 11)), 30, 31))


def _iso_dates(series: pd.Series) -> np.ndarray:
    """pandas: an ISO 8601 date that exists, alone or opening a date-time (then followed by 'T' or a space)."""
    chars = _chars(series, 11)
    digits = _in_class(chars[:, [0, 1, 2, 3, 5, 6, 8, 9]], "0-9").all(axis=1)
    shaped = digits & (chars[:, 4] == ord("-")) & (chars[:, 7] == ord("-")) & np.isin(chars[:, 10], (0, 84, 32))
    year, month, day = (np.where(shaped, _number(chars[:, cut]), 1) for cut in (slice(0, 4), slice(5, 7), slice(8, 10)))
    return shaped & (month >= 1) & (month <= 12) & (day >= 1) & (day <= _days_in_month(year, month))


class ColumnValuesIsoDate(_ColumnMetric):
    condition_metric_name = "column_values.iso_date"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, **kwargs):
        return _judged(column.index, _present(column), _iso_dates(column))

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column, **kwargs):
        dialect = _dialect(kwargs)
        shaped = sa.and_(
            _all_of_class(sa.func.substr(column, 1, 4), "0-9", 4, dialect),
            sa.func.substr(column, 5, 1) == "-",
            _all_of_class(sa.func.substr(column, 6, 2), "0-9", 2, dialect),
            sa.func.substr(column, 8, 1) == "-",
            _all_of_class(sa.func.substr(column, 9, 2), "0-9", 2, dialect),
            sa.or_(sa.func.length(column) == 10, sa.func.substr(column, 11, 1).in_(("T", " "))),
        )
        year, month, day = (sa.cast(sa.func.substr(column, start, size), sa.Integer) for start, size in
                            ((1, 4), (6, 2), (9, 2)))  # fmt: skip
        leap = sa.or_(sa.and_(year % 4 == 0, year % 100 != 0), year % 400 == 0)
        days = sa.case((month == 2, sa.case((leap, 29), else_=28)), (month.in_((4, 6, 9, 11)), 30), else_=31)
        exists = sa.and_(month >= 1, month <= 12, day >= 1, day <= days)
        return _unless_missing(sa.case((shaped, exists), else_=sa.false()), column)


class ExpectColumnValuesToBeIsoDates(ColumnMapExpectation):
    """Each value is an ISO 8601 calendar date (YYYY-MM-DD) that exists, or a date-time that starts with one."""

    map_metric = "column_values.iso_date"


class ColumnValuesOnOrAfter(_ColumnMetric):
    condition_metric_name = "column_values.on_or_after"
    condition_value_keys = ("since",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, since, **kwargs):
        return _judged(column.index, _present(column), _date_part(column) >= since)

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column, since, **kwargs):
        return _unless_missing(_date_prefix(column) >= since, column)


class ExpectColumnValuesToBeOnOrAfter(ColumnMapExpectation):
    """Each date (or date-time) is on or after ``since`` (YYYY-MM-DD): records verified within the agreement's
    window."""

    since: str
    map_metric = "column_values.on_or_after"
    success_keys = ("since", "mostly")
    args_keys = ("column", "since")


Comparison = Literal[">", ">=", "=="]


class ColumnPairCompare(ColumnPairMapMetricProvider):
    condition_metric_name = "column_pair_values.compare"
    condition_value_keys = ("comparison",)

    @column_pair_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_A, column_B, comparison, **kwargs):
        a, b = column_A.fillna("").to_numpy(dtype=str), column_B.fillna("").to_numpy(dtype=str)
        holds = {">": a > b, ">=": a >= b, "==": a == b}[comparison]
        return _judged(column_A.index, _present(column_A, column_B), holds)

    @column_pair_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column_A, column_B, comparison, **kwargs):
        holds = {">": column_A > column_B, ">=": column_A >= column_B, "==": column_A == column_B}[comparison]
        return _unless_missing(holds, column_A, column_B)


class ExpectColumnPairValuesToCompare(ColumnPairMapExpectation):
    """Where both values are present, column_A ``comparison`` column_B, as text: ISO dates compare as dates (a
    date-time after its date), codes compare as codes."""

    comparison: Comparison
    ignore_row_if: Literal["neither"] = _NEITHER
    map_metric = "column_pair_values.compare"
    success_keys = ("column_A", "column_B", "comparison", "ignore_row_if", "mostly")
    args_keys = ("column_A", "column_B", "comparison")


class ColumnPairPlausibleBirthDate(ColumnPairMapMetricProvider):
    condition_metric_name = "column_pair_values.plausible_birth_date"
    condition_value_keys = ("earliest",)

    @column_pair_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_A, column_B, earliest, **kwargs):
        born = column_A.fillna("").to_numpy(dtype=str)
        return _judged(
            column_A.index, _present(column_A, column_B), (born >= earliest) & (born <= _date_part(column_B))
        )

    @column_pair_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column_A, column_B, earliest, **kwargs):
        return _unless_missing(sa.and_(column_A >= earliest, column_A <= _date_prefix(column_B)), column_A, column_B)


class ExpectDateOfBirthToBePlausible(ColumnPairMapExpectation):
    """The date of birth (column_A) is no earlier than ``earliest`` and not after the record's own date
    (column_B, e.g. updated_at): nobody is recorded before being born."""

    earliest: str = "1900-01-01"
    ignore_row_if: Literal["neither"] = _NEITHER
    map_metric = "column_pair_values.plausible_birth_date"
    success_keys = ("column_A", "column_B", "earliest", "ignore_row_if", "mostly")
    args_keys = ("column_A", "column_B")


# -- personal ID against the rest of the record (signals for stewards) -----------------------------------------


class ColumnPairPersonalIdAgrees(ColumnPairMapMetricProvider):
    """The personal ID (column_A) against one field of the record (column_B). Only IDs that pass the gate (12
    digits) and fields in a usable shape are judged; the rest is for other expectations."""

    condition_metric_name = "column_pair_values.personal_id_agrees"
    condition_value_keys = ("part",)

    @column_pair_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_A, column_B, part, **kwargs):
        chars = _chars(column_A, 13)
        judged = _in_class(chars[:, :12], "0-9").all(axis=1) & (chars[:, 12] == 0) & _present(column_B)
        digit = chars[:, 3].astype(np.int64) - 48
        if part == "birth_year":
            recorded = _chars(column_B, 4)
            judged &= _in_class(recorded, "0-9").all(axis=1)
            agrees = 1900 + 100 * (digit // 2) + _number(chars[:, 4:6]) == _number(recorded)
        elif part == "sex":
            sex = column_B.to_numpy(dtype=object)
            judged &= (sex == "M") | (sex == "F")
            agrees = (digit % 2 == 1) == (sex == "F")
        else:
            agrees = column_A.fillna("").to_numpy(dtype="<U3") == column_B.fillna("").to_numpy(dtype=str)
        return _judged(column_A.index, judged, agrees)

    @column_pair_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column_A, column_B, part, **kwargs):
        dialect = _dialect(kwargs)
        judged = sa.and_(column_B.isnot(None), _all_of_class(column_A, "0-9", 12, dialect))
        digit = _digit(column_A, 4)
        if part == "birth_year":
            judged = sa.and_(judged, _all_of_class(sa.func.substr(column_B, 1, 4), "0-9", 4, dialect))
            claimed = 1900 + 100 * (digit // 2) + sa.cast(sa.func.substr(column_A, 5, 2), sa.Integer)
            agrees = claimed == sa.cast(sa.func.substr(column_B, 1, 4), sa.Integer)
        elif part == "sex":
            judged = sa.and_(judged, column_B.in_(("M", "F")))
            agrees = (digit % 2 == 1) == (column_B == "F")
        else:
            agrees = sa.func.substr(column_A, 1, 3) == column_B
        return _when(sa.and_(column_A.isnot(None), judged), agrees)


class ExpectPersonalIdToAgreeWithRecord(ColumnPairMapExpectation):
    """What the personal ID's digits claim (``part``: birth year, sex from the century/sex digit, or the province of
    birth registration) agrees with the record. The law no longer fixes the ID's inner structure: a disagreement
    is a signal for stewards, never a reason to reject the ID."""

    part: IdPart
    ignore_row_if: Literal["neither"] = _NEITHER
    map_metric = "column_pair_values.personal_id_agrees"
    success_keys = ("column_A", "column_B", "part", "ignore_row_if", "mostly")
    args_keys = ("column_A", "column_B", "part")


# -- administrative units in force on the record's date ------------------------------------------------------------


@cache
def unit_periods(level: str) -> tuple[tuple[str, str | None, frozenset[str]], ...]:
    """The catalogue's codes of one level grouped by effective period: (from, to or None, codes), dates ISO."""
    groups: dict[tuple[str, str | None], set[str]] = {}
    for unit in catalogue_rows():
        if unit["level"] == level:
            to = unit["effective_to"].isoformat() if unit["effective_to"] else None
            groups.setdefault((unit["effective_from"].isoformat(), to), set()).add(unit["code"])
    return tuple((start, end, frozenset(codes)) for (start, end), codes in sorted(groups.items()))


class ColumnPairCodeInForce(ColumnPairMapMetricProvider):
    condition_metric_name = "column_pair_values.code_in_force"
    condition_value_keys = ("level",)

    @column_pair_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_A, column_B, level, **kwargs):
        on = _date_part(column_B)
        in_force = np.zeros(len(column_A), dtype=bool)
        for start, end, codes in unit_periods(level):
            period = column_A.isin(codes).to_numpy() & (on >= start)
            in_force |= period if end is None else period & (on <= end)
        return _judged(column_A.index, _present(column_A, column_B), in_force)

    @column_pair_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column_A, column_B, level, **kwargs):
        on = _date_prefix(column_B)
        periods = []
        for start, end, codes in unit_periods(level):
            bounds = [on >= start] if end is None else [on >= start, on <= end]
            periods.append(sa.and_(column_A.in_(sorted(codes)), *bounds))
        return _unless_missing(sa.or_(*periods), column_A, column_B)


class ExpectAdministrativeUnitInForce(ColumnPairMapExpectation):
    """The province or ward code (column_A) is in force on the record's date (column_B), by the catalogue of
    administrative units with effective dates: codes were retired and reused in the 2025 reform."""

    level: UnitLevel = "ward"
    ignore_row_if: Literal["neither"] = _NEITHER
    map_metric = "column_pair_values.code_in_force"
    success_keys = ("column_A", "column_B", "level", "ignore_row_if", "mostly")
    args_keys = ("column_A", "column_B", "level")


# -- life: death, cards, households ------------------------------------------------------------------------------


class ColumnPairNoActiveCardAfterDeath(ColumnPairMapMetricProvider):
    condition_metric_name = "column_pair_values.no_active_card_after_death"

    @column_pair_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_A, column_B, **kwargs):
        return _judged(column_A.index, _present(column_A, column_B), (column_B != "active").to_numpy(dtype=bool))

    @column_pair_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column_A, column_B, **kwargs):
        return _unless_missing(column_B != "active", column_A, column_B)


class ExpectNoActiveCardAfterDeath(ColumnPairMapExpectation):
    """A person with a date of death (column_A) holds no active card (column_B is the card's status)."""

    ignore_row_if: Literal["neither"] = _NEITHER
    map_metric = "column_pair_values.no_active_card_after_death"
    success_keys = ("column_A", "column_B", "ignore_row_if", "mostly")


class ColumnPairNoActiveCardPastExpiry(ColumnPairMapMetricProvider):
    condition_metric_name = "column_pair_values.no_active_card_past_expiry"
    condition_value_keys = ("on",)

    @column_pair_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_A, column_B, on, **kwargs):
        stale = (column_B == "active").to_numpy(dtype=bool) & (_date_part(column_A) < on)
        return _judged(column_A.index, _present(column_A, column_B), ~stale)

    @column_pair_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column_A, column_B, on, **kwargs):
        return _unless_missing(sa.or_(column_B != "active", _date_prefix(column_A) >= on), column_A, column_B)


class ExpectNoActiveCardPastExpiry(ColumnPairMapExpectation):
    """A card whose expiry date (column_A) is before ``on`` (YYYY-MM-DD) is not shown as active (column_B is its
    status): the expiry is a known event that has not reached the record."""

    on: str
    ignore_row_if: Literal["neither"] = _NEITHER
    map_metric = "column_pair_values.no_active_card_past_expiry"
    success_keys = ("column_A", "column_B", "on", "ignore_row_if", "mostly")


class ColumnPairPresentTogether(ColumnPairMapMetricProvider):
    condition_metric_name = "column_pair_values.present_together"

    @column_pair_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_A, column_B, **kwargs):
        return column_A.isna() == column_B.isna()

    @column_pair_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column_A, column_B, **kwargs):
        return sa.or_(
            sa.and_(column_A.is_(None), column_B.is_(None)), sa.and_(column_A.isnot(None), column_B.isnot(None))
        )


class ExpectColumnPairValuesToBePresentTogether(ColumnPairMapExpectation):
    """Both values are present or both are missing (a household code goes with a relation to the head)."""

    ignore_row_if: Literal["neither"] = _NEITHER
    map_metric = "column_pair_values.present_together"
    success_keys = ("column_A", "column_B", "ignore_row_if", "mostly")


# -- tax codes ----------------------------------------------------------------------------------------------------

_MST_WEIGHTS = (31, 29, 23, 19, 17, 13, 7, 5, 3)


def _tax_code_sql(column, dialect: str):
    """SQL: a valid 10- or 13-digit tax code (mã số thuế), the rules of ``stdnum.vn.mst`` on compact digits."""
    shaped = sa.or_(_all_of_class(column, "0-9", 10, dialect), _all_of_class(column, "0-9", 13, dialect))
    total = sum(weight * _digit(column, position) for position, weight in enumerate(_MST_WEIGHTS, start=1))
    valid = sa.and_(
        sa.func.substr(column, 3, 7) != "0000000",
        sa.or_(sa.func.length(column) == 10, sa.func.substr(column, 11, 3) != "000"),
        10 - total % 11 == _digit(column, 10),
    )
    return sa.case((shaped, valid), else_=sa.false())


def _tax_code_pandas(column: pd.Series) -> np.ndarray:
    """pandas: compact digits (10 or 13) that ``stdnum.vn.mst`` accepts."""
    shaped = _exactly(column, "0-9", 10) | _exactly(column, "0-9", 13)
    return shaped & column.map(lambda value: isinstance(value, str) and mst.is_valid(value)).to_numpy(dtype=bool)


class ColumnValuesTaxCode(_ColumnMetric):
    condition_metric_name = "column_values.tax_code"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, **kwargs):
        return _judged(column.index, _present(column), _tax_code_pandas(column))

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column, **kwargs):
        return _unless_missing(_tax_code_sql(column, _dialect(kwargs)), column)


class ExpectColumnValuesToBeTaxCode(ColumnMapExpectation):
    """Each value is a 10-digit tax code with a valid check digit (weights 31, 29, 23, 19, 17, 13, 7, 5, 3; mod
    11), or 13 digits for a dependent unit: an enterprise code, for example."""

    map_metric = "column_values.tax_code"


class MulticolumnPersonalTaxCode(MulticolumnMapMetricProvider):
    """Columns: the tax code, the holder's personal ID, the record's date."""

    condition_metric_name = "multicolumn_values.personal_tax_code"
    condition_value_keys = ("since",)

    @multicolumn_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_list, since, **kwargs):
        tax_code, personal_id, on = (column_list[name] for name in column_list.columns)
        as_personal_id = (
            _exactly(tax_code, "0-9", 12)
            & (tax_code.fillna("").to_numpy(dtype=str) == personal_id.fillna("").to_numpy(dtype=str))
            & _present(on)
            & (_date_part(on) >= since)
        )
        return _judged(tax_code.index, _present(tax_code), _tax_code_pandas(tax_code) | as_personal_id)

    @multicolumn_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column_list, since, **kwargs):
        dialect = _dialect(kwargs)
        tax_code, personal_id, on = column_list
        as_personal_id = sa.and_(
            personal_id.isnot(None),
            on.isnot(None),
            tax_code == personal_id,
            _all_of_class(tax_code, "0-9", 12, dialect),
            _date_prefix(on) >= since,
        )
        return sa.or_(tax_code.is_(None), _tax_code_sql(tax_code, dialect), as_personal_id)


class ExpectPersonalTaxCodeToBeValid(MulticolumnMapExpectation):
    """column_list = [tax code, personal ID, record date]. The tax code is a valid 10- or 13-digit code, or, on
    records dated from ``since`` (2025-07-01), the holder's own 12-digit personal ID, which is then the personal
    tax code."""

    since: str = PERSONAL_TAX_CODE_SINCE
    ignore_row_if: Literal["never"] = "never"
    map_metric = "multicolumn_values.personal_tax_code"
    success_keys = ("column_list", "since", "ignore_row_if", "mostly")
    args_keys = ("column_list",)


CUSTOM_EXPECTATIONS = (
    ExpectColumnValuesToMatchCodePattern,
    ExpectColumnValuesToBeNfc,
    ExpectColumnValuesToBeFreeOfLegacyD,
    ExpectColumnValuesToBeIsoDates,
    ExpectColumnValuesToBeOnOrAfter,
    ExpectColumnPairValuesToCompare,
    ExpectDateOfBirthToBePlausible,
    ExpectPersonalIdToAgreeWithRecord,
    ExpectAdministrativeUnitInForce,
    ExpectNoActiveCardAfterDeath,
    ExpectNoActiveCardPastExpiry,
    ExpectColumnPairValuesToBePresentTogether,
    ExpectColumnValuesToBeTaxCode,
    ExpectPersonalTaxCodeToBeValid,
)
