import csv
import json

from population.extract import EXTRACT_SCHEMA, export_csv, extract_columns, iter_extract
from population.generator import generate


def test_extract_has_the_schema_columns_one_row_per_citizen(engine, tmp_path):
    generate(engine, 1_200, seed=4, defect_rate=0.05)
    out = tmp_path / "extract" / "citizens.csv"
    advanced = []
    assert export_csv(engine, out, progress=advanced.append) == 1_200
    assert sum(advanced) == 1_200
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    schema = json.loads(EXTRACT_SCHEMA.read_text(encoding="utf-8"))
    assert list(rows[0]) == list(schema["properties"]) == extract_columns()
    assert len(rows) == 1_200 and len({r["personal_id"] for r in rows}) == 1_200
    with_card = [r for r in rows if r["card_number"]]
    assert with_card and all(r["card_number"] == r["personal_id"] for r in with_card)
    assert all(r["household_code"].startswith("HK") for r in rows if r["relation_to_head"])
    assert not list(tmp_path.glob("extract/*.partial"))


def test_extract_limit_and_streaming(engine, tmp_path):
    generate(engine, 300, seed=4)
    assert export_csv(engine, tmp_path / "few.csv", limit=25) == 25
    first = next(iter_extract(engine))
    assert len(first) == len(extract_columns())
