"""Checking the XML signature of a SOAP message (WS-Security X.509 token profile), as a partner must.

A signature is accepted only when: the signer's certificate (the BinarySecurityToken it points to) chains to the
trust root with the signing key usage and is not revoked; the signed references include the SOAP body and the
timestamp, each id naming exactly one element (no signature wrapping); and xmlsec verifies the signature value
and every reference digest with that certificate's key.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from exchange.errors import VerificationError
from exchange.pki import load_certificate
from exchange.signature import SIGNING_USAGE, TrustAnchors, verify_certificate

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
_NS = {"soap": SOAP, "wsse": WSSE, "wsu": WSU, "ds": DS}


class SignatureRefused(ValueError):
    pass


def verify_body_signature(
    root: etree._Element,
    security: etree._Element,
    signature: etree._Element,
    trust: TrustAnchors,
    issuing_ca: Path,
) -> x509.Certificate:
    """Check the signature over the body and timestamp; returns the signer's certificate."""
    import xmlsec

    certificate = _signer_certificate(root, signature)
    try:
        verify_certificate(certificate, [load_certificate(issuing_ca)], trust, SIGNING_USAGE, at=datetime.now(UTC))
    except VerificationError as error:
        raise SignatureRefused(f"the signer's certificate: {error}") from None
    referenced = {ref.get("URI", "")[1:] for ref in signature.findall("ds:SignedInfo/ds:Reference", _NS)}
    body = root.find("soap:Body", _NS)
    timestamp = security.find("wsu:Timestamp", _NS)
    for required, what in ((body, "body"), (timestamp, "timestamp")):
        if required is None or required.get(f"{{{WSU}}}Id") not in referenced:
            raise SignatureRefused(f"the {what} is not signed")
    context = xmlsec.SignatureContext()
    for identifier in referenced:
        matches = root.xpath("//*[@wsu:Id=$id]", namespaces=_NS, id=identifier)
        if len(matches) != 1:
            raise SignatureRefused(f"the id {identifier!r} names {len(matches)} elements")
        context.register_id(matches[0], "Id", WSU)
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    context.key = xmlsec.Key.from_memory(pem, xmlsec.KeyFormat.CERT_PEM, None)
    try:
        context.verify(signature)
    except xmlsec.Error:
        raise SignatureRefused("the signature does not verify (the body or timestamp was changed)") from None
    return certificate


def _signer_certificate(root: etree._Element, signature: etree._Element) -> x509.Certificate:
    """The certificate of the BinarySecurityToken that the signature's KeyInfo refers to."""
    reference = signature.find("ds:KeyInfo/wsse:SecurityTokenReference/wsse:Reference", _NS)
    if reference is None or not (reference.get("URI") or "").startswith("#"):
        raise SignatureRefused("the signature does not refer to a BinarySecurityToken")
    tokens = root.xpath("//wsse:BinarySecurityToken[@wsu:Id=$id]", namespaces=_NS, id=reference.get("URI")[1:])
    if len(tokens) != 1:
        raise SignatureRefused("the signature's BinarySecurityToken is missing or ambiguous")
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join((tokens[0].text or "").split()), validate=True))
    except (binascii.Error, ValueError):
        raise SignatureRefused("the BinarySecurityToken is not an X.509 certificate") from None
