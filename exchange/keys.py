"""Where the exchanges find the platform's keys and the PKI's certificates: one small interface, ``Keys``, with two
sources behind it, chosen by ``LIENTHONG_KEYS`` (``lienthong.settings.keys_source``):

- ``files`` (the default): the PKI folder ``lienthong pki init`` wrote (``LIENTHONG_PKI_DIR``, else ``var/pki``),
  what the sandbox and ``make demo`` use;
- ``airflow``: Airflow's secrets backends (the environment's ``AIRFLOW_CONN_…``/``AIRFLOW_VAR_…``, the metastore,
  Vault…): each private key is the password of the connection ``lienthong_key_<agency>_<purpose>`` (the PEM as
  ``pki init`` wrote it, encrypted with the key password), the certificates and the CRL are the Variable
  ``lienthong_pki_certificates`` (JSON: path in the PKI folder → PEM). Everything is read in memory: a worker
  needs no PKI folder and never writes a key to disk.

The feeds take their keys from ``platform_keys()`` (or ``keys_of`` a PKI folder given to them) and never pass a key
on: XCom and the packages hold paths and certificates only. ``pki_secrets`` turns a PKI folder into the second form
(``lienthong pki secrets``), for a launcher to hand to its workers.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from lienthong import settings
from lienthong_verify.certificates import (
    ENCRYPTION,
    SIGNING,
    CertifiedKey,
    PkiDirectory,
    Signer,
    load_certificate,
    load_recipient,
    load_signer,
)
from lienthong_verify.sequence import POPULATION
from lienthong_verify.signature import TrustAnchors

ROOT_CA, ISSUING_CA, CRL = "root-ca.pem", "issuing-ca.pem", "crl.pem"  # PkiDirectory's names, relative
WORKER_PURPOSES = (SIGNING, ENCRYPTION)  # the population's keys a worker uses: it signs, and decrypts inbound


class Keys(ABC):
    """The platform's private keys and the PKI's public files, wherever they are kept."""

    @abstractmethod
    def signer(self, agency: str = POPULATION) -> Signer:
        """The agency's signing certificate and key, with the issuing CA to carry in signatures."""

    @abstractmethod
    def recipient(self, agency: str = POPULATION, purpose: str = ENCRYPTION) -> CertifiedKey:
        """An encryption certificate and its key, to decrypt what was encrypted to it."""

    @abstractmethod
    def public_files(self) -> dict[str, bytes]:
        """Every certificate file and the CRL, by path in the PKI folder (``health/encryption.pem``)."""

    def public_file(self, relative: str) -> bytes:
        """One public file by its path in the PKI folder, as agreements name them."""
        return self.public_files()[relative]

    def certificate(self, relative: str) -> x509.Certificate:
        """A certificate by its path in the PKI folder (``health/encryption.pem``, as agreements name them)."""
        return x509.load_pem_x509_certificate(self.public_file(relative))

    def trust(self) -> TrustAnchors:
        """The root CA and the issuing CA's CRL: what packages and receipts are verified against."""
        return TrustAnchors(
            tuple(x509.load_pem_x509_certificates(self.public_file(ROOT_CA))),
            (x509.load_pem_x509_crl(self.public_file(CRL)),),
        )


@dataclass(frozen=True)
class FileKeys(Keys):
    """The PKI folder: keys beside their certificates, encrypted with the key password (by default the settings')."""

    pki: PkiDirectory
    password: bytes | None = None

    def _password(self) -> bytes:
        return self.password or settings.key_password()

    def signer(self, agency: str = POPULATION) -> Signer:
        return load_signer(self.pki, agency, self._password())

    def recipient(self, agency: str = POPULATION, purpose: str = ENCRYPTION) -> CertifiedKey:
        return load_recipient(self.pki.certificate(agency, purpose), self.pki.key(agency, purpose), self._password())

    def public_files(self) -> dict[str, bytes]:
        return {
            path.relative_to(self.pki.path).as_posix(): path.read_bytes()
            for path in sorted(self.pki.path.rglob("*.pem"))
            if not path.name.endswith(".key.pem")
        }

    def public_file(self, relative: str) -> bytes:
        return (self.pki.path / relative).read_bytes()  # a missing file: FileNotFoundError, named

    def certificate(self, relative: str) -> x509.Certificate:
        return load_certificate(self.pki.path / relative)  # PEM or DER, as before

    def trust(self) -> TrustAnchors:
        return TrustAnchors.from_pki(self.pki)


