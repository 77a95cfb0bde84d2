"""A full snapshot of the population for one agreement, sharded by province, sealed as ONE package.

The DAG maps one task per share of the shards (dynamic task mapping), a share per worker slot; each function returns
a small frozen dataclass of references and counts::

    window = pipeline.extract(engine, agreement, mode="full")          # fixed once, passed to every shard
    shards = snapshot_shards(engine, agreement, window)                # 34 provinces in force + "none"
    shares = task_shares(shards, tasks)                                # dealt to one task per worker slot
    results = [validate_shard(engine, agreement, window, s, work) for share in shares for s in share]  # mapped
    sealed = seal_snapshot(engine, agreement, window, results, pki, out)               # one package, 35 files
    # then outbound.deliver / collect_receipt / verify / close_window, as for any package

**Shards.** A citizen's shard is the province (one of the 34 in force since 2025-07-01) of the ward of their
permanent residence, looked up in the administrative-unit catalogue (wards in force, ``effective_to`` null).
Citizens whose permanent ward is missing, or is not a ward in force (a code retired by the 2025 reform), go to
the shard ``none``, so that nobody is lost. Membership is taken *as of the window*: a citizen whose permanent
ward changed after the window's last change is placed by the ward they had then (the change log's ``old``
value), and citizens registered after it are left to the next incremental run. So every citizen of the window
falls in exactly one shard, however long the mapped tasks take and whatever life events happen meanwhile. (The
values of a row are read when its shard runs; changes after the window go out again in the next incremental run.)

**Validation** runs the agreement's suite over whole extract rows, per shard, with two cross-row rules handled
so that they still see the whole snapshot:
- *one person under two IDs* (``duplicate_of``): the generator's duplicates, and real ones, live in another
  province as often as not. The column is computed in SQL against the whole population (the first citizen, by
  id, with the same folded name, date of birth, sex, birth-registration province and parents, through the index
  on name_fold and date_of_birth), not within the shard; the shard's own stream does not recompute it;
- *a personal ID on an earlier row* (``repeat_of_row``) is computed within the shard: personal IDs are unique in
  the population database, so it cannot fire across shards;
- the *household roll-up* is left out: households cross provinces (members moved by life events, or with a
  permanent ward not in force), so a per-shard roll-up would report whole households as headless. It is a
  warning-only rule, never holding a row back; full-snapshot runs therefore carry no household warnings
  (``lienthong quality check`` over the whole extract reports them).
- A block-severity share rule (more than 1% of personal IDs failing the gate) is judged per shard: a shard can
  block on its own share. ``max_quarantined_share`` is judged once, over the whole snapshot, in
  ``seal_snapshot``.

**Two paths** give the same records and the same quarantine:
- PostgreSQL and a CSV agreement (the fast path): the shard's extract is materialised once as text in an
  UNLOGGED scratch table, the suite runs there as SQL (``validation.pushdown``), the failing rows go to the
  quarantine, and the passing rows, minimised, are written by ``COPY (…) TO STDOUT`` straight into the staging
  file;
- otherwise (SQLite, JSON Lines): the shard's rows stream through ``StreamValidation`` and the package writers.
Both write dates ISO 8601 and timestamps as Python's ``isoformat`` in UTC; the CSV from ``COPY`` ends lines
with LF, the Python writer with CRLF (both RFC 4180 readers accept), so the two files hold the same records but
are not byte-identical to each other. Each path, rerun, rewrites a byte-identical file.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Engine, and_, case, false, func, or_, select
from sqlalchemy.orm import aliased

from exchange.agreements import Agreement, RowSelection
from exchange.package import WRITERS, HashingWriter
from exchange.pki import PkiDirectory
from feeds.disclosures import subject_hasher
from feeds.outbound import (
    FULL,
    SUFFIXES,
    CheckedRows,
    FeedWindow,
    OutboundRun,
    SealedPackage,
    StagedFile,
    check_quarantine_limit,
    deliver_and_close_window,
    extract,
    minimise,
    outbound_of,
    outbound_suite,
    package,
    pending_package,
    subject_position,
)
from lienthong_verify.schemas import date_time_text
from population.admin_units import ward_provinces
from population.changelog import changed_citizens
from population.db import create_population_engine, is_sqlite, session_factory
from population.disclosures import SubjectHasher, SubjectsFile, subjects_path
from population.extract import extract_columns, extract_query, extract_schema
from population.models import AdministrativeUnit, Change, Citizen
from validation.pushdown import DatabaseValidation
from validation.quarantine import QuarantineStore, releases_carried
from validation.runner import BATCH_ROWS, StreamValidation, ValidationOutcome
from validation.suites import BATCH_NUMBER, DUPLICATE_OF, REPEAT_OF_ROW, ROW_NUMBER, DatasetSuite

log = logging.getLogger(__name__)
NO_PROVINCE = "none"  # the shard of citizens without a permanent ward in force
PYTHON, COPY = "python", "copy"


@dataclass(frozen=True)
class Shard:
    """One province of the snapshot (``code`` as in the catalogue, e.g. "01"), or ``none``."""

    code: str
    name: str
    citizens: int  # at listing time, as of the window (for the operator; the shard's run counts again)


@dataclass(frozen=True)
class ShardResult:
    """A shard validated and staged: its payload file and figures (an XCom value)."""

    window: FeedWindow
    shard: Shard
    file: StagedFile
    rows: int
    passed: int
    quarantined: int
    validation_run: int | None
    path: str  # "copy" (PostgreSQL pushdown + COPY) or "python" (streamed)
    seconds: float


# -- shards -------------------------------------------------------------------------------------------------------


def _wards_in_force():
    return select(AdministrativeUnit.code).where(
        AdministrativeUnit.level == "ward", AdministrativeUnit.effective_to.is_(None)
    )


@dataclass(frozen=True)
class _AfterWindow:
    """What changed after the window's last change: citizens registered since (not in this snapshot) and, for
    citizens whose permanent ward changed since, the ward they had at the window's end."""

    born: frozenset[int]
    ward_then: dict[int, str | None]

    @property
    def moved(self) -> frozenset[int]:
        return frozenset(self.ward_then) | self.born


