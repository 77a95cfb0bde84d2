"""``lienthong disclosures`` end to end: an outbound feed delivers to the real health partner of the sandbox, then the
command lists, for a changed citizen, the partner, the agreement, the fields and the accepted receipt; the signed
access report verifies with stock OpenSSL and holds nothing of another citizen; bad input gets one line."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from lienthong.cli import app
from population.db import create_population_engine, session_factory
from population.generator import generate
from population.migrate import upgrade
from population.models import Citizen as PopulationCitizen
from tests.feeds.disclosure_fixtures import *  # noqa: F403 - people, health_agreement, sent
from tests.feeds.disclosure_fixtures import openssl_cms_verify, pdf_text
from tests.partners.fixtures import *  # noqa: F403 - the shared partner fixtures: sandbox_pki, partners …

runner = CliRunner()


def disclosures(*args: str, db: str, **env: str):
    return runner.invoke(app, ["disclosures", *args, "--db", db], env={"COLUMNS": "250", **env})


def test_the_partner_agreement_fields_and_receipt_are_listed_for_a_changed_citizen(sent, people, health_agreement):
    run, records = sent
    db = str(people.url)
    changed = records[0]["personal_id"]
    shown = disclosures(changed, db=db)
    assert shown.exit_code == 0, shown.output
    assert "health" in shown.output and "Bảo hiểm xã hội Việt Nam" in shown.output
    assert health_agreement.name in shown.output
    assert f"fields: {', '.join(health_agreement.directions['outbound'].fields)}" in shown.output
    assert "receipt: accepted at " in shown.output and "Law on Identification No. 26/2023/QH15" in shown.output
    assert "full views by stewards: none" in shown.output

    document = json.loads(disclosures(changed, "--json", db=db).stdout)
    (entry,) = document["disclosures"]
    assert entry["partner"] == "health" and entry["agreement"] == health_agreement.name
    assert entry["fields"] == list(health_agreement.directions["outbound"].fields)
    assert entry["package_id"] == run.package.package_id and entry["records"] == 1
    assert entry["receipt"]["status"] == "accepted" and entry["receipt"]["at"] >= entry["sent_at"]
    assert entry["legal_basis"] == list(health_agreement.legal_basis) and entry["purpose"] == health_agreement.purpose
    assert document["received_from_partners"] == [] and document["steward_full_views"] == []
    # --since after the package: nothing
    later = disclosures(changed, "--since", "2999-01-01", db=db)
    assert later.exit_code == 0 and "no disclosure of citizen" in later.output and changed not in later.output


def test_the_access_report_verifies_with_openssl_and_holds_no_other_citizen(
    sent, people, health_agreement, sandbox_pki, key_password_env, tmp_path
):
    run, records = sent
    assert len(records) >= 2
    first, other = records[0]["personal_id"], records[1]["personal_id"]  # in the same package
    with session_factory(people)() as session:
        other_name = session.scalar(select(PopulationCitizen.full_name).where(PopulationCitizen.personal_id == other))
    out = tmp_path / "report"
    made = disclosures(first, "--report", str(out), "--pki", str(sandbox_pki.path), db=str(people.url))
    assert made.exit_code == 0, made.output
    report, signature, html = out / "report.json", out / "report.json.p7s", out / "report.html"
    pdf, pdf_signature = out / "report.pdf", out / "report.pdf.p7s"
    for signed, content in ((signature, report), (pdf_signature, pdf)):
        verified = openssl_cms_verify(signed, content, sandbox_pki.root_ca)
        assert verified.returncode == 0 and "Verification successful" in verified.stderr, verified.stderr
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["subject"]["personal_id"] == first
    assert [d["package_id"] for d in document["disclosures"]] == [run.package.package_id]
    page = html.read_text(encoding="utf-8")
    assert "Báo cáo về việc cung cấp, chia sẻ dữ liệu cá nhân" in page and first in page
    assert "Bảo hiểm xã hội Việt Nam" in page and "đã xác nhận tiếp nhận" in page
    # the PDF as a reader extracts it: the same facts, in Vietnamese (a table's cells wrap and interleave their lines)
    printed = pdf_text(pdf)
    words = set(printed.split())
    assert "Báo cáo về việc cung cấp, chia sẻ dữ liệu cá nhân" in printed and first in printed
    assert {"Bảo", "hiểm", "xã", "hội", "Việt", "Nam", "đã", "xác", "nhận", "tiếp"} <= words
    assert health_agreement.name.split("-")[-1] in printed
    for written in (report.read_bytes(), html.read_bytes(), signature.read_bytes(), printed.encode()):
        assert other.encode() not in written and other_name.encode() not in written

    # the report changed by one byte no longer verifies
    report.write_bytes(report.read_bytes().replace(first.encode(), other.encode()))
    assert openssl_cms_verify(signature, report, sandbox_pki.root_ca).returncode != 0


def test_everything_in_the_page_is_escaped():
    from feeds.disclosures import render_html

    document = {
        "controller": {"organisation": "<b>population</b>"},
        "subject": {"personal_id": "001200012345", "in_population_database": True},
        "generated_at": "2026-07-02T00:00:00Z",
        "since": None,
        "disclosures": [
            {"sent_at": "x", "sequence": 1, "mode": "full", "partner_organisation": "<script>alert(1)</script>",
             "agreement": "a&b", "legal_basis": ["<i>law</i>"], "purpose": '"quoted"', "fields": ["<f>"],
             "receipt": {"status": None, "at": None}}
        ],
        "received_from_partners": [],
    }  # fmt: skip
    page = render_html(document)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>population</b>" not in page and "<i>law</i>" not in page and "&lt;f&gt;" in page
    assert "a&amp;b" in page and "chưa có biên nhận" in page


def test_bad_input_gets_one_clear_line(people, monkeypatch):
    db = str(people.url)
    with session_factory(people)() as session:
        citizen = session.scalar(select(PopulationCitizen.personal_id).limit(1))
    for given in ("12345", "00120001234x", "0012000123456", "' OR 1=1 --"):
        refused = disclosures(given, db=db)
        assert refused.exit_code == 1
        assert refused.output.strip() == "error: a personal ID is exactly 12 digits (số định danh cá nhân)"
        assert "Traceback" not in refused.output
    unknown = disclosures("999999999999", db=db)
    assert unknown.exit_code == 0 and unknown.output.strip().startswith("no citizen with personal ID 999******999")
    none_yet = disclosures(citizen, db=db)
    assert none_yet.exit_code == 0 and len(none_yet.output.strip().splitlines()) == 1
    assert "no disclosure of citizen" in none_yet.output and citizen not in none_yet.output  # masked
    bad_date = disclosures(citizen, "--since", "yesterday", db=db)
    assert bad_date.exit_code == 1 and "--since must be a date" in bad_date.output
    monkeypatch.delenv("LIENTHONG_DISCLOSURE_KEY")
    keyless = disclosures(citizen, db=db)
    assert keyless.exit_code == 1 and "no disclosure key: set LIENTHONG_DISCLOSURE_KEY" in keyless.output


def test_a_feed_without_the_disclosure_key_is_refused_before_it_validates(people, health_agreement, monkeypatch,
                                                                          tmp_path):  # fmt: skip
    from feeds.outbound import extract, validate
    from lienthong.settings import DisclosureKeyMissing

    monkeypatch.delenv("LIENTHONG_DISCLOSURE_KEY")
    window = extract(people, health_agreement)
    with pytest.raises(DisclosureKeyMissing, match="lienthong_disclosure_key"):
        validate(people, health_agreement, window, tmp_path / "staging")


def test_the_disclosure_key_comes_from_the_environment_else_refused(monkeypatch):
    from lienthong.settings import DISCLOSURE_CONNECTION, DISCLOSURE_KEY_ENV, DisclosureKeyMissing, disclosure_key

    monkeypatch.delenv(f"AIRFLOW_CONN_{DISCLOSURE_CONNECTION.upper()}", raising=False)
    monkeypatch.setenv(DISCLOSURE_KEY_ENV, "from the environment")
    assert disclosure_key() == b"from the environment"
    monkeypatch.delenv(DISCLOSURE_KEY_ENV)
    with pytest.raises(DisclosureKeyMissing, match=f"{DISCLOSURE_KEY_ENV}.*{DISCLOSURE_CONNECTION}"):
        disclosure_key()


@pytest.mark.slow
def test_the_disclosure_key_prefers_the_airflow_connection(monkeypatch):
    """Imports Airflow (seconds): AIRFLOW_CONN_LIENTHONG_DISCLOSURE_KEY here, the metadata database or a secrets
    backend in a deployment."""
    from lienthong.settings import DISCLOSURE_CONNECTION, DISCLOSURE_KEY_ENV, disclosure_key

    monkeypatch.setenv(DISCLOSURE_KEY_ENV, "from the environment")
    monkeypatch.setenv(f"AIRFLOW_CONN_{DISCLOSURE_CONNECTION.upper()}", '{"conn_type": "generic", "password": "k"}')
    assert disclosure_key() == b"k"


def quarantine(*args: str, db: str):
    return runner.invoke(app, ["quarantine", *args, "--db", db], env={"COLUMNS": "250"})


def test_a_stewards_full_view_is_logged_before_it_is_shown_and_listed_for_the_citizen(
    tmp_path, health_agreement, monkeypatch
):
    """``quarantine show ID`` masks the personal ID; ``--unmasked`` shows it whole only once the view is logged
    (who, which record, why), and the citizen's disclosures list that view; without the disclosure key nothing is
    shown whole."""
    from feeds.outbound import extract, validate
    from validation.models import QuarantinedRecord

    engine = create_population_engine(f"sqlite:///{tmp_path / 'held.db'}")
    upgrade(engine)
    generate(engine, 300, 31, 0.05)  # with injected defects: some records are held
    validate(engine, health_agreement, extract(engine, health_agreement, mode="full"), tmp_path / "staging")
    with session_factory(engine)() as session:
        held = session.scalars(select(QuarantinedRecord).order_by(QuarantinedRecord.id)).all()
        record = next(r for r in held if r.personal_id and len(r.personal_id) == 12 and r.personal_id.isdigit())
        record_id, pid, failing = record.id, record.personal_id, {f.column_name for f in record.findings}
        record_fields = list(record.record)
    db = str(engine.url)
    try:
        masked = quarantine("show", str(record_id), db=db)
        assert masked.exit_code == 0, masked.output
        assert pid not in masked.output and f"personal ID {pid[:3]}******{pid[-3:]}" in masked.output
        assert not re.search(r"(?<!\d)\d{12}(?!\d)", masked.output)  # no personal ID whole: a parent's neither
        shown_fields = {field for field in failing if f"* {field}" in masked.output}  # failing fields are marked
        assert shown_fields == failing & set(record_fields) and all(field in masked.output for field in failing)
        assert json.loads(disclosures(pid, "--json", db=db).stdout)["steward_full_views"] == []

        monkeypatch.delenv("LIENTHONG_DISCLOSURE_KEY")
        keyless = quarantine("show", str(record_id), "--unmasked", db=db)
        assert keyless.exit_code == 1 and pid not in keyless.output
        assert keyless.output.startswith("error: whole personal IDs are shown only when the view can be logged")
        monkeypatch.setenv("LIENTHONG_DISCLOSURE_KEY", "tests' disclosure key")

        monkeypatch.setenv("LIENTHONG_STEWARD", "nguyen.van.an")  # the configured identity
        shown = quarantine("show", str(record_id), "--unmasked", db=db)
        assert shown.exit_code == 0 and pid in shown.output
        (view,) = json.loads(disclosures(pid, "--json", db=db).stdout)["steward_full_views"]
        assert view["steward"] == "nguyen.van.an" and view["purpose"] == "quarantine review"
        assert view["record"].startswith(f"quarantined record {record_id} (citizen-extract, run ")
        listed = disclosures(pid, db=db)
        assert "full views by stewards: 1" in listed.output and "nguyen.van.an" in listed.output

        # a list shown whole logs a view of every record in it
        monkeypatch.setenv("LIENTHONG_STEWARD", "tran.thi.b")
        assert quarantine("list", "--unmasked", "--limit", "5", db=db).exit_code == 0
        with session_factory(engine)() as session:
            steward_views = session.execute(text("SELECT steward, count(*) FROM steward_view GROUP BY steward"))
            assert dict(steward_views.all()) == {"nguyen.van.an": 1, "tran.thi.b": 5}
    finally:
        engine.dispose()
