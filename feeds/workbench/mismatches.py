"""The reconciliation page's data: each partner's mismatches by class, the partner's and the population's values
side by side, how each stands (unresolved, or its latest resolution), and the resolutions stewards post.

Plain Python over ``validation.reconciliation``'s resolutions. Personal IDs are masked in every value shown: the
partner's personal ID and any 12-digit ID inside a value (an unknown ID is the partner's value itself). Only the
corrections CSV, for stewards, holds them whole: it is the partner's own records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from feeds.workbench.pages import BadFilter, posted_choice
from population.identity import mask_personal_id, mask_personal_ids
from validation.reconciliation import (
    CLASSES,
    RESOLUTIONS,
    UNRESOLVED,
    MismatchFilter,
    list_mismatches,
    mismatch_tally,
    tally_counts,
)

PAGE_SIZE = 50
ANY = "all"
STANDINGS = (UNRESOLVED, *RESOLUTIONS)  # how a mismatch stands: the resolution facet's values


def partners() -> list[str]:
    """The partners whose inbound datasets are reconciled, from the agreements."""
    from exchange.agreements import load_agreements

    return sorted({a.partner for a in load_agreements().values() if "inbound" in a.directions})


def mismatch_filter(query: Mapping[str, str], known: list[str] | None = None) -> MismatchFilter:
    """The page's filter from its query string: a partner (one of ``known``), a class, a standing and a run, each
    checked. Without a standing the page shows the unresolved mismatches (``all``: every one)."""
    known = partners() if known is None else known
    given = {f.name: (query.get(f.name) or "").strip() or None for f in fields(MismatchFilter)}
    if given["partner"] is not None and given["partner"] not in known:
        raise BadFilter(f"partner is one of {', '.join(known)}")
    if given["mismatch"] is not None and given["mismatch"] not in CLASSES:
        raise BadFilter(f"a mismatch class is one of {', '.join(CLASSES)}")
    if given["run"] is not None:
        if not given["run"].isdigit():
            raise BadFilter("run is a reconciliation run's number")
        given["run"] = int(given["run"])
    standing = given.pop("resolution") or UNRESOLVED
    if standing != ANY and standing not in STANDINGS:
        raise BadFilter(f"resolution is one of {', '.join(STANDINGS)} or {ANY}")
    return MismatchFilter(**given, resolution=None if standing == ANY else standing)


def filter_query(where: MismatchFilter, **changes) -> dict[str, str]:
    """A filter as query parameters (``resolution`` always: its default is ``unresolved``, not every one)."""
    where = replace(where, **changes)
    query = {f.name: str(getattr(where, f.name)) for f in fields(where) if getattr(where, f.name) is not None}
    query["resolution"] = where.resolution or ANY
    return query


def _href(path: str, query: dict[str, str]) -> str:
    return f"{path}?{urlencode(query)}" if query else path


@dataclass
class FacetValue:
    value: str
    count: int
    chosen: bool
    href: str


@dataclass
class MismatchRow:
    id: int
    partner: str
    run_id: int
    row_number: int
    personal_id: str  # masked
    identifier: str
    mismatch: str
    partner_value: str  # IDs in it masked
    population_value: str
    resolution: str | None  # the latest, None: unresolved


@dataclass
class MismatchPage:
    where: MismatchFilter
    facets: dict[str, list[FacetValue]]  # partner, mismatch (class), resolution (standing)
    rows: list[MismatchRow]
    total: int
    next_href: str | None
    first_href: str | None
    self_href: str
    corrections: dict[str, int]  # partner -> corrections it must make (the CSV's lines)


def _shown(value: object) -> str:
    return "" if value is None else mask_personal_ids(str(value))


def mismatch_page(
    session: Session, where: MismatchFilter, after: int = 0, base: str = "mismatches", known: list[str] | None = None
) -> MismatchPage:
    """A page of mismatches under the filter, by id after ``after``, with counts per partner (of ``known``), class
    and standing."""
    known = partners() if known is None else known
    tally = mismatch_tally(session, where.run)  # every count below is a sum of it: one query
    by_class = tally_counts(tally, where, "mismatch")
    by_partner = tally_counts(tally, where, "partner")
    by_standing = tally_counts(tally, where, "resolution")
    facets = {
        "partner": [
            FacetValue(p, by_partner.get(p, 0), p == where.partner, _href(base, filter_query(where, partner=p)))
            for p in known
        ],
        "mismatch": [
            FacetValue(c, n, c == where.mismatch, _href(base, filter_query(where, mismatch=c)))
            for c, n in sorted(by_class.items(), key=lambda item: (-item[1], item[0]))
        ],
        "resolution": [
            FacetValue(s, by_standing.get(s, 0), s == where.resolution, _href(base, filter_query(where, resolution=s)))
            for s in STANDINGS
        ],
    }
    total = by_class.get(where.mismatch, 0) if where.mismatch is not None else sum(by_class.values())
    rows = [
        MismatchRow(
            m.id,
            run.partner,
            m.run_id,
            m.row_number,
            mask_personal_id(m.personal_id) if m.personal_id else "",
            _shown(m.identifier),
            m.mismatch,
            _shown(m.partner_value),
            _shown(m.population_value),
            resolution,
        )
        for m, run, resolution in list_mismatches(session, where, limit=PAGE_SIZE, after=after)
    ]
    query = filter_query(where)
    return MismatchPage(
        where,
        facets,
        rows,
        total,
        _href(base, {**query, "after": str(rows[-1].id)}) if len(rows) == PAGE_SIZE else None,
        _href(base, query) if after else None,
        _href(base, {**query, **({"after": str(after)} if after else {})}),
        corrections_due(tally if where.run is None else mismatch_tally(session), known),
    )


def corrections_due(tally, known: list[str]) -> dict[str, int]:
    """Per partner of ``known``, how many mismatches of its latest reconciliation it must correct (their latest
    resolution says so), from a ``mismatch_tally``."""
    must = tally_counts(tally, MismatchFilter(resolution="partner_must_correct"), "partner")
    return {p: must.get(p, 0) for p in known}


@dataclass(frozen=True)
class ResolutionForm:
    mismatch_ids: list[int]
    resolution: str
    reason: str


def resolution_form(form: Mapping[str, list[str]]) -> ResolutionForm:
    """A posted resolution: mismatch ids (one or many checkboxes), one of ``RESOLUTIONS``, a reason."""
    return ResolutionForm(*posted_choice(form, "mismatch_id", "resolution", RESOLUTIONS, "mismatch"))


def recent_resolutions(session: Session, partner: str | None, limit: int = 20) -> list[tuple]:
    """The latest resolutions recorded (the audit), newest first: (resolution, mismatch id, class, partner)."""
    from validation.models import MismatchResolution, ReconciliationMismatch, ReconciliationRun

    query = (
        select(MismatchResolution, ReconciliationMismatch.mismatch, ReconciliationRun.partner)
        .join(ReconciliationMismatch, ReconciliationMismatch.id == MismatchResolution.mismatch_id)
        .join(ReconciliationRun, ReconciliationRun.id == ReconciliationMismatch.run_id)
    )
    if partner is not None:
        query = query.where(ReconciliationRun.partner == partner)
    return [tuple(row) for row in session.execute(query.order_by(MismatchResolution.id.desc()).limit(limit))]
