"""Reconciliation of a partner's inbound dataset with the population database.

Each partner row is matched to a citizen by personal ID, then, where the ID is missing or unknown, by folded name
and date of birth (a unique match only). Each row gets one or more classes:

- ``matched``: linked, and name, date of birth and sex agree (and nothing below applies);
- ``unknown_id``: the partner's personal ID is not in the population database;
- ``name_differs``, ``date_of_birth_differs``, ``sex_differs``: linked, but the partner holds another value (a
  date of birth or sex the partner does not hold — land offices hold no sex — differs from nothing);
- ``dead_but_active``: the citizen is dead in the population database, the partner's record is still active;
- ``duplicate_link``: for identifiers with one holder who holds only one (social insurance number, tax code: the
  agency file's ``one_holder``): the identifier is linked to another citizen (earlier in this dataset, or already
  recorded), or the citizen holds another one;
- ``unmatched``: no citizen found (or several with that name and date of birth).

Which of the partner's fields hold the personal ID, name, date of birth and sex, the identifier and the status
come from the partner's agency file (``schemas/agencies/<partner>.yaml``, ``reconciliation``). Linked rows become
registry links (``population.models.RegistryLink``): active when matched and active at the partner, inactive
when the partner's status is not one of its file's active values (``inactive``; land: ``transferred`` or
``cancelled``), disputed when a class other than matched applies. Every row that is not plainly matched is
written to ``reconciliation_mismatch`` with the partner's and the population's values, and the run keeps counts
per class; ``mismatch_report`` gives rates per class, and the CSV for stewards.

Memory stays bounded: rows stream in batches, the database is asked per batch, and "seen before" lives in the
disk-backed ``CrossRowIndex``.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, func, insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from population.db import is_sqlite, session_factory
from population.models import Citizen, RegistryLink
from population.names import fold_name
from validation.crossrow import CrossRowIndex
from validation.models import MismatchResolution, ReconciliationMismatch, ReconciliationRun
from validation.reports import neutralise
from validation.suites import partner_dataset

CLASSES = ("matched", "unknown_id", "name_differs", "date_of_birth_differs", "sex_differs", "dead_but_active",
           "duplicate_link", "unmatched")  # fmt: skip
LOOKUP_ROWS = 500
REPORT_COLUMNS = ("row_number", "personal_id", "identifier", "mismatch", "partner_value", "population_value")


@dataclass
class ReconciliationReport:
    partner: str
    dataset: str
    run_id: int
    rows: int = 0
    links_written: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))

    @property
    def rates(self) -> dict[str, float]:
        return {c: (n / self.rows if self.rows else 0.0) for c, n in self.counts.items()}

    def as_dict(self) -> dict:
        return dict(partner=self.partner, dataset=self.dataset, run_id=self.run_id, rows=self.rows,
                    links_written=self.links_written, counts=self.counts,
                    rates={c: round(r, 6) for c, r in self.rates.items()})  # fmt: skip


POPULATION = ["citizen_id", "population_fold", "population_name", "population_dob", "population_sex", "death"]


def _citizens(session, condition) -> list:
    """Citizens as (personal ID, stored fold, date of birth, *POPULATION). The population's fold is taken from
    the full name as it stands, which is what the partner's name is compared with."""
    rows = session.execute(
        select(Citizen.personal_id, Citizen.name_fold, Citizen.date_of_birth, Citizen.id, Citizen.full_name,
               Citizen.sex, Citizen.date_of_death).where(condition)
    ).all()  # fmt: skip
    return [
        (pid, stored_fold, _iso(born), citizen_id, fold_name(name), name, _iso(born), sex, _iso(died))
        for pid, stored_fold, born, citizen_id, name, sex, died in rows
    ]


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _lookup(session, rows: pd.DataFrame) -> pd.DataFrame:
    """The citizen behind each partner row: by personal ID, else by a unique (folded name, date of birth)."""
    columns = ["personal_id", "fold", "dob", *POPULATION]
    ids = rows["personal_id"].dropna().unique().tolist()
    by_id = []
    for start in range(0, len(ids), LOOKUP_ROWS):
        by_id += _citizens(session, Citizen.personal_id.in_(ids[start : start + LOOKUP_ROWS]))
    found = rows[["personal_id"]].join(pd.DataFrame(by_id, columns=columns).set_index("personal_id")[POPULATION],
                                       on="personal_id")  # fmt: skip
    found = found.astype(object)
    found["linked_by"] = found["citizen_id"].notna().map({True: "personal_id", False: None})
    need = found["citizen_id"].isna() & rows["dob"].notna() & (rows["fold"] != "")
    if not need.any():
        return found[[*POPULATION, "linked_by"]]
    keys = sorted(set(zip(rows.loc[need, "fold"], rows.loc[need, "dob"], strict=True)))
    by_name = []
    for start in range(0, len(keys), LOOKUP_ROWS):
        chunk = [(fold, date.fromisoformat(dob)) for fold, dob in keys[start : start + LOOKUP_ROWS]]
        by_name += _citizens(session, tuple_(Citizen.name_fold, Citizen.date_of_birth).in_(chunk))
    unique = pd.DataFrame(by_name, columns=columns).drop_duplicates(["fold", "dob"], keep=False)
    named = rows.loc[need, ["fold", "dob"]].join(unique.set_index(["fold", "dob"])[POPULATION], on=["fold", "dob"])
    found.loc[need, POPULATION] = named[POPULATION]
    found.loc[need & found["citizen_id"].notna(), "linked_by"] = "name"
    return found[[*POPULATION, "linked_by"]]


