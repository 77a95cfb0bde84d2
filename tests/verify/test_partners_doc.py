"""docs/partners.md works when pasted: every shell block runs, in order, in a temporary folder holding what a
partner holds (its certificates and keys, the kit's wheel, the last manifest it accepted and the package it
received, made by the platform), with the kit installed in a bare venv; or it says above it why it cannot."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from exchange.package import zip_package
from lienthong_verify import errors
from tests.verify.conftest import ROOT, kit_environment, partner_files

pytestmark = pytest.mark.slow  # shares the kit's wheel and venv with test_kit.py; its own install block ~10 s

DOC = ROOT / "docs" / "partners.md"
SHELLS = ("sh", "bash", "shell")
NOT_RUNNABLE = re.compile(r"<!-- not-runnable: (?P<reason>\S.*) -->")
PLATFORM_ONLY = {"verification", "ledger"}  # the base class; the platform's own ledger


@dataclass(frozen=True)
class Block:
    line: int  # where its fence opens, from 1
    body: str
    not_runnable: str | None  # the reason given right above it


def shell_blocks(text: str) -> list[Block]:
    lines, blocks, at = text.splitlines(), [], 0
    while at < len(lines):
        fence = lines[at]
        if fence.startswith("```") and fence[3:].strip() in SHELLS:
            end = lines.index("```", at + 1)
            marker = NOT_RUNNABLE.fullmatch(lines[at - 1]) if at else None
            blocks.append(Block(at + 1, "\n".join(lines[at + 1 : end]) + "\n", marker and marker["reason"]))
            at = end
        elif fence.startswith("```"):
            at = lines.index("```", at + 1)
        at += 1
    return blocks


def test_every_shell_block_of_the_page_runs_or_says_why_not():
    blocks = shell_blocks(DOC.read_text(encoding="utf-8"))
    assert len([b for b in blocks if b.not_runnable is None]) >= 8
    for block in blocks:
        assert block.body.strip(), f"docs/partners.md:{block.line}: an empty block"


def test_every_check_a_partner_can_meet_is_in_a_table():
    text = DOC.read_text(encoding="utf-8")
    checks = {cls.check for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, Exception)
              and hasattr(cls, "check")} - PLATFORM_ONLY  # fmt: skip
    missing = sorted(check for check in checks | {"validate"} if f"`{check}`" not in text)
    assert not missing, f"docs/partners.md names no check {', '.join(missing)}"


def test_the_page_pasted_block_by_block_verifies_decrypts_validates_and_acknowledges_a_package(
    kit, sender, pki, tmp_path
):
    work = tmp_path / "partner"
    work.mkdir()
    names = ("citizen-extract.csv", "citizen-extract.jsonl", "citizen-extract.xml")  # every format the page reads
    built = [sender(*names) for _ in range(7)]
    received = zip_package(built[-1].path)
    assert received.name == "health-identity-population-outbound-00000007.zip"  # the page's example
    shutil.copy(received, work / received.name)
    (work / "last-manifest.json").write_bytes((built[-2].path / "manifest.json").read_bytes())
    files = partner_files(pki, "health")
    for name, source in [("root-ca.pem", files["root"]), ("issuing-ca.pem", files["chain"]), ("crl.pem", files["crl"]),
                         ("encryption.pem", files["cert"]), ("encryption.key.pem", files["key"]),
                         ("signing.pem", files["signing"]), ("signing.key.pem", files["signing_key"])]:  # fmt: skip
        shutil.copy(source, work / name)
    shutil.copy(kit.wheel, work / kit.wheel.name)
    environment = kit_environment(kit.venv) | {"PKG": received.name.removesuffix(".zip")}
    for block in shell_blocks(DOC.read_text(encoding="utf-8")):
        if block.not_runnable is not None:
            continue
        ran = subprocess.run(["bash", "-euo", "pipefail", "-c", block.body], cwd=work, env=environment,
                             capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
        assert ran.returncode == 0, f"docs/partners.md:{block.line} failed:\n{ran.stdout}\n{ran.stderr}"
    assert (work / "last-manifest.json").read_bytes() == (built[-1].path / "manifest.json").read_bytes()
    decrypted = sorted(p.name for p in (work / f"{environment['PKG']}.decrypted" / "data").iterdir())
    assert decrypted == sorted(names)
    for name in names:  # the kit and stock OpenSSL decrypt to the same bytes
        pkg = environment["PKG"]
        assert (work / f"{pkg}.openssl" / name).read_bytes() == (work / f"{pkg}.decrypted" / "data" / name).read_bytes()
    assert (work / "receipt" / "receipt.json.p7s").is_file() and (work / f"{environment['PKG']}.receipt").is_dir()
