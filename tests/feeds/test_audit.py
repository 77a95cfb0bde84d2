"""The daily ledger audit: the chain, a sample of entries re-verified from the files kept (missing, changed,
re-signed, revoked, expired since), the ledger heads partners signed in their receipts (a rewritten chain
contradicts them), expiring certificates, and ``lienthong ledger audit``."""

import json
import shutil
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from exchange import ledger
from exchange.errors import CertificateExpired, LedgerBroken
from exchange.package import MANIFEST, SIGNATURE, verify_package, zip_package
from exchange.pki import SIGNING, TLS_CLIENT, PkiDirectory, make_agency_certificate, revoke, write_pem
from exchange.receipt import FORMAT_1, RECEIPT, make_receipt, record_receipt, write_receipt
from exchange.signature import sign_detached
from feeds.audit import audit_chain, audit_signatures, audit_witnesses, expiring_certificates, sample_positions
from lienthong.cli import app
from population.db import session_factory
from tests.exchange.conftest import PASSWORD, build, rewrite_chain, signer_with, tamper_ledger

AGREEMENT = "health-identity"


def send(engine, out, signer, receiver):
    """A package sealed and zipped where the pipeline keeps it (<out>/<agreement>/<name>.zip, the directory too),
    the partner's receipt beside it (<name>.receipt/); package_sent and receipt_received in the ledger."""
    built = build(engine, out / AGREEMENT, signer, agreement=AGREEMENT)
    zip_package(built.path)
    receipt = make_receipt(built.manifest, built.manifest_sha256)
    write_receipt(receipt, built.path.with_name(built.path.name + ".receipt"), receiver)
    record_receipt(engine, "receipt_received", built.manifest, receipt, receiver.certificate)
    return built


@pytest.fixture
def sent(exchange_engine, tmp_path, population_signer, health_signer):
    """Two packages and their receipts: ledger entries 1-4."""
    return [send(exchange_engine, tmp_path / "out", population_signer, health_signer) for _ in range(2)]


@pytest.fixture
def pki_copy(pki, tmp_path) -> PkiDirectory:
    """The test PKI copied, to revoke in or add certificates to."""
    return PkiDirectory(shutil.copytree(pki.path, tmp_path / "pki"))


def problems_of(audit):
    return [(p.position, p.kind, p.package_id, p.check) for p in audit.problems]


def test_the_audit_passes(exchange_engine, sent, tmp_path, pki):
    chain = audit_chain(exchange_engine)
    assert chain.entries == 4 and len(chain.head_hash) == 64
    audit = audit_signatures(exchange_engine, [tmp_path / "out"], pki, seed="2026-07-02")
    assert (audit.seed, audit.checked, audit.verified, audit.problems) == ("2026-07-02", 4, 4, [])
    assert audit.passed
    # the package command's layout (<out>/<name>, no agreement folder) and a search further down are found too
    (tmp_path / "elsewhere").mkdir()
    shutil.move(tmp_path / "out" / AGREEMENT, tmp_path / "elsewhere" / "deeper")
    for folder in (tmp_path / "elsewhere" / "deeper", tmp_path / "elsewhere"):
        assert audit_signatures(exchange_engine, [tmp_path / "nothing", folder], pki).verified == 4


def test_a_missing_file_is_a_problem_naming_the_entry(exchange_engine, sent, tmp_path, pki):
    first, second = sent
    first.path.with_name(first.path.name + ".zip").unlink()
    shutil.rmtree(first.path)
    shutil.rmtree(second.path.with_name(second.path.name + ".receipt"))
    audit = audit_signatures(exchange_engine, [tmp_path / "out"], pki)
    assert problems_of(audit) == [
        (1, "package_sent", first.manifest.package_id, "missing"),
        (4, "receipt_received", second.manifest.package_id, "missing"),
    ]
    assert (audit.checked, audit.verified) == (4, 2)
    assert f"no {first.path.name}.zip or {first.path.name} under {tmp_path / 'out'}" in audit.problems[0].detail
    assert str(audit.problems[1]).startswith(f"entry 4 (receipt_received, package {second.manifest.package_id}): "
                                             f"missing: no {second.path.name}.receipt under")  # fmt: skip


