"""The production topology on this one machine, natively: ``make cluster`` (``lienthong cluster up``) and ``make
cluster-down`` (``lienthong cluster down``).

One source for both deployments: the components and their settings are read from ``docker-compose.yml``. Each
Airflow service's ``command`` and environment are used as they are written there, ``${…}`` filled from the
cluster's own env file (``<root>/cluster.env``, made once with fresh secrets, as an operator fills ``.env``); only
what names a folder of the image is set here to this machine's (``HOST_SETTINGS``). ``airflow-init``'s script
(``deploy/airflow-init.sh``) initialises the cluster as it does a compose deployment.

Hosts are network namespaces on one bridge (``lt-br0``, 10.77.0.0/24), each with its own hostname and an
``/etc/hosts`` (``/etc/netns/<ns>/hosts``) that gives the compose names (postgres, redis, minio, airflow-apiserver)
their addresses, so that the compose file's URLs work unchanged:

- ``services`` (10.77.0.2): PostgreSQL (Airflow's metadata database and the population database, two databases of
  one server, password authentication) and Redis (the Celery broker, its queue kept on disk across a restart);
- ``objects`` (10.77.0.4): the S3-compatible artifact store (moto's server: see docs/deployment.md for why);
- ``control`` (10.77.0.3): the API server, the scheduler, the DAG processor and the triggerer;
- ``worker-1``, ``worker-2``… (10.77.0.11…): one Celery worker each, with its own private working folder
  mounted at the one workspace path (as each container has its own ``/opt/airflow/var``): nothing passes between
  workers through a disk or through loopback, only through the store, the databases and Redis;
- ``partners`` (10.77.0.20): the four sandbox partners.

The workers get no PKI folder: their keys come through Airflow's secrets backend (the environment's
``AIRFLOW_CONN_LIENTHONG_KEY_…``, ``lienthong pki secrets``), as the partners' connections do (the triggerer's
too: the SFTP receipt's trigger connects to the partner).

Everything the cluster starts is recorded in ``<root>/state.json``; ``down`` stops it and removes the namespaces.
Linux only, as root (namespaces, mounts).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
BRIDGE, BRIDGE_ADDRESS, PREFIX = "lt-br0", "10.77.0.1", 24
SERVICES, OBJECTS, CONTROL, PARTNERS = "services", "objects", "control", "partners"
COMPOSE_HOSTS = {"postgres": SERVICES, "redis": SERVICES, "minio": OBJECTS, "airflow-apiserver": CONTROL}
TRIGGERER_SERVICE = "airflow-triggerer"
CONTROL_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", TRIGGERER_SERVICE)
WORKER_SERVICE, INIT_SERVICE = "airflow-worker", "airflow-init"
INIT_SCRIPT = PROJECT_ROOT / "deploy" / "airflow-init.sh"  # airflow-init's command, in the image /opt/lienthong/
BUCKET = "lienthong-artifacts"
HOST_SETTINGS = ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "LIENTHONG_VAR_DIR",
                 "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")  # fmt: skip
"""The compose file's settings that name a folder of the image; here they name this machine's."""
OWNER_FILE = Path("/run/lienthong-cluster")  # the root of the cluster whose hosts are up on this machine
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def host_address(host: str) -> str:
    """A host's address on the bridge."""
    fixed = {SERVICES: "10.77.0.2", CONTROL: "10.77.0.3", OBJECTS: "10.77.0.4", PARTNERS: "10.77.0.20"}
    if host in fixed:
        return fixed[host]
    return f"10.77.0.{10 + int(host.removeprefix('worker-'))}"


def namespace(host: str) -> str:
    return f"lt-{host}"


# -- the compose file, the one source ------------------------------------------------------------------------------


