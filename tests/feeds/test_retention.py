"""Retention after a real feed run (the partners on loopback, the population in SQLite, the packages on disk):
expired payloads and staging are deleted, the manifests, signatures, receipts and the ledger stay and still verify,
a pending package is never touched, legal holds (agreement, citizen) stop deletion, a dry run deletes nothing,
and nothing outside the workspace is deleted."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from exchange.agreements import load_agreements
from exchange.package import DATA, MANIFEST, SIGNATURE, read_manifest
from exchange.pki import PkiDirectory
from feeds.audit import audit_chain, audit_signatures, audit_witnesses
from feeds.checkpoint import read_checkpoint
from feeds.disclosures import lookup
from feeds.inbound import run_inbound
from feeds.outbound import extract, package, run_outbound, validate
from feeds.retention import (
    EXPIRED_NOTE,
    RetentionError,
    _keep_manifest,
    _remove,
    active_holds,
    apply_retention,
    place_hold,
    release_hold,
)
from lienthong.cli import app
from lienthong.settings import Workspace
from population.db import session_factory
from population.identity import mask_personal_id
from population.models import RetentionHold
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, key_password_env
from tests.partners.fixtures import exchange_world

AGREEMENTS = load_agreements()
PLAIN, ENCRYPTED, INBOUND, PENDING = "business-people", "health-identity", "tax-identity", "land-owners"
LATER = timedelta(days=max(a.retention_days for a in AGREEMENTS.values()) + 1)


def files_under(var: Path) -> dict[str, int]:
    """The workspace's packages, inbound packages and staging files, with their sizes."""
    found = [p for folder in ("packages", "inbound", "staging") for p in sorted((var / folder).rglob("*"))]
    return {str(p.relative_to(var)): p.stat().st_size for p in found if p.is_file()}


def only(folder: Path, pattern: str) -> Path:
    (found,) = sorted(folder.glob(pattern))
    return found


def agreement_of(name: str) -> str:
    """The agreement of a package's name (``<agreement>-<sender>-<direction>-<sequence>``) or staging folder."""
    return next(a for a in AGREEMENTS if Path(name).name.startswith(f"{a}-") or f"/{a}/" in name)


def cli(*arguments: str, env: dict[str, str]):
    result = CliRunner().invoke(app, list(arguments), env=env)
    return result.exit_code, result.output


def assert_ledger_verifies(world, workspace: Workspace, pki: PkiDirectory) -> None:
    chain = audit_chain(world.engine)
    signatures = audit_signatures(world.engine, [workspace.packages, workspace.inbound], pki, sample=chain.entries)
    assert signatures.checked == chain.entries and signatures.problems == []
    witnesses = audit_witnesses(world.engine, [workspace.packages, workspace.inbound], pki)
    assert witnesses.witnesses and witnesses.problems == []


@pytest.mark.slow
def test_retention_after_a_real_feed_run(tmp_path, sandbox_pki, monkeypatch):
    world = exchange_world(tmp_path / "var", sandbox_pki, 53, citizens=200)
    try:
        for variable, value in world.env.items():
            monkeypatch.setenv(variable, value)
        run_retention_story(world, sandbox_pki, tmp_path)
    finally:
        world.sandbox.stop()
        world.engine.dispose()


