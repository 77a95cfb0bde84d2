"""Ledger heads witnessed outside the platform, end to end: the population's outbound feed delivers packages to the
real health partner (REST, OAuth2, TLS); each manifest carries the population ledger's head and the partner's
signed receipt echoes it. Someone with database rights then rewrites the chain as an attacker would — the ledger's
triggers dropped, an entry changed, every later hash and the head row recomputed — so that ``lienthong ledger
verify`` passes. ``lienthong ledger audit`` still catches it through the partner's receipts: those kept beside our
packages, and, once the attacker has deleted ours and the anchors too, the partner's own copies it hands over
(``lienthong partners receipts``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange import ledger
from exchange.agreements import load_agreements
from exchange.package import read_manifest
from exchange.receipt import RECEIPT, SIGNATURE, Receipt
from feeds.inbound import run_inbound
from feeds.outbound import receipt_folder, run_outbound
from lienthong.cli import app
from population.db import session_factory
from tests.exchange.conftest import rewrite_chain
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, key_password_env
from tests.partners.fixtures import exchange_world

AGREEMENT = "health-identity"


def lienthong(*arguments, env: dict[str, str]):
    result = CliRunner().invoke(app, [str(a) for a in arguments], env={**env, "COLUMNS": "250"})
    return result


@pytest.mark.slow
def test_a_rewritten_chain_is_caught_by_the_partners_signed_receipts(tmp_path, sandbox_pki, monkeypatch):
    world = exchange_world(tmp_path / "var", sandbox_pki, 53, citizens=240, defects=0.003, only=["health"])
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    agreement = load_agreements()[AGREEMENT]
    try:
        sealed = []
        for day in range(1, 4):
            run = run_outbound(world.engine, agreement, sandbox_pki, world.var)
            assert run.delivery.status == "accepted"
            sealed.append(run.package)
            world.new_day(day, events=40)
        # the partner's package the other way: our receipt for it echoes the partner's own ledger head
        inbound = run_inbound(world.engine, agreement, sandbox_pki, world.var / "inbound", world.var / "reports")
        assert [p.acknowledged.status for p in inbound.packages] == ["accepted"]

        # each manifest carried the ledger's head before its own package_sent; health signed it back
        with session_factory(world.engine)() as session:
            entries = {e.position: e for e in ledger.entries(session)}
        heads = []
        for package in sealed:
            manifest, manifest_sha256 = read_manifest(Path(package.path))
            receipt = Receipt.from_bytes((receipt_folder(package) / RECEIPT).read_bytes())
            assert receipt.format == "lienthong-receipt/1.1" and receipt.ledger_head == manifest.ledger_head
            if manifest.ledger_head is not None:
                head = manifest.ledger_head
                assert entries[head.entry].entry_hash == head.hash
                after = entries[head.entry + 1]
                assert (after.kind, after.package_id, after.manifest_sha256) == ("package_sent", manifest.package_id,
                                                                                 manifest_sha256)  # fmt: skip
                heads.append(head.entry)
            # anyone checks the 1.1 receipt's signature with the stock tool
            folder = receipt_folder(package)
            checked = subprocess.run(
                ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(folder / SIGNATURE),
                 "-content", str(folder / RECEIPT), "-CAfile", str(sandbox_pki.root_ca), "-purpose", "any",
                 "-out", "/dev/null"], capture_output=True, text=True,
            )  # fmt: skip
            assert checked.returncode == 0, checked.stderr
        assert heads == [2, 4]  # the first package went out on an empty ledger

        db = ["--db", world.env["LIENTHONG_DB_URL"]]
        intact = lienthong("ledger", "audit", *db, env=world.env)
        assert intact.exit_code == 0, intact.output
        assert "witnesses: 2 of 4 receipts found carry a ledger head a partner signed (by health, up to entry 4)" \
            in intact.stdout  # fmt: skip

        # the partner hands over its copies of the receipts it signed, from its own store
        handed = tmp_path / "from-health"
        exported = lienthong("partners", "receipts", "health", "--out", handed, env=world.env)
        assert exported.exit_code == 0, exported.output
        assert sorted(p.name for p in handed.iterdir()) == sorted(p.package_id for p in sealed)
        nobody = lienthong("partners", "receipts", "tax", "--out", tmp_path / "from-tax", env=world.env)
        assert nobody.exit_code == 1 and "tax has no store there" in nobody.output, nobody.output

        # the attacker: triggers dropped, the first package's count changed, every later hash recomputed
        rewrite_chain(world.engine, 1, record_count=sealed[0].record_count + 1)
        verified = lienthong("ledger", "verify", *db, env=world.env)
        assert verified.exit_code == 0 and "ledger intact" in verified.stdout, verified.output
        audit = lienthong("ledger", "audit", *db, "--sample", "0", env=world.env)
        assert audit.exit_code == 1, audit.output
        assert "chain: intact" in audit.stdout
        second = sealed[1].package_id
        assert (f"witness: ledger entry 2 differs from the head health signed in the receipt for package {second}"
                in audit.stdout)  # fmt: skip
        assert "audit failed: 2 receipts contradict the ledger or cannot be checked" in audit.stdout

        # the attacker also deletes our copies of the receipts and the anchors: the partner's copies still tell
        for package in sealed:
            shutil.rmtree(receipt_folder(package))
        shutil.rmtree(world.var / "ledger-anchors", ignore_errors=True)
        blind = lienthong("ledger", "audit", *db, "--sample", "0", env=world.env)
        assert blind.exit_code == 0, blind.output  # nothing left on our side to contradict it
        caught = lienthong("ledger", "audit", *db, "--sample", "0", "--receipts", handed, env=world.env)
        assert caught.exit_code == 1, caught.output
        assert (f"FAILED {handed / second / RECEIPT}: witness: ledger entry 2 differs from the head health signed in "
                f"the receipt for package {second}") in caught.stdout  # fmt: skip
        assert "witness: ledger entry 4 differs from the head health signed" in caught.stdout
    finally:
        world.sandbox.stop()
        world.engine.dispose()
