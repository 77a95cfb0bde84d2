"""Reading a SOAP request's WS-Security header before anything else of it, and checking its XML signature.

An unauthenticated sender must cost no more than its header: ``read_security_header`` pull-parses the request
only as far as the Body's start tag, within ``MAX_HEADER_BYTES``, and the caller checks the credentials in it
before ``read_envelope`` parses the whole request (bounded in depth and elements). Both refuse DTDs and entities
and touch no network, as ``exchange.safe_xml`` does.

A signature is checked in the tree before xmlsec sees it, because xmlsec dereferences and transforms every
Reference before it checks the SignatureValue: only same-document references to the Body and the Timestamp,
exclusive C14N, SHA-2 digests and RSA or ECDSA signature methods pass. Then the signer's certificate (the
BinarySecurityToken the KeyInfo points to) must chain to the trust root with the signing key usage, not be
revoked, and be the expected agency's; last, xmlsec verifies the references and the signature value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Set
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from exchange.errors import SignatureInvalid, SignerMismatch, VerificationError
from exchange.pki import agency_of, load_certificate
from exchange.signature import SIGNING_USAGE, TrustAnchors, verify_certificate

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_NS = {"soap": SOAP, "wsse": WSSE, "wsu": WSU, "ds": DS}
WSU_ID = f"{{{WSU}}}Id"

INVALID = "soap:Client.Invalid"  # the XML itself is refused
AUTHENTICATION = "soap:Client.Authentication"  # the sender is not who it must be, or repeats itself

# Everything before the Body's start tag. A header signed by zeep is ~4 KB (an RSA-3072 certificate in base64 is
# ~2 KB of it); 64 KiB leaves room for a certificate chain and other clients' header blocks, and is all that an
# unauthenticated sender can make the server parse.
MAX_HEADER_BYTES = 64 * 1024
# The header is fed to libxml2 this much at a time: it never parses more than this past the Body's start tag.
READ_CHUNK = 8 * 1024
# The deepest element of a signed request is 9 levels down (Envelope/Header/Security/Signature/SignedInfo/
# Reference/Transforms/Transform/InclusiveNamespaces); 32 leaves room and stops nesting long before libxml2's own
# limits (256 levels, 2048 with huge trees).
MAX_DEPTH = 32
# A whole request has ~40 elements (a signed header and a SubmitReceipt); 1,000 keeps a client from turning the
# 64 MiB a body may have into a tree of millions of small elements (about ten times its size in memory).
MAX_ELEMENTS = 1000
# What libxml2 is allowed: exchange.safe_xml's parser settings (no DTD, no entities, no network, no PIs).
_HARDENED = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "remove_pis": True,
}

_SAME_DOCUMENT = re.compile(r"#[A-Za-z_][A-Za-z0-9_.-]{0,127}")  # '#' and an NCName: nothing to fetch
_DIGESTS = frozenset(
    {
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    }
)
_SIGNATURE_METHODS = frozenset(
    f"http://www.w3.org/2001/04/xmldsig-more#{kind}-{digest}"
    for kind in ("rsa", "ecdsa")
    for digest in ("sha256", "sha384", "sha512")
)
_X509_TOKEN = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"


class SoapRefusal(Exception):
    """A request refused: answered as a SOAP fault with ``code`` and the one-line ``check: detail``, which names
    the rule and a position, never a value of the request."""

    def __init__(self, code: str, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.code = code
        self.check = check


@dataclass(frozen=True)
class SecurityHeader:
    """What the request says before its Body: the ``wsse:Security`` element, and the Body's ``wsu:Id``."""

    security: etree._Element
    body_id: str | None


@dataclass(frozen=True)
class SignedHeader:
    """A signature whose form and signer passed; ``replay_key`` is the SHA-256 of its canonical SignedInfo,
    which every copy of it repeats (not the SignatureValue: an ECDSA value has a twin, (r, n−s), that anyone
    can compute)."""

    ids: frozenset[str]
    certificate: x509.Certificate
    replay_key: bytes


def read_security_header(source: BinaryIO) -> SecurityHeader:
    """Pull-parse a SOAP 1.1 request up to its Body's start tag: the Envelope holds one Header with one
    ``wsse:Security``, all within ``MAX_HEADER_BYTES``. Nothing after the Body's start tag is parsed."""
    parser = etree.XMLPullParser(events=("start", "end"), huge_tree=False, **_HARDENED)
    depth = read = 0
    header = security = None
    while read < MAX_HEADER_BYTES:
        chunk = source.read(min(READ_CHUNK, MAX_HEADER_BYTES - read))
        if not chunk:
            _close(parser)
            raise SoapRefusal(INVALID, "envelope", "the request ends before its Body")
        read += len(chunk)
        for event, element in _events(parser, chunk):
            if event == "end":
                if depth == 3 and element.tag == f"{{{WSSE}}}Security":
                    if security is not None:
                        raise SoapRefusal(AUTHENTICATION, "credentials", "the Header has more than one wsse:Security")
                    security = element
                depth -= 1
                continue
            depth += 1
            if depth > MAX_DEPTH:
                raise SoapRefusal(INVALID, "envelope", f"the header is nested deeper than {MAX_DEPTH} levels")
            if depth == 1:
                _check_document(element)
            elif depth == 2 and element.tag == f"{{{SOAP}}}Header" and header is None:
                header = element
            elif depth == 2 and element.tag == f"{{{SOAP}}}Body":
                if security is None:
                    raise SoapRefusal(AUTHENTICATION, "credentials", "no WS-Security header")
                return SecurityHeader(security, element.get(WSU_ID))
            elif depth == 2:
                raise SoapRefusal(INVALID, "envelope", "the Envelope holds something else than a Header and a Body")
    raise SoapRefusal(INVALID, "envelope", f"the Body does not start within the first {MAX_HEADER_BYTES:,} bytes")


