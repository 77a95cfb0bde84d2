"""What each workbench page shows, read from the population database: the quarantine queue with its facets and
one record with its findings and decisions; and the decisions stewards post.

Plain Python over ``validation.quarantine``; the HTML is ``feeds.workbench.render``'s, the HTTP the plugin's.
Personal IDs are masked here, in every value (a parent's, a duplicate's), unless the page is built ``unmasked``
after the full view was logged (``show_whole``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from population.identity import mask_personal_id, mask_personal_ids
from validation.models import QuarantinedRecord
from validation.quarantine import QueueFilter, facet_counts, list_records, needs_second_steward

PAGE_SIZE = 50
FACETS = ("agreement", "dimension", "severity", "rule", "province", "status")
STATUSES = ("held", "awaiting", "released", "rejected")
DIMENSION_KEYS = {"đúng": "dung", "đủ": "du", "sạch": "sach", "sống": "song"}
ANY_STATUS = "all"
VIEW_PURPOSE = "quarantine review"


class BadFilter(ValueError):
    pass


@cache
def province_names() -> dict[str, str]:
    from vietnam_provinces import Province

    return {f"{int(p.code):02d}": p.name for p in Province.iter_all()}


def queue_filter(query: Mapping[str, str]) -> QueueFilter:
    """The queue's filter from a page's query string: codes and ids only, each checked."""
    given = {name: (query.get(name) or "").strip() or None for name in (f.name for f in fields(QueueFilter))}
    if given["run"] is not None:
        if not given["run"].isdigit():
            raise BadFilter("run is a validation run's number")
        given["run"] = int(given["run"])
    status = given.pop("status") or "held"
    if status != ANY_STATUS and status not in STATUSES:
        raise BadFilter(f"status is one of {', '.join(STATUSES)} or {ANY_STATUS}")
    if given["province"] is not None and not (given["province"].isdigit() and len(given["province"]) == 2):
        raise BadFilter("province is a two-digit province code")
    return QueueFilter(**given, status=None if status == ANY_STATUS else status)


def filter_query(where: QueueFilter, **changes) -> dict[str, str]:
    """A filter as query parameters (``status`` always: its default is ``held``, not every status)."""
    where = replace(where, **changes)
    query = {f.name: str(getattr(where, f.name)) for f in fields(where) if getattr(where, f.name) is not None}
    query["status"] = where.status or ANY_STATUS
    return query


@dataclass
class FacetValue:
    value: str
    count: int
    chosen: bool
    href: str


@dataclass
class QueueRow:
    id: int
    agreement: str | None
    run_id: int
    personal_id: str  # masked
    province: str | None
    status: str
    held_at: object
    findings: list[tuple[str, str, str]]  # dimension, severity, rule
    four_eyes: bool


@dataclass
class QueuePage:
    where: QueueFilter
    facets: dict[str, list[FacetValue]]
    rows: list[QueueRow]
    total: int
    next_href: str | None
    first_href: str | None
    self_href: str
    active: dict[str, str] = field(default_factory=dict)  # chosen filters: name → the link clearing it


def _href(path: str, query: dict[str, str]) -> str:
    return f"{path}?{urlencode(query)}" if query else path


def queue_page(session: Session, where: QueueFilter, after: int = 0, base: str = "quarantine") -> QueuePage:
    counts = facet_counts(session, where)
    facets = {}
    for name in FACETS:
        chosen = getattr(where, name)
        values = counts.get(name, {})
        if name == "status":
            values = {status: values.get(status, 0) for status in STATUSES}
        facets[name] = [
            FacetValue(str(value), count, str(value) == str(chosen), _href(base, filter_query(where, **{name: value})))
            for value, count in sorted(values.items(), key=lambda item: (-item[1], str(item[0])))
            if value is not None
        ]
    if where.status is not None:
        total = counts.get("status", {}).get(where.status, 0)
    else:
        total = sum(counts.get("status", {}).values())
    records = list_records(session, where, limit=PAGE_SIZE, after=after)
    rows = [
        QueueRow(
            r.id,
            r.agreement,
            r.run_id,
            mask_personal_id(r.personal_id),
            r.province_code,
            r.status,
            r.held_at,
            [(f.dimension, f.severity, f.rule) for f in r.findings],
            needs_second_steward(r),
        )
        for r in records
    ]
    query = filter_query(where)
    next_href = _href(base, {**query, "after": str(rows[-1].id)}) if len(rows) == PAGE_SIZE else None
    active = {
        name: _href(base, filter_query(where, **{name: None if name != "status" else "held"}))
        for name in (f.name for f in fields(where))
        if getattr(where, name) is not None and not (name == "status" and where.status == "held")
    }
    return QueuePage(
        where,
        facets,
        rows,
        total,
        next_href,
        _href(base, query) if after else None,
        _href(base, {**query, **({"after": str(after)} if after else {})}),
        active,
    )


@dataclass
class Finding:
    field: str
    value: str
    dimension: str
    severity: str
    rule: str
    reason: str


@dataclass
class RecordPage:
    id: int
    agreement: str | None
    dataset: str
    run_id: int
    row_number: int
    province: str | None
    status: str
    held_at: object
    sent_in: str | None
    personal_id: str
    unmasked: bool
    values: list[tuple[str, str, bool]]  # field, value, failing
    findings: list[Finding]
    decisions: list  # validation.models.StewardDecision
    four_eyes: bool
    first_release_by: str | None


def record_page(record: QuarantinedRecord, *, unmasked: bool = False) -> RecordPage:
    def shown(value: object, field: str) -> str:
        """A value as the page shows it: masked, a personal ID field's even when it is not a valid ID."""
        text = "" if value is None else str(value)
        if unmasked:
            return text
        return mask_personal_id(text) if field.endswith("personal_id") and text else mask_personal_ids(text)

    failing = {f.column_name for f in record.findings}
    releases = [d for d in record.decisions if d.decision == "release"]
    return RecordPage(
        id=record.id,
        agreement=record.agreement,
        dataset=record.dataset,
        run_id=record.run_id,
        row_number=record.row_number,
        province=record.province_code,
        status=record.status,
        held_at=record.held_at,
        sent_in=record.sent_in,
        personal_id=(record.personal_id or "") if unmasked else mask_personal_id(record.personal_id),
        unmasked=unmasked,
        values=[(name, shown(value, name), name in failing) for name, value in record.record.items()],
        findings=[
            Finding(f.column_name, shown(f.value, f.column_name), f.dimension, f.severity, f.rule, f.reason)
            for f in record.findings
        ],
        decisions=list(record.decisions),
        four_eyes=needs_second_steward(record),
        first_release_by=releases[-1].steward if record.status == "awaiting" and releases else None,
    )


