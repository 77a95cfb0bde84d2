"""The partner sandbox: the partner registries started together on loopback, their endpoints written down.

Which partners it plays, and how, comes from the agency files (``schemas/agencies/*.yaml``, and an operator's on
``LIENTHONG_SCHEMAS_PATH``): each with a ``sandbox`` part gets the server its ``server`` names (``rest`` with
OAuth2 client credentials or mutual TLS, ``soap``, ``sftp``), the credentials that server asks for, and a
registry seeded as its ``registry`` says. Its Airflow connections are named by its agreements.

``Sandbox(state_dir, pki, key_password).start()`` seeds each registry (once) and starts its server, then
writes, under ``state_dir`` (``var/partners`` by default):

- ``endpoints.json``   where each partner listens, how it authenticates, its host key, the CA file (no secrets);
- ``credentials.json`` the sandbox credentials it made (OAuth2 client, WS-Security user), mode 0600;
- ``connections.env``  ``AIRFLOW_CONN_<CONNECTION ID>='{…}'`` lines for the hooks, mode 0600;
- ``admin-token``      the bearer token of the admin endpoint, mode 0600.

The admin endpoint (plain HTTP on loopback) sets fault plans and stops or starts a partner; see
``partners.admin``. Each registry keeps its store in ``<state_dir>/<partner>/``.
"""

from __future__ import annotations

import json
import secrets
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh

from exchange.agencies import Server
from exchange.pki import POPULATION, SIGNING, TLS_CLIENT, PkiDirectory, key_path
from lienthong.settings import partners_host
from partners.base import Partner, agreements_with, sandbox_agencies, write_chain, write_private
from partners.intake import PartnerKeys
from partners.land import LandPartner
from partners.rest import RestPartner
from partners.seed import Citizen, seed_registry
from partners.tax import TaxPartner

FORMAT = "lienthong-partners/1"
CLIENT = "population"  # the user or client the population database is known by at every partner


def connection_ids(partner: str) -> list[str]:
    """The Airflow connections of the partner's agreements (else ``lienthong_<partner>``), in order."""
    named = sorted({agreement.connection_id for agreement in agreements_with(partner)})
    return named or [f"lienthong_{partner.replace('-', '_')}"]