def _cell(values, row):
    """One value of a Series (or a constant) as a plain Python value; None where missing."""
    if values is None:
        return None
    value = values.get(row) if isinstance(values, pd.Series) else values
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value.item() if hasattr(value, "item") else value


def _iso_date_or_none(value) -> str | None:
    try:
        return date.fromisoformat(value[:10]).isoformat() if isinstance(value, str) else None
    except ValueError:
        return None


class Reconciler:
    """Reconciles one partner dataset, batch by batch; ``finish`` returns the report."""

    def __init__(self, engine: Engine, partner: str, source: str, scratch_dir: Path | None = None):
        self.engine = engine
        self.spec = partner_dataset(partner)  # ValueError for an unknown partner
        self.sessions = session_factory(engine)
        self.index = CrossRowIndex(directory=scratch_dir)
        self.started = datetime.now(UTC)
        with self.sessions.begin() as session:
            run = ReconciliationRun(partner=partner, dataset=self.spec.name, source=source[-250:],
                                    started_at=self.started, rows=0, links_written=0)  # fmt: skip
            session.add(run)
            session.flush()
            self.report = ReconciliationReport(partner, self.spec.name, run.id)

    def add(self, batch: pd.DataFrame) -> pd.Series:
        """Reconcile a batch (text, indexed by row number); returns each row's classes."""
        registry = self.spec.registry
        names, born = batch[registry.match["full_name"]], batch[registry.match["date_of_birth"]]
        status = batch[registry.status] if registry.status else None
        rows = pd.DataFrame(index=batch.index)
        rows["personal_id"] = batch[registry.match["personal_id"]]
        rows["identifier"] = batch[registry.identifier]
        rows["fold"] = names.fillna("").map(fold_name)
        rows["dob"] = born.map(_iso_date_or_none)
        sex = registry.match.get("sex")  # land offices hold no sex
        rows["sex"] = batch.get(sex) if sex else None
        rows["active"] = status.isin(registry.active) if status is not None else True
        with self.sessions() as session:
            population = _lookup(session, rows)
        linked = population["citizen_id"].notna()
        mismatches: list[tuple] = []

        def flag(mask: pd.Series, mismatch: str, partner: pd.Series | None, population: pd.Series | None) -> None:
            for row in mask.index[mask.to_numpy(dtype=bool)]:
                mismatches.append((row, mismatch, _cell(partner, row), _cell(population, row)))

        flag(rows["personal_id"].notna() & (population["linked_by"] != "personal_id"), "unknown_id",
             rows["personal_id"], None)  # fmt: skip
        flag(
            linked & (rows["fold"] != population["population_fold"]),
            "name_differs",
            names,
            population["population_name"],
        )
        flag(
            linked & born.notna() & (rows["dob"] != population["population_dob"]),
            "date_of_birth_differs",
            born,
            population["population_dob"],
        )
        flag(
            linked & rows["sex"].notna() & (rows["sex"] != population["population_sex"]),
            "sex_differs",
            rows["sex"],
            population["population_sex"],
        )
        flag(
            linked & population["death"].notna() & rows["active"],
            "dead_but_active",
            status,
            "died " + population["death"].astype(str),
        )
        flag(~linked, "unmatched", names, None)
        self._duplicates(rows, population, linked, flag)
        classes = pd.DataFrame(mismatches, columns=["row_number", "mismatch", "partner_value", "population_value"])
        self._write(rows, population, linked, classes)
        self.report.rows += len(rows)
        self.report.counts["matched"] += int((linked & ~rows.index.isin(classes["row_number"])).sum())
        for mismatch, count in classes.drop_duplicates(["row_number", "mismatch"])["mismatch"].value_counts().items():
            self.report.counts[mismatch] += int(count)
        listed = classes.groupby("row_number")["mismatch"].agg(list)
        result = pd.Series([["matched"] if ok else [] for ok in linked], index=rows.index, dtype=object)
        result.loc[listed.index] = listed
        return result

    def _duplicates(self, rows: pd.DataFrame, population: pd.DataFrame, linked: pd.Series, flag) -> None:
        """The partner's identifier tied to two citizens, or a citizen holding two identifiers of a one-per-person
        kind: within this dataset (the first row seen keeps the link), and against links already recorded."""
        if not self.spec.registry.one_holder:
            return
        both = linked & rows["identifier"].notna()
        identifiers = rows.loc[both, "identifier"]
        citizens = population.loc[both, "citizen_id"].astype(int).astype(str)
        with self.index.transaction():
            _, first_citizen = self.index.first_seen("identifier", identifiers, citizens)
            _, first_identifier = self.index.first_seen("citizen", citizens, identifiers)
        duplicate = first_citizen.notna() & (first_citizen != citizens)
        duplicate |= first_identifier.notna() & (first_identifier != identifiers)
        pairs = pd.DataFrame({"identifier": identifiers, "citizen": citizens}).reset_index(names="row_number")
        recorded = self._recorded_links(identifiers.unique().tolist(), citizens.astype(int).unique().tolist())
        for key in ("identifier", "citizen"):  # the identifier held by another, the citizen holding another
            clash = pairs.merge(recorded, on=key, suffixes=("", "_recorded"))
            other = "citizen" if key == "identifier" else "identifier"
            duplicate |= identifiers.index.isin(clash.loc[clash[other] != clash[f"{other}_recorded"], "row_number"])
        flag(duplicate.reindex(rows.index, fill_value=False), "duplicate_link", rows["identifier"],
             "citizen " + population["citizen_id"].astype("Int64").astype(str))  # fmt: skip

    def _recorded_links(self, identifiers: list[str], citizen_ids: list[int]) -> pd.DataFrame:
        """Links of this partner already recorded for these identifiers or citizens (not inactive ones)."""
        found: set[tuple[str, int]] = set()
        with self.sessions() as session:
            for column, values in ((RegistryLink.identifier, identifiers), (RegistryLink.citizen_id, citizen_ids)):
                for start in range(0, len(values), LOOKUP_ROWS):
                    query = select(RegistryLink.identifier, RegistryLink.citizen_id).where(
                        RegistryLink.partner == self.spec.partner,
                        RegistryLink.status != "inactive",
                        column.in_(values[start : start + LOOKUP_ROWS]),
                    )
                    found.update((identifier, citizen) for identifier, citizen in session.execute(query))
        return pd.DataFrame(sorted(found), columns=["identifier", "citizen"]).astype(str)

    def _write(self, rows: pd.DataFrame, population: pd.DataFrame, linked: pd.Series, classes: pd.DataFrame) -> None:
        now = datetime.now(UTC)
        disputed = set(classes["row_number"])
        links = {}
        for row in rows.index[linked & rows["identifier"].notna()]:
            status = "inactive" if not rows.at[row, "active"] else "disputed" if row in disputed else "active"
            key = (rows.at[row, "identifier"], int(population.at[row, "citizen_id"]))
            links[key] = dict(citizen_id=key[1], partner=self.spec.partner, identifier_kind=self.spec.identifier,
                              identifier=key[0], status=status, last_verified_at=now)  # fmt: skip
        mismatches = [
            dict(
                run_id=self.report.run_id,
                row_number=int(row),
                personal_id=_cell(rows["personal_id"], row),
                citizen_id=_cell(population["citizen_id"], row),
                identifier=_cell(rows["identifier"], row),
                mismatch=mismatch,
                partner_value=partner,
                population_value=value,
                disagreement=disagreement_of(
                    self.spec.partner,
                    _cell(rows["personal_id"], row),
                    _cell(rows["identifier"], row),
                    mismatch,
                    partner,
                    value,
                ),
            )  # fmt: skip
            for row, mismatch, partner, value in classes.itertuples(index=False)
        ]
        dialect_insert = sqlite.insert if is_sqlite(self.engine) else postgresql.insert
        with self.sessions.begin() as session:
            if links:
                statement = dialect_insert(RegistryLink)
                session.execute(
                    statement.on_conflict_do_update(
                        index_elements=["partner", "identifier", "citizen_id"],
                        set_={"status": statement.excluded.status,
                              "last_verified_at": statement.excluded.last_verified_at},
                    ),
                    list(links.values()),
                )  # fmt: skip
            if mismatches:
                session.execute(insert(ReconciliationMismatch), mismatches)
        self.report.links_written += len(links)

    def finish(self) -> ReconciliationReport:
        self.index.close()
        with self.sessions.begin() as session:
            run = session.get(ReconciliationRun, self.report.run_id)
            run.finished_at = datetime.now(UTC)
            run.rows = self.report.rows
            run.links_written = self.report.links_written
            run.classes = self.report.counts
        return self.report


