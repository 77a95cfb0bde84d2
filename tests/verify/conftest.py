"""The partners' kit as a ministry gets it: its wheel, built from verify/, installed in a bare virtual environment
with its three dependencies only; and packages made by the platform's own builder, encrypted for the health
partner, in the files' real names."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest

from exchange.package import BuiltPackage, PackageBuilder, SchemaRef
from exchange.pki import ENCRYPTION, SIGNING, PkiDirectory, init_pki, key_path, load_certificate, load_signer
from population.db import create_population_engine
from population.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = b"partner key password"
SCHEMA = SchemaRef("citizen-extract", "1")
# What the health agreement sends of the citizen extract; updated_at as SQLite gives it back (naive, in UTC)
CITIZENS = [
    {"personal_id": "001200012345", "full_name": "Nguyễn Thị Thuỷ", "date_of_birth": date(2000, 1, 2), "sex": "F",
     "updated_at": datetime(2026, 7, 1, 8, 30)},
    {"personal_id": "079085001234", "full_name": 'Trần Văn "Bé", con', "date_of_birth": None, "sex": "M",
     "updated_at": datetime(2026, 7, 2, 9, 0)},
    {"personal_id": "096191000077", "full_name": "Đặng Hoà\nPhước", "date_of_birth": date(1991, 12, 31), "sex": None,
     "updated_at": datetime(2026, 7, 3, 10, 15)},
]  # fmt: skip


@dataclass(frozen=True)
class Kit:
    wheel: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(self, *arguments: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """``lienthong-verify ARGUMENTS`` in the kit's environment, the partner's key password in its variable."""
        return subprocess.run([self.venv / "bin" / "lienthong-verify", *map(str, arguments)], cwd=cwd,
                              env=kit_environment(self.venv), capture_output=True, text=True, timeout=120)  # fmt: skip


def kit_environment(venv: Path) -> dict[str, str]:
    """A shell's environment with the kit's venv first on PATH and nothing of the platform's."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "LIENTHONG"))}
    environment["PATH"] = f"{venv / 'bin'}{os.pathsep}{environment.get('PATH', '')}"
    environment["VIRTUAL_ENV"] = str(venv)
    environment["LIENTHONG_KEY_PASSWORD"] = PASSWORD.decode()
    return environment


def build_wheel(out: Path) -> Path:
    """The kit's wheel, built from a copy of verify/ (its schema links resolved), so nothing lands in the tree."""
    source = out / "source"
    shutil.copytree(ROOT / "verify", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, source],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    (wheel,) = out.glob("lienthong_verify-*.whl")
    return wheel


@pytest.fixture(scope="session")
def kit(tmp_path_factory) -> Kit:
    """The wheel installed with pip (its dependencies from the package index as configured) in a new bare venv."""
    folder = tmp_path_factory.mktemp("kit")
    wheel = build_wheel(folder)
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel], check=True,
                   capture_output=True, timeout=900, env=kit_environment(venv))  # fmt: skip
    return Kit(wheel, venv)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> PkiDirectory:
    return init_pki(tmp_path_factory.mktemp("pki") / "pki", PASSWORD, rsa_bits=2048)


@pytest.fixture
def sender(tmp_path, pki):
    """The population side: its database (feeds and ledger) and a function that seals its next package to health."""
    engine = create_population_engine(f"sqlite:///{tmp_path / 'population.db'}")
    upgrade(engine)
    signer = load_signer(pki, "population", PASSWORD)
    encrypt_for = load_certificate(pki.certificate("health", ENCRYPTION))

    def seal(*names: str, recipient: str = "health", mode: str = "incremental") -> BuiltPackage:
        with PackageBuilder(tmp_path / "outbox", agreement="health-identity", recipient=recipient, schema=SCHEMA,
                            signer=signer, encrypt_for=encrypt_for, mode=mode) as builder:  # fmt: skip
            for name in names:
                builder.add_records(name, CITIZENS)
            return builder.seal(engine)

    yield seal
    engine.dispose()


def partner_files(pki: PkiDirectory, agency: str) -> dict[str, Path]:
    """The files a partner holds, as the PKI issued them."""
    return {
        "root": pki.root_ca,
        "crl": pki.crl,
        "chain": pki.issuing_ca,
        "cert": pki.certificate(agency, ENCRYPTION),
        "key": key_path(pki.certificate(agency, ENCRYPTION)),
        "signing": pki.certificate(agency, SIGNING),
        "signing_key": key_path(pki.certificate(agency, SIGNING)),
    }