def read_envelope(path: Path) -> etree._Element:
    """The whole request, once its sender is authenticated: at most ``MAX_DEPTH`` levels and ``MAX_ELEMENTS``
    elements (its size is bounded by the upload). Long text is allowed: SubmitPackage carries a zip in base64."""
    depth = count = 0
    with path.open("rb") as stream:
        events = etree.iterparse(stream, events=("start", "end"), huge_tree=True, **_HARDENED)
        try:
            for event, _element in events:
                if event == "end":
                    depth -= 1
                    continue
                depth, count = depth + 1, count + 1
                if depth > MAX_DEPTH:
                    raise SoapRefusal(INVALID, "envelope", f"the request is nested deeper than {MAX_DEPTH} levels")
                if count > MAX_ELEMENTS:
                    raise SoapRefusal(INVALID, "envelope", f"the request has more than {MAX_ELEMENTS:,} elements")
        except etree.XMLSyntaxError as error:
            raise _not_well_formed(error) from None
    return events.root


def check_signature_form(
    header: SecurityHeader, signature: etree._Element, trust: TrustAnchors, issuing_ca: Path, signer: str
) -> SignedHeader:
    """Everything about a signature that can be checked before the Body is parsed and before xmlsec runs: its
    form (the allow-lists above), that it signs the Body and the Timestamp, and its signer: a certificate chaining
    to ``trust`` through ``issuing_ca``, for signing, not revoked, of the agency ``signer``."""
    timestamp = header.security.find("wsu:Timestamp", _NS)
    expected = {"body": header.body_id, "timestamp": None if timestamp is None else timestamp.get(WSU_ID)}
    _only_children(signature, "the Signature", f"{{{DS}}}SignedInfo", f"{{{DS}}}SignatureValue", f"{{{DS}}}KeyInfo")
    signed_info = _one(signature, "ds:SignedInfo", "the Signature")
    references = signed_info.findall("ds:Reference", _NS)
    allowed = (f"{{{DS}}}CanonicalizationMethod", f"{{{DS}}}SignatureMethod", f"{{{DS}}}Reference")
    _only_children(signed_info, "the SignedInfo", *allowed)
    canonicalization = _one(signed_info, "ds:CanonicalizationMethod", "the SignedInfo")
    _check_algorithm(canonicalization, {EXC_C14N}, "the CanonicalizationMethod")
    method = _one(signed_info, "ds:SignatureMethod", "the SignedInfo")
    _check_algorithm(method, _SIGNATURE_METHODS, "the SignatureMethod", parameters=False)
    ids: set[str] = set()
    for position, reference in enumerate(references, 1):
        uri = reference.get("URI") or ""
        if not _SAME_DOCUMENT.fullmatch(uri) or uri[1:] not in expected.values() or uri[1:] in ids:
            raise SignatureInvalid(f"Reference {position} is not a reference to the Body or the Timestamp by its id")
        ids.add(uri[1:])
        where = f"Reference {position}"
        _only_children(reference, where, f"{{{DS}}}Transforms", f"{{{DS}}}DigestMethod", f"{{{DS}}}DigestValue")
        for transform in reference.findall("ds:Transforms/*", _NS):
            if transform.tag != f"{{{DS}}}Transform":
                raise SignatureInvalid(f"{where}: its Transforms hold something else than Transform elements")
            _check_algorithm(transform, {EXC_C14N}, f"{where}'s Transform")
        digest = _one(reference, "ds:DigestMethod", where)
        _check_algorithm(digest, _DIGESTS, f"{where}'s DigestMethod", parameters=False)
    for what, identifier in expected.items():
        if identifier is None or identifier not in ids:
            raise SignatureInvalid(f"the {what} is not signed")
    certificate = _signer_certificate(header.security, signature)
    verify_certificate(certificate, [load_certificate(issuing_ca)], trust, SIGNING_USAGE, at=datetime.now(UTC))
    if agency_of(certificate) != signer:
        raise SignerMismatch(f"the request must be signed by the {signer} agency's signing certificate")
    canonical = etree.tostring(signed_info, method="c14n", exclusive=True)
    return SignedHeader(frozenset(ids), certificate, hashlib.sha256(canonical).digest())


