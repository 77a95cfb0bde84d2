"""Anchors of the ledger head outside the database: written signed after an intact chain, checked against the
ledger, and failing when the whole chain is rewritten (which the chain alone cannot show)."""

import json
import subprocess

import pytest

from exchange import ledger
from exchange.anchor import check_anchors, write_anchor
from exchange.errors import LedgerBroken
from population.db import session_factory
from tests.exchange.conftest import tamper_ledger
from tests.feeds.test_audit import send


def test_an_anchor_is_signed_and_checked_and_written_once_per_head(exchange_engine, tmp_path, pki,
                                                                    population_signer, health_signer):  # fmt: skip
    folder = tmp_path / "anchors"
    assert write_anchor(exchange_engine, population_signer, folder) is None  # nothing to anchor yet
    send(exchange_engine, tmp_path / "out", population_signer, health_signer)  # entries 1-2
    first = write_anchor(exchange_engine, population_signer, folder)
    assert first.name == "ledger-00000002.json"
    with session_factory(exchange_engine)() as session:
        assert json.loads(first.read_bytes())["head_hash"] == ledger.verify(session).head_hash
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", f"{first}.p7s", "-content", str(first),
         "-CAfile", str(pki.root_ca), "-purpose", "any", "-out", "/dev/null"], capture_output=True, text=True,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert write_anchor(exchange_engine, population_signer, folder) == first  # the same head: not written again
    send(exchange_engine, tmp_path / "out", population_signer, health_signer)  # entries 3-4
    assert write_anchor(exchange_engine, population_signer, folder).name == "ledger-00000004.json"
    check = check_anchors(exchange_engine, folder, pki)
    assert (check.checked, check.problems, check.passed) == (2, [], True)


def rewrite_ledger(engine, tmp_path, population_signer, health_signer, packages: int) -> None:
    """Replace the whole chain with another one that verifies, as someone with database rights could."""
    tamper_ledger(engine, "DELETE FROM ledger_entry")
    tamper_ledger(engine, "UPDATE ledger_head SET last_position = 0, last_hash = :h", {"h": ledger.GENESIS_HASH})
    for _ in range(packages):
        send(engine, tmp_path / "rewritten", population_signer, health_signer)
    with session_factory(engine)() as session:
        ledger.verify(session)  # the chain alone holds


@pytest.mark.parametrize(("packages", "found"), [(2, "the chain was rewritten"), (1, "entries were removed")])
def test_a_rewritten_or_shortened_chain_contradicts_its_anchor(exchange_engine, tmp_path, pki, population_signer,
                                                               health_signer, packages, found):  # fmt: skip
    folder = tmp_path / "anchors"
    for _ in range(2):
        send(exchange_engine, tmp_path / "out", population_signer, health_signer)
    write_anchor(exchange_engine, population_signer, folder)
    rewrite_ledger(exchange_engine, tmp_path, population_signer, health_signer, packages)
    check = check_anchors(exchange_engine, folder, pki)
    assert check.checked == 1 and not check.passed
    assert check.problems[0].startswith("ledger-00000004.json: ") and found in check.problems[0]
    if packages == 2:  # the same position, another head: the audit refuses to anchor over it
        with pytest.raises(LedgerBroken, match="ledger-00000004.json anchored"):
            write_anchor(exchange_engine, population_signer, folder)


def test_an_edited_unsigned_or_partner_signed_anchor_is_a_problem(exchange_engine, tmp_path, pki,
                                                                  population_signer, health_signer):  # fmt: skip
    send(exchange_engine, tmp_path / "out", population_signer, health_signer)
    anchor = write_anchor(exchange_engine, population_signer, tmp_path / "edited")
    anchor.write_bytes(anchor.read_bytes().replace(b'"entries": 2', b'"entries": 1'))
    by_partner = write_anchor(exchange_engine, health_signer, tmp_path / "partner")
    unsigned = write_anchor(exchange_engine, population_signer, tmp_path / "unsigned")
    unsigned.with_name(unsigned.name + ".p7s").unlink()
    edited = check_anchors(exchange_engine, tmp_path / "edited", pki).problems
    assert edited == [
        f"{anchor.name}: signature: the content does not match the signed message digest (the content was changed)"
    ]
    assert check_anchors(exchange_engine, by_partner.parent, pki).problems == [
        f"{by_partner.name}: signed by health, not the population database"
    ]
    assert check_anchors(exchange_engine, unsigned.parent, pki).problems == [
        f"{unsigned.name}: no signature {unsigned.name}.p7s"
    ]


def test_the_audit_command_fails_on_an_anchor_the_ledger_contradicts(exchange_engine, tmp_path, pki,
                                                                     population_signer, health_signer):  # fmt: skip
    from tests.feeds.test_audit import audit_command

    for _ in range(2):
        send(exchange_engine, tmp_path / "out", population_signer, health_signer)
    write_anchor(exchange_engine, population_signer, tmp_path / "anchors")
    intact = audit_command(exchange_engine, tmp_path, "--pki", pki.path)
    assert intact.exit_code == 0 and f"anchors: 1 of 1 in {tmp_path / 'anchors'} hold" in intact.stdout, intact.output
    rewrite_ledger(exchange_engine, tmp_path, population_signer, health_signer, 2)
    rewritten = audit_command(exchange_engine, tmp_path, "--pki", pki.path, "--sample", "0")
    assert rewritten.exit_code == 1, rewritten.output
    assert "chain: intact, 4 entries" in rewritten.stdout  # the chain alone cannot tell
    assert "  FAILED ledger-00000004.json: entry 4 has hash " in rewritten.stdout
    assert "audit failed: 1 of 1 anchors contradict the ledger" in rewritten.stdout
