"""The canonical citizen extract: one row per citizen, the columns of ``schemas/datasets/citizen-extract``.

Rows stream from a server-side cursor in batches, so memory does not grow with the population.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, func, or_, select, true
from sqlalchemy.orm import aliased

from lienthong.settings import schema_file
from lienthong_verify.schemas import date_time_text
from population.models import Citizen, Household, IdCard

EXTRACT_SCHEMA = schema_file("datasets/citizen-extract.v1.json")
BATCH_ROWS = 10_000


@cache
def extract_schema() -> dict:
    return json.loads(EXTRACT_SCHEMA.read_text(encoding="utf-8"))


def extract_columns() -> list[str]:
    return list(extract_schema()["properties"])


CARD_COLUMNS = ("card_number", "card_issued_on", "card_expires_on", "card_status")
EQUALS, ONE_OF, PREFIX = "equals", "in", "prefix"  # the tests a row selection puts to an extract column


@dataclass(frozen=True)
class FieldCondition:
    """A test on one extract column: ``equals`` a value, ``in`` one of ``values``, or starts with a ``prefix``
    (one of ``values``)."""

    field: str
    test: str
    values: tuple[str, ...]

    def clause(self, column):
        if self.test == PREFIX:
            return or_(*(column.startswith(value, autoescape=True) for value in self.values))
        return column.in_(self.values) if len(self.values) > 1 else column == self.values[0]


def extract_query(
    limit: int | None = None,
    *,
    columns: list[str] | None = None,
    card_per_citizen: bool = False,
    where: Sequence[FieldCondition] = (),
):
    """The extract as a SELECT, in citizen order: columns of the dataset schema (``columns``: only these, in this
    order), the latest chip card, the household; a card or household column not asked for (nor tested by
    ``where``, every condition of which a row meets) is not joined.

    The latest card is joined by its id, the largest of the citizen's cards: PostgreSQL hashes every card once,
    the fastest way for the whole population. For a part of it (a province's shard) ``card_per_citizen`` looks
    the card up by citizen instead (a LATERAL join on the citizen's index; PostgreSQL only), so that the cost
    follows the part's size rather than the population's."""
    names = extract_columns() if columns is None else list(columns)
    unknown = sorted(set(names) - set(extract_columns()))
    if unknown:
        raise ValueError(f"not columns of the extract: {', '.join(unknown)}")
    tested = {condition.field for condition in where}
    unknown = sorted(tested - set(extract_columns()))
    if unknown:
        raise ValueError(f"not columns of the extract: {', '.join(unknown)}")
    sources = {c.key: c for c in Citizen.__table__.columns}
    query = select().select_from(Citizen)
    if (set(names) | tested) & set(CARD_COLUMNS):
        if card_per_citizen:
            card = (select(IdCard).where(IdCard.citizen_id == Citizen.id).order_by(IdCard.id.desc()).limit(1)).lateral(
                "card"
            )
            query = query.outerjoin(card, true())
            card_columns = card.c
        else:
            card = aliased(IdCard)
            latest_card = (
                select(func.max(IdCard.id)).where(IdCard.citizen_id == Citizen.id).correlate(Citizen).scalar_subquery()
            )
            query = query.outerjoin(card, card.id == latest_card)
            card_columns = card
        sources.update(card_number=card_columns.card_number, card_issued_on=card_columns.issued_on,
                       card_expires_on=card_columns.expires_on, card_status=card_columns.status)  # fmt: skip
    if "household_code" in names or "household_code" in tested:
        query = query.outerjoin(Household, Household.id == Citizen.household_id)
        sources["household_code"] = Household.household_code
    query = query.add_columns(*(sources[name].label(name) for name in names)).order_by(Citizen.id)
    query = query.where(*(condition.clause(sources[condition.field]) for condition in where))
    return query.limit(limit) if limit else query


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return date_time_text(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def iter_extract(engine: Engine, limit: int | None = None) -> Iterator[tuple]:
    """Extract rows in column order, streamed."""
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(extract_query(limit))
        yield from result


def export_csv(
    engine: Engine, out: Path, limit: int | None = None, progress: Callable[[int], None] | None = None
) -> int:
    """Write the extract as UTF-8 CSV with a header; returns the number of rows. Nulls are empty cells."""
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    partial = out.with_name(out.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(extract_columns())
        for row in iter_extract(engine, limit):
            writer.writerow([_text(v) for v in row])
            written += 1
            if progress is not None and written % BATCH_ROWS == 0:
                progress(BATCH_ROWS)
    partial.replace(out)  # never leave a half-written extract under the final name
    if progress is not None:
        progress(written % BATCH_ROWS)
    return written