@pytest.mark.parametrize("resigned", [False, True], ids=["not-re-signed", "re-signed-by-health"])
def test_an_edited_manifest_is_named(exchange_engine, sent, tmp_path, pki, health_signer, resigned):
    package = sent[0].path
    edited = (package / MANIFEST).read_bytes().replace(b'"record_count": 3', b'"record_count": 2')
    (package / MANIFEST).write_bytes(edited)
    if resigned:
        (package / SIGNATURE).write_bytes(sign_detached(edited, health_signer))
    zip_package(package)  # the zip kept is the edited one
    audit = audit_signatures(exchange_engine, [tmp_path / "out"], pki)
    checks = [problem[3] for problem in problems_of(audit) if problem[0] == 1]
    assert checks == ["manifest_hash", "signer" if resigned else "signature"]
    assert {problem[0] for problem in problems_of(audit)} == {1}
    detail = audit.problems[1].detail
    if resigned:
        assert detail.startswith("'Liên thông health signing'") and "the ledger recorded" in detail
    else:
        assert detail == "the content does not match the signed message digest (the content was changed)"


def test_an_edited_receipt_is_named(exchange_engine, sent, tmp_path, pki):
    folder = sent[1].path.with_name(sent[1].path.name + ".receipt")
    (folder / RECEIPT).write_text((folder / RECEIPT).read_text().replace('"accepted"', '"rejected"'))
    audit = audit_signatures(exchange_engine, [tmp_path / "out"], pki)
    assert [(p.position, p.check) for p in audit.problems] == [(4, "receipt_mismatch"), (4, "signature")]
    assert "status is rejected in the receipt, accepted in the ledger" in audit.problems[0].detail


def test_an_entry_edited_in_the_database_breaks_the_chain(exchange_engine, sent):
    tamper_ledger(exchange_engine, "UPDATE ledger_entry SET record_count = 30 WHERE position = 3")
    with pytest.raises(LedgerBroken, match=r"^ledger: entry 3 \(package_sent\) does not match its hash") as error:
        audit_chain(exchange_engine)
    assert error.value.position == 3


def test_a_certificate_revoked_before_the_entry_fails(exchange_engine, tmp_path, pki_copy, issuing_ca):
    signer = signer_with(issuing_ca)
    revoke(pki_copy, signer.certificate, PASSWORD)
    built = build(exchange_engine, tmp_path / "out", signer)  # recorded after the revocation
    audit = audit_signatures(exchange_engine, [tmp_path / "out"], pki_copy)
    assert problems_of(audit) == [(1, "package_sent", built.manifest.package_id, "revoked")]
    assert "was revoked on" in audit.problems[0].detail


def test_a_certificate_expired_since_does_not_fail_an_old_entry(exchange_engine, tmp_path, pki, trust, issuing_ca):
    now = datetime.now(UTC)
    signer = signer_with(issuing_ca, not_before=now - timedelta(days=1), not_after=now + timedelta(seconds=3))
    built = build(exchange_engine, tmp_path / "out", signer)
    time.sleep(max(0.0, (signer.certificate.not_valid_after_utc - datetime.now(UTC)).total_seconds()) + 1.1)
    with pytest.raises(CertificateExpired):
        verify_package(built.path, trust)  # as at now it has expired
    audit = audit_signatures(exchange_engine, [tmp_path / "out"], pki)
    assert (audit.checked, audit.verified, audit.problems) == (1, 1, [])


def _record(n: int) -> ledger.LedgerRecord:
    return ledger.LedgerRecord(
        kind="package_sent", agreement=AGREEMENT, direction="outbound", sender="population", recipient="health",
        package_id=f"00000000-0000-0000-0000-{n:012d}", sequence=n, manifest_sha256=f"{n:064x}", record_count=n,
        signer_fingerprint="ab" * 32,
    )  # fmt: skip


# -- the heads partners witnessed ---------------------------------------------------------------------------------


@pytest.fixture
def witnessed(exchange_engine, tmp_path, population_signer, health_signer):
    """Three packages and health's receipts (ledger entries 1-6): the second package's manifest carries head 2,
    the third's head 4, and health's receipts echo them."""
    built = [send(exchange_engine, tmp_path / "out", population_signer, health_signer) for _ in range(3)]
    assert [b.manifest.ledger_head and b.manifest.ledger_head.entry for b in built] == [None, 2, 4]
    return built


def receipt_of(built):
    return built.path.with_name(built.path.name + ".receipt") / RECEIPT


def test_the_heads_partners_signed_hold(exchange_engine, witnessed, tmp_path, pki):
    audit = audit_witnesses(exchange_engine, [tmp_path / "out", tmp_path / "nothing"], pki)
    assert (audit.receipts, audit.witnesses, audit.partners, audit.newest, audit.problems) == (3, 2, ("health",), 4, [])
    assert audit.passed
    # the same receipts found again elsewhere (a partner's copies) count once
    shutil.copytree(tmp_path / "out", tmp_path / "copy")
    assert audit_witnesses(exchange_engine, [tmp_path / "out", tmp_path / "copy"], pki).witnesses == 2


