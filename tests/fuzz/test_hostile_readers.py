"""Fuzzing the readers a hostile partner or operator reaches: whatever the bytes, each reader either reads them or
refuses them with its named exception, on one line; never another exception type. The inputs are arbitrary bytes
and byte-level mutations of a valid input built here (see ``tests/fuzz/mutations.py``)."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from datetime import UTC, datetime

import pytest
from hypothesis import given

from exchange.agreements import AGREEMENT_SCHEMA, AgreementError
from exchange.documents import read_yaml
from exchange.envelope import decrypt, encrypt_file
from exchange.errors import DecryptionFailed, FilesMismatch, ManifestInvalid, VerificationError
from exchange.ledger import Head
from exchange.package import MANIFEST, Manifest, PayloadFile, SchemaRef, load_document, read_manifest
from exchange.payload import parse_payload
from exchange.pki import ENCRYPTION, load_certificate, load_recipient, load_signer
from exchange.safe_xml import InvalidDocument, UnsafeDocument
from exchange.signature import TrustAnchors, sign_detached, verify_detached
from exchange.xml_payload import write_xml
from lienthong.settings import schema_file
from partners.xml_signature import SoapRefusal, read_security_header
from tests.exchange.conftest import CITIZENS, PASSWORD
from tests.fuzz.conftest import FUZZ
from tests.fuzz.mutations import assert_one_line, hostile

pytestmark = pytest.mark.fuzz

MANIFEST_BYTES = Manifest(
    package_id=str(uuid.UUID(int=1)),
    agreement="health-identity",
    sender="population",
    recipient="health",
    direction="outbound",
    mode="incremental",
    sequence=2,
    previous_manifest_sha256="a" * 64,
    created_at="2026-07-01T00:00:00Z",
    schema=SchemaRef("citizen-extract", "1"),
    record_count=3,
    files=(PayloadFile("data/citizen-extract.jsonl.p7m", "application/jsonl", 1234, "b" * 64, True),),
    validation=None,
    ledger_head=Head(7, "c" * 64),
).to_bytes()
COLUMNS = ["personal_id", "full_name", "date_of_birth", "sex"]
CSV = "\r\n".join(
    ["personal_id,full_name,date_of_birth,sex", "001200012345,Nguyễn,2000-01-02,F", '079085001234,"a ""b"", c",,M', ""]
).encode()
JSONL = b"".join(json.dumps(citizen, ensure_ascii=False).encode() + b"\n" for citizen in CITIZENS)
SOAP_REQUEST = b"""<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
  xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">
 <soap:Header><wsse:Security soap:mustUnderstand="1">
  <wsu:Timestamp wsu:Id="ts">
   <wsu:Created>2026-07-01T00:00:00Z</wsu:Created><wsu:Expires>2026-07-01T00:05:00Z</wsu:Expires></wsu:Timestamp>
  <wsse:UsernameToken>
   <wsse:Username>population</wsse:Username><wsse:Password>secret</wsse:Password></wsse:UsernameToken>
 </wsse:Security></soap:Header>
 <soap:Body wsu:Id="body"><SubmitReceipt xmlns="urn:lienthong:tax"><receipt>e30=</receipt></SubmitReceipt></soap:Body>
</soap:Envelope>
"""  # fmt: skip


@FUZZ
@given(hostile(MANIFEST_BYTES))
def test_a_manifest_is_read_or_refused_as_a_manifest(data):
    try:
        Manifest.from_bytes(data)
    except ManifestInvalid as error:
        assert_one_line(error)


@FUZZ
@given(hostile(MANIFEST_BYTES))
def test_the_bounded_json_reader_reads_or_refuses_with_the_error_it_is_given(data):
    try:
        load_document(data, MANIFEST, ManifestInvalid)
    except ManifestInvalid as error:
        assert_one_line(error)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


PACKAGE_ZIP = _zip({MANIFEST: MANIFEST_BYTES, "manifest.json.p7s": b"0\x80", "data/citizen-extract.jsonl.p7m": JSONL})


@FUZZ
@given(data=hostile(PACKAGE_ZIP))
def test_a_package_zip_is_read_or_refused_as_files_or_manifest(tmp_path, data):
    path = tmp_path / "package.zip"
    path.write_bytes(data)
    try:
        read_manifest(path)
    except (FilesMismatch, ManifestInvalid) as error:
        assert_one_line(error)


@pytest.fixture(scope="module")
def encrypted(fuzz_pki, tmp_path_factory):
    """A small payload encrypted for the health partner, and the health partner's key to decrypt it."""
    source = tmp_path_factory.mktemp("envelope") / "payload.jsonl"
    source.write_bytes(JSONL)
    target = io.BytesIO()
    encrypt_file(source, target, load_certificate(fuzz_pki.certificate("health", ENCRYPTION)))
    recipient = load_recipient(fuzz_pki.certificate("health", ENCRYPTION), fuzz_pki.key("health", ENCRYPTION), PASSWORD)
    return target.getvalue(), recipient


