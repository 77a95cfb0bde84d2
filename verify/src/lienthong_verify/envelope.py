"""CMS EnvelopedData (DER, ``.p7m``), streamed: files of any size are encrypted and decrypted in constant memory.

``cryptography``'s PKCS7EnvelopeBuilder and pkcs7_decrypt_der hold the whole content in memory, so this module
writes and reads the structure itself (asn1crypto for the small parts). Encryption: a fresh AES-256-CBC content
key, transported to the recipient's RSA certificate with RSAES-OAEP (SHA-256), the recipient identified by issuer
and serial number; the content is one definite-length primitive OCTET STRING, so its header is written before
the ciphertext is streamed. ``openssl cms -decrypt -inform DER -in F.p7m -recip C -inkey K`` reads it.
Decryption also reads what ``openssl cms -encrypt`` writes (RSA PKCS#1 v1.5 or OAEP; AES-CBC; ``-stream``
output with constructed, indefinite-length content).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from lienthong_verify.certificates import CertifiedKey, describe
from lienthong_verify.errors import DecryptionFailed

CHUNK = 1 << 20
# The parts read whole (recipient infos, algorithms): a recipient info is ~300 bytes for a 2048-bit key, ~600 for
# 4096; a thousand of them fit.
MAX_ELEMENT_BYTES = 1 << 20
_UNREADABLE = "not decryptable CMS EnvelopedData"
AES_KEY_BYTES = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32}
OAEP_HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


def encrypt_file(source: Path, target: BinaryIO, recipient: x509.Certificate) -> None:
    """Write ``source`` to ``target`` as CMS EnvelopedData for ``recipient`` (an RSA certificate)."""
    public_key = recipient.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError(f"the encryption certificate {describe(recipient)} must have an RSA key")
    content_key, iv = os.urandom(32), os.urandom(16)
    size = source.stat().st_size
    encrypted_size = (size // 16 + 1) * 16  # PKCS#7 padding always adds 1 to 16 bytes
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    recipient_info = cms.RecipientInfo(
        name="ktri",
        value=cms.KeyTransRecipientInfo(
            {
                "version": "v0",
                "rid": cms.RecipientIdentifier(
                    name="issuer_and_serial_number",
                    value=cms.IssuerAndSerialNumber(
                        {
                            "issuer": asn1_x509.Name.load(recipient.issuer.public_bytes()),
                            "serial_number": recipient.serial_number,
                        }
                    ),
                ),
                "key_encryption_algorithm": {
                    "algorithm": "rsaes_oaep",
                    "parameters": algos.RSAESOAEPParams(
                        {
                            "hash_algorithm": {"algorithm": "sha256"},
                            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
                        }
                    ),
                },
                "encrypted_key": public_key.encrypt(content_key, oaep),
            }
        ),
    )
    content_header = (
        cms.ContentType("data").dump()
        + algos.EncryptionAlgorithm({"algorithm": "aes256_cbc", "parameters": core.OctetString(iv)}).dump()
        + _der_header(0x80, encrypted_size)  # [0] IMPLICIT OCTET STRING, primitive
    )
    encrypted_content_info = _der_header(0x30, len(content_header) + encrypted_size) + content_header
    body = core.Integer(0).dump() + cms.RecipientInfos([recipient_info]).dump() + encrypted_content_info
    enveloped_data = _der_header(0x30, len(body) + encrypted_size) + body
    explicit = _der_header(0xA0, len(enveloped_data) + encrypted_size) + enveloped_data
    content_type = cms.ContentType("enveloped_data").dump()
    target.write(_der_header(0x30, len(content_type) + len(explicit) + encrypted_size) + content_type + explicit)

    encryptor = Cipher(algorithms.AES(content_key), modes.CBC(iv)).encryptor()
    padder = block_padding.PKCS7(128).padder()
    written = 0
    with source.open("rb") as handle:
        while written < size and (chunk := handle.read(min(CHUNK, size - written))):
            written += len(chunk)
            target.write(encryptor.update(padder.update(chunk)))
    if written != size:
        raise OSError(f"{source} changed size while it was being encrypted")
    target.write(encryptor.update(padder.finalize()) + encryptor.finalize())


def decrypt(source: BinaryIO, target: BinaryIO, recipient: CertifiedKey, *, size: int | None = None) -> int:
    """Decrypt the CMS EnvelopedData read from ``source`` into ``target`` with the recipient's key; returns the
    number of plaintext bytes. Raises DecryptionFailed. ``size``: the bytes ``source`` holds (by default the rest
    of its file, when it has one); no length in the DER may claim more."""
    reader = _DerReader(source, _rest_of(source) if size is None else size)
    try:
        recipient_infos, algorithm, content_chunks = _open_enveloped_data(reader)
        content_key = _content_key(recipient_infos, recipient)
        cipher_name = algorithm["algorithm"].native
        if AES_KEY_BYTES.get(cipher_name) != len(content_key):
            raise DecryptionFailed(f"unsupported content encryption {cipher_name}")
        decryptor = Cipher(algorithms.AES(content_key), modes.CBC(algorithm["parameters"].native)).decryptor()
        unpadder = block_padding.PKCS7(128).unpadder()
        written = 0
        for chunk in content_chunks:
            written += target.write(unpadder.update(decryptor.update(chunk)))
        written += target.write(unpadder.update(decryptor.finalize()) + unpadder.finalize())
    except DecryptionFailed:
        raise
    except (ValueError, TypeError, KeyError, EOFError, RecursionError) as error:  # asn1crypto decodes recursively
        raise DecryptionFailed(f"{_UNREADABLE} ({type(error).__name__})") from None
    return written


def _open_enveloped_data(reader: _DerReader) -> tuple[cms.RecipientInfos, algos.EncryptionAlgorithm, Iterator[bytes]]:
    """Read up to the encrypted content; return the recipients, the content algorithm and the ciphertext."""
    reader.enter(0x30)
    if cms.ContentType.load(reader.element(0x06)).native != "enveloped_data":
        raise DecryptionFailed("the file is not CMS EnvelopedData")
    reader.enter(0xA0)
    reader.enter(0x30)
    reader.element(0x02)  # version
    if reader.peek() == 0xA0:
        reader.element(0xA0)  # originatorInfo: certificates we do not need
    recipient_infos = cms.RecipientInfos.load(reader.element(0x31))
    reader.enter(0x30)
    if cms.ContentType.load(reader.element(0x06)).native != "data":
        raise DecryptionFailed("the encrypted content is not data")
    algorithm = algos.EncryptionAlgorithm.load(reader.element(0x30))
    return recipient_infos, algorithm, reader.content_octets()


def _content_key(recipient_infos: cms.RecipientInfos, recipient: CertifiedKey) -> bytes:
    certificate = recipient.certificate
    for info in recipient_infos:
        if info.name != "ktri":
            continue
        rid = info.chosen["rid"]
        if rid.name == "issuer_and_serial_number":
            mine = rid.chosen["serial_number"].native == certificate.serial_number and (
                rid.chosen["issuer"].dump() == certificate.issuer.public_bytes()
            )
        else:
            try:
                key_id = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except x509.ExtensionNotFound:
                key_id = None
            mine = rid.chosen.native == key_id
        if mine:
            return _unwrap(info.chosen, recipient.private_key)
    raise DecryptionFailed(f"the file is not encrypted for certificate {describe(certificate)}")


def _unwrap(info: cms.KeyTransRecipientInfo, private_key) -> bytes:
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise DecryptionFailed("the recipient key is not an RSA key")
    algorithm = info["key_encryption_algorithm"]
    name = algorithm["algorithm"].native
    if name == "rsaes_pkcs1v15":
        scheme = padding.PKCS1v15()
    elif name == "rsaes_oaep":
        parameters = algorithm["parameters"]
        digest = OAEP_HASHES[parameters["hash_algorithm"]["algorithm"].native]
        mgf_digest = OAEP_HASHES[parameters["mask_gen_algorithm"]["parameters"]["algorithm"].native]
        scheme = padding.OAEP(mgf=padding.MGF1(mgf_digest()), algorithm=digest(), label=None)
    else:
        raise DecryptionFailed(f"unsupported key transport {name}")
    try:
        return private_key.decrypt(info["encrypted_key"].native, scheme)
    except ValueError:
        raise DecryptionFailed("the content key does not decrypt with this key (wrong key?)") from None


def _der_header(tag: int, length: int) -> bytes:
    if length < 0x80:
        return bytes((tag, length))
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(encoded))) + encoded


def _rest_of(handle: BinaryIO) -> int | None:
    """The bytes left in ``handle``'s file, or None when it is not a file."""
    try:
        return os.fstat(handle.fileno()).st_size - handle.tell()
    except (OSError, ValueError, AttributeError):
        return None


