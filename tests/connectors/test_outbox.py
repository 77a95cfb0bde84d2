"""The inbound operations every hook offers (``outbox_packages``, ``download_package``, ``send_receipt``), against
the real partner servers: REST (OAuth2; mutual TLS), SOAP (WS-Security) and SFTP (asyncssh and OpenSSH)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.base import DeliveredReceipt
from connectors.errors import HttpStatusError, SoapFault
from connectors.transport import partner_hook
from exchange.package import SchemaRef, read_manifest
from exchange.pki import load_signer
from exchange.receipt import Receipt, make_receipt
from exchange.signature import sign_detached
from partners.intake import PackageIntake
from partners.store import RegistryStore
from tests.partners.fixtures import PASSWORD, define_connection, wait_for

TRANSPORTS = {"health": "rest", "business": "rest", "tax": "soap", "land": "sftp"}
# a land owner as schemas/datasets/land-owners.v1.json reads it
OWNER = {"certificate_serial": "CS 123456", "commune_code": "00004", "map_sheet": "12", "parcel_number": "345",
         "personal_id": "001200012345", "full_name": "Nguyễn Thị Thuỷ", "date_of_birth": "2000-01-02",
         "status": "active", "created_at": "2026-07-01T00:00:00Z"}  # fmt: skip


@pytest.fixture(scope="session")
def health_signer(sandbox_pki):
    return load_signer(sandbox_pki, "health", PASSWORD)


def receipt_for(package: Path, signer, **settings) -> DeliveredReceipt:
    manifest, manifest_sha256 = read_manifest(package)
    data = make_receipt(manifest, manifest_sha256, **settings).to_bytes()
    return DeliveredReceipt(data, sign_detached(data, signer))


@pytest.mark.parametrize("partner_name", list(TRANSPORTS))
def test_every_hook_lists_and_downloads_what_the_partner_published(partners, partner_name, tmp_path):
    partner = partners.partners[partner_name]
    published = partner.published()
    assert published  # the sandbox published the registry's links at start, the tax partner's too
    with partner_hook(TRANSPORTS[partner_name], f"lienthong_{partner_name}") as hook:
        names = hook.outbox_packages()
        assert names == [p.name for p in published]
        downloaded = hook.download_package(names[0], tmp_path / "in")
    assert downloaded == tmp_path / "in" / names[0] and downloaded.read_bytes() == published[0].read_bytes()


@pytest.mark.parametrize("partner_name", ["health", "business", "tax"])
def test_a_receipt_the_partner_cannot_verify_is_refused_and_not_kept(partners, partner_name, health_signer):
    partner = partners.partners[partner_name]
    package = partner.published()[0]
    kept = len(partner.store.acknowledgements())
    forged = receipt_for(package, health_signer)  # not signed by the population database
    expected = SoapFault if partner_name == "tax" else HttpStatusError
    with partner_hook(TRANSPORTS[partner_name], f"lienthong_{partner_name}") as hook, pytest.raises(expected) as caught:
        hook.send_receipt(package.name, forged)
    assert "signer" in str(caught.value)
    if partner_name == "tax":
        assert caught.value.code.endswith("Client.ReceiptRefused") and not caught.value.retryable
    else:
        assert caught.value.status == 422
    assert len(partner.store.acknowledgements()) == kept


@dataclass
class LandOffice:
    conn_id: str
    root: Path
    intake: PackageIntake
    store: RegistryStore
    take: Callable[[], None]  # make the land office take its folders now (or wait until it has)


@pytest.fixture(params=["asyncssh", "openssh"])
def land_office(request, monkeypatch) -> LandOffice:
    if request.param == "asyncssh":
        partner = request.getfixturevalue("partners").partners["land"]
        request.getfixturevalue("outboxes_restored")

        def taken() -> None:
            wait_for(lambda: not [p for p in (partner.root / "acknowledgements").iterdir()
                                  if not p.name.startswith(".")], "the land office to take its receipts")  # fmt: skip

        return LandOffice("lienthong_land", partner.root, partner.intake, partner.store, taken)
    openssh = request.getfixturevalue("openssh_land")
    conn_id = define_connection(monkeypatch, "openssh_land", openssh.connection())
    return LandOffice(conn_id, openssh.root, openssh.watcher.intake, openssh.store, openssh.watcher.process_once)


def test_an_sftp_receipt_is_a_folder_the_land_office_verifies_and_keeps_once(land_office, population_signer,
                                                                             health_signer, tmp_path):  # fmt: skip
    office = land_office
    package = office.intake.publish_outbox(office.root / "outbox", f"land-test-{uuid.uuid4().hex[:8]}",
                                           SchemaRef("land-owners", "1"), [OWNER])  # fmt: skip
    manifest, _ = read_manifest(package)
    receipt = receipt_for(package, population_signer)
    with partner_hook("sftp", office.conn_id) as hook:
        assert package.name in hook.outbox_packages()
        hook.send_receipt(package.name, receipt)
        assert not any(p.name.startswith(".") for p in (office.root / "acknowledgements").iterdir())
        office.take()
        (kept,) = wait_for(lambda: office.store.acknowledgements(manifest.package_id), "the receipt kept")
        assert (kept.status, kept.receipt, kept.signature) == ("accepted", receipt.receipt, receipt.signature)
        assert Receipt.from_bytes(kept.receipt).record_count == 1

        hook.send_receipt(package.name, receipt)  # sent again (a rerun): taken again, kept once
        office.take()
        hook.send_receipt(package.name, receipt_for(package, health_signer))  # not the population's: refused
        office.take()
    assert len(office.store.acknowledgements(manifest.package_id)) == 1
    assert not any((office.root / "acknowledgements").iterdir())