def test_an_encrypted_file_is_decrypted_or_refused_as_decrypt(encrypted):
    ciphertext, recipient = encrypted

    @FUZZ
    @given(hostile(ciphertext))
    def decrypt_or_refuse(data):
        try:
            decrypt(io.BytesIO(data), io.BytesIO(), recipient)
        except DecryptionFailed as error:
            assert_one_line(error)

    decrypt_or_refuse()


@pytest.fixture(scope="module")
def signed(fuzz_pki):
    signature = sign_detached(MANIFEST_BYTES, load_signer(fuzz_pki, "population", PASSWORD))
    return signature, TrustAnchors.from_pki(fuzz_pki)


def test_a_detached_signature_is_verified_or_refused_by_a_named_check(signed):
    signature, trust = signed
    at = datetime.now(UTC)

    @FUZZ
    @given(hostile(signature))
    def verify_or_refuse(data):
        try:
            verify_detached(MANIFEST_BYTES, data, trust, at=at)
        except VerificationError as error:
            assert_one_line(error)

    verify_or_refuse()


def test_signed_content_that_was_changed_is_refused_as_signature(signed):
    signature, trust = signed
    at = datetime.now(UTC)

    @FUZZ
    @given(hostile(MANIFEST_BYTES))
    def verify_or_refuse(content):
        try:
            verify_detached(content, signature, trust, at=at)
        except VerificationError as error:
            assert_one_line(error)
        else:
            assert content == MANIFEST_BYTES

    verify_or_refuse()


def _xml_batch() -> bytes:
    sink = io.BytesIO()
    rows = [[citizen[column] for column in COLUMNS] for citizen in CITIZENS]
    write_xml(COLUMNS, rows, sink, dataset="citizen-extract")
    return sink.getvalue()


@pytest.mark.parametrize(
    ("name", "seed"),
    [("citizen-extract.csv", CSV), ("citizen-extract.jsonl", JSONL), ("citizen-extract.xml", _xml_batch())],
    ids=["csv", "jsonl", "xml"],
)
def test_a_payload_is_read_or_refused_as_an_invalid_or_unsafe_document(name, seed):
    @FUZZ
    @given(hostile(seed))
    def parse_or_refuse(data):
        try:
            parse_payload(name, data, schema=SchemaRef("citizen-extract", "1"), fields=COLUMNS)
        except (InvalidDocument, UnsafeDocument) as error:
            assert_one_line(error)

    parse_or_refuse()


@FUZZ
@given(hostile(SOAP_REQUEST))
def test_a_soap_header_is_read_or_refused_with_a_soap_fault(data):
    try:
        read_security_header(io.BytesIO(data))
    except SoapRefusal as error:
        assert_one_line(error)


@pytest.mark.parametrize("name", ["health.yaml", "land.yaml"])
def test_an_agreement_file_is_read_or_refused_as_a_document_error(tmp_path, name):
    path = tmp_path / name

    @FUZZ
    @given(hostile(schema_file(f"agreements/{name}").read_bytes()))
    def read_or_refuse(data):
        path.write_bytes(data)
        try:
            read_yaml(path, AGREEMENT_SCHEMA, AgreementError)
        except AgreementError as error:
            assert_one_line(error)

    read_or_refuse()


def test_the_seeds_are_valid_so_that_mutations_reach_deep_into_each_reader(tmp_path, encrypted, signed):
    schema = SchemaRef("citizen-extract", "1")
    assert Manifest.from_bytes(MANIFEST_BYTES).agreement == "health-identity"
    for name, seed in [("p.csv", CSV), ("p.jsonl", JSONL), ("p.xml", _xml_batch())]:
        assert len(parse_payload(name, seed, schema=schema, fields=COLUMNS)) >= 2
    assert read_security_header(io.BytesIO(SOAP_REQUEST)).body_id == "body"
    (tmp_path / "package.zip").write_bytes(PACKAGE_ZIP)
    assert read_manifest(tmp_path / "package.zip")[0].record_count == 3
    ciphertext, recipient = encrypted
    assert decrypt(io.BytesIO(ciphertext), io.BytesIO(), recipient) == len(JSONL)
    signature, trust = signed
    assert verify_detached(MANIFEST_BYTES, signature, trust).agency == "population"
    read_yaml(schema_file("agreements/health.yaml"), AGREEMENT_SCHEMA, AgreementError)


def test_an_unknown_key_holding_a_line_break_is_refused_on_one_line(tmp_path):
    path = tmp_path / "agreement.yaml"
    path.write_bytes(b'"a\\nb": 1\n')
    with pytest.raises(AgreementError) as refused:
        read_yaml(path, AGREEMENT_SCHEMA, AgreementError)
    assert_one_line(refused.value)