def _after_window(engine: Engine, window: FeedWindow | None) -> _AfterWindow:
    if window is None:
        return _AfterWindow(frozenset(), {})
    born: set[int] = set()
    ward_then: dict[int, str | None] = {}
    with session_factory(engine)() as session:
        query = select(Change.citizen_id, Change.changes).where(Change.sequence > window.up_to)
        for citizen_id, changes in session.execute(query.order_by(Change.sequence)):
            if citizen_id in born:
                continue
            personal_id = changes.get("personal_id")
            if isinstance(personal_id, dict) and personal_id.get("old") is None:
                born.add(citizen_id)  # created after the window
                ward_then.pop(citizen_id, None)
                continue
            ward = changes.get("permanent_ward_code")
            if isinstance(ward, dict) and citizen_id not in ward_then:
                ward_then[citizen_id] = ward.get("old")  # the earliest change after the window tells
    return _AfterWindow(frozenset(born), ward_then)


def _province_of(ward: str | None, provinces: dict[str, str]) -> str:
    """The shard of a citizen living in ``ward``: its province when the ward is in force, else ``none``."""
    return provinces.get(ward, NO_PROVINCE) if ward is not None else NO_PROVINCE


def _shard_condition(code: str, after: _AfterWindow, provinces: dict[str, str]):
    """Which citizens are in the shard, as of the window."""
    ward = Citizen.permanent_ward_code
    if code == NO_PROVINCE:
        now = or_(ward.is_(None), ward.not_in(_wards_in_force()))
    else:  # the province's wards by code, so that the index on the citizen's ward finds them
        now = ward.in_(sorted(w for w, province in provinces.items() if province == code))
    if not after.moved:
        return now
    pinned = sorted(citizen for citizen, then in after.ward_then.items() if _province_of(then, provinces) == code)
    return or_(and_(Citizen.id.not_in(sorted(after.moved)), now), Citizen.id.in_(pinned) if pinned else false())


