"""A fifth partner agency from files alone, as docs/adding-a-partner.md tells an integration engineer to add one.

Vietnam Social Security (``social-insurance``): REST with OAuth2 client credentials over TLS; outbound identity
changes and deaths; inbound insured persons with their 10-digit social insurance numbers. Its agency file, its
agreement and its dataset schema (``tests/partners/social_insurance.py``) are written to a folder of their own,
named by ``LIENTHONG_SCHEMAS_PATH``; its certificates come from ``lienthong pki init``, its Airflow connection from
the sandbox that plays it, its pool from the Airflow runner; then its two DAGs run through Airflow. No Python
outside tests/ knows its name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from exchange import ledger
from exchange.agreements import load_agreements
from exchange.package import read_manifest
from exchange.pki import SIGNING, TLS_SERVER, PkiDirectory, agency_of, load_certificate
from exchange.receipt import RECEIPT, SIGNATURE, verify_receipt
from exchange.signature import TrustAnchors
from lienthong.airflow_runner import read_results, run_dags
from population.db import session_factory
from population.models import RegistryLink
from tests.partners.fixtures import PASSWORD, exchange_world
from tests.partners.social_insurance import AGREEMENT, CONNECTION, PARTNER, write_partner_files


def openssl_verifies(receipt_dir: Path, root_ca: Path) -> bool:
    signature, content = str(receipt_dir / SIGNATURE), str(receipt_dir / RECEIPT)
    command = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", signature, "-content", content]
    command += ["-CAfile", str(root_ca), "-purpose", "any", "-out", os.devnull]
    return subprocess.run(command, capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_fifth_partner_from_files_alone_exchanges_both_ways_through_airflow(tmp_path, monkeypatch):
    schemas = write_partner_files(tmp_path / "operator-schemas")
    monkeypatch.setenv("LIENTHONG_SCHEMAS_PATH", str(schemas))
    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", PASSWORD.decode())

    # its certificates, with everyone else's, from the real command in a process of its own
    pki = PkiDirectory(tmp_path / "pki")
    lienthong = str(Path(sys.executable).with_name("lienthong"))
    command = [lienthong, "pki", "init", "--out", str(pki.path), "--rsa-bits", "2048"]
    issued = subprocess.run(command, capture_output=True, text=True)
    assert issued.returncode == 0, issued.stderr
    signing = load_certificate(pki.certificate(PARTNER, SIGNING))
    assert agency_of(signing) == PARTNER and "O=Bảo hiểm xã hội Việt Nam" in signing.subject.rfc4514_string()
    assert pki.certificate(PARTNER, TLS_SERVER).exists() and pki.certificate("health", SIGNING).exists()

    # the sandbox plays it from its agency file, seeded from a small population; its Airflow connection
    world = exchange_world(tmp_path / "var", pki, 41, citizens=300, only=[PARTNER])
    try:
        assert f"AIRFLOW_CONN_{CONNECTION.upper()}" in world.env
        world.env["LIENTHONG_SCHEMAS_PATH"] = str(schemas)
        results = world.var / f"results-{uuid.uuid4().hex[:8]}.jsonl"
        log = world.var / "airflow" / "runs.log"
        dag_ids = [f"{AGREEMENT}.outbound", f"{AGREEMENT}.inbound"]
        process = run_dags(dag_ids, world.var, log=log, results=results, env=world.env)
        process.wait(timeout=900)
        runs = {line["dag_id"]: line for line in read_results(results)}
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-80:])

        outbound, inbound = runs[f"{AGREEMENT}.outbound"], runs[f"{AGREEMENT}.inbound"]
        assert outbound["state"] == "success" and "failed" not in outbound["tasks"].values(), tail
        assert outbound["tasks"]["extract"] == "success"  # a day's changes: the fast path, all in the first task
        assert {state for task, state in outbound["tasks"].items() if task != "extract"} == {"skipped"}
        assert inbound["state"] == "success" and inbound["tasks"]["acknowledge"] == "success", tail

        # the partner holds what was sent: the agreement's fields only
        held = world.records_held(PARTNER, AGREEMENT)
        fields = set(load_agreements()[AGREEMENT].directions["outbound"].fields)
        assert held and all(set(record) == fields for record in held)

        # every receipt both ways verifies, with the contract's code and with stock OpenSSL
        trust = TrustAnchors.from_pki(pki)
        receipts = sorted(world.var.rglob("*.receipt"))
        signers = set()
        for receipt_dir in receipts:
            package = next(p for p in (receipt_dir.with_suffix(".zip"), receipt_dir.with_suffix("")) if p.exists())
            manifest, manifest_sha256 = read_manifest(package)
            verified = verify_receipt(receipt_dir, trust, manifest, manifest_sha256)
            assert verified.receipt.status == "accepted" and manifest.agreement == AGREEMENT
            assert openssl_verifies(receipt_dir, pki.root_ca), receipt_dir
            signers.add(verified.signature.agency)
        assert signers == {PARTNER, "population"}  # its receipt for our package, ours for its package
        assert world.sandbox.partners[PARTNER].store.acknowledgements()

        # the ledger is intact and holds both exchanges
        with session_factory(world.engine)() as session:
            entries = list(ledger.entries(session))
            assert ledger.verify(session).entries == len(entries)
            links = session.scalars(select(RegistryLink).where(RegistryLink.partner == PARTNER)).all()
        kinds = Counter(entry.kind for entry in entries if entry.agreement == AGREEMENT)
        assert kinds == {"package_sent": 1, "receipt_received": 1, "package_received": 1, "receipt_sent": 1}

        # registry links with social insurance numbers
        assert len(links) > 100
        assert {link.identifier_kind for link in links} == {"social_insurance_number"}
        assert all(len(link.identifier) == 10 and link.identifier.isdigit() for link in links)
        assert {link.status for link in links} <= {"active", "disputed", "inactive"}
    finally:
        world.sandbox.stop()
        world.engine.dispose()