def reconcile(
    engine: Engine, partner: str, batches: Iterable[pd.DataFrame], source: str = "stream",
    scratch_dir: Path | None = None,
) -> ReconciliationReport:  # fmt: skip
    """Reconcile a partner's dataset (batches of text indexed by row number) with the population database."""
    reconciler = Reconciler(engine, partner, source, scratch_dir)
    try:
        for batch in batches:
            reconciler.add(batch)
    finally:
        report = reconciler.finish()
    return report


def write_mismatch_csv(engine: Engine, run_id: int, path: Path) -> int:
    """The mismatches of a reconciliation run as CSV for stewards (cells neutralised); returns the line count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with session_factory(engine)() as session, path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(REPORT_COLUMNS)
        query = (
            select(*(getattr(ReconciliationMismatch, c) for c in REPORT_COLUMNS))
            .where(ReconciliationMismatch.run_id == run_id)
            .order_by(ReconciliationMismatch.row_number, ReconciliationMismatch.id)
        )
        for row in session.execute(query).yield_per(10_000):
            writer.writerow([neutralise(cell) for cell in row])
            written += 1
    return written


# -- stewards' resolutions ----------------------------------------------------------------------------------------

RESOLUTIONS = ("population_right", "partner_must_correct", "escalate")
UNRESOLVED = "unresolved"
CORRECTION_COLUMNS = ("personal_id", "identifier", "mismatch", "partner_value", "population_value", "reason",
                      "resolved_at")  # fmt: skip


class ResolutionError(ValueError):
    pass


@dataclass(frozen=True)
class MismatchFilter:
    """Which mismatches a steward looks at (None: any): a partner, a run (by default each partner's latest run
    of each dataset: a partner sends its whole registry, so its latest reconciliation is how things stand), a
    class, and how they stand now (one of ``RESOLUTIONS``, or ``unresolved``)."""

    partner: str | None = None
    run: int | None = None
    mismatch: str | None = None
    resolution: str | None = None


# A resolution is of a disagreement, not of a row: the same partner's row disagreeing the same way in a later
# reconciliation is resolved already (the latest resolution of it, in whichever run, stands).
DISAGREEMENT = ("personal_id", "identifier", "mismatch", "partner_value", "population_value")


def disagreement_of(partner: str, *values: object) -> str:
    """The key of a disagreement: SHA-256 of the partner and the ``DISAGREEMENT`` values (None as nothing)."""
    text = "\x1f".join("" if value is None else str(value) for value in (partner, *values))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _latest_resolutions():
    """Each disagreement's latest resolution (a later one supersedes an earlier)."""
    latest = select(func.max(MismatchResolution.id)).group_by(MismatchResolution.disagreement)
    return select(MismatchResolution).where(MismatchResolution.id.in_(latest)).subquery()


