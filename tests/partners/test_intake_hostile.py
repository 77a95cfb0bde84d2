"""A hostile or broken package at a partner's intake: each is answered with a signed rejected receipt naming the
failed check, on one line and without the values it carried; nothing is stored (no records, no package, no ledger
entry, the feed not moved), and the next valid package of the feed is accepted."""

from __future__ import annotations

import io
import itertools
import logging
import shutil

import pytest

from exchange import ledger
from exchange.package import PackageBuilder, SchemaRef, zip_package
from exchange.pki import ENCRYPTION, load_certificate
from exchange.receipt import verify_receipt
from exchange.xml_payload import write_xml
from partners.intake import IntakeRefused, PackageIntake, PartnerKeys
from partners.store import RegistryStore
from population.db import create_population_engine, session_factory
from tests.partners.fixtures import PASSWORD, ZippedPackage

CITIZEN = SchemaRef("citizen-extract", "1")
AGREEMENTS = {"health": "health-identity", "tax": "tax-identity"}
IDS = ("001200012345", "079085001234", "096191000077")
BAD_ID = "0790850012349"  # a digit too long: libxml2 would quote it
PEOPLE = [
    (IDS[0], "Nguyễn Thị Thuỷ", "2000-01-02"),
    (IDS[1], "Trần Văn Bé", "1985-03-04"),
    (IDS[2], "Đặng Hoà Phước", "1991-12-31"),
]


def csv_file(header: str = "personal_id,full_name,date_of_birth", rows=PEOPLE, extra: str = "") -> bytes:
    lines = [header, *(",".join(person) + extra for person in rows)]
    return ("\n".join(lines) + "\n").encode()


def jsonl_file(rows=PEOPLE, **extra) -> bytes:
    import json

    names = ("personal_id", "full_name", "date_of_birth")
    return b"".join(json.dumps(dict(zip(names, person, strict=True)) | extra).encode() + b"\n" for person in rows)


def xml_file(columns=("personal_id", "full_name", "date_of_birth"), rows=PEOPLE, **settings) -> bytes:
    sink = io.BytesIO()
    write_xml(list(columns), rows, sink, **({"dataset": "citizen-extract"} | settings))
    return sink.getvalue()


LAND = xml_file(
    ["certificate_serial", "commune_code", "map_sheet", "parcel_number", "personal_id", "full_name", "status"],
    [("CS 123456", "00004", "12", str(345 + n), person[0], person[1], "active") for n, person in enumerate(PEOPLE)],
    dataset="land-owners",
    batch={"office": "VPĐKĐĐ Hà Nội", "createdAt": "2026-07-01T00:00:00Z", "count": 3},
)
VALID = {"health": ("citizens.csv", csv_file()), "tax": ("citizens.xml", xml_file())}

COUNT = "payload: 3 records read, which is not the manifest's record_count"
NOT_A_NAME = "payload: citizens.csv line 1: field 2 of the header is not a name (letters, digits, '_'; 64 at most)"
XXE = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
NESTED = b'{"personal_id": ' + b"[" * 10_000 + b"]" * 10_000 + b"}\n"


def case(id, partner, name, data, count, problem, *, agreement=None, schema=CITIZEN):
    """A package to ``partner`` with one payload file, whose manifest claims ``count`` records, and the error its
    rejected receipt must carry."""
    return pytest.param(partner, agreement or AGREEMENTS[partner], schema, name, data, count, problem, id=id)