def verify_signature(root: etree._Element, signed: SignedHeader) -> None:
    """xmlsec's check of the references and the signature value, with each signed id naming exactly one element
    (no signature wrapping) and xmlsec itself held to the transforms allowed above."""
    import xmlsec

    signature = root.find("soap:Header/wsse:Security/ds:Signature", _NS)
    context = xmlsec.SignatureContext()
    for identifier in signed.ids:
        matches = root.xpath("//*[@wsu:Id=$id]", namespaces=_NS, id=identifier)
        if len(matches) != 1:
            raise SignatureInvalid(f"a signed id names {len(matches)} elements")
        context.register_id(matches[0], "Id", WSU)
    allowed = (xmlsec.Transform.EXCL_C14N, xmlsec.Transform.SHA256, xmlsec.Transform.SHA384, xmlsec.Transform.SHA512)
    for transform in allowed:
        context.enable_reference_transform(transform)
    pem = signed.certificate.public_bytes(serialization.Encoding.PEM)
    context.key = xmlsec.Key.from_memory(pem, xmlsec.KeyFormat.CERT_PEM, None)
    try:
        context.verify(signature)
    except xmlsec.Error:
        raise SignatureInvalid("the signature does not verify (the body or timestamp was changed)") from None


def verification_refusal(error: VerificationError) -> SoapRefusal:
    """A failed contract check (signature, chain, revoked, signer …) as the fault that names it."""
    return SoapRefusal(AUTHENTICATION, error.check, error.detail)


# -- the parts ----------------------------------------------------------------------------------------------------


def _events(parser: etree.XMLPullParser, chunk: bytes) -> list[tuple[str, etree._Element]]:
    try:
        parser.feed(chunk)
        return list(parser.read_events())
    except etree.XMLSyntaxError as error:
        raise _not_well_formed(error) from None


def _close(parser: etree.XMLPullParser) -> None:
    try:
        parser.close()
    except etree.XMLSyntaxError as error:
        raise _not_well_formed(error) from None


def _not_well_formed(error: etree.XMLSyntaxError) -> SoapRefusal:
    """libxml2's own message can quote the document (an entity's name, a tag): only its position is given."""
    line, column = error.position
    return SoapRefusal(INVALID, "envelope", f"not well-formed XML at line {line}, column {column}")


def _check_document(root: etree._Element) -> None:
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise SoapRefusal(INVALID, "envelope", "the document declares a DTD or entities")
    if root.tag != f"{{{SOAP}}}Envelope":
        raise SoapRefusal(INVALID, "envelope", "not a SOAP 1.1 Envelope")


def _one(parent: etree._Element, path: str, where: str) -> etree._Element:
    found = parent.findall(path, _NS)
    if len(found) != 1:
        raise SignatureInvalid(f"{where} must hold one {path.split(':')[-1]}, not {len(found)}")
    return found[0]


def _only_children(parent: etree._Element, where: str, *tags: str) -> None:
    if any(child.tag not in tags for child in parent):
        raise SignatureInvalid(f"{where} holds an element that is not allowed there")


def _check_algorithm(element: etree._Element, allowed: Set[str], where: str, parameters: bool = True) -> None:
    """An algorithm from the allow-list, with no parameters but exclusive C14N's InclusiveNamespaces."""
    if element.get("Algorithm") not in allowed:
        raise SignatureInvalid(f"{where} names an algorithm that is not allowed")
    if any(not parameters or child.tag != f"{{{EXC_C14N}}}InclusiveNamespaces" for child in element):
        raise SignatureInvalid(f"{where} carries parameters that are not allowed")


def _signer_certificate(security: etree._Element, signature: etree._Element) -> x509.Certificate:
    """The certificate of the BinarySecurityToken in the same header that the signature's KeyInfo refers to."""
    key_info = _one(signature, "ds:KeyInfo", "the Signature")
    _only_children(key_info, "the KeyInfo", f"{{{WSSE}}}SecurityTokenReference")
    reference = _one(key_info, "wsse:SecurityTokenReference", "the KeyInfo")
    _only_children(reference, "the SecurityTokenReference", f"{{{WSSE}}}Reference")
    uri = _one(reference, "wsse:Reference", "the SecurityTokenReference").get("URI") or ""
    if not _SAME_DOCUMENT.fullmatch(uri):
        raise SignatureInvalid("the KeyInfo does not refer to a BinarySecurityToken by its id")
    tokens = security.xpath("wsse:BinarySecurityToken[@wsu:Id=$id]", namespaces=_NS, id=uri[1:])
    if len(tokens) != 1 or tokens[0].get("ValueType", _X509_TOKEN) != _X509_TOKEN:
        raise SignatureInvalid("the signature's BinarySecurityToken is missing, ambiguous or not an X.509 token")
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join((tokens[0].text or "").split()), validate=True))
    except (binascii.Error, ValueError):
        raise SignatureInvalid("the BinarySecurityToken is not an X.509 certificate") from None