def test_a_chain_rewritten_with_its_triggers_dropped_contradicts_the_partners_receipts(exchange_engine, witnessed,
                                                                                       tmp_path, pki):  # fmt: skip
    rewrite_chain(exchange_engine, 1, record_count=30)  # every hash recomputed: the chain alone verifies
    assert audit_chain(exchange_engine).entries == 6
    audit = audit_witnesses(exchange_engine, [tmp_path / "out"], pki)
    assert [(p.path, p.check) for p in audit.problems] == [(str(receipt_of(b)), "witness") for b in witnessed[1:]]
    second = witnessed[1].manifest
    assert audit.problems[0].detail.startswith(
        f"ledger entry 2 differs from the head health signed in the receipt for package {second.package_id}: "
        "the ledger has "
    )
    assert audit.problems[0].detail.endswith(f"the receipt {second.ledger_head.hash[:16]}… (the chain was rewritten)")
    assert str(audit.problems[1]).startswith(f"{receipt_of(witnessed[2])}: witness: ledger entry 4 differs from")


def test_a_rewrite_after_the_newest_head_is_caught_up_to_the_package_it_came_with(exchange_engine, witnessed,
                                                                                  tmp_path, pki):  # fmt: skip
    """A receipt witnesses the head before its package and binds the package's own package_sent entry after it
    (entry 5, by the manifest's SHA-256); the last receipt's own entry (6) is for the next package's receipt, or
    the signed anchors, to witness."""
    rewrite_chain(exchange_engine, 5, record_count=30)
    problems = audit_witnesses(exchange_engine, [tmp_path / "out"], pki).problems
    assert problems == []  # entry 5's manifest and kind are as recorded: a changed count is for the sample to find
    rewrite_chain(exchange_engine, 5, manifest_sha256="0" * 64)
    problems = audit_witnesses(exchange_engine, [tmp_path / "out"], pki).problems
    third = witnessed[2].manifest
    assert [(p.check, p.detail.split(":")[0]) for p in problems] == [
        ("witness", f"ledger entry 5 is not the package_sent of package {third.package_id} (manifest "
                    f"{witnessed[2].manifest_sha256[:16]}…) that health received right after entry 4")
    ]  # fmt: skip
    rewrite_chain(exchange_engine, 6, record_count=30)
    assert len(audit_witnesses(exchange_engine, [tmp_path / "out"], pki).problems) == 1  # still only entry 5's


@pytest.mark.parametrize(("removed", "missing"), [(4, 4), (5, 5)])
def test_a_shortened_chain_misses_the_entries_partners_witnessed(exchange_engine, witnessed, tmp_path, pki, removed,
                                                                 missing):  # fmt: skip
    with session_factory(exchange_engine)() as session:
        last = next(e for e in ledger.entries(session) if e.position == removed - 1).entry_hash
    tamper_ledger(exchange_engine, "DELETE FROM ledger_entry WHERE position >= :p", {"p": removed})
    tamper_ledger(exchange_engine, "UPDATE ledger_head SET last_position = :p, last_hash = :h",
                  {"p": removed - 1, "h": last})  # fmt: skip
    assert audit_chain(exchange_engine).entries == removed - 1
    problems = audit_witnesses(exchange_engine, [tmp_path / "out"], pki).problems
    assert [(p.path, p.check) for p in problems] == [(str(receipt_of(witnessed[2])), "missing_entry")]
    assert problems[0].detail.startswith(f"the ledger has no entry {missing}, ")
    assert problems[0].detail.endswith("(entries were removed)")


def test_a_receipt_changed_to_fit_a_rewritten_chain_fails_its_signature(exchange_engine, witnessed, tmp_path, pki):
    rewrite_chain(exchange_engine, 1, record_count=30)
    with session_factory(exchange_engine)() as session:
        rewritten = {e.position: e.entry_hash for e in ledger.entries(session)}
    for built in witnessed[1:]:
        document = json.loads(receipt_of(built).read_bytes())
        document["ledger_head"]["hash"] = rewritten[document["ledger_head"]["entry"]]
        receipt_of(built).write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    problems = audit_witnesses(exchange_engine, [tmp_path / "out"], pki).problems
    assert [p.check for p in problems] == ["signature", "signature"]
    receipt_of(witnessed[1]).with_name("receipt.json.p7s").unlink()
    assert [p.check for p in audit_witnesses(exchange_engine, [tmp_path / "out"], pki).problems] == [
        "missing", "signature"
    ]  # fmt: skip