def snapshot_shards(engine: Engine, agreement: Agreement, window: FeedWindow | None = None) -> list[Shard]:
    """The shards of a full snapshot: every province in force (34 since 2025-07-01), then ``none``; each with
    its number of citizens (as of the window, when given). The list does not depend on the data, so the mapped
    tasks are the same on every run."""
    outbound_of(agreement)
    after = _after_window(engine, window)
    provinces = ward_provinces(engine)
    with engine.connect() as connection:
        units = connection.execute(
            select(AdministrativeUnit.code, AdministrativeUnit.name)
            .where(AdministrativeUnit.level == "province", AdministrativeUnit.effective_to.is_(None))
            .order_by(AdministrativeUnit.code)
        ).all()
    counts = _shard_counts(engine, after, provinces)
    listed = [*units, (NO_PROVINCE, "no permanent ward in force")]
    return [Shard(code, name, counts[code]) for code, name in listed]


def task_shares(shards: list[Shard], tasks: int) -> list[list[Shard]]:
    """The shards dealt to at most ``tasks`` mapped tasks, balanced by citizens: each shard in turn, the largest
    first, to the share with the fewest citizens so far; each share in shard order, the share of the largest shard
    first (the scheduler starts it first). A task on a cluster pays the worker's start-up (parsing the DAG file,
    importing Great Expectations: seconds), so a snapshot has one task per worker slot rather than one per
    province; the package holds a file per province either way."""
    shares: list[list[Shard]] = [[] for _ in range(max(1, min(tasks, len(shards))))]
    citizens = [0] * len(shares)
    for shard in sorted(shards, key=lambda s: -s.citizens):
        lightest = citizens.index(min(citizens))
        shares[lightest].append(shard)
        citizens[lightest] += shard.citizens
    order = {shard.code: position for position, shard in enumerate(shards)}
    return [sorted(share, key=lambda s: order[s.code]) for share in shares if share]


def _shard_counts(engine: Engine, after: _AfterWindow, provinces: dict[str, str]) -> Counter[str]:
    """Citizens per shard as of the window, placed as ``_shard_condition`` places them: the citizens counted by
    ward in one pass over the ward index, each ward's count going to its province (or ``none``); citizens whose
    ward changed after the window by the ward they had then; those registered after it not at all."""
    by_ward = select(Citizen.permanent_ward_code, func.count()).group_by(Citizen.permanent_ward_code)
    if after.moved:
        by_ward = by_ward.where(Citizen.id.not_in(sorted(after.moved)))
    counts: Counter[str] = Counter()
    with engine.connect() as connection:
        for ward, count in connection.execute(by_ward):
            counts[_province_of(ward, provinces)] += count
        if after.ward_then:
            present = connection.scalars(select(Citizen.id).where(Citizen.id.in_(sorted(after.ward_then))))
            counts.update(_province_of(after.ward_then[citizen], provinces) for citizen in present)
    return counts


# -- the shard's rows ---------------------------------------------------------------------------------------------


def _duplicate_of(after: _AfterWindow):
    """The personal ID of the first citizen (by id) anywhere in the snapshot with the same person key, when that
    is not this citizen: the duplicate-person rule across every shard."""
    first = aliased(Citizen)
    same = [
        first.name_fold == Citizen.name_fold,
        first.date_of_birth == Citizen.date_of_birth,
        first.id < Citizen.id,
        *(
            func.coalesce(getattr(first, c), "") == func.coalesce(getattr(Citizen, c), "")
            for c in ("sex", "birth_registration_province", "father_personal_id", "mother_personal_id")
        ),
    ]
    if after.born:
        same.append(first.id.not_in(sorted(after.born)))
    earliest = select(first.personal_id).where(*same).order_by(first.id).limit(1).correlate(Citizen)
    known = and_(Citizen.full_name.isnot(None), Citizen.date_of_birth.isnot(None))
    return case((known, earliest.scalar_subquery())).label(DUPLICATE_OF)