def run_retention_story(world, pki: PkiDirectory, tmp_path: Path) -> None:
    var, engine = world.var, world.engine
    workspace = Workspace(var, pki.path)
    for name in (PLAIN, ENCRYPTED):
        assert run_outbound(engine, AGREEMENTS[name], pki, var).delivery.status == "accepted"
    assert len(run_inbound(engine, AGREEMENTS[INBOUND], pki, var / "inbound", var / "reports").packages) == 1
    window = extract(engine, AGREEMENTS[PENDING])  # sealed, never delivered: pending, no receipt
    pending = package(engine, AGREEMENTS[PENDING], validate(engine, AGREEMENTS[PENDING], window, var / "staging"),
                      pki, var / "packages")  # fmt: skip
    assert read_checkpoint(engine, PENDING).pending_package == Path(pending.path)
    plain = only(var / "packages" / PLAIN, "*-00000001")
    encrypted = only(var / "packages" / ENCRYPTED, "*-00000001")
    inbound = only(var / "inbound" / INBOUND, "*.zip").with_suffix("")
    citizen = json.loads(only(plain / DATA, "*").read_text().splitlines()[0])["personal_id"]
    at = datetime.now(UTC) + LATER
    before = files_under(var)

    # nothing has expired yet; a dry run later lists what would go and deletes nothing
    assert not apply_retention(engine, workspace).packages and files_under(var) == before
    dry = apply_retention(engine, workspace, dry_run=True, at=at)
    assert {p.name for p in dry.packages} == {plain.name, encrypted.name, inbound.name}
    assert {Path(s.path).parent.name for s in dry.staging} == {PLAIN, ENCRYPTED}
    assert files_under(var) == before
    env = {**world.env, "COLUMNS": "200"}
    code, output = cli("retention", "apply", "--dry-run", "--json", "--as-of", at.date().isoformat(), env=env)
    assert code == 0 and len(json.loads(output)["packages"]) == 3 and files_under(var) == before

    # holds: on the inbound agreement, and on a citizen of the plain package
    code, output = cli("retention", "hold", "--agreement", INBOUND, "--reason", "case 7/2026", env=env)
    assert code == 0 and "placed" in output
    code, output = cli("retention", "hold", "--citizen", citizen, "--reason", "court order", env=env)
    assert code == 0 and mask_personal_id(citizen) in output and citizen not in output
    code, output = cli("retention", "holds", env=env)
    assert code == 0 and mask_personal_id(citizen) in output and citizen not in output and INBOUND in output
    for bad in (["--citizen", "12345"], ["--agreement", "no-such"], []):
        code, output = cli("retention", "hold", *bad, env=env)
        assert code == 1 and output.startswith("error:") and "Traceback" not in output
    with pytest.raises(RetentionError):
        place_hold(engine, agreement=PLAIN, personal_id=citizen)

    # the disclosure index says which packages hold the citizen: those are kept, with the inbound agreement's
    found = lookup(engine, citizen)
    holding = {d.package_id for d in (*found.sent, *found.received)}
    packages = ((PLAIN, plain), (ENCRYPTED, encrypted), (INBOUND, inbound.with_suffix(".zip")))
    expected = {name for name, path in packages if read_manifest(path)[0].package_id in holding} | {INBOUND}
    assert PLAIN in expected
    dry = apply_retention(engine, workspace, dry_run=True, at=at)
    assert {agreement_of(k.what) for k in dry.held} == expected
    assert {p.agreement for p in dry.packages} == {PLAIN, ENCRYPTED} - expected
    assert files_under(var) == before
    # without the index's key here, packages are scanned: the plain payload holds the citizen, the encrypted one
    # cannot be read by its sender, so both are kept
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("LIENTHONG_DISCLOSURE_KEY", raising=False)
        held = apply_retention(engine, workspace, at=at)
    assert held.packages == [] and {k.what for k in held.held} >= {plain.name, encrypted.name, inbound.name}
    assert (plain / DATA).is_dir() and plain.with_name(plain.name + ".zip").is_file()

    # the citizen's hold released: the packages without that citizen go; the inbound agreement is still held
    code, output = cli("retention", "release", "--citizen", citizen, env=env)
    assert code == 0 and citizen not in output
    code, output = cli("retention", "release", "--citizen", citizen, env=env)
    assert code == 1 and "no hold in force" in output
    ran = apply_retention(engine, workspace, at=at)
    assert {p.name for p in ran.packages} == {plain.name, encrypted.name}
    assert {k.what for k in ran.held} == {inbound.name}
    for sent in (plain, encrypted):
        assert not (sent / DATA).exists() and not sent.with_name(sent.name + ".zip").exists()
        assert (sent / MANIFEST).is_file() and (sent / SIGNATURE).is_file()
        assert (sent.with_name(sent.name + ".receipt") / "receipt.json").is_file()
        note = json.loads(sent.with_name(sent.name + EXPIRED_NOTE).read_text())
        assert note["deleted"] == [f"{sent.name}/{DATA}", f"{sent.name}.zip"]
        assert note["retention_days"] == AGREEMENTS[sent.parent.name].retention_days
    assert not (var / "staging" / PLAIN).exists() or not any((var / "staging" / PLAIN).iterdir())
    # the pending package and its staging are untouched
    assert Path(pending.path).is_file() and (Path(pending.path).with_suffix("") / DATA).is_dir()
    assert any((var / "staging" / PENDING).iterdir())
    assert read_manifest(Path(pending.path))[0].package_id == pending.package_id

    # the ledger verifies: chain, every entry's signed manifest or receipt, the heads partners witnessed
    assert_ledger_verifies(world, workspace, pki)
    for command in (["ledger", "verify"], ["ledger", "audit", "--sample", "100"]):
        code, output = cli(*command, env=env)
        assert code == 0 and "missing" not in output, output

    # the inbound hold released: its zip and the decrypted work files go, its manifest is taken out of the zip first;
    # a link in it pointing outside the workspace is removed as a link, and what it points to stays
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the workspace's")
    (inbound.with_suffix(".work") / "link").symlink_to(outside, target_is_directory=True)
    assert release_hold(engine, agreement=INBOUND) == 1
    ran = apply_retention(engine, workspace, at=at)
    assert [p.name for p in ran.packages] == [inbound.name]
    assert not inbound.with_suffix(".zip").exists() and not inbound.with_suffix(".work").exists()
    assert (inbound / MANIFEST).is_file() and (inbound / SIGNATURE).is_file()
    assert (outside / "keep.txt").read_text() == "not the workspace's"
    assert_ledger_verifies(world, workspace, pki)

    # a second run has nothing left to do
    again = apply_retention(engine, workspace, at=at)
    assert again.packages == [] and again.staging == [] and again.held == []