def test_receipts_that_witness_nothing_of_this_ledger_are_passed_over(exchange_engine, witnessed, tmp_path, pki,
                                                                     population_signer, health_signer):  # fmt: skip
    """Our own receipts (for partners' packages: their ledgers' heads), /1 receipts and rejected ones."""
    manifest, sha256 = witnessed[2].manifest, witnessed[2].manifest_sha256
    bogus = replace(make_receipt(manifest, sha256), ledger_head=ledger.Head(1, "f" * 64))
    write_receipt(bogus, tmp_path / "inbound" / "ours.receipt", population_signer)
    v1 = replace(make_receipt(manifest, sha256), ledger_head=None, format=FORMAT_1)
    write_receipt(v1, tmp_path / "inbound" / "v1.receipt", health_signer)
    rejected = replace(make_receipt(manifest, sha256, status="rejected"), ledger_head=ledger.Head(1, "f" * 64))
    write_receipt(rejected, tmp_path / "inbound" / "rejected.receipt", health_signer)
    write_receipt(bogus, tmp_path / "inbound" / ".hidden.receipt.partial", health_signer)  # being written
    (tmp_path / "inbound" / "junk").mkdir()
    (tmp_path / "inbound" / "junk" / RECEIPT).write_text("{}")
    audit = audit_witnesses(exchange_engine, [tmp_path / "out", tmp_path / "inbound"], pki)
    assert (audit.receipts, audit.witnesses) == (7, 2)
    assert [(p.path, p.check) for p in audit.problems] == [(str(tmp_path / "inbound" / "junk" / RECEIPT), "unreadable")]


def test_the_same_seed_gives_the_same_sample(exchange_engine, tmp_path, pki):
    with session_factory(exchange_engine)() as session, session.begin():
        for n in range(1, 101):
            ledger.append(session, _record(n))

    def sampled(seed):
        audit = audit_signatures(exchange_engine, [tmp_path / "nothing"], pki, sample=10, seed=seed)
        assert (audit.checked, audit.verified) == (10, 0)  # nothing is kept: every entry is missing its package
        return [p.position for p in audit.problems]

    first = sampled("2026-07-02")
    assert first == sampled("2026-07-02") == sample_positions(100, 10, "2026-07-02")
    assert first != sampled("2026-07-03")
    assert sum(position > 90 for position in first) >= 5  # half among the newest tenth


def test_sample_positions():
    assert sample_positions(0, 20, "s") == []
    assert sample_positions(5, 20, "s") == [1, 2, 3, 4, 5]
    drawn = sample_positions(10_000, 20, "s")
    assert len(set(drawn)) == 20 and drawn == sorted(drawn) and all(1 <= p <= 10_000 for p in drawn)
    assert sum(p > 9_000 for p in drawn) >= 10
    assert len(sample_positions(21, 20, "s")) == 20


def _write_certificate(pki, issuing_ca, agency, purpose, not_after):
    issued = make_agency_certificate(issuing_ca, agency, purpose, not_before=not_after - timedelta(days=60),
                                     not_after=not_after)  # fmt: skip
    write_pem(pki.certificate(agency, purpose), issued.certificate.public_bytes(serialization.Encoding.PEM))


def test_expiring_and_expired_certificates_are_reported(pki_copy, issuing_ca):
    assert expiring_certificates(pki_copy) == []
    now = datetime.now(UTC)
    _write_certificate(pki_copy, issuing_ca, "tax", TLS_CLIENT, now + timedelta(days=10, hours=1))
    _write_certificate(pki_copy, issuing_ca, "land", SIGNING, now - timedelta(days=2, hours=1))
    found = expiring_certificates(pki_copy, within_days=30, at=now)
    assert [(e.path, e.subject, e.agency, e.purpose, e.days_left, e.expired) for e in found] == [
        ("land/signing.pem", "Liên thông land signing", "land", "signing", -2, True),
        ("tax/tls-client.pem", "Liên thông tax tls-client", "tax", "tls-client", 10, False),
    ]
    assert found[1].not_after.date() == (now + timedelta(days=10, hours=1)).date()
    assert [e.path for e in expiring_certificates(pki_copy, within_days=9, at=now)] == ["land/signing.pem"]
    # within a year and a day: the one-year TLS certificates and the CRL's next update too, never a key
    year = expiring_certificates(pki_copy, within_days=366, at=now)
    assert ("crl.pem", "crl", "Liên thông Sandbox Issuing CA") in {(e.path, e.purpose, e.subject) for e in year}
    assert {"population/tls-client.pem", "health/tls-server.pem"} <= {e.path for e in year}
    assert not any(e.path.endswith(".key.pem") or e.purpose in ("root-ca", "issuing-ca") for e in year)