def _mismatch_query(columns, where: MismatchFilter):
    """The mismatches a filter takes (with their latest resolution joined as ``latest``)."""
    latest = _latest_resolutions()
    query = (
        select(*columns)
        .select_from(ReconciliationMismatch)
        .join(ReconciliationRun, ReconciliationRun.id == ReconciliationMismatch.run_id)
        .outerjoin(latest, latest.c.disagreement == ReconciliationMismatch.disagreement)
    )
    if where.partner is not None:
        query = query.where(ReconciliationRun.partner == where.partner)
    if where.run is not None:
        query = query.where(ReconciliationMismatch.run_id == where.run)
    else:
        latest_runs = select(func.max(ReconciliationRun.id)).group_by(
            ReconciliationRun.partner, ReconciliationRun.dataset
        )
        query = query.where(ReconciliationMismatch.run_id.in_(latest_runs))
    if where.mismatch is not None:
        query = query.where(ReconciliationMismatch.mismatch == where.mismatch)
    if where.resolution == UNRESOLVED:
        query = query.where(latest.c.id.is_(None))
    elif where.resolution is not None:
        query = query.where(latest.c.resolution == where.resolution)
    return query, latest


def list_mismatches(
    session, where: MismatchFilter | None = None, limit: int = 50, after: int = 0
) -> list[tuple[ReconciliationMismatch, ReconciliationRun, str | None]]:
    """A page of mismatches with their run and current resolution (None: unresolved), by id."""
    query, latest = _mismatch_query([ReconciliationMismatch, ReconciliationRun], where or MismatchFilter())
    query = query.add_columns(latest.c.resolution).where(ReconciliationMismatch.id > after)
    return [tuple(row) for row in session.execute(query.order_by(ReconciliationMismatch.id).limit(limit))]


