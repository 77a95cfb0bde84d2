"""The project as a wheel: built from a copy of the tree, installed (not editable) into a fresh virtual environment,
and run from an empty folder as an operator runs it — so a file found only relative to the source tree shows here.

The new environment borrows the dependencies already installed in this one (a ``.pth`` naming a folder of links to
their files, leaving out this project's editable install), so the test builds and installs only the wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = (".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")
PLUGIN = "plugins.airflow_lienthong:LienThongPlugin"
PASSWORD = "wheel test key password"


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def build_wheel(work: Path) -> Path:
    source = work / "src"
    shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--quiet", "-w", str(work / "dist")])
    [wheel] = (work / "dist").glob("lienthong-*.whl")
    return wheel


def borrowed_dependencies(folder: Path, ours: set[str]) -> Path:
    """Links to everything in this environment's site-packages but this project: not its editable finder and
    ``.pth``, not its metadata, not a package of the same name as one of ours. Named by a plain path line in a
    ``.pth``, the folder's own ``.pth`` files are never run."""
    site_packages = Path(sysconfig.get_paths()["purelib"])
    folder.mkdir()
    for entry in site_packages.iterdir():
        name = entry.name
        if (
            name.startswith(("__editable__", "lienthong-"))
            or name.endswith((".pth", ".egg-link"))
            or name == "__pycache__"
            or name.split(".")[0] in ours
        ):
            continue
        (folder / name).symlink_to(entry)
    return folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A virtual environment with the wheel installed, and the environment its commands run in."""
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
    with zipfile.ZipFile(wheel) as archive:
        ours = {name.split("/")[0] for name in archive.namelist() if "/" in name and ".dist-info/" not in name}
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site_packages = Path(
        run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    deps = borrowed_dependencies(work / "dependencies", ours)
    (site_packages / "borrowed_dependencies.pth").write_text(f"{deps}\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet", wheel])

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LIENTHONG_", "AIRFLOW", "VIRTUAL_ENV"))}
    (work / "airflow" / "plugins").mkdir(parents=True)  # Airflow's own plugins folder, empty: the entry point only
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "LIENTHONG_KEY_PASSWORD": PASSWORD,
        "LIENTHONG_DISCLOSURE_KEY": "the operator's disclosure key",  # a population package is indexed as it is sealed
        "AIRFLOW_HOME": str(work / "airflow"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(work / "airflow" / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    here = work / "operator"
    here.mkdir()
    return {"venv": venv, "python": python, "site_packages": site_packages, "env": env, "cwd": here, "ours": ours}


def lienthong(installed: dict, *args: str) -> subprocess.CompletedProcess:
    command = installed["venv"] / "bin" / "lienthong"
    return run([str(command), *args], env=installed["env"], cwd=installed["cwd"])


def python(installed: dict, code: str) -> dict:
    done = run([installed["python"], "-c", textwrap.dedent(code)], env=installed["env"], cwd=installed["cwd"])
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_package_its_schemas_and_migrations_are_read_from_the_installed_wheel(installed):
    assert installed["ours"] >= {"lienthong", "plugins", "feeds", "partners", "connectors", "exchange"}
    assert installed["ours"] >= {"validation", "population", "schemas"}
    found = python(
        installed,
        f"""
        import importlib, json, sys
        from lienthong.settings import schema_file, schema_folders
        from population import migrate
        packages = {{name: importlib.import_module(name) for name in {sorted(installed["ours"])!r}}}
        folders = {{name: list(package.__path__) for name, package in packages.items()}}
        print(json.dumps({{"folders": folders, "path": sys.path, "schemas": str(schema_folders()[-1]),
                          "agreement": str(schema_file("agreements/health.yaml")),
                          "migrations": sorted(p.name for p in migrate.MIGRATIONS_DIR.glob("versions/*.py"))}}))
        """,
    )
    site_packages = installed["site_packages"]
    for name, folders in found["folders"].items():
        assert [Path(folder) for folder in folders] == [site_packages / name], f"{name} is loaded from {folders}"
    assert not [entry for entry in found["path"] if entry and Path(entry).is_relative_to(PROJECT_ROOT)]
    assert Path(found["schemas"]) == site_packages / "schemas"
    assert Path(found["agreement"]).is_file() and Path(found["agreement"]).is_relative_to(site_packages)
    assert found["migrations"][0].startswith("0001_")


def test_an_operator_builds_and_verifies_a_package_with_the_installed_command(installed):
    assert "Usage: lienthong" in lienthong(installed, "--help").stdout
    lienthong(installed, "db", "upgrade")
    assert (installed["cwd"] / "var" / "lienthong.db").is_file()
    lienthong(installed, "pki", "init", "--rsa-bits", "2048")
    (installed["cwd"] / "citizens.csv").write_text(
        "personal_id,full_name,date_of_birth\n001200012345,Nguyễn Thị Thuỷ,2000-01-02\n079085001234,Trần Văn Bé,\n",
        encoding="utf-8",
    )
    build = "package build --agreement health-identity --recipient health --input citizens.csv --out out"
    built = lienthong(installed, *build.split())
    package = built.stdout.strip()
    assert package == "out/health-identity-population-outbound-00000001"
    verified = lienthong(installed, "package", "verify", package, "--trust", "var/pki/root-ca.pem", "--record")
    assert verified.stdout.startswith("package ") and "verified: health-identity #1" in verified.stdout
    assert PASSWORD not in built.stdout + built.stderr + verified.stdout + verified.stderr


def test_airflow_finds_the_plugin_by_its_entry_point(installed):
    found = python(
        installed,
        """
        import json
        from importlib.metadata import entry_points
        from airflow import plugins_manager
        [entry] = [e for e in entry_points(group="airflow.plugins") if e.dist.name == "lienthong"]
        plugins = [p["name"] for p in plugins_manager.get_plugin_info()]
        print(json.dumps({"value": entry.value, "dist": str(entry.dist.locate_file("")),
                          "module": entry.load().__module__, "plugins": plugins,
                          "errors": plugins_manager.get_import_errors()}))
        """,
    )
    assert found["value"] == PLUGIN and found["module"] == "plugins.airflow_lienthong"
    assert Path(found["dist"]) == installed["site_packages"]
    assert "lienthong" in found["plugins"] and not found["errors"]