def interpolate(value: str, values: dict[str, str]) -> str:
    """``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` and ``${VAR:?message}`` as docker-compose reads them."""

    def one(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
        given = values.get(name)
        if operator == ":-" and not given or operator == "-" and given is None:
            return argument
        if operator == ":?" and not given or operator == "?" and given is None:
            raise ValueError(f"docker-compose.yml: {name}: {argument or 'must be set'}")
        return given or ""

    return _VARIABLE.sub(one, value)


@dataclass(frozen=True)
class ComposePlan:
    """The Airflow services of ``docker-compose.yml``: each one's command (the arguments after ``airflow``) and its
    environment (``x-airflow-common``'s merged with its own), interpolated."""

    commands: dict[str, list[str]]
    environments: dict[str, dict[str, str]]

    @classmethod
    def read(cls, values: dict[str, str], path: Path = COMPOSE_FILE) -> ComposePlan:
        services = yaml.safe_load(path.read_text(encoding="utf-8"))["services"]  # YAML merge keys resolved
        names = (INIT_SERVICE, *CONTROL_SERVICES, WORKER_SERVICE)
        commands = {name: [str(part) for part in services[name]["command"]] for name in names}
        environments = {
            name: {key: interpolate(str(value), values) for key, value in services[name]["environment"].items()}
            for name in names
        }
        return cls(commands, environments)


def cluster_values(root: Path, slots: int = 4) -> dict[str, str]:
    """The cluster's env file (``.env`` of the compose file): made once with fresh secrets, kept owner-only; a
    snapshot's validation is dealt to the workers' task ``slots`` (workers times concurrency)."""
    path = root / "cluster.env"
    if not path.exists():
        made = {
            "AIRFLOW_DB_PASSWORD": secrets.token_urlsafe(18),
            "LIENTHONG_DB_PASSWORD": secrets.token_urlsafe(18),
            "POSTGRES_PASSWORD": secrets.token_urlsafe(18),
            "AIRFLOW__CORE__FERNET_KEY": urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AWS_ACCESS_KEY_ID": "lienthong",
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
            "LIENTHONG_KEY_PASSWORD": secrets.token_urlsafe(18),
            "LIENTHONG_DISCLOSURE_KEY": secrets.token_urlsafe(32),
            "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(12),
            "AIRFLOW_USERS": "admin:admin,steward:op,steward2:op,viewer:viewer",
            "MINIO_ROOT_USER": "lienthong-root",  # MinIO's own, which the native cluster's object store does not need
            "MINIO_ROOT_PASSWORD": secrets.token_urlsafe(24),
            "LIENTHONG_SNAPSHOT_TASKS": str(slots),
        }
        root.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text("".join(f"{name}={value}\n" for name, value in made.items()), encoding="utf-8")
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


# -- hosts ---------------------------------------------------------------------------------------------------------


def _ip(*arguments: str, check: bool = True) -> None:
    subprocess.run(["ip", *arguments], check=check, capture_output=True, text=True)


def make_host(host: str, names: dict[str, str]) -> None:
    """A network namespace joined to the bridge by a veth pair, its loopback up and its ``/etc/hosts``."""
    ns, address, outside = namespace(host), host_address(host), outside_link(host)
    _ip("netns", "add", ns)
    _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _ip("link", "set", outside, "master", BRIDGE, "up")
    _ip("-n", ns, "addr", "add", f"{address}/{PREFIX}", "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")
    _ip("-n", ns, "link", "set", "lo", "up")
    hosts = Path("/etc/netns") / ns / "hosts"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    lines = ["127.0.0.1 localhost", f"{address} {host}", *(f"{ip} {name}" for name, ip in names.items())]
    hosts.write_text("\n".join(lines) + "\n", encoding="utf-8")


def outside_link(host: str) -> str:
    """The bridge's end of a host's veth pair: setting it down cuts the host off the network."""
    return f"lt-{host[:6]}{host[-1]}"[:15]


def make_bridge() -> None:
    _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "add", f"{BRIDGE_ADDRESS}/{PREFIX}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def remove_hosts() -> None:
    """Every namespace and veth of the cluster, and the bridge (what is not there is skipped)."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout.splitlines()
    for name in {line.split(":")[1].strip().split("@")[0] for line in links}:
        if name.startswith("lt-") and name != BRIDGE:  # a veth: its peer in the namespace goes with it, now
            _ip("link", "delete", name, check=False)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    for ns in [name for name in listed if name.startswith("lt-")]:
        _ip("netns", "delete", ns, check=False)
        shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
    _ip("link", "delete", BRIDGE, check=False)


def on_host(host: str, *command: str, hostname: str | None = None) -> list[str]:
    """``command`` run on a host: in its network namespace, and with its own hostname when given."""
    wrapped = ["ip", "netns", "exec", namespace(host)]
    if hostname:
        script = 'hostname "$0" && exec "$@"'
        return [*wrapped, "unshare", "--uts", "sh", "-c", script, hostname, *command]
    return [*wrapped, *command]


# -- the cluster -----------------------------------------------------------------------------------------------------


@dataclass
class Cluster:
    """What ``up`` started (``state.json``): processes by name, the folders, the PostgreSQL data directory."""

    root: Path
    workers: int = 2
    concurrency: int = 2  # tasks a worker runs at once
    processes: dict[str, int] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def workspace(self) -> Path:
        """The one workspace path; each worker mounts its private folder there."""
        return self.root / "workspace"

    def private(self, worker: int) -> Path:
        return self.root / "hosts" / f"worker-{worker}"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def postgres_data(self) -> Path:
        return self.root / "postgres"

    def save(self) -> None:
        state = {"workers": self.workers, "concurrency": self.concurrency, "processes": self.processes}
        self.state_file.write_text(json.dumps(state), "utf-8")

    @classmethod
    def load(cls, root: Path) -> Cluster:
        state = json.loads((root / "state.json").read_text("utf-8")) if (root / "state.json").exists() else {}
        return cls(root, state.get("workers", 2), state.get("concurrency", 2), state.get("processes", {}))

    def stopped(self) -> list[str]:
        """The long-running processes the cluster started that no longer run."""
        return [name for name, pid in self.processes.items() if not _alive(pid)]

    # -- settings ------------------------------------------------------------------------------------------------

    def names(self) -> dict[str, str]:
        names = {name: host_address(host) for name, host in COMPOSE_HOSTS.items()}
        return names | {f"worker-{i}": host_address(f"worker-{i}") for i in range(1, self.workers + 1)}

    def plan(self) -> ComposePlan:
        return ComposePlan.read(cluster_values(self.root))

    def environment(self, service: str, home: Path, workspace: Path) -> dict[str, str]:
        """A service's environment: the compose file's, with this machine's folders (``HOST_SETTINGS``)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LIENTHONG_", "AWS_"))}
        here = {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "LIENTHONG_VAR_DIR": str(workspace),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.root / "control" / "passwords.json"),
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        }
        return base | self.plan().environments[service] | here

    def control_environment(self, service: str = INIT_SERVICE) -> dict[str, str]:
        """A service of the control host's; the operator's PKI folder too (``pki init``, the partners' seeding); the
        triggerer the partners' connections as well (the SFTP receipt's trigger looks in the partner's folder)."""
        env = self.environment(service, self.root / "control" / "airflow", self.root / "control" / "var")
        if service == TRIGGERER_SERVICE:
            env |= _connections(self.root / "partners" / "connections.env")
        return env | {"LIENTHONG_PKI_DIR": str(self.pki)}

    def worker_environment(self) -> dict[str, str]:
        """A worker's: no PKI folder; the keys and the partners' connections through the environment backend."""
        env = self.environment(WORKER_SERVICE, self.workspace / "airflow", self.workspace)
        env["LIENTHONG_PKI_DIR"] = str(self.workspace / "no-pki")
        return env | json.loads((self.root / "worker-secrets.json").read_text("utf-8"))

    # -- processes -----------------------------------------------------------------------------------------------

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                       cwd=PROJECT_ROOT)  # fmt: skip
        self.processes[name] = process.pid
        self.save()
        return process

    def run(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
        if done.returncode:
            tail = (self.logs / f"{name}.log").read_text("utf-8", "replace")[-3000:]
            raise RuntimeError(f"cluster: {name} failed (exit {done.returncode}):\n{tail}")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        pid = self.processes.get(name)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)

    def start_worker(self, worker: int) -> subprocess.Popen:
        """A Celery worker on its own host: its namespace, its hostname, its private folder at the workspace."""
        private = self.private(worker)
        private.mkdir(parents=True, exist_ok=True)
        self.workspace.mkdir(parents=True, exist_ok=True)
        host = f"worker-{worker}"
        script = 'mount --bind "$0" "$1" && shift && exec "$@"'
        airflow = [str(Path(sys.executable).with_name("airflow")), *self.plan().commands[WORKER_SERVICE],
                   "--concurrency", str(self.concurrency)]  # fmt: skip
        command = on_host(host, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(private),
                          str(self.workspace), *airflow, hostname=host)  # fmt: skip
        return self.start(host, command, self.worker_environment())


