"""``lienthong-verify``: what a partner ministry runs on a package it receives, and on the receipt it sends back.

Every refusal is one line on standard error, ``lienthong-verify: <check>: <detail>`` (the check as in the
platform's rejected receipts), and exit status 1; a usage or file problem exits with 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from lienthong_verify import __version__
from lienthong_verify.certificates import Signer, load_certificate, load_certificates, load_private_key, load_recipient
from lienthong_verify.envelope import decrypt
from lienthong_verify.errors import VerificationError
from lienthong_verify.package import (
    ENCRYPTED_SUFFIX,
    Manifest,
    after,
    read_manifest,
    read_manifest_bytes,
    verify_package,
)
from lienthong_verify.receipt import sign_receipt, verify_receipt
from lienthong_verify.safe_xml import InvalidDocument
from lienthong_verify.schemas import check_payload, publish
from lienthong_verify.signature import TrustAnchors

PASSWORD_VARIABLE = "LIENTHONG_KEY_PASSWORD"  # the key password, when the key file is encrypted


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        arguments.run(arguments)
    except VerificationError as error:
        _fail(str(error), 1)
    except InvalidDocument as error:
        _fail(f"validate: {error}", 1)
    except (OSError, ValueError) as error:
        where = getattr(error, "filename", None)
        _fail(f"{where}: {error.strerror}" if where and getattr(error, "strerror", None) else str(error), 2)
    return 0


def _fail(message: str, status: int) -> NoReturn:
    print(f"lienthong-verify: {message}", file=sys.stderr)
    raise SystemExit(status)


# -- the commands ------------------------------------------------------------------------------------------------


def _package(arguments: argparse.Namespace) -> None:
    recipient = None
    if arguments.key:
        recipient = load_recipient(arguments.cert, arguments.key, _password())
    last = arguments.last
    sequence = after(last.read_bytes() if last and last.exists() else None) if last else None
    verified = verify_package(arguments.package, _trust(arguments), sequence=sequence, recipient=recipient,
                              decrypt_to=arguments.out)  # fmt: skip
    if arguments.validate:
        for path in verified.decrypted or _plain_files(verified.path, verified.manifest):
            check_payload(path, verified.manifest.schema.name, verified.manifest.schema.version)
    if last and arguments.save_last:
        partial = last.with_name(last.name + ".partial")
        partial.write_bytes(read_manifest_bytes(arguments.package))
        partial.replace(last)
    print(verified.summary() + ("; payload follows the dataset schema" if arguments.validate else ""))


def _plain_files(package: Path, manifest: Manifest) -> list[Path]:
    if not package.is_dir():
        raise ValueError("--validate on a zip needs --key and --cert (decrypted files), or an unzipped package")
    return [package / entry.path for entry in manifest.files if not entry.encrypted]


def _decrypt(arguments: argparse.Namespace) -> None:
    recipient = load_recipient(arguments.cert, arguments.key, _password())
    out = arguments.out or arguments.file.with_name(arguments.file.name.removesuffix(ENCRYPTED_SUFFIX))
    partial = out.with_name(out.name + ".partial")
    try:
        with arguments.file.open("rb") as source, partial.open("wb") as plain:
            decrypt(source, plain, recipient, size=arguments.file.stat().st_size)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    print(out)


def _validate(arguments: argparse.Namespace) -> None:
    if arguments.manifest:
        schema = Manifest.from_bytes(arguments.manifest.read_bytes()).schema
        name, version = schema.name, schema.version
    elif arguments.dataset:
        name, _, version = arguments.dataset.rpartition(".v")
    else:
        raise ValueError("say which schema: --manifest manifest.json or --dataset NAME.vVERSION")
    for path in arguments.files:
        count = check_payload(path, name, version)
        print(f"{path}: {count:,} records follow {name} version {version}")


def _receipt_create(arguments: argparse.Namespace) -> None:
    if arguments.status == "accepted":
        verified = verify_package(arguments.package, _trust(arguments))
        manifest, manifest_sha256 = verified.manifest, verified.manifest_sha256
    else:  # a package refused may not verify: the receipt names it by its manifest as received
        manifest, manifest_sha256 = read_manifest(arguments.package)
    signer = Signer(load_certificate(arguments.cert), load_private_key(arguments.key, _password()),
                    tuple(load_certificates(arguments.chain)))  # fmt: skip
    receipt = sign_receipt(manifest, manifest_sha256, arguments.out, signer, status=arguments.status,
                           errors=arguments.error, record_count=arguments.record_count)  # fmt: skip
    print(f"receipt for package {receipt.package_id} ({receipt.status}) written to {arguments.out}")


def _receipt_verify(arguments: argparse.Namespace) -> None:
    manifest, manifest_sha256 = read_manifest(arguments.package)
    print(verify_receipt(arguments.receipt, _trust(arguments), manifest, manifest_sha256).summary())


def _schemas(arguments: argparse.Namespace) -> None:
    for path in publish(arguments.out):
        print(path)


def _trust(arguments: argparse.Namespace) -> TrustAnchors:
    return TrustAnchors.from_files(arguments.root, arguments.crl)


def _password() -> bytes | None:
    password = os.environ.get(PASSWORD_VARIABLE)
    return password.encode() if password else None


# -- the command line --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lienthong-verify",
        description="Verify Liên thông exchange packages, decrypt and validate their payload, sign and verify "
        f"receipts. A key file that is encrypted is opened with the password in ${PASSWORD_VARIABLE}.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def trust(command: argparse.ArgumentParser) -> None:
        command.add_argument("--root", type=Path, required=True, help="the government root CA (root-ca.pem)")
        command.add_argument("--crl", type=Path, action="append", required=True,
                             help="a current CRL of the issuing CA (crl.pem); repeatable")  # fmt: skip

    package = commands.add_parser("package", help="verify a package; decrypt, validate, check its sequence")
    package.add_argument("package", type=Path, help="the package: a folder or its .zip")
    trust(package)
    package.add_argument("--cert", type=Path, help="your encryption certificate (encryption.pem)")
    package.add_argument("--key", type=Path, help="its key (encryption.key.pem): decrypt every .p7m file")
    package.add_argument("--out", type=Path, help="where decrypted files go (default: PACKAGE.decrypted/)")
    package.add_argument("--validate", action="store_true", help="check every payload file against its schema")
    package.add_argument("--last", type=Path, help="the last manifest accepted on this feed: the package must be next")
    package.add_argument(
        "--save-last", action="store_true", help="once every check holds, keep this manifest as --last"
    )
    package.set_defaults(run=_package)

    one = commands.add_parser("decrypt", help="decrypt one .p7m file (no other check)")
    one.add_argument("file", type=Path)
    one.add_argument("--cert", type=Path, required=True, help="your encryption certificate (encryption.pem)")
    one.add_argument("--key", type=Path, required=True, help="its key (encryption.key.pem)")
    one.add_argument("--out", type=Path, help="the decrypted file (default: FILE without .p7m)")
    one.set_defaults(run=_decrypt)

    validate = commands.add_parser("validate", help="check decrypted payload files against the dataset schema or XSD")
    validate.add_argument("files", type=Path, nargs="+")
    validate.add_argument("--manifest", type=Path, help="the package's manifest.json: it names the schema")
    validate.add_argument("--dataset", help="the schema as NAME.vVERSION, e.g. citizen-extract.v1")
    validate.set_defaults(run=_validate)

    receipt = commands.add_parser("receipt", help="sign or verify a receipt (lienthong-receipt/1.1)")
    receipts = receipt.add_subparsers(required=True, metavar="ACTION")
    create = receipts.add_parser("create", help="sign a receipt for a package addressed to you")
    create.add_argument("package", type=Path)
    trust(create)
    create.add_argument("--cert", type=Path, required=True, help="your signing certificate (signing.pem)")
    create.add_argument("--key", type=Path, required=True, help="its key (signing.key.pem)")
    create.add_argument("--chain", type=Path, required=True, help="the issuing CA certificate (issuing-ca.pem)")
    create.add_argument("--out", type=Path, required=True, help="folder for receipt.json and receipt.json.p7s")
    create.add_argument("--status", choices=("accepted", "rejected"), default="accepted")
    create.add_argument("--error", action="append", default=[], help="why it was rejected (repeatable)")
    create.add_argument("--record-count", type=int, help="records taken in (default: the manifest's when accepted)")
    create.set_defaults(run=_receipt_create)
    check = receipts.add_parser("verify", help="verify a receipt for a package")
    check.add_argument("receipt", type=Path, help="folder with receipt.json and receipt.json.p7s")
    check.add_argument("--package", type=Path, required=True, help="the package the receipt is for")
    trust(check)
    check.set_defaults(run=_receipt_verify)

    schemas = commands.add_parser("schemas", help="write the dataset schemas and XSDs shipped in the kit")
    schemas.add_argument("--out", type=Path, required=True)
    schemas.set_defaults(run=_schemas)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
