"""``lienthong pki``: make the sandbox PKI and revoke certificates. Keys and passwords are never printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from exchange.errors import VerificationError
from exchange.pki import DEFAULT_PKI_DIR, DEFAULT_RSA_BITS, KeyPasswordMissing, PkiDirectory, key_password
from exchange.signature import TrustAnchors

pki_app = typer.Typer(help="The sandbox PKI: root and issuing CA, agency certificates, CRL.", no_args_is_help=True)

PkiOption = Annotated[Path, typer.Option("--pki", help="The PKI directory (made by 'lienthong pki init').")]
TrustOption = Annotated[Path, typer.Option("--trust", help="The trust root certificate (PEM), e.g. root-ca.pem.")]
CrlOption = Annotated[
    list[Path] | None,
    typer.Option("--crl", help="A CRL to check revocation with (repeatable). Default: crl.pem beside --trust."),
]


def reject(message: object) -> NoReturn:
    """One line on standard error, exit status 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def password() -> bytes:
    try:
        return key_password()
    except KeyPasswordMissing as error:
        reject(error)


def trust_anchors(trust: Path, crls: list[Path] | None) -> TrustAnchors:
    """The trust root and the CRLs given, else the ``crl.pem`` beside the root when there is one."""
    if not crls:
        beside = trust.parent / "crl.pem"
        crls = [beside] if beside.is_file() else []
    try:
        return TrustAnchors.from_files(trust, crls)
    except (OSError, ValueError) as error:
        reject(f"cannot load the trust root or CRL: {error}")


def run_checks(action, *args, **kwargs):
    """Call a verifying function; a failed check becomes one line naming it and exit status 1."""
    try:
        return action(*args, **kwargs)
    except VerificationError as error:
        reject(error)


@pki_app.command("init")
def pki_init(
    out: Annotated[Path, typer.Option("--out", help="Where to write the PKI.")] = DEFAULT_PKI_DIR,
    rsa_bits: Annotated[int, typer.Option(min=2048, help="Size of the RSA encryption keys.")] = DEFAULT_RSA_BITS,
    force: Annotated[bool, typer.Option(help="Replace an existing PKI in --out.")] = False,
) -> None:
    """Make a root CA, an issuing CA, signing, encryption and TLS certificates for every agency, and a CRL.
    Keys are PKCS#8 encrypted with LIENTHONG_KEY_PASSWORD (or the Airflow connection lienthong_keys)."""
    from exchange.pki import init_pki

    try:
        pki = init_pki(out, password(), rsa_bits=rsa_bits, force=force)
    except FileExistsError as error:
        reject(f"{error} (use --force to replace it)")
    typer.echo(f"PKI written to {pki.path}: trust root {pki.root_ca}, CRL {pki.crl}")


@pki_app.command("revoke")
def pki_revoke(
    certificate: Annotated[Path, typer.Argument(help="The certificate (PEM) to revoke.")],
    pki: PkiOption = DEFAULT_PKI_DIR,
) -> None:
    """Add a certificate to the issuing CA's CRL (crl.pem is written again with the next CRL number)."""
    from exchange.pki import load_certificate, revoke

    try:
        crl = revoke(PkiDirectory(pki), load_certificate(certificate), password())
    except (OSError, ValueError) as error:
        reject(error)
    typer.echo(f"revoked serial {load_certificate(certificate).serial_number:x}; {PkiDirectory(pki).crl} lists "
               f"{len(crl)} certificate(s)")  # fmt: skip
