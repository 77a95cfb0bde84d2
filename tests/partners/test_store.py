"""The partner store keeps each record's JSON, made by SQLite for text records and by Python for the others."""

import json
from types import SimpleNamespace

from sqlalchemy import select

from partners.store import RegistryStore, record


def _manifest(package_id: str):
    return SimpleNamespace(package_id=package_id, agreement="health-insurance", sender="population", sequence=1)


def _stored(store: RegistryStore, package_id: str) -> list[str]:
    with store.engine.connect() as connection:
        query = select(record.c.content).where(record.c.package_id == package_id).order_by(record.c.id)
        return list(connection.scalars(query))


def test_text_records_are_stored_as_python_would_encode_them(tmp_path):
    store = RegistryStore(tmp_path / "registry.db")
    records = [
        {"personal_id": "001090000001", "full_name": "Nguyễn Thị Ánh", "date_of_death": None, "quote": 'a "b" \\ c'},
        {"personal_id": "001090000002", "full_name": "Đỗ Văn Hùng", "date_of_death": "2026-01-01", "quote": "\t\n"},
    ]
    store.store_package(_manifest("p-text"), "0" * 64, b"{}", b"sig", records, text_only=True)
    stored = _stored(store, "p-text")
    assert [json.loads(content) for content in stored] == records
    assert [list(json.loads(content)) for content in stored] == [sorted(r) for r in records]  # keys sorted
    assert store.record_count("p-text") == 2
    store.dispose()


def test_records_of_other_types_or_shapes_go_through_python(tmp_path):
    store = RegistryStore(tmp_path / "registry.db")
    typed = [{"personal_id": "001090000001", "active": True, "visits": 3, "address": {"ward": "00070"}}]
    ragged = [{"personal_id": "001090000001", "a": "x"}, {"personal_id": "001090000002", "b": "y"}]
    store.store_package(_manifest("p-typed"), "0" * 64, b"{}", b"sig", typed)
    store.store_package(_manifest("p-ragged"), "1" * 64, b"{}", b"sig", ragged, text_only=True)
    assert [json.loads(c) for c in _stored(store, "p-typed")] == typed  # true stays true, not 1
    assert [json.loads(c) for c in _stored(store, "p-ragged")] == ragged
    store.dispose()