def _shard_query(
    engine: Engine,
    shard: Shard,
    after: _AfterWindow,
    provinces: dict[str, str],
    columns: list[str],
    window: FeedWindow,
    rows: RowSelection,
):
    """The shard's extract rows (these columns) that the agreement selects (``rows``: its field tests, and its
    events among the changes up to the window's end), in citizen order, with ``duplicate_of`` computed over the
    whole snapshot."""
    per_citizen = engine.dialect.name == "postgresql"
    query = extract_query(columns=columns, card_per_citizen=per_citizen, where=rows.where)
    if rows.events:
        query = query.where(Citizen.id.in_(changed_citizens(0, window.up_to, rows.events)))
    return query.where(_shard_condition(shard.code, after, provinces)).add_columns(_duplicate_of(after))


def _shard_suite(agreement: Agreement, as_of: date | None) -> DatasetSuite:
    """The agreement's suite for one shard: no household roll-up (households cross provinces), and the person
    key switched off in the stream's cross-row index (``duplicate_of`` arrives computed over the snapshot)."""
    suite = outbound_suite(agreement, as_of)
    return replace(suite, households=None, spec=replace(suite.spec, person_key=()))


def _iso(value) -> str:
    return date_time_text(value) if isinstance(value, datetime) else value.isoformat()


def _shard_frames(engine: Engine, query, batch_rows: int):
    """The shard's rows as batches of text indexed by row number from 1 (as ``runner.extract_frames``), with
    ``duplicate_of``; timestamps in UTC."""
    columns = [column.name for column in query.selected_columns]
    formats = {c: p.get("format") for c, p in extract_schema()["properties"].items()}
    dated = [c for c in columns if formats.get(c) in ("date", "date-time")]
    start = 1
    with engine.connect() as connection:
        if not is_sqlite(engine):
            connection.exec_driver_sql("SET TIME ZONE 'UTC'")
            # A server-side cursor is planned for its first rows (cursor_tuple_fraction 0.1): a walk of the
            # whole citizen table in id order, probing the ward catalogue per row. Every row is read, so plan
            # for all of them (hash joins, one sort), and skip JIT compilation, which costs more than it saves.
            connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
            connection.exec_driver_sql("SET LOCAL jit = off")
        result = connection.execution_options(stream_results=True, yield_per=batch_rows).execute(query)
        for rows in result.partitions(batch_rows):
            rows = [tuple(row) for row in rows]
            frame = pd.DataFrame.from_records(rows, columns=columns, index=pd.RangeIndex(start, start + len(rows)))
            for column in dated:
                frame[column] = frame[column].map(_iso, na_action="ignore")
            yield frame.astype("str")
            start += len(rows)


def _staging(agreement: Agreement, window: FeedWindow, shard: Shard, work_dir: Path) -> tuple[str, Path]:
    direction = outbound_of(agreement)
    name = f"{direction.dataset}-p{shard.code}{SUFFIXES[agreement.format]}"
    folder = Path(work_dir) / agreement.name / f"full-{window.after}-{window.up_to}"
    folder.mkdir(parents=True, exist_ok=True)
    return name, folder / name


def fast_path_applies(engine: Engine, agreement: Agreement) -> bool:
    """Pushdown + COPY: a PostgreSQL source and a CSV agreement."""
    return engine.dialect.name == "postgresql" and agreement.format == "csv"


# -- validate one shard ---------------------------------------------------------------------------------------


