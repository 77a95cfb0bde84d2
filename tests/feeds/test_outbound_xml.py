"""XML payloads across agencies: the tax agreement's outbound feed (``format: xml``) end to end against the real tax
SOAP partner, a package whose XML breaks its XSD answered with a rejected receipt, and the land partner's
published XML batch read at the population side."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.transport import partner_hook
from exchange.agreements import load_agreements
from exchange.package import PackageBuilder, read_manifest, verify_package, zip_package
from exchange.pki import ENCRYPTION, load_certificate
from exchange.receipt import verify_receipt
from exchange.xml_payload import BATCH_XSDS
from feeds.checkpoint import read_checkpoint
from feeds.outbound import run_outbound
from partners.base import RECORDED_AT
from partners.intake import read_records
from partners.land import owner_row
from partners.store import record as partner_record
from tests.feeds.changes import changed_personal_ids
from tests.feeds.test_outbound import latest_validation_run, quarantined_personal_ids
from tests.partners.fixtures import *  # noqa: F403 - the shared partner fixtures: sandbox_pki, partners …
from tests.partners.fixtures import SCHEMA


@pytest.fixture
def tax_agreement(partner_agreements):
    """The real tax agreement under a name of its own, so that this test's feed starts at package 1."""
    agreement = replace(load_agreements()["tax-identity"], name=f"tax-identity-{uuid.uuid4().hex[:8]}")
    partner_agreements[agreement.name] = agreement  # the partner must know it
    return agreement


def held_by(partners, partner: str, package_id: str) -> list[dict]:
    with partners.partners[partner].store.engine.connect() as connection:
        rows = connection.execute(select(partner_record.c.content).where(partner_record.c.package_id == package_id))
        return [json.loads(content) for (content,) in rows]


def test_the_tax_feed_delivers_an_xml_batch_the_tax_partner_checks_and_stores(partners, sandbox_pki, population,
                                                                              tax_agreement, tmp_path):  # fmt: skip
    agreement = tax_agreement
    assert agreement.format == "xml" and agreement.transport == "soap"
    fields = list(agreement.directions["outbound"].fields)
    changed = changed_personal_ids(population, 0)

    run = run_outbound(population, agreement, sandbox_pki, tmp_path / "work")
    quarantined = quarantined_personal_ids(population, latest_validation_run(population))
    manifest, _ = read_manifest(Path(run.package.path))
    (payload,) = manifest.files
    assert payload.path == "data/citizen-extract.xml.p7m" and payload.encrypted
    assert payload.media_type == "application/xml; charset=utf-8"
    assert run.delivery.status == "accepted" and run.delivery.record_count == run.package.record_count

    stored = held_by(partners, "tax", run.package.package_id)
    assert {r["personal_id"] for r in stored} == changed - quarantined and len(stored) == run.package.record_count
    assert all(set(r) == set(fields) for r in stored)  # every field the agreement shares, nothing else
    assert any(r["date_of_death"] is None for r in stored)  # a null arrives as a null (xsi:nil)
    assert read_checkpoint(population, agreement.name).last_change_sequence == run.window.up_to


def test_an_xml_batch_breaking_its_xsd_gets_a_signed_rejected_receipt(partners, sandbox_pki, exchange_engine,
                                                                     population_signer, trust, tmp_path,
                                                                     agreement_for):  # fmt: skip
    out = tmp_path / "packages"
    out.mkdir()
    encrypt_for = load_certificate(sandbox_pki.certificate("tax", ENCRYPTION))
    with PackageBuilder(out, agreement=agreement_for("tax"), recipient="tax", schema=SCHEMA,
                        signer=population_signer, encrypt_for=encrypt_for) as builder:  # fmt: skip
        builder.add_records("citizens.xml", [{"personal_id": "001200012345", "full_name": "Nguyễn Thị Thuỷ"},
                                             {"personal_id": "0012000123", "full_name": "Trần Văn Bé"}])  # fmt: skip
        built = builder.seal(exchange_engine)
    archive = zip_package(built.path)
    with partner_hook("soap", "lienthong_tax") as hook:
        answer = hook.deliver_package(archive, built.manifest.package_id)
    verified = verify_receipt(answer.write_to(tmp_path / "receipt"), trust, built.manifest, built.manifest_sha256)
    assert verified.receipt.status == "rejected"  # signed by the tax partner
    (error,) = verified.receipt.errors
    assert error.startswith("payload: citizens.xml: does not follow citizen-extract.v1.xsd: line 4:")
    assert "personalId" in error and "[0-9]{12}" in error
    assert held_by(partners, "tax", built.manifest.package_id) == []


def test_the_land_partners_xml_batch_is_read_at_the_population_side(partners, trust, population_key, tmp_path):
    land = partners.partners["land"]
    (package,) = land.outbox.glob("*.zip")
    verified = verify_package(package, trust, recipient=population_key, decrypt_to=tmp_path / "plain")
    manifest = verified.manifest
    (payload,) = manifest.files
    assert payload.path == "data/land-owners.xml.p7m" and payload.media_type.startswith("application/xml")
    records = read_records(package, manifest, tmp_path / "plain")  # hardened parse, XSD check, flattened
    people = land.store.all_people()
    assert len(records) == manifest.record_count == len(people)
    expected = [{k: str(v) for k, v in owner_row(person).items() if v is not None} for person in people]
    assert records == [{**owner, "created_at": RECORDED_AT} for owner in expected]  # the batch's createdAt
    if shutil.which("xmllint"):  # the partner's stock tool agrees (Debian: libxml2-utils)
        plain = tmp_path / "plain" / "data" / "land-owners.xml"
        checked = subprocess.run(["xmllint", "--noout", "--nonet", "--schema", str(BATCH_XSDS["land-owners", "1"]),
                                  str(plain)], capture_output=True, text=True)  # fmt: skip
        assert checked.returncode == 0, checked.stderr
