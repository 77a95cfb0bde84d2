"""The partner store keeps each record's JSON, made by SQLite for text records and by Python for the others, and a
package's records only together with the package."""

import json
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from partners.store import RegistryStore, record
from population.db import session_factory


def _manifest(package_id: str):
    return SimpleNamespace(package_id=package_id, agreement="health-insurance", sender="population", sequence=1)


def _stored(store: RegistryStore, package_id: str) -> list[str]:
    with store.engine.connect() as connection:
        query = select(record.c.content).where(record.c.package_id == package_id).order_by(record.c.id)
        return list(connection.scalars(query))


def _store(store: RegistryStore, package_id: str, write) -> int:
    """``write(session)`` stores the records; the package follows in the same transaction."""
    with session_factory(store.engine)() as session, session.begin():
        count = write(session)
        store.store_package(_manifest(package_id), "0" * 64, b"{}", b"sig", count, within=session)
    return count


@pytest.fixture
def store(tmp_path):
    store = RegistryStore(tmp_path / "registry.db")
    yield store
    store.dispose()


def test_text_records_are_stored_as_python_would_encode_them(store):
    records = [
        {"personal_id": "001090000001", "full_name": "Nguyễn Thị Ánh", "date_of_death": None, "quote": 'a "b" \\ c'},
        {"personal_id": "001090000002", "full_name": "Đỗ Văn Hùng", "date_of_death": "2026-01-01", "quote": "\t\n"},
    ]
    assert _store(store, "p-text", lambda s: store.store_records("p-text", records, text_only=True, within=s)) == 2
    stored = _stored(store, "p-text")
    assert [json.loads(content) for content in stored] == records
    assert [list(json.loads(content)) for content in stored] == [sorted(r) for r in records]  # keys sorted
    assert stored == [json.dumps(r, ensure_ascii=False, sort_keys=True, separators=(",", ":")) for r in records]
    assert store.record_count("p-text") == 2


def test_rows_are_stored_under_their_fields_in_any_order_and_counted(store):
    fields = ["updated_at", "it's", "personal_id", "full_name"]  # not sorted; a quote in a field's name
    rows = iter([["2026-07-01", "x'); DROP TABLE partner_record; --", "001090000001", "Lê Thị Hoà"],
                 ["2026-07-02", "", "001090000002", "Trần Văn Đức"]])  # fmt: skip
    assert _store(store, "p-rows", lambda s: store.store_rows("p-rows", fields, rows, within=s)) == 2
    assert [json.loads(c) for c in _stored(store, "p-rows")] == [
        {"full_name": "Lê Thị Hoà", "it's": "x'); DROP TABLE partner_record; --", "personal_id": "001090000001",
         "updated_at": "2026-07-01"},
        {"full_name": "Trần Văn Đức", "it's": "", "personal_id": "001090000002", "updated_at": "2026-07-02"},
    ]  # fmt: skip
    with store.engine.connect() as connection:
        assert list(connection.scalars(select(record.c.personal_id).order_by(record.c.id))) == [
            "001090000001", "001090000002"]  # fmt: skip
    assert _store(store, "p-one", lambda s: store.store_rows("p-one", ["status"], [["active"]], within=s)) == 1
    assert [json.loads(c) for c in _stored(store, "p-one")] == [{"status": "active"}]


def test_records_of_other_types_or_shapes_go_through_python(store):
    typed = [{"personal_id": "001090000001", "active": True, "visits": 3, "address": {"ward": "00070"}}]
    ragged = [{"personal_id": "001090000001", "a": "x"}, {"personal_id": "001090000002", "b": "y"}]
    _store(store, "p-typed", lambda s: store.store_records("p-typed", typed, within=s))
    _store(store, "p-ragged", lambda s: store.store_records("p-ragged", ragged, text_only=True, within=s))
    assert [json.loads(c) for c in _stored(store, "p-typed")] == typed  # true stays true, not 1
    assert [json.loads(c) for c in _stored(store, "p-ragged")] == ragged


def test_records_without_their_package_are_not_kept(store):
    """Records go in before the package that counts them; a transaction that never stores the package fails at
    its commit and keeps none of them."""
    transaction = session_factory(store.engine)()
    with pytest.raises(IntegrityError, match="FOREIGN KEY"), transaction as session, session.begin():
        store.store_rows("p-orphan", ["personal_id"], [["001090000001"]], within=session)
    assert store.record_count() == 0 and store.package_count() == 0


def test_fields_sqlite_cannot_make_json_of_are_refused_by_name_and_wide_records_go_through_python(store):
    """SQLite's json_object takes 127 arguments: rows of more fields, or of a field named with a NUL, are a
    ValueError saying so (the payload readers refuse them first), not an SQL error; dicts that wide take Python's."""
    wide = [f"c{n}" for n in range(70)]
    for fields in (wide, ["personal_id", "full\x00name"], ["personal_id", "personal_id"]):
        with pytest.raises(ValueError, match="at most 63, none twice, none holding a NUL"):
            _store(store, "p-bad", lambda s, f=fields: store.store_rows("p-bad", f, [["x"] * len(f)], within=s))
    assert store.record_count() == 0 and store.package_count() == 0
    records = [dict.fromkeys(wide, "x")]
    assert _store(store, "p-wide", lambda s: store.store_records("p-wide", records, text_only=True, within=s)) == 1
    assert [json.loads(c) for c in _stored(store, "p-wide")] == records


def test_a_commit_is_on_disk_before_it_returns(tmp_path):
    """WAL with synchronous=FULL: a receipt is sent after its commit, so a power loss must not take the commit."""
    store = RegistryStore(tmp_path / "registry.db")
    try:
        with store.engine.connect() as connection:
            journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar()
        assert (journal, synchronous) == ("wal", 2)  # 2 is FULL
    finally:
        store.dispose()
    with pytest.raises(ValueError, match="synchronous"):
        RegistryStore(tmp_path / "other.db", synchronous="OFF")
