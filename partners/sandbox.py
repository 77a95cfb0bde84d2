"""The partner sandbox: the four registries started together on loopback, their endpoints written down.

``Sandbox(state_dir, pki, key_password).start()`` seeds each registry (once) and starts its server, then
writes, under ``state_dir`` (``var/partners`` by default):

- ``endpoints.json``   where each partner listens, how it authenticates, its host key, the CA file (no secrets);
- ``credentials.json`` the sandbox credentials it made (OAuth2 client, WS-Security user), mode 0600;
- ``connections.env``  ``AIRFLOW_CONN_LIENTHONG_<PARTNER>='{…}'`` lines for the hooks, mode 0600;
- ``admin-token``      the bearer token of the admin endpoint, mode 0600.

The admin endpoint (plain HTTP on loopback) sets fault plans and stops or starts a partner; see
``partners.admin``. Each registry keeps its store in ``<state_dir>/<partner>/``.
"""

from __future__ import annotations

import json
import secrets
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh

from exchange.pki import POPULATION, SIGNING, TLS_CLIENT, PkiDirectory, key_path
from partners.base import Partner, write_chain, write_private
from partners.intake import PartnerKeys
from partners.land import LandPartner
from partners.rest import RestPartner
from partners.seed import Citizen, seed_registry
from partners.tax import TaxPartner

PARTNERS = ("health", "tax", "land", "business")
DEFAULT_STATE_DIR = Path("var") / "partners"
CONNECTION_IDS = {name: f"lienthong_{name}" for name in PARTNERS}
FORMAT = "lienthong-partners/1"


class Sandbox:
    def __init__(
        self,
        state_dir: Path,
        pki: PkiDirectory,
        key_password: bytes,
        *,
        only: Iterable[str] = PARTNERS,
        token_lifetime: float = 300.0,
        require_tax_signature: bool = False,
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.pki = PkiDirectory(pki.path.resolve())
        self.key_password = key_password
        self.only = tuple(only)
        unknown = set(self.only) - set(PARTNERS)
        if unknown:
            raise ValueError(f"unknown partners: {', '.join(sorted(unknown))}; choose from {', '.join(PARTNERS)}")
        self.credentials = self._credentials()
        self.partners: dict[str, Partner] = {name: self._make(name, token_lifetime, require_tax_signature)
                                             for name in self.only}  # fmt: skip
        self.admin = None

    # -- credentials -------------------------------------------------------------------------------------------

    def _credentials(self) -> dict[str, Any]:
        """The sandbox's credentials: made once, kept in ``credentials.json`` (0600) across restarts."""
        path = self.state_dir / "credentials.json"
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
        client_key = self.state_dir / "clients" / "population_ed25519"
        key = asyncssh.generate_private_key("ssh-ed25519", comment="population@lienthong")
        client_key.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():  # bcrypt frowns on 16 rounds; it is ssh-keygen's default all the same
            warnings.simplefilter("ignore", UserWarning)
            key.write_private_key(str(client_key), passphrase=self.key_password.decode("utf-8"), rounds=16)
        client_key.chmod(0o600)
        credentials = {
            "health": {"client_id": "population", "client_secret": secrets.token_urlsafe(24)},
            "tax": {"username": "population", "password": secrets.token_urlsafe(24)},
            "land": {
                "user": "population",
                "private_key_file": str(client_key),
                "public_key": key.export_public_key("openssh").decode("ascii").strip(),
            },  # fmt: skip
        }
        write_private(path, json.dumps(credentials, indent=2))
        return credentials

    def _make(self, name: str, token_lifetime: float, require_tax_signature: bool) -> Partner:
        keys = PartnerKeys.load(self.pki, name, self.key_password)
        state = self.state_dir / name
        if name == "health":
            clients = {self.credentials["health"]["client_id"]: self.credentials["health"]["client_secret"]}
            return RestPartner("health", keys, state, collection="insured", root_ca=self.pki.root_ca,
                               oauth_clients=clients, token_lifetime=token_lifetime)  # fmt: skip
        if name == "business":
            return RestPartner("business", keys, state, collection="enterprise-roles", root_ca=self.pki.root_ca,
                               mutual_tls=True)  # fmt: skip
        if name == "tax":
            tax = self.credentials["tax"]
            return TaxPartner(keys, state, users={tax["username"]: tax["password"]}, issuing_ca=self.pki.issuing_ca,
                              require_signature=require_tax_signature)  # fmt: skip
        land = self.credentials["land"]
        return LandPartner(keys, state, user=land["user"], authorized_keys=[land["public_key"]])

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def seed(self, citizens: Iterable[Citizen], seed: int) -> None:
        """Seed every registry that is still empty from the same citizens (a list: it is read once per partner)."""
        people = list(citizens)
        for name, partner in self.partners.items():
            if not partner.store.is_seeded():
                partner.store.seed(*seed_registry(name, people, seed))

    def start(self, *, admin: bool = True) -> None:
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
                "connection_id": CONNECTION_IDS[name],
                "store": str(partner.store.path),
            }
        return document

    def connections(self) -> dict[str, dict[str, Any]]:
        """Airflow connections (JSON form) for the running partners, keyed by connection id."""
        return {CONNECTION_IDS[name]: self._connection(name, partner) for name, partner in self.partners.items()}

    def _connection(self, name: str, partner: Partner) -> dict[str, Any]:
        info = partner.endpoint()
        ca_file = str(self.pki.root_ca)
        common = {"host": "127.0.0.1", "port": info["port"]}
        if name == "health":
            health = self.credentials["health"]
            extra = {"token_url": info["token_url"], "ca_file": ca_file}
            return common | {
                "conn_type": "lienthong_rest",
                "schema": "v1",
                "login": health["client_id"],
                "password": health["client_secret"],
                "extra": extra,
            }
        if name == "business":
            certificate = self.pki.certificate(POPULATION, TLS_CLIENT)
            chain = write_chain(self.state_dir / "clients" / "population-tls-client-chain.pem", certificate,
                                self.pki.issuing_ca)  # fmt: skip
            extra = {"ca_file": ca_file, "client_cert": str(chain), "client_key": str(key_path(certificate))}
            return common | {"conn_type": "lienthong_rest", "schema": "v1", "extra": extra}
        if name == "tax":
            tax, signing = self.credentials["tax"], self.pki.certificate(POPULATION, SIGNING)
            extra = {
                "wsdl": "wsdl/tax-exchange.v1.wsdl",
                "ca_file": ca_file,
                "sign_body": bool(getattr(partner, "require_signature", False)),
                "signing_cert": str(signing),
                "signing_key": str(key_path(signing)),
            }
            return common | {
                "conn_type": "lienthong_soap",
                "schema": info["path"],
                "login": tax["username"],
                "password": tax["password"],
                "extra": extra,
            }
        land = self.credentials["land"]
        extra = {"host_key": info["host_key"], "remote_folder": "/", "private_key_file": land["private_key_file"]}
        return common | {
            "conn_type": "lienthong_sftp",
            "login": land["user"],
            "password": self.key_password.decode("utf-8"),
            "extra": extra,
        }

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