HOSTILE = [
    case("more-records-claimed", "health", "citizens.csv", csv_file(), 5, COUNT),
    case("fewer-records-claimed", "health", "citizens.jsonl", jsonl_file(), 2, COUNT),
    case("xml-records-miscounted", "tax", "citizens.xml", xml_file(), 4, COUNT),
    case(
        "an-agreement-nobody-has",
        "health",
        "citizens.csv",
        csv_file(),
        3,
        "agreement: health has no agreement health-everything",
        agreement="health-everything",
    ),
    case(
        "another-partners-agreement",
        "health",
        "citizens.csv",
        csv_file(),
        3,
        "agreement: health has no agreement tax-identity",
        agreement="tax-identity",
    ),
    case(
        "a-schema-the-agreement-does-not-take",
        "health",
        "citizens.csv",
        csv_file(),
        3,
        "agreement: agreement health-identity's outbound direction takes citizen-extract v1; the manifest names "
        "another schema",
        schema=SchemaRef("health-insured", "1"),
    ),
    case(
        "a-csv-field-outside-the-agreement",
        "health",
        "citizens.csv",
        csv_file("personal_id,full_name,date_of_birth,religion", extra=",Phật giáo"),
        3,
        "payload: citizens.csv line 1: religion not among the fields allowed",
    ),
    case(
        "a-csv-field-outside-any-agreement",
        "health",
        "citizens.csv",
        csv_file("personal_id,full_name,date_of_birth,died", extra=","),
        3,
        "payload: citizens.csv line 1: died not among the fields allowed",
    ),
    case(
        "a-jsonl-field-outside-the-agreement",
        "health",
        "citizens.jsonl",
        jsonl_file(phone="0912"),
        3,
        "payload: citizens.jsonl line 1: phone not among the fields allowed",
    ),
    case(
        "an-xml-element-outside-the-agreement",
        "tax",
        "citizens.xml",
        xml_file(("personal_id", "full_name", "religion")),
        3,
        "payload: citizens.xml record 1: religion not among the fields allowed",
    ),
    case(
        "a-land-batch-sent-as-citizen-extract",
        "tax",
        "citizens.xml",
        LAND,
        3,
        "payload: citizens.xml: line 2: the manifest's schema citizen-extract v1 asks for CitizenBatch of "
        "citizen-extract.v1.xsd, the file is a land-owners.v1.xsd batch",
    ),
    case(
        "an-xsd-failure-on-a-personal-id",
        "tax",
        "citizens.xml",
        xml_file().replace(IDS[1].encode(), BAD_ID.encode()),
        3,
        "payload: citizens.xml: does not follow citizen-extract.v1.xsd: line 4: element personalId: does not match "
        "the pattern '[0-9]{12}'",
    ),
    case(
        "an-xml-batch-declaring-entities",
        "tax",
        "citizens.xml",
        XXE,
        3,
        "payload: citizens.xml: the document declares a DTD or entities",
    ),
    case(
        "a-csv-header-with-a-nul",
        "health",
        "citizens.csv",
        csv_file("personal_id,full_name\x00,date_of_birth"),
        3,
        NOT_A_NAME,
    ),
    case(
        "a-csv-of-70-columns",
        "health",
        "citizens.csv",
        csv_file(",".join(f"c{n}" for n in range(70)), [tuple(IDS[0] for _ in range(70))]),
        1,
        "payload: citizens.csv line 1: the header has 70 fields, over the 63 a record may have",
    ),
    case(
        "a-csv-header-naming-a-field-twice",
        "health",
        "citizens.csv",
        csv_file("personal_id,full_name,personal_id"),
        3,
        "payload: citizens.csv line 1: the header repeats personal_id",
    ),
    case(
        "a-10-mb-csv-field",
        "health",
        "citizens.csv",
        csv_file(rows=[*PEOPLE[:2], (IDS[2], "x" * (10 << 20), "1991-12-31")]),
        3,
        "payload: citizens.csv line 4: a record over 1,048,576 characters",
    ),
    case(
        "json-lines-nested-10000-deep",
        "health",
        "citizens.jsonl",
        jsonl_file() + NESTED,
        4,
        "payload: citizens.jsonl line 4: nested deeper than 16 levels",
    ),
    case(
        "an-overlong-json-line",
        "health",
        "citizens.jsonl",
        jsonl_file(rows=[(IDS[0], "x" * (2 << 20), "")]),
        1,
        "payload: citizens.jsonl line 1: a line over 1,048,576 bytes",
    ),
]


@pytest.fixture
def new_sender(tmp_path, sqlite_template):
    """A population database of its own for each sender: its feeds start at package 1."""
    engines = []

    def new():
        path = tmp_path / f"sender-{len(engines)}.db"
        shutil.copy(sqlite_template, path)
        engines.append(create_population_engine(f"sqlite:///{path}"))
        return engines[-1]

    yield new
    for engine in engines:
        engine.dispose()


@pytest.fixture
def send(tmp_path, sandbox_pki, population_signer):
    """Seal one package of the population's feed under ``agreement`` with ``data`` as its payload file, the manifest
    claiming ``count`` records, encrypted for the partner, and zip it."""

    built_before = itertools.count()

    def build(engine, partner, agreement, schema, name, data, count) -> ZippedPackage:
        out = tmp_path / f"packages-{next(built_before)}"  # two senders may both seal a package 1
        out.mkdir()
        given = out / name
        given.write_bytes(data)
        encrypt_for = load_certificate(sandbox_pki.certificate(partner, ENCRYPTION))
        with PackageBuilder(
            out,
            agreement=agreement,
            recipient=partner,
            schema=schema,
            signer=population_signer,
            encrypt_for=encrypt_for,
        ) as builder:
            builder.add_file(name, given, count)
            built = builder.seal(engine)
        return ZippedPackage(zip_package(built.path), built.manifest, built.manifest_sha256)

    return build


