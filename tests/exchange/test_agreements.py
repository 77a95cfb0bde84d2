from pathlib import Path

import pytest

from exchange.agreements import AgreementError, load_agreement, load_agreements
from lienthong.settings import schema_file

HEALTH = schema_file("agreements/health.yaml").read_text(encoding="utf-8")


def test_the_partner_agreements_load():
    agreements = load_agreements()
    assert {a.partner for a in agreements.values()} == {"health", "tax", "land", "business"}
    health = agreements["health-identity"]
    assert health.transport == "rest" and health.connection_id == "lienthong_health"
    outbound = health.directions["outbound"]
    assert "personal_id" in outbound.fields and all(len(basis) > 5 for basis in outbound.fields.values())
    assert outbound.encryption and outbound.recipient_certificate == "health/encryption.pem"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "partner.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def rejected(tmp_path: Path, text: str) -> AgreementError:
    path = write(tmp_path, text)
    with pytest.raises(AgreementError) as caught:
        load_agreement(path)
    assert str(caught.value).startswith(f"{path}:{caught.value.line}: ")
    return caught.value


def test_an_unknown_key_names_its_line(tmp_path):
    text = HEALTH.replace("    mode: incremental\n", "    mode: incremental\n    frequency: daily\n")
    error = rejected(tmp_path, text)
    assert "unknown key 'frequency'" in error.problem and error.line == line_of(text, "frequency")


def test_a_field_the_dataset_lacks_names_its_line(tmp_path):
    text = HEALTH.replace("      sex: ", "      social_caste: ")
    error = rejected(tmp_path, text)
    assert "'social_caste' is not a field of dataset citizen-extract" in error.problem
    assert error.line == line_of(text, "social_caste")


def test_a_missing_legal_basis_is_refused(tmp_path):
    start = HEALTH.index("legal_basis:")
    end = HEALTH.index("purpose:")
    error = rejected(tmp_path, HEALTH[:start] + HEALTH[end:])
    assert "'legal_basis' is a required property" in error.problem


def test_a_field_without_its_legal_basis_is_refused(tmp_path):
    text = HEALTH.replace('      sex: "Card particulars"', '      sex: ""')
    error = rejected(tmp_path, text)
    assert "directions.outbound.fields.sex" in error.problem and error.line == line_of(text, '      sex: ""')


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("kind: rest", "kind: carrier-pigeon"), "transport.kind"),
        (("schema_version: 1", "schema_version: 9"), "no dataset schema citizen-extract version 9"),
        (("    recipient_certificate: health/encryption.pem\n", ""), "encryption asks for a recipient_certificate"),
        (("partner: health", "partner: health\npartner: tax"), "key 'partner' appears twice"),
        (("format: jsonl", "format: [jsonl"), "not valid YAML"),
    ],
)
def test_other_mistakes(tmp_path, change, expected):
    assert expected in rejected(tmp_path, HEALTH.replace(*change)).problem


def test_two_files_with_one_agreement_name(tmp_path):
    (tmp_path / "a.yaml").write_text(HEALTH, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(HEALTH, encoding="utf-8")
    with pytest.raises(AgreementError, match="also defined in a.yaml"):
        load_agreements(tmp_path)


def test_an_inbound_dataset_other_than_the_agency_publishes_is_refused(tmp_path, monkeypatch):
    agency = schema_file("agencies/health.yaml").read_text(encoding="utf-8")
    agency = agency.replace("dataset: health-insured", "dataset: tax-registrants").replace(
        "    field: social_insurance_number\n    kind: digits\n    length: 10\n",
        "    field: tax_code\n    kind: tax-code\n",
    )
    (tmp_path / "agencies").mkdir()
    (tmp_path / "agencies" / "health.yaml").write_text(agency, encoding="utf-8")
    monkeypatch.setenv("LIENTHONG_SCHEMAS_PATH", str(tmp_path))
    error = rejected(tmp_path, HEALTH)
    assert "directions.inbound: dataset health-insured version 1, but health publishes tax-registrants" in error.problem
    assert error.line == line_of(HEALTH, "dataset: health-insured")
