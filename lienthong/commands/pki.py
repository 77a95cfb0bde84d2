"""``lienthong pki``: make the sandbox PKI, revoke and renew certificates, and hand a worker its keys through Airflow's
secrets backends (``pki secrets``: the keys as ``pki init`` wrote them, encrypted). Passwords are never printed."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer

from exchange.pki import DEFAULT_CRL_URL, DEFAULT_RSA_BITS, PURPOSES
from lienthong import settings
from lienthong.commands.common import PkiOption, existing, fail, key_password, pki_directory, say, writable

pki_app = typer.Typer(help="The sandbox PKI: root and issuing CA, agency certificates, CRL.", no_args_is_help=True)


@pki_app.command("init")
def pki_init(
    out: Annotated[
        Path | None,
        typer.Option("--out", callback=writable("directory"), help="Where to write the PKI. Default: as --pki."),
    ] = None,
    rsa_bits: Annotated[int, typer.Option(min=2048, help="Size of the RSA encryption keys.")] = DEFAULT_RSA_BITS,
    force: Annotated[bool, typer.Option(help="Replace an existing PKI in --out.")] = False,
    crl_url: Annotated[
        str, typer.Option(help="Where the CRL will be published (DER): each agency certificate names it.")
    ] = DEFAULT_CRL_URL,
    server_address: Annotated[
        list[str] | None,
        typer.Option(help="Another address the partners' TLS servers answer on (repeatable; lienthong cluster's)."),
    ] = None,
) -> None:
    """Make a root CA, an issuing CA, signing, encryption and TLS certificates for every agency, and a CRL.
    Keys are PKCS#8 encrypted with LIENTHONG_KEY_PASSWORD (or the Airflow connection lienthong_keys)."""
    from exchange.documents import DocumentError
    from exchange.pki import init_pki

    try:
        pki = init_pki(settings.pki_dir(out), key_password(), rsa_bits=rsa_bits, force=force, crl_url=crl_url,
                       server_addresses=server_address or ())  # fmt: skip
    except FileExistsError as error:
        fail(f"{error} (use --force to replace it)")
    except (DocumentError, ValueError) as error:  # an agency file that cannot be used: its file and line
        fail(error)
    say(f"PKI written to {pki.path}: trust root {pki.root_ca}, CRL {pki.crl}")


@pki_app.command("revoke")
def pki_revoke(
    certificate: Annotated[Path, typer.Argument(callback=existing(), help="The certificate (PEM) to revoke.")],
    pki: PkiOption = None,
) -> None:
    """Add a certificate to the issuing CA's CRL (crl.pem is written again with the next CRL number)."""
    from exchange.pki import load_certificate, revoke

    try:
        crl = revoke(pki_directory(pki), load_certificate(certificate), key_password())
    except (OSError, ValueError) as error:
        fail(error)
    serial = load_certificate(certificate).serial_number
    say(f"revoked serial {serial:x}; {pki_directory(pki).crl} lists {len(crl)} certificate(s)")


@pki_app.command("renew")
def pki_renew(
    agency: Annotated[str, typer.Argument(help="The agency whose certificate is renewed (its folder in the PKI).")],
    purpose: Annotated[str, typer.Argument(help=f"Which certificate: {', '.join(PURPOSES)}.")],
    rsa_bits: Annotated[int, typer.Option(min=2048, help="Size of an RSA encryption key.")] = DEFAULT_RSA_BITS,
    pki: PkiOption = None,
) -> None:
    """Issue a fresh key and certificate for one agency and purpose from the issuing CA, in place of the current
    ones; the current certificate is kept beside it, valid until it expires or is revoked."""
    from exchange.pki import renew

    if purpose not in PURPOSES:
        fail(f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}")
    directory = pki_directory(pki)
    try:
        previous = renew(directory, agency, purpose, key_password(), rsa_bits=rsa_bits)
    except (OSError, ValueError) as error:
        fail(error)
    say(f"renewed {directory.certificate(agency, purpose)}; the previous certificate is kept as {previous}")


@pki_app.command("secrets")
def pki_secrets_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object {variable: value} instead.")] = False,
    pki: PkiOption = None,
) -> None:
    """Print the population's keys (still encrypted with the key password, which is not printed) and the PKI's
    certificates and CRL as Airflow's environment secrets backend reads them (AIRFLOW_CONN_LIENTHONG_KEY_…,
    AIRFLOW_VAR_LIENTHONG_PKI_CERTIFICATES), one NAME='value' line each: for a worker run with LIENTHONG_KEYS=airflow
    and no PKI folder (set -a; . the-file; set +a)."""
    from exchange.keys import pki_secrets

    try:
        found = pki_secrets(pki_directory(pki).path)
    except (OSError, ValueError) as error:
        fail(error)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
    else:
        for name, value in found.items():
            typer.echo(f"{name}={shlex.quote(value)}")
