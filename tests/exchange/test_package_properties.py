"""Property: whatever records go in (Vietnamese text, quotes, commas, line breaks, nulls, numbers), a package
built from them verifies, decrypts, and gives the same records back; and the same records give the same bytes."""

import csv
import io
import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.package import PackageBuilder, accept_package, verify_package
from exchange.pki import ENCRYPTION, load_recipient
from population.db import create_population_engine
from tests.exchange.conftest import PASSWORD, SCHEMA

pytestmark = pytest.mark.slow
VIETNAMESE = "aăâbcdđeêghiklmnoôơpqrstuưvxyàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵĐĂÂÊÔƠƯ"
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(VIETNAMESE + " ,;\"'\n\r\t"),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    max_size=40,
)
COLUMNS = ("personal_id", "full_name", "address", "note")
VALUES = st.one_of(st.none(), TEXT, st.integers(-(2**53), 2**53), st.booleans())
RECORDS = st.lists(st.fixed_dictionaries({column: VALUES for column in COLUMNS}), max_size=30)
EXAMPLES = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def engine(tmp_path_factory, sqlite_template):
    path = tmp_path_factory.mktemp("properties") / "population.db"
    shutil.copy(sqlite_template, path)
    created = create_population_engine(f"sqlite:///{path}")
    yield created
    created.dispose()


@pytest.fixture(scope="module")
def recipient(pki):
    return load_recipient(pki.certificate("health", ENCRYPTION), pki.key("health", ENCRYPTION), PASSWORD)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("packages")


def _round_trip(engine, out, signer, trust, recipient, records, name, encrypt):
    with PackageBuilder(out, agreement="property", recipient="health", schema=SCHEMA, signer=signer,
                        encrypt_for=recipient.certificate if encrypt else None) as builder:  # fmt: skip
        builder.add_records(name, records, columns=COLUMNS)
        built = builder.seal(engine)
    verified = verify_package(built.path, trust, engine=engine, recipient=recipient if encrypt else None,
                              decrypt_to=out / f"{built.path.name}.plain")  # fmt: skip
    assert verified.manifest.record_count == len(records)
    accept_package(engine, verified)  # the next one must follow it
    payload = verified.decrypted[0] if encrypt else built.path / "data" / name
    return payload.read_bytes()


@EXAMPLES
@given(records=RECORDS, encrypt=st.booleans())
def test_csv_round_trip(engine, out, population_signer, trust, recipient, records, encrypt):
    data = _round_trip(engine, out, population_signer, trust, recipient, records, "records.csv", encrypt)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows[0] == list(COLUMNS)
    assert rows[1:] == [["" if record[c] is None else str(record[c]) for c in COLUMNS] for record in records]


@EXAMPLES
@given(records=RECORDS, encrypt=st.booleans())
def test_jsonl_round_trip(engine, out, population_signer, trust, recipient, records, encrypt):
    data = _round_trip(engine, out, population_signer, trust, recipient, records, "records.jsonl", encrypt)
    assert [json.loads(line) for line in data.decode("utf-8").split("\n")[:-1]] == records


@EXAMPLES
@given(records=RECORDS)
def test_the_same_records_give_the_same_payload(engine, out, population_signer, trust, recipient, records):
    first = _round_trip(engine, out, population_signer, trust, recipient, records, "records.csv", False)
    again = _round_trip(engine, out, population_signer, trust, recipient, list(records), "records.csv", False)
    assert first == again