# -- the command line ---------------------------------------------------------------------------------------------


def audit_command(engine, work, *args):
    """``lienthong ledger audit`` over the packages in ``work``/out, with the anchors of ``work``/anchors."""
    url = engine.url.render_as_string(hide_password=False)
    arguments = ["ledger", "audit", "--db", url, "--packages", work / "out", "--anchors", work / "anchors", *args]
    return CliRunner().invoke(app, list(map(str, arguments)), env={"COLUMNS": "200"})


def test_the_command_fails_on_a_broken_chain(exchange_engine, sent, tmp_path, pki):
    intact = audit_command(exchange_engine, tmp_path, "--pki", pki.path)
    assert intact.exit_code == 0, intact.output
    assert "chain: intact, 4 entries" in intact.stdout and "4 of 4 sampled entries verified" in intact.stdout
    assert "none expires within 30 days" in intact.stdout and intact.stdout.rstrip().endswith("audit passed")
    assert f"anchors: 0 of 0 in {tmp_path / 'anchors'} hold" in intact.stdout

    tamper_ledger(exchange_engine, "UPDATE ledger_entry SET record_count = 30 WHERE position = 3")
    broken = audit_command(exchange_engine, tmp_path, "--pki", pki.path)
    assert broken.exit_code == 1, broken.output
    assert "chain: BROKEN: ledger: entry 3 (package_sent) does not match its hash" in broken.stdout
    assert "audit failed: the chain is broken" in broken.stdout


def test_the_command_fails_on_a_sampled_entry(exchange_engine, sent, tmp_path, pki):
    shutil.rmtree(sent[0].path.with_name(sent[0].path.name + ".receipt"))
    result = audit_command(exchange_engine, tmp_path, "--pki", pki.path, "--seed", "x")
    assert result.exit_code == 1, result.output
    assert "3 of 4 sampled entries verified (seed x)" in result.stdout
    assert f"  FAILED entry 2 (receipt_received, package {sent[0].manifest.package_id}): missing: no " in result.stdout
    assert "audit failed: 1 of 4 sampled entries failed" in result.stdout


def test_the_command_checks_the_chain_against_the_receipts_a_partner_hands_over(exchange_engine, witnessed, tmp_path,
                                                                                pki):  # fmt: skip
    """The attacker rewrites the chain and deletes our copies of the receipts (and has no anchors to fear): the
    partner's own copies, handed over, still contradict the chain."""
    handed = tmp_path / "from-health"
    for built in witnessed:
        shutil.copytree(receipt_of(built).parent, handed / built.manifest.package_id)
    intact = audit_command(exchange_engine, tmp_path, "--pki", pki.path, "--receipts", handed)
    assert intact.exit_code == 0, intact.output
    assert "witnesses: 2 of 3 receipts found carry a ledger head a partner signed (by health, up to entry 4)" \
        in intact.stdout  # fmt: skip

    rewrite_chain(exchange_engine, 2, record_count=30)
    for built in witnessed:
        shutil.rmtree(receipt_of(built).parent)
    rewritten = audit_command(exchange_engine, tmp_path, "--pki", pki.path, "--sample", "0", "--receipts", handed)
    assert rewritten.exit_code == 1, rewritten.output
    assert "chain: intact, 6 entries" in rewritten.stdout  # the chain alone cannot tell
    second, third = (built.manifest.package_id for built in witnessed[1:])
    assert (f"  FAILED {handed / second / RECEIPT}: witness: ledger entry 2 differs from the head health signed in "
            f"the receipt for package {second}") in rewritten.stdout  # fmt: skip
    assert f"  FAILED {handed / third / RECEIPT}: witness: ledger entry 4 differs from" in rewritten.stdout
    assert "audit failed: 2 receipts contradict the ledger or cannot be checked" in rewritten.stdout


def test_an_expiring_certificate_is_a_warning(exchange_engine, sent, tmp_path, pki_copy, issuing_ca):
    _write_certificate(pki_copy, issuing_ca, "health", TLS_CLIENT, datetime.now(UTC) + timedelta(days=5, hours=1))
    result = audit_command(exchange_engine, tmp_path, "--pki", pki_copy.path)
    assert result.exit_code == 0, result.output
    assert "warning: health/tls-client.pem ('Liên thông health tls-client') expires in 5 days, " in result.stdout
    assert result.stdout.rstrip().endswith("audit passed with 1 warning(s)")
