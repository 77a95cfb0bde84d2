"""The production deployment's files: docker-compose.yml (checked by Debian's docker-compose itself, with
.env.example), .env.example, the Dockerfile, .dockerignore and the scripts under deploy/.

What they promise operators: nothing published beyond loopback but the web UI on 127.0.0.1:8080; every long-running
service watched by a health check and started only once what it needs is healthy or done; workers that scale; no
secret written in a file that is committed (secrets only as ``${…}`` from the git-ignored .env); and, for the native
launcher that reads this compose file, Airflow's arguments as lists and the shared settings as one mapping."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))  # merge keys (<<) resolved
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
COMMON: dict[str, Any] = COMPOSE["x-airflow-common"]

AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker", "airflow-cli"}  # fmt: skip
LONG_RUNNING = {"postgres", "redis", "minio", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                "airflow-triggerer", "airflow-worker"}  # fmt: skip
ONE_SHOT = {"minio-init", "airflow-init", "airflow-cli"}
LOOPBACK = ("127.0.0.1:", "[::1]:")
# The settings the platform's code and the native launcher read, with the value each must have ("${" for a
# secret or host-specific value, which only .env gives) Airflow's database driver: psycopg 2 or 3.
CONTRACT = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": re.compile(
        r"postgresql\+psycopg2?://airflow:\$\{[^}]+\}@postgres:5432/airflow"
    ),
    "AIRFLOW__CELERY__BROKER_URL": "redis://redis:6379/0",
    "AIRFLOW__CELERY__RESULT_BACKEND": re.compile(
        r"db\+postgresql(\+psycopg2?)?://airflow:\$\{[^}]+\}@postgres:5432/airflow"
    ),
    "AIRFLOW__CORE__FERNET_KEY": "${",
    "AIRFLOW__API_AUTH__JWT_SECRET": "${",
    "AIRFLOW__CORE__DAGS_FOLDER": "/opt/airflow/dags",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://airflow-apiserver:8080/execution/",
    "LIENTHONG_DB_URL": re.compile(r"postgresql://lienthong:\$\{[^}]+\}@postgres:5432/lienthong"),
    "LIENTHONG_ARTIFACTS": "s3://lienthong-artifacts",
    "AWS_ENDPOINT_URL": "http://minio:9000",
    "AWS_ACCESS_KEY_ID": "${",
    "AWS_SECRET_ACCESS_KEY": "${",
    "LIENTHONG_KEYS": "airflow",
    "LIENTHONG_VAR_DIR": "/opt/airflow/var",
    "LIENTHONG_KEY_PASSWORD": "${",
    "LIENTHONG_DISCLOSURE_KEY": "${",
}
SECRETS = {"POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "LIENTHONG_DB_PASSWORD", "AIRFLOW__CORE__FERNET_KEY",
           "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW_ADMIN_PASSWORD", "MINIO_ROOT_PASSWORD",
           "AWS_SECRET_ACCESS_KEY", "LIENTHONG_KEY_PASSWORD", "LIENTHONG_DISCLOSURE_KEY"}  # fmt: skip
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|DISCLOSURE_KEY|ACCESS_KEY|TOKEN|CREDENTIAL")
REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[?-][^}]*)?\}")  # ${VAR}, ${VAR:?message}, ${VAR:-default}
INTERPOLATED = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")  # $${…} is an escaped $, for the container's shell


def strings(node: Any) -> list[str]:
    """Every string of a loaded YAML document, keys included (comments are not in it)."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in [*strings(key), *strings(value)]]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def example_variables() -> dict[str, str]:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    found = {}
    for line in lines:
        if line.strip() and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), f".env.example: not NAME=value: {line!r}"
            found[name] = value
    return found