def mismatch_tally(session, run: int | None = None) -> Counter[tuple[str, str, str]]:
    """How many mismatches of each (partner, class, standing) there are, in each partner's latest reconciliation (or
    in ``run``); a standing is a resolution or ``unresolved``. One query: a page's facets are sums of it
    (``tally_counts``)."""
    query, latest = _mismatch_query([], MismatchFilter(run=run))
    standing = func.coalesce(latest.c.resolution, UNRESOLVED)
    query = query.add_columns(ReconciliationRun.partner, ReconciliationMismatch.mismatch, standing, func.count())
    query = query.group_by(ReconciliationRun.partner, ReconciliationMismatch.mismatch, standing)
    return Counter({(partner, mismatch, stand): count for partner, mismatch, stand, count in session.execute(query)})


def tally_counts(tally: Counter[tuple[str, str, str]], where: MismatchFilter, by: str) -> dict[str, int]:
    """From a ``mismatch_tally``: how many mismatches each value of ``by`` (partner, mismatch or resolution) holds
    under the filter's other facets."""
    position = {"partner": 0, "mismatch": 1, "resolution": 2}
    wanted = {"partner": where.partner, "mismatch": where.mismatch, "resolution": where.resolution}
    counts: Counter[str] = Counter()
    for key, count in tally.items():
        if all(value is None or key[position[facet]] == value for facet, value in wanted.items() if facet != by):
            counts[key[position[by]]] += count
    return dict(sorted(counts.items()))


def mismatch_counts(session, where: MismatchFilter | None = None) -> dict[str, int]:
    """How many mismatches of each class, under the filter's other facets."""
    where = where or MismatchFilter()
    return tally_counts(mismatch_tally(session, where.run), where, "mismatch")


def resolve_mismatches(
    session, mismatch_ids: Iterable[int], resolution: str, reason: str, steward: str
) -> list[MismatchResolution]:
    """Record a steward's resolution of mismatches, with a reason (audited; a later one supersedes). Commits."""
    if resolution not in RESOLUTIONS:
        raise ResolutionError(f"a resolution is one of {', '.join(RESOLUTIONS)}, not {resolution!r}")
    if not reason or not reason.strip():
        raise ResolutionError("a resolution needs a reason")
    ids = sorted(set(mismatch_ids))
    found = {
        m.id: (m, partner)
        for m, partner in session.execute(
            select(ReconciliationMismatch, ReconciliationRun.partner)
            .join(ReconciliationRun, ReconciliationRun.id == ReconciliationMismatch.run_id)
            .where(ReconciliationMismatch.id.in_(ids))
        )
    }
    missing = [i for i in ids if i not in found]
    if missing:
        raise ResolutionError(f"no mismatch {', '.join(map(str, missing))}")
    for mismatch, partner in found.values():  # rows written before the key was
        if mismatch.disagreement is None:
            mismatch.disagreement = disagreement_of(partner, *(getattr(mismatch, c) for c in DISAGREEMENT))
    now = datetime.now(UTC)
    resolutions = [MismatchResolution(mismatch_id=i, disagreement=found[i][0].disagreement, resolution=resolution,
                                      steward=steward.strip(), reason=reason.strip(), resolved_at=now)
                   for i in ids]  # fmt: skip
    session.add_all(resolutions)
    session.commit()
    return resolutions


def write_corrections_csv(session, partner: str, handle) -> int:
    """The corrections a partner must make (the mismatches of its latest reconciliation whose current resolution is
    ``partner_must_correct``) as CSV, cells neutralised against formulas; returns the line count."""
    where = MismatchFilter(partner=partner, resolution="partner_must_correct")
    query, latest = _mismatch_query(
        [
            ReconciliationMismatch.personal_id,
            ReconciliationMismatch.identifier,
            ReconciliationMismatch.mismatch,
            ReconciliationMismatch.partner_value,
            ReconciliationMismatch.population_value,
        ],
        where,
    )
    query = query.add_columns(latest.c.reason, latest.c.resolved_at).order_by(ReconciliationMismatch.id)
    writer = csv.writer(handle)
    writer.writerow(CORRECTION_COLUMNS)
    written = 0
    for row in session.execute(query):
        writer.writerow([neutralise(cell) for cell in row])
        written += 1
    return written