def validate_shard(
    engine: Engine,
    agreement: Agreement,
    window: FeedWindow,
    shard: Shard,
    work_dir: Path,
    as_of: date | None = None,
    *,
    fast: bool | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ShardResult:
    """Validate one shard's whole extract rows with the agreement's suite, quarantine the failing rows, and write
    the passing rows, minimised to the agreement's fields, to the shard's staging file (rewritten on a retry,
    which also records another validation run). ``fast`` chooses the path (default: pushdown + COPY when the
    source is PostgreSQL and the agreement CSV). Raises ``DatasetBlocked`` on a block-severity failure."""
    if window.mode != FULL:
        raise ValueError("a snapshot shard needs a full window (pipeline.extract(..., mode='full'))")
    fast = fast_path_applies(engine, agreement) if fast is None else fast
    if fast and not fast_path_applies(engine, agreement):
        raise ValueError("the COPY path needs PostgreSQL and a CSV agreement")
    started = time.perf_counter()
    direction = outbound_of(agreement)
    fields = list(direction.fields)
    suite = _shard_suite(agreement, as_of)
    after = _after_window(engine, window)
    wanted = {*suite.columns, *fields}  # what the suite reads and the partner receives, nothing more
    columns = [c for c in extract_columns() if c in wanted]
    query = _shard_query(engine, shard, after, ward_provinces(engine), columns, window, direction.rows)
    name, staging = _staging(agreement, window, shard, work_dir)
    source = f"{agreement.name}: full snapshot up to change {window.up_to}, shard {shard.code}"
    store = QuarantineStore(engine, direction.dataset, suite.suite.name, source, agreement.name)
    partial = staging.with_name(staging.name + ".partial")
    hasher = subject_hasher()  # the disclosure index's subjects are written beside the staged file
    if fast:
        outcome, passed = _validate_in_database(engine, suite, query, fields, store, source, partial, hasher)
    else:
        outcome, passed = _validate_streamed(engine, suite, query, fields, store, source, partial, batch_rows,
                                             hasher)  # fmt: skip
    subjects_path(partial).replace(subjects_path(staging))
    partial.replace(staging)
    if passed != outcome.passed:
        raise RuntimeError(f"{source}: wrote {passed} rows, validation passed {outcome.passed}")
    seconds = time.perf_counter() - started
    log.info("%s: %d rows, %d passed, %d quarantined (%s path, %.1f s)", source, outcome.rows, passed,
             outcome.quarantined, COPY if fast else PYTHON, seconds)  # fmt: skip
    return ShardResult(window, shard, StagedFile(name, str(staging), passed), outcome.rows, passed,
                       outcome.quarantined, outcome.run_id, COPY if fast else PYTHON, round(seconds, 3))  # fmt: skip


def validate_shards(
    engine: Engine,
    agreement: Agreement,
    window: FeedWindow,
    shards: list[Shard],
    work_dir: Path,
    as_of: date | None = None,
    *,
    fast: bool | None = None,
    workers: int = 1,
) -> list[ShardResult]:
    """``validate_shard`` for every shard, in shard order; with ``workers`` > 1, in that many worker processes
    (each with its own engine), as the DAG's mapped tasks run under a parallel executor. The results are the same
    either way: each shard is validated on its own."""
    if workers <= 1 or len(shards) <= 1:
        return [validate_shard(engine, agreement, window, shard, work_dir, as_of, fast=fast) for shard in shards]
    url = engine.url.render_as_string(hide_password=False)
    largest_first = sorted(shards, key=lambda shard: -shard.citizens)  # the long shards do not come last
    engine.dispose()  # no pooled connection is copied into a forked worker
    with ProcessPoolExecutor(max_workers=min(workers, len(shards)), mp_context=worker_context()) as pool:
        futures = {s.code: pool.submit(_validate_in_worker, url, agreement, window, s, work_dir, as_of, fast)
                   for s in largest_first}  # fmt: skip
        return [futures[shard.code].result() for shard in shards]


def worker_context():
    """How the shards' worker processes start: forked from this one when it runs a single thread, so that each
    starts with Great Expectations and the rest imported (as Airflow's supervisor forks each task's process); a
    spawned worker first spends about 7 s importing them. Spawned when other threads run (a partner in the same
    process, a connection pool's), since a fork copies their locks in whatever state they are."""
    return multiprocessing.get_context("fork" if threading.active_count() == 1 else "spawn")


_worker_engines: dict[str, Engine] = {}


def _validate_in_worker(url, agreement, window, shard, work_dir, as_of, fast) -> ShardResult:
    engine = _worker_engines.get(url) or _worker_engines.setdefault(url, create_population_engine(url))
    return validate_shard(engine, agreement, window, shard, work_dir, as_of, fast=fast)


def _validate_streamed(engine, suite, query, fields, store, source, target: Path, batch_rows: int,
                       hasher: SubjectHasher):  # fmt: skip
    run = StreamValidation(suite, sinks=[store], waivers=store.waivers, source=source)
    validated = [*suite.columns, DUPLICATE_OF]  # the suite's columns, and the duplicate found over the snapshot
    batches = (frame[validated] for frame in _shard_frames(engine, query, batch_rows))
    passing = (minimise(ok, fields) for ok in run.passing(batches))
    with target.open("wb") as handle, SubjectsFile(subjects_path(target), hasher) as subjects:
        rows = subjects.tap((row for ok in passing for row in _plain_rows(ok)), subject_position(fields))
        sink = HashingWriter(handle)
        passed = WRITERS[Path(target.name.removesuffix(".partial")).suffix](fields, rows, sink)
        sink.flush()
    return run.outcome, passed


def _plain_rows(batch: pd.DataFrame):
    plain = batch.astype(object).where(batch.notna(), None)
    return plain.itertuples(index=False, name=None)


# -- the fast path: pushdown and COPY --------------------------------------------------------------------------


def _text(column, kind: str | None):
    """A column as the text the Python path writes: ISO dates; timestamps as ``datetime.isoformat`` in UTC
    (microseconds only when not zero)."""
    if kind == "date":
        return func.to_char(column, "YYYY-MM-DD")
    if kind == "date-time":
        utc = sa.func.timezone("UTC", column)
        fraction = case((func.date_trunc("second", utc) != utc, func.to_char(utc, ".US")), else_="")
        return func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS') + fraction + "+00:00"
    return sa.cast(column, sa.Text)


def _snapshot_select(suite: DatasetSuite, query):
    """The shard's extract as text, numbered in citizen order, with the cross-row columns: the shape
    ``DatabaseValidation`` validates."""
    kinds = {c: p.get("format") for c, p in extract_schema()["properties"].items()}
    e = query.add_columns(Citizen.id.label("_citizen_id")).order_by(None).subquery("e")
    n = select(e, func.row_number().over(order_by=e.c._citizen_id).label(ROW_NUMBER)).subquery("n").c
    columns = [n[ROW_NUMBER], sa.literal(1).label(BATCH_NUMBER)]  # one batch: the rules run over the whole table
    columns += [_text(n[c], kinds.get(c)).label(c) for c in suite.columns]
    columns.append(n[DUPLICATE_OF])
    if suite.spec.repeat_key:
        # A personal ID is unique in the citizen table and the extract has one row per citizen (its card looked
        # up per citizen), so no shard row repeats an earlier one's ID: the column is there, empty, for the rule.
        if suite.spec.repeat_key != "personal_id":
            raise NotImplementedError(f"snapshot shards know personal_id to be unique, not {suite.spec.repeat_key}")
        columns.append(sa.cast(sa.null(), sa.BigInteger).label(REPEAT_OF_ROW))
    return select(*columns)


class _ShardValidation(DatabaseValidation):
    """``DatabaseValidation`` over one shard's rows (its scratch table made from the shard's query)."""

    def __init__(self, engine: Engine, suite: DatasetSuite, query, **settings):
        super().__init__(engine, suite, **settings)
        self.query = query

    def __enter__(self) -> _ShardValidation:
        select_ = _snapshot_select(self.suite, self.query)
        compiled = select_.compile(self.engine, compile_kwargs={"literal_binds": True})
        with self.engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL jit = off")  # JIT compilation costs more than it saves here
            connection.exec_driver_sql("SET LOCAL work_mem = '64MB'")  # the shard's sort by citizen, in memory
            # the shards run side by side as mapped tasks: parallel workers per shard would only oversubscribe
            connection.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
            connection.execute(sa.text(f"CREATE UNLOGGED TABLE {self.snapshot} AS {compiled}"))
            connection.execute(sa.text(f"CREATE INDEX {self.snapshot}_{ROW_NUMBER} ON {self.snapshot} ({ROW_NUMBER})"))
            connection.execute(sa.text(f"CREATE UNLOGGED TABLE {self.held} ({ROW_NUMBER} BIGINT PRIMARY KEY)"))
        return self

    def copy_passing(self, fields: list[str], target: Path, subjects: SubjectsFile | None = None) -> int:
        """COPY the rows not held back, minimised, in row order, as CSV with a header, into ``target``. With
        ``subjects``, and the personal ID the first field (as every agreement has it), each row's subject is taken
        on the way: PostgreSQL sends a row a message, and a valid personal ID (12 digits) is never quoted."""
        tapped = subjects is not None and fields[0] == "personal_id"
        rows = -1  # the header comes first
        with target.open("wb") as handle:
            sink = HashingWriter(handle)
            if tapped:
                add, sink_write, single = subjects.add, sink.write, len(fields) == 1

                def write(block) -> None:
                    nonlocal rows
                    sink_write(block)
                    if rows >= 0:
                        line = bytes(block)
                        add(line.rstrip(b"\r\n") if single else line[: line.index(b",")])
                    rows += 1
            else:
                write = sink.write
            count = self._copy_passing(", ".join(f"s.{c}" for c in fields), "csv, HEADER true", write)
            sink.flush()
        if subjects is not None and (not tapped or rows != count):
            raise ValueError("the subjects were not taken from the COPY's rows: use copy_subjects")
        return count

    def copy_subjects(self, target: Path, hasher: SubjectHasher) -> int:
        """The personal IDs of the rows not held back as the disclosure index's subjects (the HMAC made in this
        process: the key does not reach the database), into the sidecar ``target``; read a batch at a time."""
        sql = (f"SELECT s.personal_id FROM {self.snapshot} s WHERE NOT EXISTS (SELECT 1 FROM {self.held} h "
               f"WHERE h.{ROW_NUMBER} = s.{ROW_NUMBER})")  # fmt: skip
        with SubjectsFile(target, hasher) as subjects, self.engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=50_000).exec_driver_sql(sql)
            for (personal_id,) in result:
                subjects.add(personal_id)
        return subjects.count

    def _copy_passing(self, columns: str, options: str, write) -> int:
        sql = (f"SELECT {columns} FROM {self.snapshot} s WHERE NOT EXISTS (SELECT 1 FROM {self.held} h "
               f"WHERE h.{ROW_NUMBER} = s.{ROW_NUMBER}) ORDER BY s.{ROW_NUMBER}")  # fmt: skip
        with self.engine.connect() as connection:
            with connection.connection.driver_connection.cursor() as cursor:
                with cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT {options})") as copy:
                    for block in copy:
                        write(block)
                count = cursor.rowcount
            connection.rollback()
        return count