@pytest.fixture
def intakes(tmp_path, sandbox_pki):
    """Each partner's intake over a store of its own, made when first asked for."""
    made: dict[str, PackageIntake] = {}

    def intake(partner: str) -> PackageIntake:
        if partner not in made:
            store = RegistryStore(tmp_path / partner / "registry.db")
            made[partner] = PackageIntake(PartnerKeys.load(sandbox_pki, partner, PASSWORD), store, tmp_path / "work")
        return made[partner]

    yield intake
    for each in made.values():
        each.store.dispose()


def receipt_of(result, package, trust, folder):
    folder.mkdir(parents=True)
    (folder / "receipt.json").write_bytes(result.receipt)
    (folder / "receipt.json.p7s").write_bytes(result.signature)
    return verify_receipt(folder, trust, package.manifest, package.manifest_sha256)


@pytest.mark.parametrize(("partner", "agreement", "schema", "name", "data", "count", "problem"), HOSTILE)
def test_a_hostile_package_gets_a_signed_rejected_receipt_and_nothing_is_stored(
    intakes, send, new_sender, trust, tmp_path, caplog, partner, agreement, schema, name, data, count, problem
):
    caplog.set_level(logging.INFO, logger="lienthong.partners")
    intake = intakes(partner)
    package = send(new_sender(), partner, agreement, schema, name, data, count)

    result = intake.receive(package.path)

    verified = receipt_of(result, package, trust, tmp_path / "rejected")  # signed by the partner, bound to it
    assert result.status == verified.receipt.status == "rejected" and verified.signature.agency == partner
    assert list(verified.receipt.errors) == [problem]
    for text in (problem, caplog.text):
        assert not any(number in text for number in (*IDS, BAD_ID)), "a personal ID reached the receipt or the log"
    store = intake.store
    assert store.package_count() == 0 and store.record_count() == 0
    with session_factory(store.engine)() as session:
        assert list(ledger.entries(session)) == []
    assert list(intake.work_dir.iterdir()) == []  # nothing decrypted is left behind

    valid = send(new_sender(), partner, AGREEMENTS[partner], CITIZEN, *VALID[partner], 3)  # the feed's package 1
    after = receipt_of(intake.receive(valid.path), valid, trust, tmp_path / "accepted").receipt
    assert after.status == "accepted" and after.record_count == 3
    assert store.package_count() == 1 and store.record_count(valid.manifest.package_id) == 3


def test_records_within_the_agreement_are_stored_as_sent(intakes, send, new_sender, trust, tmp_path):
    """A valid package of each format travels under the partner's agreement, with a subset of its fields."""
    intake = intakes("health")
    engine = new_sender()
    for number, (name, data) in enumerate([("citizens.jsonl", jsonl_file()), ("citizens.csv", csv_file())]):
        package = send(engine, "health", "health-identity", CITIZEN, name, data, 3)
        receipt = receipt_of(intake.receive(package.path), package, trust, tmp_path / str(number)).receipt
        assert receipt.status == "accepted" and receipt.record_count == 3
    assert intake.store.package_count() == 2 and intake.store.record_count() == 6


@pytest.mark.parametrize("name", ["data/evil\nname.csv", "notes.txt", "data/../manifest.json.bak"])
def test_a_package_folder_with_a_file_outside_the_layout_is_refused_as_not_a_package(
    intakes, send, new_sender, tmp_path, name
):
    """Its manifest cannot be read to name it (the layout check is a VerificationError, not a zip error): the
    intake refuses it in one line, without the raw name, and keeps nothing."""
    intake = intakes("health")
    package = send(new_sender(), "health", "health-identity", CITIZEN, "citizens.csv", csv_file(), 3)
    folder = tmp_path / "unpacked"
    shutil.unpack_archive(package.path, folder, "zip")
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"x")

    with pytest.raises(IntakeRefused) as refused:
        intake.receive(folder)

    assert "\n" not in str(refused.value) and str(refused.value).startswith("not an exchange package: ")
    assert intake.store.package_count() == 0