def _wait(what: str, ready, timeout: float = 120.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"cluster: {what} stopped (exit {process.returncode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"cluster: {what} not ready within {timeout:.0f} s")
        time.sleep(0.5)


def _listening(address: str, port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((address, port)) == 0


def _postgres_binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("the cluster needs PostgreSQL's server binaries: apt-get install postgresql")
    return found[-1].parent


def start_services(cluster: Cluster) -> None:
    """PostgreSQL with the two databases and their owners, Redis, the object store with the bucket."""
    values, data, binaries = cluster_values(cluster.root), cluster.postgres_data, _postgres_binaries()
    as_postgres = ["runuser", "-u", "postgres", "--"]
    cluster.root.chmod(0o755)
    if subprocess.run([*as_postgres, "test", "-x", str(cluster.root)]).returncode:
        raise RuntimeError(f"cluster: the postgres user cannot reach {cluster.root}: choose a root it can")
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        shutil.chown(data, "postgres")
        password_file = cluster.root / "postgres-password"
        password_file.write_text(values["POSTGRES_PASSWORD"], "utf-8")
        shutil.chown(password_file, "postgres")
        cluster.run("initdb", [*as_postgres, str(binaries / "initdb"), "-D", str(data), "-U", "postgres",
                               "--auth-host=scram-sha-256", "--auth-local=trust", "--pwfile", str(password_file),
                               "-E", "UTF8", "--no-sync"], dict(os.environ))  # fmt: skip
        password_file.unlink()
        with (data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
            hba.write(f"host all all {BRIDGE_ADDRESS[:-1]}0/{PREFIX} scram-sha-256\n")
    address = host_address(SERVICES)
    postgres = cluster.start("postgres", on_host(SERVICES, *as_postgres, str(binaries / "postgres"), "-D", str(data),
                             "-c", f"listen_addresses={address}", "-c", f"unix_socket_directories={data}",
                             "-c", "fsync=off", "-c", "max_connections=300"), dict(os.environ))  # fmt: skip
    ready = [str(binaries / "pg_isready"), "-q", "-h", str(data), "-p", "5432"]  # not only listening: recovered
    _wait("PostgreSQL", lambda: subprocess.run(ready).returncode == 0, process=postgres)
    psql = [*as_postgres, str(binaries / "psql"), "-h", str(data), "-U", "postgres", "-d", "postgres", "-v",
            "ON_ERROR_STOP=1", "-qc"]  # fmt: skip
    for owner, password in (("airflow", values["AIRFLOW_DB_PASSWORD"]), ("lienthong", values["LIENTHONG_DB_PASSWORD"])):
        exists = subprocess.run([*psql[:-1], "-Atc", f"SELECT 1 FROM pg_roles WHERE rolname = '{owner}'"],
                                capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        if not exists:
            cluster.run(f"create-{owner}", [*psql, f"CREATE ROLE {owner} LOGIN PASSWORD '{password}'"], os.environ)
            cluster.run(f"create-{owner}-db", [*psql, f"CREATE DATABASE {owner} OWNER {owner}"], os.environ)
    start_redis(cluster)
    objects = host_address(OBJECTS)
    store = cluster.start("object-store", on_host(OBJECTS, sys.executable, "-m", "moto.server", "-H", objects, "-p",
                                                  "9000"), dict(os.environ))  # fmt: skip
    _wait("the object store", lambda: _listening(objects, 9000), process=store)
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://{objects}:9000", region_name="us-east-1",
                          aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
    if BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=BUCKET)


def start_redis(cluster: Cluster) -> subprocess.Popen:
    """Redis, the broker, its queue in an append-only file: a restart loses no task sent to the workers."""
    address, folder = host_address(SERVICES), cluster.root / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    redis = cluster.start("redis", on_host(SERVICES, "redis-server", "--bind", address, "--port", "6379", "--dir",
                                           str(folder), "--appendonly", "yes", "--save", "", "--protected-mode", "no"),
                          dict(os.environ))  # fmt: skip
    _wait("Redis", lambda: _listening(address, 6379), process=redis)
    return redis


def initialise(cluster: Cluster, citizens: int) -> None:
    """What ``airflow-init`` does (metadata database migrated, population database upgraded), then the sandbox's
    share: a population, the PKI with the partners' address in their TLS certificates, the partners seeded and
    serving, their connections and the workers' keys for the environment secrets backend; every outbound feed
    starts at the change log's head (the partners were seeded from the same population)."""
    env = cluster.control_environment()
    lienthong = str(Path(sys.executable).with_name("lienthong"))
    ctl = lambda *command: on_host(CONTROL, *command)  # noqa: E731
    (cluster.root / "control").mkdir(parents=True, exist_ok=True)
    cluster.run(INIT_SERVICE, ctl("bash", str(INIT_SCRIPT)), env)
    if not cluster.pki.exists():
        cluster.run("population", ctl(lienthong, "population", "generate", "--citizens", str(citizens), "--seed",
                                      "2026", "--defect-rate", "0.02"), env)  # fmt: skip
        cluster.run("pki-init", ctl(lienthong, "pki", "init", "--server-address", host_address(PARTNERS)), env)
        cluster.run("feeds-at-head", ctl(sys.executable, "-m", "lienthong.cluster", "feeds-at-head"), env)
    partners_state = cluster.root / "partners"
    (partners_state / "endpoints.json").unlink(missing_ok=True)
    serve = on_host(PARTNERS, lienthong, "partners", "serve", "--state-dir", str(partners_state))
    partners = cluster.start("partners", serve, env | {"LIENTHONG_PARTNERS_HOST": host_address(PARTNERS)})
    _wait("the partners", (partners_state / "endpoints.json").exists, timeout=900, process=partners)
    secrets_json = subprocess.run([lienthong, "pki", "secrets", "--json"], env=env, capture_output=True, text=True,
                                  check=True).stdout  # fmt: skip
    worker_secrets = json.loads(secrets_json) | _connections(partners_state / "connections.env")
    path = cluster.root / "worker-secrets.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps(worker_secrets), "utf-8")


def _connections(path: Path) -> dict[str, str]:
    """The partners' connections (``connections.env``), the SFTP client key inline rather than a file's path."""
    connections = {}
    for line in path.read_text("utf-8").splitlines():
        name, _, quoted = line.partition("=")
        document = json.loads(quoted.strip("'"))
        extra = document.get("extra") or {}
        if "private_key_file" in extra:
            extra["private_key"] = Path(extra.pop("private_key_file")).read_text("utf-8")
        connections[name] = json.dumps(document)
    return connections


def feeds_at_head() -> None:
    """Every outbound feed's checkpoint at the change log's head (run in the control host's environment)."""
    from feeds import tasks as feeds
    from feeds.checkpoint import move_checkpoint

    head = feeds.change_log_head()
    with feeds.population_database() as engine:
        for agreement in feeds.outbound_agreements():
            move_checkpoint(engine, agreement.name, head, None)


def up(root: Path, workers: int = 2, citizens: int = 100_000, concurrency: int = 2) -> Cluster:
    """Bring the topology up (what ran before under ``root`` is taken down first); returns it once every
    component serves."""
    root = root.resolve()
    holder = OWNER_FILE.read_text("utf-8") if OWNER_FILE.exists() else str(root)
    if holder != str(root) and any(_alive(pid) for pid in Cluster.load(Path(holder)).processes.values()):
        raise RuntimeError(f"cluster: another one is up under {holder} (one per machine: its hosts' names are "
                           f"fixed): 'lienthong cluster down --root {holder}' first")  # fmt: skip
    down(Path(holder))
    down(root)
    cluster = Cluster(root, workers, concurrency)
    root.mkdir(parents=True, exist_ok=True)
    cluster_values(root, slots=workers * concurrency)
    OWNER_FILE.write_text(str(root), "utf-8")
    try:
        make_bridge()
        names = cluster.names()
        for host in (SERVICES, OBJECTS, CONTROL, PARTNERS, *(f"worker-{i}" for i in range(1, workers + 1))):
            make_host(host, names)
        start_services(cluster)
        initialise(cluster, citizens)
        airflow, plan = str(Path(sys.executable).with_name("airflow")), cluster.plan()
        for service in CONTROL_SERVICES:
            command = on_host(CONTROL, airflow, *plan.commands[service], hostname=CONTROL)
            cluster.start(service, command, cluster.control_environment(service))
        _wait("the API server", lambda: _listening(host_address(CONTROL), 8080), timeout=180)
        for worker in range(1, workers + 1):
            cluster.start_worker(worker)
    except BaseException:
        down(root)  # nothing half up is left behind
        raise
    return cluster


def down(root: Path) -> None:
    """Stop every process the cluster started, then PostgreSQL's, and remove the namespaces and the bridge."""
    cluster = Cluster.load(root.resolve())
    for name in list(cluster.processes):  # PostgreSQL's fast shutdown: it ends its clients' sessions, not waits
        cluster.stop(name, signal.SIGINT if name == "postgres" else signal.SIGTERM)
    deadline = time.monotonic() + 30
    for name, pid in cluster.processes.items():
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            cluster.stop(name, signal.SIGKILL)
    cluster.processes.clear()
    if cluster.state_file.exists():
        cluster.save()
    if not OWNER_FILE.exists() or OWNER_FILE.read_text("utf-8") == str(root.resolve()):
        remove_hosts()
        OWNER_FILE.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # a process this one started and that has ended: reaped
        os.waitpid(pid, os.WNOHANG)
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


if __name__ == "__main__":
    if sys.argv[1:] == ["feeds-at-head"]:
        feeds_at_head()