def _validate_in_database(engine, suite, query, fields, store, source, target: Path, hasher: SubjectHasher):
    with _ShardValidation(engine, suite, query, sinks=[store], waivers=store.waivers) as run:
        run.tallies.outcome.source = source
        outcome = run.validate()
        if fields[0] == "personal_id":  # the subjects taken from the payload's rows as they are copied
            with SubjectsFile(subjects_path(target), hasher) as subjects:
                passed = run.copy_passing(fields, target, subjects)
        else:
            passed = run.copy_passing(fields, target)
            if "personal_id" in fields:
                run.copy_subjects(subjects_path(target), hasher)
            else:
                subjects_path(target).write_bytes(b"")
    return outcome, passed


# -- seal ---------------------------------------------------------------------------------------------------------


def seal_snapshot(
    engine: Engine,
    agreement: Agreement,
    window: FeedWindow,
    results: list[ShardResult],
    pki: PkiDirectory,
    out_dir: Path,
) -> SealedPackage:
    """Seal the shards into ONE package of the feed (one payload file per shard, in shard order), after checking
    that every shard of the snapshot is there once, for this window, and that the quarantined share over the
    whole snapshot is within the agreement's ``max_quarantined_share`` (else ``DatasetBlocked``)."""
    results = sorted(results, key=lambda r: (r.shard.code == NO_PROVINCE, r.shard.code))
    codes = [r.shard.code for r in results]
    if len(set(codes)) != len(codes):
        raise ValueError(f"{agreement.name}: a shard is given twice")
    wrong = [r.shard.code for r in results if r.window != window]
    if wrong:
        raise ValueError(f"{agreement.name}: shards {', '.join(wrong)} were validated for another window")
    expected = _province_codes(engine) | {NO_PROVINCE}
    if set(codes) != expected:
        missing, extra = sorted(expected - set(codes)), sorted(set(codes) - expected)
        raise ValueError(f"{agreement.name}: the snapshot's shards do not match the catalogue "
                         f"(missing {missing}, unknown {extra})")  # fmt: skip
    suite = outbound_suite(agreement).suite.name
    rows, passed, quarantined = (sum(getattr(r, k) for r in results) for k in ("rows", "passed", "quarantined"))
    outcome = ValidationOutcome(outbound_of(agreement).dataset, suite, f"{agreement.name}: full snapshot",
                                datetime.now(UTC), rows=rows, passed=passed, quarantined=quarantined)  # fmt: skip
    check_quarantine_limit(outbound_of(agreement), outcome)
    # the stewards' releases the snapshot carries (its every citizen, the released let through): settled by it
    runs = [r.validation_run for r in results if r.validation_run is not None]
    with session_factory(engine)() as session:
        carried = releases_carried(session, agreement.name, outbound_of(agreement).dataset, runs)
    checked = CheckedRows(window, tuple(r.file for r in results), rows, passed, quarantined, suite, None,
                          tuple(d.manifest_entry() for d in carried), tuple(d.record for d in carried))  # fmt: skip
    return package(engine, agreement, checked, pki, out_dir)


