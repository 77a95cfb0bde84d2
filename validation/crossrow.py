"""Cross-row checks on a stream, in bounded memory: first occurrences of a key, households' members, and which
rows were flagged (so that a row is counted once per dimension however many rules it fails).

A batch alone cannot tell that a record repeats one three batches back. This index remembers, for the whole run,
the first row of every person key and of every value of the dataset's unique key, and which rows belong to
which household, in a SQLite file in a temporary directory: memory stays flat however long the stream (the
file grows by about 60 bytes a row and is deleted at the end).

Keys are 64-bit hashes (pandas' ``hash_pandas_object``). Two different keys share a hash with probability about
n²/2⁶⁵: one in 30 million at a million rows. A collision would flag a row for a steward, never drop one.

The first occurrence is the one kept: later rows are the duplicates, the way a steward reads a register.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from population.names import fold_name
from validation.suites import DIMENSIONS, DUPLICATE_OF, HEADS, MEMBERS, REPEAT_OF_ROW, ROW_NUMBER

SEPARATOR = "\x1f"  # between the parts of a key: a character no field holds
ROLLUP_ROWS = 100_000


class CrossRowIndex:
    """Remembers what one validation run has seen. Use as a context manager, or call ``close``."""

    def __init__(
        self,
        person_key: tuple[str, ...] = (),
        repeat_key: str | None = None,
        households: bool = False,
        directory: Path | None = None,
    ):
        self.person_key = person_key
        self.repeat_key = repeat_key
        self.households = households
        self._directory = Path(tempfile.mkdtemp(prefix="lienthong-crossrow-", dir=directory))
        self._db = sqlite3.connect(self._directory / "index.db")  # one transaction per batch: commit() below
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-32000", "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._kinds: set[str] = set()
        self._db.execute("CREATE TEMP TABLE incoming (key INTEGER PRIMARY KEY, row_number INTEGER, value TEXT)")
        self._db.execute(
            "CREATE TABLE member (household_code TEXT, row_number INTEGER, personal_id TEXT, is_head INTEGER)"
        )
        self._db.execute(
            "CREATE TABLE flag (row_number INTEGER, dimension TEXT, held INTEGER, PRIMARY KEY (row_number, dimension))"
            " WITHOUT ROWID"
        )
        self.rows = 0

    def __enter__(self) -> CrossRowIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    # -- per batch ------------------------------------------------------------------------------------------

    def annotate(self, batch: pd.DataFrame) -> None:
        """Add the derived columns to a batch (indexed by row number), in place: ``duplicate_of``, the personal
        ID of an earlier record of the same person; ``repeat_of_row``, the earlier row with the same key."""
        with self.transaction():
            self._annotate(batch)

    def transaction(self) -> sqlite3.Connection:
        return self._db  # as a context manager: one transaction

    def _annotate(self, batch: pd.DataFrame) -> None:
        present = set(batch.columns)  # a missing column is for the suite's table rule to report
        if self.person_key and {*self.person_key, "personal_id"} <= present:
            parts = [batch[c].fillna("") for c in self.person_key]
            parts[0] = parts[0].map(fold_name)
            complete = batch[self.person_key[0]].notna() & batch[self.person_key[1]].notna()
            key = parts[0].str.cat(parts[1:], sep=SEPARATOR)
            _, earlier_value = self.first_seen("person", key[complete], batch["personal_id"][complete])
            batch[DUPLICATE_OF] = earlier_value.reindex(batch.index)
        if self.repeat_key in present:
            values = batch[self.repeat_key][batch[self.repeat_key].notna()]
            earlier_row, _ = self.first_seen("repeat", values, values)
            batch[REPEAT_OF_ROW] = earlier_row.reindex(batch.index).astype("Int64")
        if self.households and {"household_code", "personal_id", "relation_to_head"} <= present:
            members = batch.loc[batch["household_code"].notna(), ["household_code", "personal_id", "relation_to_head"]]
            self._db.executemany(
                "INSERT INTO member VALUES (?, ?, ?, ?)",
                zip(
                    members["household_code"],
                    members.index.tolist(),
                    members["personal_id"].astype(object).where(members["personal_id"].notna(), None),
                    (members["relation_to_head"] == "head").astype(int).tolist(),
                    strict=True,
                ),
            )

    def first_seen(self, kind: str, keys: pd.Series, values: pd.Series) -> tuple[pd.Series, pd.Series]:
        """For each row (keys and values indexed by row number): the row number and value of the first row with
        the same key of this kind, if that is an earlier row (in this batch or a previous one); missing for
        first occurrences. Call inside a transaction (``with index.transaction():``) for speed."""
        table = f"seen_{kind}"
        if kind not in self._kinds:
            self._db.execute(f"CREATE TABLE {table} (key INTEGER PRIMARY KEY, row_number INTEGER, value TEXT)")
            self._kinds.add(kind)
        hashes = pd.util.hash_pandas_object(keys, index=False).to_numpy().view("int64")
        frame = pd.DataFrame({"key": hashes, "value": values.to_numpy(dtype=object)}, index=keys.index)
        firsts = frame[~frame["key"].duplicated()]
        self._db.executemany(
            "INSERT INTO incoming VALUES (?, ?, ?)",
            zip(firsts["key"].tolist(), firsts.index.tolist(), firsts["value"].tolist(), strict=True),
        )
        seen = self._db.execute(
            f"SELECT i.key, s.row_number, s.value FROM incoming i JOIN {table} s ON s.key = i.key"
        ).fetchall()
        self._db.execute(f"INSERT OR IGNORE INTO {table} SELECT key, row_number, value FROM incoming")
        self._db.execute("DELETE FROM incoming")
        first_row = pd.Series(firsts.index.to_numpy(), index=firsts["key"].to_numpy())
        first_value = pd.Series(firsts["value"].to_numpy(), index=firsts["key"].to_numpy())
        if seen:  # an earlier batch had the key first
            earlier = pd.DataFrame(seen, columns=["key", "row_number", "value"]).set_index("key")
            first_row.loc[earlier.index] = earlier["row_number"].to_numpy()
            first_value.loc[earlier.index] = earlier["value"].to_numpy()
        row_of_first = frame["key"].map(first_row)
        repeated = row_of_first.to_numpy() != frame.index.to_numpy()
        return row_of_first.where(repeated).astype("Int64"), frame["key"].map(first_value).where(repeated)

    def tally(self, findings: pd.DataFrame, rows: int) -> None:
        """Count a batch of ``rows`` rows and remember which of them its findings flag, by dimension."""
        self.rows += rows
        with self._db:
            self._flag(findings)

    def _flag(self, findings: pd.DataFrame) -> None:
        flags = findings.assign(held=(findings["severity"] == "quarantine").astype(int))
        flags = flags.groupby(["row_number", "dimension"], sort=False)["held"].max().reset_index()
        self._db.executemany(
            "INSERT INTO flag VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET held = MAX(held, excluded.held)",
            zip(flags["row_number"].tolist(), flags["dimension"].tolist(), flags["held"].tolist(), strict=True),
        )

    def counts(self) -> tuple[int, int, int, dict[str, int]]:
        """Rows seen, rows held back, rows flagged, rows flagged per dimension."""
        held, flagged = self._db.execute(
            "SELECT COUNT(DISTINCT CASE WHEN held = 1 THEN row_number END), COUNT(DISTINCT row_number) FROM flag"
        ).fetchone()
        by_dimension = dict(self._db.execute("SELECT dimension, COUNT(*) FROM flag GROUP BY dimension").fetchall())
        return self.rows, held, flagged, {d: by_dimension.get(d, 0) for d in DIMENSIONS}

    # -- at the end --------------------------------------------------------------------------------------------

    def household_rollup(self) -> Iterator[pd.DataFrame]:
        """Every household seen, in batches: household_code, heads, members."""
        cursor = self._db.execute(
            f"SELECT household_code, SUM(is_head) AS {HEADS}, COUNT(*) AS {MEMBERS} FROM member "
            "GROUP BY household_code ORDER BY household_code"
        )
        while rows := cursor.fetchmany(ROLLUP_ROWS):
            yield pd.DataFrame(rows, columns=["household_code", HEADS, MEMBERS])

    def household_members(self, household_codes: list[str]) -> pd.DataFrame:
        """The rows of the given households: row_number, personal_id, household_code."""
        self._db.execute("CREATE INDEX IF NOT EXISTS member_household ON member (household_code)")
        found = []
        for start in range(0, len(household_codes), 500):
            codes = household_codes[start : start + 500]
            found += self._db.execute(
                f"SELECT row_number, personal_id, household_code FROM member WHERE household_code IN "
                f"({', '.join('?' * len(codes))}) ORDER BY row_number",
                codes,
            ).fetchall()
        return pd.DataFrame(found, columns=[ROW_NUMBER, "personal_id", "household_code"])