def test_an_agreement_without_retention_days_keeps_a_year(tmp_path):
    source = Path(AGREEMENTS[PLAIN].source).read_text(encoding="utf-8")
    assert "retention_days:" in source
    folder = tmp_path / "agreements"
    folder.mkdir()
    (folder / "business.yaml").write_text(
        "\n".join(line for line in source.splitlines() if not line.startswith("retention_days:")) + "\n",
        encoding="utf-8",
    )
    assert load_agreements(folder)[PLAIN].retention_days == 365
    (folder / "business.yaml").write_text(source.replace("retention_days: 90", "retention_days: 0"), encoding="utf-8")
    with pytest.raises(ValueError, match="retention_days"):
        load_agreements(folder)
    assert os.path.basename(AGREEMENTS[PLAIN].source) == "business.yaml"


def test_holds_are_placed_once_released_and_kept_as_a_record(engine):
    placed, new = place_hold(engine, agreement=PLAIN, reason="case 7/2026")
    assert new and placed.target == f"agreement {PLAIN}"
    assert place_hold(engine, agreement=PLAIN, reason="again") == (placed, False)
    citizen, _ = place_hold(engine, personal_id="001200012345")
    assert citizen.target == "citizen 001******345" and citizen.reason == "legal hold"
    for wrong in ({"personal_id": "00120001234"}, {"personal_id": "00120001234x"}, {"agreement": "no-such"}, {}):
        with pytest.raises(RetentionError):
            place_hold(engine, **wrong)
    assert [h.id for h in active_holds(engine)] == [placed.id, citizen.id]
    assert release_hold(engine, personal_id="001200012345", reason="order lifted") == 1
    assert release_hold(engine, personal_id="001200012345") == 0
    assert [h.id for h in active_holds(engine)] == [placed.id]
    with session_factory(engine)() as session:
        kept = session.get(RetentionHold, citizen.id)
        assert kept.released_at is not None and kept.release_reason == "order lifted"
    with pytest.raises(IntegrityError), engine.begin() as connection:  # one target, never none or both
        connection.execute(insert(RetentionHold).values(reason="x", placed_at=datetime.now(UTC)))


def test_nothing_outside_the_workspace_is_deleted_or_written(tmp_path):
    packages, outside = tmp_path / "var" / "packages", tmp_path / "outside"
    packages.mkdir(parents=True)
    outside.mkdir()
    (outside / "payload.csv").write_text("not the workspace's")
    (packages / "linked").symlink_to(outside, target_is_directory=True)
    for path in (packages / "linked" / "payload.csv", packages / ".." / "..", packages):
        with pytest.raises(RetentionError):
            _remove(path, packages)
    assert not _keep_manifest(packages, "linked")  # nothing written through a link
    _remove(packages / "linked", packages)  # the link goes, not what it points to
    assert not (packages / "linked").exists() and (outside / "payload.csv").read_text() == "not the workspace's"
    assert not list(outside.glob(MANIFEST))