def _province_codes(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(
            connection.scalars(
                select(AdministrativeUnit.code).where(
                    AdministrativeUnit.level == "province", AdministrativeUnit.effective_to.is_(None)
                )
            )
        )


# -- the whole run, in process -----------------------------------------------------------------------------------


def run_snapshot(
    engine: Engine,
    agreement: Agreement,
    pki: PkiDirectory,
    work_dir: Path,
    *,
    as_of: date | None = None,
    fast: bool | None = None,
    workers: int = 1,
    receipt_timeout: float = 60.0,
) -> OutboundRun:
    """A full snapshot end to end (what the DAG does with mapped tasks): the window, every shard validated and
    staged (shard after shard, or in ``workers`` processes), one package sealed, delivered, the receipt verified, the
    checkpoint moved. While a sealed snapshot waits for its receipt, a rerun resends it."""
    window = extract(engine, agreement, mode=FULL)
    if window.pending is not None:
        sealed = pending_package(window)
    else:
        staging = Path(work_dir) / "staging"
        shards = snapshot_shards(engine, agreement, window)
        results = validate_shards(engine, agreement, window, shards, staging, as_of, fast=fast, workers=workers)
        sealed = seal_snapshot(engine, agreement, window, results, pki, Path(work_dir) / "packages")
    return deliver_and_close_window(engine, agreement, sealed, pki, receipt_timeout)
