"""CMS EnvelopedData (DER, ``.p7m``), streamed. The code lives in the verification kit that partners install
(``lienthong_verify.envelope``): one place for both sides."""

from lienthong_verify.envelope import (
    AES_KEY_BYTES,
    CHUNK,
    MAX_ELEMENT_BYTES,
    OAEP_HASHES,
    decrypt,
    encrypt_file,
)

__all__ = [
    "AES_KEY_BYTES",
    "CHUNK",
    "MAX_ELEMENT_BYTES",
    "OAEP_HASHES",
    "decrypt",
    "encrypt_file",
]