class Sandbox:
    def __init__(
        self,
        state_dir: Path,
        pki: PkiDirectory,
        key_password: bytes,
        *,
        only: Iterable[str] | None = None,
        token_lifetime: float = 300.0,
        require_tax_signature: bool = False,
    ) -> None:
        """``only``: the partners to play (default: every agency with a sandbox part)."""
        self.state_dir = state_dir.resolve()
        self.pki = PkiDirectory(pki.path.resolve())
        self.key_password = key_password
        self.token_lifetime = token_lifetime
        self.require_tax_signature = require_tax_signature
        agencies = sandbox_agencies()
        self.only = tuple(agencies if only is None else only)
        unknown = set(self.only) - set(agencies)
        if unknown:
            raise ValueError(f"unknown partners: {', '.join(sorted(unknown))}; choose from {', '.join(agencies)}")
        self.servers = {name: server_for(agencies[name].sandbox.server) for name in self.only}
        self.credentials = self._credentials()
        self.partners: dict[str, Partner] = {name: self._make(name) for name in self.only}
        self.admin = None

    def _credentials(self) -> dict[str, Any]:
        """The sandbox's credentials, by partner: made once, kept in ``credentials.json`` (0600) across restarts; a
        partner played for the first time gets its own added."""
        path = self.state_dir / "credentials.json"
        credentials = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        added = False
        for name in self.only:
            if name not in credentials and (made := self.servers[name].new_credentials(self, credentials)):
                credentials[name], added = made, True
        if added or not path.exists():
            write_private(path, json.dumps(credentials, indent=2))
        return credentials

    def _make(self, name: str) -> Partner:
        keys = PartnerKeys.load(self.pki, name, self.key_password)
        return self.servers[name].make(self, keys, self.state_dir / name)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def seed(self, citizens: Iterable[Citizen], seed: int) -> None:
        """Seed every registry that is still empty from the same citizens (a list: it is read once per partner)."""
        people = list(citizens)
        for name, partner in self.partners.items():
            if not partner.store.is_seeded():
                partner.store.seed(*seed_registry(name, people, seed))

    def start(self, *, admin: bool = True) -> None:
        from population.log_masking import install_log_masking

        install_log_masking()  # the partners' logs (uvicorn's, the intake's) carry no personal ID whole
        for partner in self.partners.values():
            partner.start()
            partner.publish_links()
        if admin:
            from partners.admin import AdminServer

            self.admin = AdminServer(self.partners, self.state_dir)
            self.admin.start()
        self.write_files()

    def stop(self) -> None:
        if self.admin is not None:
            self.admin.stop()
        for partner in self.partners.values():
            partner.close()

    def restart(self, name: str) -> Partner:
        """Stop the partner and start it again as a restarted process would: a new server made from its state
        folder, on the same port (clients' connections still name it). What the old one kept only in memory is gone:
        OAuth2 tokens, the answers to Idempotency-Keys, WS-Security nonces, fault plans."""
        old = self.partners[name]
        port = old.endpoint()["port"]
        old.close()
        fresh = self._make(name)
        start_on(fresh, port)
        self.partners[name] = fresh  # the admin endpoint reads the same mapping
        return fresh

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- what clients need ------------------------------------------------------------------------------------

    def endpoints(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "format": FORMAT,
            "written_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ca_file": str(self.pki.root_ca),
            "connections_env": str(self.state_dir / "connections.env"),
            "credentials_file": str(self.state_dir / "credentials.json"),
            "partners": {},
        }
        if self.admin is not None:
            document["admin"] = {"url": self.admin.url, "token_file": str(self.admin.token_file)}
        for name, partner in self.partners.items():
            document["partners"][name] = {
                **partner.endpoint(),
                "connection_id": connection_ids(name)[0],
                "store": str(partner.store.path),
            }
        return document

    def connections(self) -> dict[str, dict[str, Any]]:
        """Airflow connections (JSON form) for the running partners, keyed by connection id: one for each
        connection the partner's agreements name."""
        return {conn_id: self.servers[name].connection(self, name, partner)
                for name, partner in self.partners.items() for conn_id in connection_ids(name)}  # fmt: skip

    def connection_environment(self) -> dict[str, str]:
        """The connections as Airflow reads them from the environment: ``AIRFLOW_CONN_<ID>`` → JSON."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(document)
                for conn_id, document in self.connections().items()}  # fmt: skip

    def addresses(self) -> dict[str, str]:
        """Each running partner's transport and address, one line each, for people to read."""
        lines = {}
        for name, info in self.endpoints()["partners"].items():
            where = info.get("url") or f"sftp://{info['user']}@{info['host']}:{info['port']}"
            lines[name] = f"{name:9} {info['transport']:5} {where}"
        return lines

    def write_files(self) -> Path:
        """``endpoints.json`` (written last, atomically: its presence means the partners are up)."""
        lines = [f"{variable}='{value}'" for variable, value in self.connection_environment().items()]
        write_private(self.state_dir / "connections.env", "\n".join(lines) + "\n")
        target = self.state_dir / "endpoints.json"
        partial = target.with_name(".endpoints.json.partial")
        partial.write_text(json.dumps(self.endpoints(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        partial.replace(target)
        return target


# -- the servers that play an agency ------------------------------------------------------------------------------


class SandboxServer:
    """A kind of server the sandbox plays an agency with (its file's ``sandbox.server``): the credentials it asks
    of the population database, the partner it runs, and the Airflow connection that reaches it."""

    def new_credentials(self, sandbox: Sandbox, made: dict[str, Any]) -> dict[str, str] | None:
        """Credentials for a partner played for the first time (``made``: every partner's so far), if any."""
        return None

    def make(self, sandbox: Sandbox, keys: PartnerKeys, state: Path) -> Partner:
        raise NotImplementedError

    def connection(self, sandbox: Sandbox, name: str, partner: Partner) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class RestServer(SandboxServer):
    """REST (``partners.rest``) with OAuth2 client credentials over TLS, or with mutual TLS."""

    server: Server

    @property
    def oauth2(self) -> bool:
        return self.server.auth == "oauth2"

    def new_credentials(self, sandbox: Sandbox, made: dict[str, Any]) -> dict[str, str] | None:
        return {"client_id": CLIENT, "client_secret": secrets.token_urlsafe(24)} if self.oauth2 else None

    def make(self, sandbox: Sandbox, keys: PartnerKeys, state: Path) -> Partner:
        client = sandbox.credentials.get(keys.name)
        clients = {client["client_id"]: client["client_secret"]} if self.oauth2 else None
        return RestPartner(keys, state, collection=self.server.collection, root_ca=sandbox.pki.root_ca,
                           oauth_clients=clients, mutual_tls=not self.oauth2, token_lifetime=sandbox.token_lifetime,
                           openapi=self.server.openapi, item_schema=self.server.item_schema)  # fmt: skip

    def connection(self, sandbox: Sandbox, name: str, partner: Partner) -> dict[str, Any]:
        info, ca_file = partner.endpoint(), str(sandbox.pki.root_ca)
        common = {"conn_type": "lienthong_rest", "host": partners_host(), "port": info["port"], "schema": "v1"}
        if self.oauth2:
            client = sandbox.credentials[name]
            extra = {"token_url": info["token_url"], "ca_file": ca_file}
            return common | {"login": client["client_id"], "password": client["client_secret"], "extra": extra}
        certificate = sandbox.pki.certificate(POPULATION, TLS_CLIENT)
        chain = write_chain(sandbox.state_dir / "clients" / "population-tls-client-chain.pem", certificate,
                            sandbox.pki.issuing_ca)  # fmt: skip
        return common | {
            "extra": {"ca_file": ca_file, "client_cert": str(chain), "client_key": str(key_path(certificate))}
        }


class SoapServer(SandboxServer):
    """SOAP with WS-Security (``partners.tax``, ``schemas/wsdl/tax-exchange.v1.wsdl``): a user and password."""

    def new_credentials(self, sandbox: Sandbox, made: dict[str, Any]) -> dict[str, str] | None:
        return {"username": CLIENT, "password": secrets.token_urlsafe(24)}

    def make(self, sandbox: Sandbox, keys: PartnerKeys, state: Path) -> Partner:
        user = sandbox.credentials[keys.name]
        return TaxPartner(keys, state, users={user["username"]: user["password"]}, issuing_ca=sandbox.pki.issuing_ca,
                          require_signature=sandbox.require_tax_signature)  # fmt: skip

    def connection(self, sandbox: Sandbox, name: str, partner: Partner) -> dict[str, Any]:
        info, user, signing = (
            partner.endpoint(),
            sandbox.credentials[name],
            sandbox.pki.certificate(POPULATION, SIGNING),
        )
        extra = {
            "wsdl": "wsdl/tax-exchange.v1.wsdl",
            "ca_file": str(sandbox.pki.root_ca),
            "sign_body": bool(getattr(partner, "require_signature", False)),
            "signing_cert": str(signing),
            "signing_key": str(key_path(signing)),
        }
        return {
            "host": partners_host(),
            "port": info["port"],
            "conn_type": "lienthong_soap",
            "schema": info["path"],
            "login": user["username"],
            "password": user["password"],
            "extra": extra,
        }


class SftpServer(SandboxServer):
    """SFTP batches (``partners.land``): the population database's SSH key, one for every SFTP partner."""

    def new_credentials(self, sandbox: Sandbox, made: dict[str, Any]) -> dict[str, str] | None:
        for other in made.values():
            if "public_key" in other:
                return dict(other)
        client_key = sandbox.state_dir / "clients" / "population_ed25519"
        key = asyncssh.generate_private_key("ssh-ed25519", comment="population@lienthong")
        client_key.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():  # bcrypt frowns on 16 rounds; it is ssh-keygen's default all the same
            warnings.simplefilter("ignore", UserWarning)
            key.write_private_key(str(client_key), passphrase=sandbox.key_password.decode("utf-8"), rounds=16)
        client_key.chmod(0o600)
        public_key = key.export_public_key("openssh").decode("ascii").strip()
        return {"user": CLIENT, "private_key_file": str(client_key), "public_key": public_key}

    def make(self, sandbox: Sandbox, keys: PartnerKeys, state: Path) -> Partner:
        client = sandbox.credentials[keys.name]
        return LandPartner(keys, state, user=client["user"], authorized_keys=[client["public_key"]])

    def connection(self, sandbox: Sandbox, name: str, partner: Partner) -> dict[str, Any]:
        info, client = partner.endpoint(), sandbox.credentials[name]
        extra = {"host_key": info["host_key"], "remote_folder": "/", "private_key_file": client["private_key_file"]}
        return {
            "host": partners_host(),
            "port": info["port"],
            "conn_type": "lienthong_sftp",
            "login": client["user"],
            "password": sandbox.key_password.decode("utf-8"),
            "extra": extra,
        }


def start_on(partner: Partner, port: int) -> None:
    """Start a partner's server on a given port (the one a stopped or crashed server of the same partner had)."""
    server = getattr(partner, "server", None)  # the HTTP partners' ServerThread; the SFTP one keeps its own port
    if server is not None:
        server.port = port
    else:
        partner.port = port
    partner.start()


def server_for(server: Server) -> SandboxServer:
    if server.kind == "rest":
        return RestServer(server)
    return SoapServer() if server.kind == "soap" else SftpServer()