class SecretKeys(Keys):
    """Airflow's secrets backends (connections for the keys, a Variable for the certificates), in memory only."""

    def __init__(self, password: bytes | None = None) -> None:
        self.password = password

    @cached_property
    def _public(self) -> dict[str, bytes]:
        return settings.secret_certificates()

    def public_files(self) -> dict[str, bytes]:
        return dict(self._public)

    def public_file(self, relative: str) -> bytes:
        if relative not in self._public:
            raise settings.KeysMissing(f"no {relative}: not in the Airflow Variable {settings.CERTIFICATES_VARIABLE!r} "
                                       f"({settings.KEYS_ENV}=airflow)")  # fmt: skip
        return self._public[relative]

    def _private_key(self, agency: str, purpose: str) -> PrivateKeyTypes:
        data = settings.secret_key_pem(agency, purpose)
        try:
            return serialization.load_pem_private_key(data, self.password or settings.key_password())
        except TypeError:  # a key kept unencrypted (the secrets backend protects it)
            return serialization.load_pem_private_key(data, None)
        except ValueError:
            raise ValueError(f"cannot load the {purpose} key of {agency} (the Airflow connection "
                             f"{settings.key_connection(agency, purpose)!r}): wrong key password or not a PEM key"
                             ) from None  # fmt: skip

    def signer(self, agency: str = POPULATION) -> Signer:
        return Signer(
            self.certificate(f"{agency}/{SIGNING}.pem"),
            self._private_key(agency, SIGNING),
            (self.certificate(ISSUING_CA),),
        )

    def recipient(self, agency: str = POPULATION, purpose: str = ENCRYPTION) -> CertifiedKey:
        return CertifiedKey(self.certificate(f"{agency}/{purpose}.pem"), self._private_key(agency, purpose))


def platform_keys(pki_dir: Path | None = None) -> Keys:
    """The keys as the settings say (``LIENTHONG_KEYS``): the PKI folder (``pki_dir``, else the settings'), or
    Airflow's secrets backends."""
    if settings.keys_source() == settings.KEYS_FROM_AIRFLOW:
        return SecretKeys()
    return FileKeys(PkiDirectory(settings.pki_dir(pki_dir)))


def keys_of(pki: Keys | PkiDirectory) -> Keys:
    """The keys a feed step was given: a ``Keys`` as it is, a PKI folder as its files."""
    return pki if isinstance(pki, Keys) else FileKeys(pki)


def pki_secrets(pki_dir: Path, agencies: tuple[str, ...] = (POPULATION,)) -> dict[str, str]:
    """A PKI folder as Airflow's environment secrets backend reads it ({variable name: value}): the private keys
    a worker of ``agencies`` uses (signing, encryption; still encrypted with the key password, which is not
    included) as ``AIRFLOW_CONN_LIENTHONG_KEY_…`` and every certificate and the CRL as
    ``AIRFLOW_VAR_LIENTHONG_PKI_CERTIFICATES``. The CA keys and the partners' keys are never included."""
    pki = PkiDirectory(Path(pki_dir))
    if not pki.root_ca.is_file():
        raise FileNotFoundError(f"no PKI in {pki.path}: no {ROOT_CA}")
    found = {}
    for agency in agencies:
        for purpose in WORKER_PURPOSES:
            pem = pki.key(agency, purpose).read_text("ascii")
            found[f"AIRFLOW_CONN_{settings.key_connection(agency, purpose).upper()}"] = json.dumps(
                {"conn_type": "generic", "password": pem}
            )
    public = {relative: data.decode("ascii") for relative, data in FileKeys(pki).public_files().items()}
    found[f"AIRFLOW_VAR_{settings.CERTIFICATES_VARIABLE.upper()}"] = json.dumps(public, sort_keys=True)
    return found