def show_whole(session: Session, record: QuarantinedRecord, steward: str) -> RecordPage:
    """The record with whole personal IDs, once the view is logged and committed (``feeds.disclosures``); raises
    ``lienthong.settings.DisclosureKeyMissing`` (nothing shown) when it cannot be logged."""
    from feeds.disclosures import record_full_views
    from validation.quarantine import record_label

    record_full_views(session, [(record.personal_id, record_label(record))], steward, VIEW_PURPOSE)
    session.commit()
    return record_page(record, unmasked=True)


@dataclass(frozen=True)
class DecisionForm:
    record_ids: list[int]
    decision: str
    reason: str
    all_feeds: bool


def posted_choice(form: Mapping[str, list[str]], ids: str, what: str, choices: tuple[str, ...], noun: str):
    """What a steward's form posted: the ticked ids of ``ids`` (one or many checkboxes, each a number), the
    ``what`` chosen (one of ``choices``) and a reason, each checked; BadFilter names what is missing."""
    ticked = form.get(ids, [])
    if not ticked or not all(i.isdigit() for i in ticked):
        raise BadFilter(f"choose at least one {noun}")
    chosen = (form.get(what) or [""])[0]
    if chosen not in choices:
        raise BadFilter(f"a {what} is {' or '.join(choices) if len(choices) == 2 else 'one of ' + ', '.join(choices)}")
    reason = (form.get("reason") or [""])[0].strip()
    if not reason:
        raise BadFilter(f"a {what} needs a reason")
    return sorted({int(i) for i in ticked}), chosen, reason


def decision_form(form: Mapping[str, list[str]]) -> DecisionForm:
    """A posted decision: record ids (one or many checkboxes), release or reject, a reason, all feeds or not."""
    ids, decision, reason = posted_choice(form, "record_id", "decision", ("release", "reject"), "record")
    return DecisionForm(ids, decision, reason, (form.get("all_feeds") or [""])[0] == "on")
