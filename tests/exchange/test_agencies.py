"""The agency files: what they give, and how a mistake in one is named by its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID

from exchange.agencies import AgencyError, load_agencies, load_agency, partner_agencies
from exchange.agreements import AgreementError, load_agreement
from exchange.pki import SIGNING, agency_subject
from lienthong.settings import schema_file

HEALTH = schema_file("agencies/health.yaml").read_text(encoding="utf-8")
ORGANISATIONS = {  # the certificates' subjects as they were before the agencies became files
    "population": "Bộ Công an - Trung tâm dữ liệu quốc gia về dân cư",
    "health": "Bảo hiểm xã hội Việt Nam",
    "tax": "Cục Thuế",
    "land": "Văn phòng đăng ký đất đai",
    "business": "Cục Quản lý đăng ký kinh doanh",
}


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def rejected(tmp_path: Path, text: str) -> AgencyError:
    path = tmp_path / "agency.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AgencyError) as caught:
        load_agency(path)
    assert str(caught.value).startswith(f"{path}:{caught.value.line}: ")
    return caught.value


def test_the_agencies_load_with_the_subjects_their_certificates_always_had():
    agencies = load_agencies()
    assert {name: agency.organisation for name, agency in agencies.items()} == ORGANISATIONS
    assert set(partner_agencies()) == {"health", "tax", "land", "business"}
    for name, organisation in ORGANISATIONS.items():
        subject = agency_subject(name, SIGNING)
        assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == organisation
        assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == name


def test_an_agency_file_gives_its_dataset_reconciliation_and_sandbox_server():
    health, land, business = (load_agencies()[name] for name in ("health", "land", "business"))
    assert (health.publishes.dataset, health.publishes.version) == ("health-insured", 1)
    identifier = health.reconciliation.identifier
    assert (identifier.field, identifier.kind, identifier.length, identifier.one_holder) == (
        "social_insurance_number", "digits", 10, True
    )  # fmt: skip
    assert health.sandbox.server.kind == "rest" and health.sandbox.server.auth == "oauth2"
    assert "sex" not in land.reconciliation.match and land.reconciliation.identifier.parcel["commune"] == "commune_code"
    assert not business.reconciliation.identifier.one_row
    assert load_agencies()["population"].sandbox is None


def test_a_wrong_value_names_its_file_and_line(tmp_path):
    text = HEALTH.replace("    share: 0.92", "    share: lots")
    error = rejected(tmp_path, text)
    assert "sandbox.registry.share" in error.problem and error.line == line_of(text, "share: lots")


def test_an_unknown_key_names_its_line(tmp_path):
    text = HEALTH.replace("    one_row: true\n", "    one_row: true\n    check_digit: mod11\n")
    error = rejected(tmp_path, text)
    assert "unknown key 'check_digit'" in error.problem and error.line == line_of(text, "check_digit")


def test_a_key_twice_is_refused_at_its_second_line(tmp_path):
    text = HEALTH.replace("organisation: ", 'organisation: "Bộ Y tế"\norganisation: ')
    error = rejected(tmp_path, text)
    assert "key 'organisation' appears twice" in error.problem
    assert error.line == line_of(text, 'organisation: "Bảo hiểm')


def test_an_unknown_server_kind_is_refused(tmp_path):
    text = HEALTH.replace("    kind: rest\n", "    kind: carrier-pigeon\n")
    error = rejected(tmp_path, text)
    assert "sandbox.server.kind" in error.problem and "carrier-pigeon" in error.problem
    assert error.line == line_of(text, "carrier-pigeon")


@pytest.mark.parametrize(
    ("change", "expected", "line"),
    [
        (("    field: social_insurance_number", "    field: insurance_no"),
         "reconciliation.identifier.field: 'insurance_no' is not a field of dataset health-insured version 1",
         "insurance_no"),
        (("    sex: sex", "    sex: gender"), "reconciliation.match.sex: 'gender' is not a field", "gender"),
        (("  version: 1", "  version: 7"), "no dataset schema health-insured version 7", "dataset: health-insured"),
        (("    length: 10", "    length: 12"), "12 digits, but dataset health-insured version 1 has the pattern",
         "length: 12"),
        (("    length: 10\n", ""), "'length' is a required property", "identifier:"),
        (("    auth: oauth2\n", ""), "'auth' is a required property", "server:"),
        (("agency: health", "agency: Health Insurance"), "agency: 'Health Insurance' does not match", "agency:"),
        (("  dataset: health-insured", "  dataset: [health-insured"), "not valid YAML", None),
    ],
)  # fmt: skip
def test_other_mistakes_are_named_by_line(tmp_path, change, expected, line):
    text = HEALTH.replace(*change)
    error = rejected(tmp_path, text)
    assert expected in error.problem
    if line is not None:
        assert error.line == line_of(text, line)


def test_an_operators_folder_adds_an_agency_and_two_files_cannot_define_one(tmp_path, monkeypatch):
    agencies = tmp_path / "agencies"
    agencies.mkdir()
    (agencies / "customs.yaml").write_text('agency: customs\norganisation: "Cục Hải quan"\n', encoding="utf-8")
    monkeypatch.setenv("LIENTHONG_SCHEMAS_PATH", str(tmp_path))
    assert load_agencies()["customs"].organisation == "Cục Hải quan"
    assert (
        agency_subject("customs", SIGNING).get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Cục Hải quan"
    )
    (agencies / "health-again.yaml").write_text(HEALTH, encoding="utf-8")
    with pytest.raises(AgencyError, match="agency 'health' is also defined in"):
        load_agencies()


def test_an_agreement_with_an_agency_that_has_no_file_is_refused(tmp_path):
    text = schema_file("agreements/health.yaml").read_text(encoding="utf-8").replace("partner: health", "partner: post")
    path = tmp_path / "post.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AgreementError, match="partner 'post' is not a partner agency") as caught:
        load_agreement(path)
    assert caught.value.line == line_of(text, "partner: post")