def docker_compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess:
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.fail(
            "docker-compose is not installed: `make system-packages` (make test runs it) installs Debian's "
            "docker-compose, or run `apt-get install docker-compose`",
            pytrace=False,
        )
    # Only the env file's values, never a secret of the shell this runs in; no daemon is contacted by `config`.
    env = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}}
    command = [executable, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_docker_compose_accepts_the_file_with_the_example_env():
    """`docker-compose config -q`: the file is valid Compose, and .env.example gives every variable it needs."""
    done = docker_compose("config", "-q")
    assert done.returncode == 0, f"docker-compose config -q with .env.example:\n{done.stdout}{done.stderr}"


def test_a_secret_missing_from_the_env_file_stops_docker_compose(tmp_path):
    """`${VAR:?…}`: without the env file's secrets, docker-compose refuses to start anything and names one."""
    lines = [line for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
             if not line.startswith("LIENTHONG_KEY_PASSWORD=")]  # fmt: skip
    env_file = tmp_path / "env"
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = docker_compose("config", "-q", env_file=env_file)
    assert done.returncode != 0
    assert "LIENTHONG_KEY_PASSWORD" in done.stderr


def test_the_web_ui_is_published_on_loopback_only_and_nothing_beyond_it():
    """The API server (web UI) is on 127.0.0.1:8080 of the host only; any other published port is on loopback too
    (none is, today), and no service shares the host's network."""
    assert SERVICES["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith(LOOPBACK), f"{name} publishes {port} beyond loopback"
        assert service.get("network_mode") != "host", f"{name} shares the host's network"


def test_the_resolved_file_publishes_on_loopback_only():
    """The same, as docker-compose resolves the file (anchors merged, variables given): every published port names
    a loopback host address."""
    done = docker_compose("config")
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    for name, service in resolved.items():
        for port in service.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
            assert text.startswith(LOOPBACK), f"{name} publishes {port} beyond loopback"


def test_every_long_running_service_has_a_healthcheck_and_waits_for_what_it_needs():
    """Each long-running service is watched and restarted; each service starts only when what it depends on is
    healthy or has completed, as in Airflow's own compose file."""
    assert set(SERVICES) == LONG_RUNNING | ONE_SHOT
    for name in LONG_RUNNING:
        service = SERVICES[name]
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert service.get("restart") == "always", f"{name} is not restarted"
    for name in ONE_SHOT:
        assert SERVICES[name].get("restart") == "no", f"{name} runs once"
    for name, service in SERVICES.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions, not a list"
        for dependency, how in depends_on.items():
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert how == {"condition": expected}, f"{name} waits for {dependency} with {how}"
    for name in AIRFLOW_SERVICES:
        needs = set(SERVICES[name]["depends_on"])
        assert {"postgres", "redis", "minio-init"} <= needs, f"{name} starts before the databases and the store"
        if name not in {"airflow-init", "airflow-cli"}:
            assert "airflow-init" in needs, f"{name} starts before airflow-init is done"
    assert "airflow-apiserver" in SERVICES["airflow-worker"]["depends_on"]  # the tasks' Execution API
    assert SERVICES["minio-init"]["depends_on"] == {"minio": {"condition": "service_healthy"}}


def test_the_worker_scales():
    """`docker-compose up --scale airflow-worker=3`: no fixed container name and no host port on the worker."""
    worker = SERVICES["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"] == ["celery", "worker"]
    assert not any("container_name" in service for service in SERVICES.values())


def test_the_airflow_services_are_as_the_native_launcher_reads_them():
    """Every Airflow service runs the project's image with `command` a list of airflow's arguments; the shared
    settings are one mapping in x-airflow-common with the values the platform's code reads."""
    commands = {name: SERVICES[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == ["api-server"]
    assert commands["airflow-scheduler"][0] == "scheduler"
    assert commands["airflow-dag-processor"] == ["dag-processor"]
    assert commands["airflow-triggerer"] == ["triggerer"]
    assert commands["airflow-init"] == ["bash", "/opt/lienthong/airflow-init.sh"]
    for name, command in commands.items():
        assert isinstance(command, list) and all(isinstance(word, str) for word in command), name
        assert SERVICES[name]["image"] == COMMON["image"] and SERVICES[name]["user"] == COMMON["user"], name
        environment = SERVICES[name]["environment"]
        assert isinstance(environment, dict) and environment.items() >= COMMON["environment"].items(), name
    shared = COMMON["environment"]
    assert isinstance(shared, dict)
    for key, expected in CONTRACT.items():
        value = shared.get(key)
        assert isinstance(value, str), f"x-airflow-common: {key} is missing"
        if isinstance(expected, re.Pattern):
            assert expected.fullmatch(value), f"x-airflow-common: {key}={value}"
        elif expected == "${":
            assert REFERENCE.fullmatch(value), f"x-airflow-common: {key} must come from .env, as ${{{key}:?…}}"
        else:
            assert value == expected, f"x-airflow-common: {key}={value}, not {expected}"
    # no host folder in the Airflow containers: the image has the DAGs, and the workers share no disk
    for name in AIRFLOW_SERVICES:
        for volume in SERVICES[name].get("volumes", []):
            source = volume.split(":", 1)[0]
            assert not source.startswith((".", "/")) or name == "airflow-init", f"{name} mounts {volume}"
            assert not volume.split(":")[1].startswith(shared["LIENTHONG_VAR_DIR"]), f"{name} shares its var"


def test_no_secret_is_written_in_the_file():
    """A setting named like a secret is only a `${…}` reference; a URL's password is one too; and none of
    .env.example's placeholder secrets appears in the file."""
    environments = {"x-airflow-common": COMMON["environment"]}
    environments |= {name: service.get("environment", {}) for name, service in SERVICES.items()}
    for where, environment in environments.items():
        assert isinstance(environment, dict), f"{where}: environment must be a mapping"
        for key, value in environment.items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                assert REFERENCE.fullmatch(str(value)), f"{where}: {key} is written in the file, not taken from .env"
    for text in strings(COMPOSE):
        for password in re.findall(r"://[^/\s:@]+:([^@\s]+)@", text):
            assert REFERENCE.fullmatch(password), f"a password written in a URL: {text}"
    raw = COMPOSE_FILE.read_text(encoding="utf-8")
    for name, value in example_variables().items():
        if name in SECRETS:
            assert value not in raw, f"{name}'s placeholder is written in docker-compose.yml"


def test_env_is_git_ignored_and_the_example_names_every_variable():
    """.env (the secrets) is git-ignored and .env.example is not; .env.example names every variable the compose
    file interpolates and no other, each under a comment, each secret a placeholder that the init scripts refuse."""
    ignored = subprocess.run(["git", "check-ignore", "--quiet", "--no-index", ".env"], cwd=ROOT)
    assert ignored.returncode == 0, ".env is not in .gitignore"
    example = subprocess.run(["git", "check-ignore", "--quiet", "--no-index", ".env.example"], cwd=ROOT)
    assert example.returncode == 1, ".env.example must be committed"

    used = {name for text in strings(COMPOSE) for name in INTERPOLATED.findall(text)}
    assert not [text for text in strings(COMPOSE) if re.search(r"(?<!\$)\$[A-Za-z_]", text)], "use ${VAR}, not $VAR"
    variables = example_variables()
    assert used - set(variables) == set(), "interpolated by docker-compose.yml, missing from .env.example"
    assert set(variables) - used == set(), "in .env.example, never used by docker-compose.yml"
    assert used >= SECRETS

    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if line and not line.startswith("#"):
            above = number - 1
            while above >= 0 and lines[above] and not lines[above].startswith("#"):
                above -= 1
            assert above >= 0 and lines[above].startswith("#"), f".env.example: {line} has no comment above it"

    scripts = "".join(path.read_text(encoding="utf-8") for path in sorted((ROOT / "deploy").glob("*.sh")))
    for name in SECRETS:
        assert variables[name].startswith("change-me"), f".env.example: {name} is not a placeholder"
        assert name in scripts.split("for name in", 1)[1], f"no init script refuses {name}'s placeholder"
    assert "change-me" in (ROOT / "deploy" / "airflow-init.sh").read_text(encoding="utf-8")


def test_the_image_is_built_on_the_pinned_airflow_from_a_wheel():
    """The Dockerfile builds on apache/airflow at requirements.txt's Airflow and Python 3.11, builds the project's
    wheel in a stage of its own, installs the lock under the constraints file the builder brings (no address of a
    registry in the file), and copies the DAGs, the schemas and the init script."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    pin = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(encoding="utf-8"), re.M)[1]
    assert re.search(rf"^ARG AIRFLOW_VERSION={re.escape(pin)}$", dockerfile, re.M), f"AIRFLOW_VERSION is not {pin}"
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", dockerfile, re.M)
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", dockerfile, re.M)
    assert stages == [("apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}", "build"),
                      ("apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}", "")]  # fmt: skip
    assert "pip wheel --no-deps" in dockerfile
    assert "constraints.txt" in dockerfile and "--constraint" in dockerfile and "requirements.txt" in dockerfile
    assert "pip check" in dockerfile
    for copied in ("dags/ /opt/airflow/dags/", "schemas/ /opt/lienthong/schemas/",
                   "deploy/airflow-init.sh /opt/lienthong/airflow-init.sh"):  # fmt: skip
        assert f"COPY --chown=airflow:0 {copied}" in dockerfile, copied
    assert not re.search(r"^\s*(ENV|ARG)\s+\S*(PASSWORD|SECRET|FERNET|KEY)", dockerfile, re.M | re.I)


def test_no_registry_address_in_the_deployment_files():
    """No URL of a registry or another outside host: the only addresses are the compose network's and loopback."""
    files = ["Dockerfile", "docker-compose.yml", ".env.example", ".dockerignore", "docs/deployment.md"]
    files += [f"deploy/{path.name}" for path in sorted((ROOT / "deploy").iterdir()) if path.is_file()]
    for name in files:
        text = (ROOT / name).read_text(encoding="utf-8")
        outside = re.findall(r"\w+://[^\s/\"'`)]*\.[A-Za-z]{2,}[^\s\"'`)]*", text)
        assert not outside, f"{name} names outside addresses: {outside}"


def test_the_build_context_leaves_out_secrets_and_the_workspace():
    """.dockerignore: .env, keys, databases, the workspace, the virtual environment and .git never reach the
    builder (so never a layer)."""
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".env", ".env.*", "*.pem", "*.key", "*.p12", "*.db", "var", ".venv", ".git"} <= ignored
    assert not ignored & {"dags", "schemas", "deploy", "requirements.txt", "constraints.txt", "pyproject.toml",
                          "README.md", "verify"}  # fmt: skip


def test_the_lock_wins_over_airflows_constraints(tmp_path):
    """deploy/merge_constraints.py, as the Dockerfile runs it: Airflow's constraints less every package that
    requirements.txt pins (names compared as pip does), so the two never ask pip for different versions; a file
    with no pin (an error page saved instead) is refused."""
    script = ROOT / "deploy" / "merge_constraints.py"
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# Airflow's\nSQLAlchemy==2.0.40\ngoogle-cloud-storage==3.1.0\npython_dateutil==2.8\n")
    done = subprocess.run([sys.executable, str(script), str(constraints), str(ROOT / "requirements.txt")],
                          capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "# Airflow's\ngoogle-cloud-storage==3.1.0\n"  # the lock pins sqlalchemy and python-dateutil

    constraints.write_text("<html>not found</html>\n")
    done = subprocess.run([sys.executable, str(script), str(constraints), str(ROOT / "requirements.txt")],
                          capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1 and "not a constraints file" in done.stderr


def test_the_init_scripts_parse():
    """The scripts the containers run are valid for their shells (bash in Airflow's and PostgreSQL's images, sh in
    MinIO's); the files the compose file mounts exist."""
    for script, shell in [("airflow-init.sh", "bash"), ("postgres-init.sh", "bash"), ("minio-init.sh", "sh")]:
        path = ROOT / "deploy" / script
        done = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, f"{script}: {done.stderr}"
        assert os.access(path, os.X_OK), f"{script} is not executable"
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            if volume.startswith("./"):
                assert (ROOT / volume.split(":", 1)[0]).is_file(), volume


def test_make_system_packages_installs_docker_compose():
    """The check above needs docker-compose: `make test` installs it through SYSTEM_TOOLS."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^SYSTEM_TOOLS \+= /usr/bin/docker-compose:docker-compose\b", makefile, re.M)