class _DerReader:
    """Reads DER (and BER indefinite lengths) from a file one header or one small element at a time. Every length
    is untrusted: a definite length is refused when it claims more than the file still holds (``size``, when
    known), and an element read whole when it is larger than MAX_ELEMENT_BYTES."""

    def __init__(self, handle: BinaryIO, size: int | None = None) -> None:
        self.handle = handle
        self.pending = b""  # a byte peeked at and not yet consumed
        self.left = size  # bytes not yet consumed, when the size is known

    def _read(self, n: int) -> bytes:
        data, self.pending = self.pending[:n], self.pending[n:]
        if len(data) < n:
            data += self.handle.read(n - len(data))
        if len(data) != n:
            raise EOFError("the file ends early")
        if self.left is not None:
            self.left -= n
        return data

    def peek(self) -> int:
        if not self.pending:
            self.pending = self.handle.read(1)
        return self.pending[0] if self.pending else -1

    def header(self) -> tuple[int, int | None, bytes]:
        """Tag, length (None when indefinite) and the header's bytes."""
        raw = self._read(2)
        tag, first = raw[0], raw[1]
        if first < 0x80:
            return tag, first, raw
        if first == 0x80:
            return tag, None, raw
        extra = self._read(first & 0x7F)
        length = int.from_bytes(extra, "big")
        if self.left is not None and length > self.left:
            raise DecryptionFailed(f"{_UNREADABLE} (a DER length claims more than the file holds)")
        return tag, length, raw + extra

    def enter(self, expected: int) -> None:
        """Step into a constructed element."""
        tag, _, _ = self.header()
        if tag != expected:
            raise ValueError(f"expected tag {expected:#x}, found {tag:#x}")

    def element(self, expected: int) -> bytes:
        """A whole (small, definite-length) element, header included."""
        tag, length, raw = self.header()
        if tag != expected or length is None:
            raise ValueError(f"expected a definite element with tag {expected:#x}, found {tag:#x}")
        if length > MAX_ELEMENT_BYTES:
            raise DecryptionFailed(f"{_UNREADABLE} (a DER element is larger than {MAX_ELEMENT_BYTES >> 20} MiB)")
        return raw + self._read(length)

    def content_octets(self) -> Iterator[bytes]:
        """The encrypted content: [0] primitive, or [0] constructed of OCTET STRINGs (definite or not)."""
        tag, length, _ = self.header()
        if tag == 0x80 and length is not None:
            yield from self._chunks(length)
        elif tag == 0xA0:
            remaining = length
            while remaining is None or remaining > 0:
                part_tag, part_length, raw = self.header()
                if part_tag == 0 and part_length == 0 and remaining is None:
                    return  # end-of-contents
                if part_tag != 0x04 or part_length is None:
                    raise ValueError("unexpected element in the encrypted content")
                yield from self._chunks(part_length)
                if remaining is not None:
                    remaining -= len(raw) + part_length
        else:
            raise ValueError("the encrypted content is missing")

    def _chunks(self, length: int) -> Iterator[bytes]:
        while length:
            chunk = self._read(min(CHUNK, length))
            length -= len(chunk)
            yield chunk
