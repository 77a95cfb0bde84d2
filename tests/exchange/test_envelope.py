"""Streamed CMS EnvelopedData: stock OpenSSL decrypts ours, we decrypt OpenSSL's, wrong keys are refused."""

import io
import os
import subprocess

import pytest

from exchange.envelope import decrypt, encrypt_file
from exchange.errors import DecryptionFailed
from exchange.pki import ENCRYPTION, load_certificate, load_recipient
from tests.exchange.conftest import PASSWORD


@pytest.fixture(scope="module")
def health(pki):
    return load_recipient(pki.certificate("health", ENCRYPTION), pki.key("health", ENCRYPTION), PASSWORD)


def _encrypt(tmp_path, pki, content: bytes, recipient: str = "health"):
    source = tmp_path / "payload.csv"
    source.write_bytes(content)
    target = tmp_path / "payload.csv.p7m"
    with target.open("wb") as handle:
        encrypt_file(source, handle, load_certificate(pki.certificate(recipient, ENCRYPTION)))
    return target


def _decrypt(path, recipient) -> bytes:
    plain = io.BytesIO()
    with path.open("rb") as handle:
        decrypt(handle, plain, recipient)
    return plain.getvalue()


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 100_000, (1 << 20) * 3 + 5])
def test_openssl_and_we_decrypt_what_we_encrypt(tmp_path, pki, health, size):
    content = os.urandom(size)
    encrypted = _encrypt(tmp_path, pki, content)
    assert _decrypt(encrypted, health) == content
    result = subprocess.run(
        ["openssl", "cms", "-decrypt", "-inform", "DER", "-in", str(encrypted),
         "-recip", str(pki.certificate("health", ENCRYPTION)), "-inkey", str(pki.key("health", ENCRYPTION)),
         "-passin", f"pass:{PASSWORD.decode()}"],
        capture_output=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == content


def test_encryption_uses_aes_256_and_rsa_oaep(tmp_path, pki):
    encrypted = _encrypt(tmp_path, pki, b"x")
    command = ["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", str(encrypted)]
    listing = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "aes-256-cbc" in listing.stdout
    assert "rsaesOaep" in listing.stdout


@pytest.mark.parametrize(
    "options",
    [["-aes256"], ["-aes128", "-keyopt", "rsa_padding_mode:oaep"], ["-aes256", "-stream"]],  # -keyopt after -recip
    ids=["pkcs1", "oaep", "streamed-ber"],
)
def test_we_decrypt_what_openssl_encrypts(tmp_path, pki, health, options):
    content = "Nguyễn Văn An,001200012345\n".encode() * 5000
    (tmp_path / "plain").write_bytes(content)
    subprocess.run(
        ["openssl", "cms", "-encrypt", "-binary", "-outform", "DER", "-in", str(tmp_path / "plain"),
         "-out", str(tmp_path / "plain.p7m"), "-recip", str(pki.certificate("health", ENCRYPTION)), *options],
        check=True,
    )  # fmt: skip
    assert _decrypt(tmp_path / "plain.p7m", health) == content


def test_a_file_for_another_recipient_is_refused(tmp_path, pki, health):
    encrypted = _encrypt(tmp_path, pki, b"for tax only", recipient="tax")
    with pytest.raises(DecryptionFailed, match="^decrypt: the file is not encrypted for certificate 'Liên thông hea"):
        _decrypt(encrypted, health)


@pytest.mark.parametrize("damage", ["truncated", "not cms"])
def test_a_damaged_file_is_refused(tmp_path, pki, health, damage):
    encrypted = _encrypt(tmp_path, pki, b"a" * 1000)
    data = encrypted.read_bytes()
    encrypted.write_bytes(data[:-20] if damage == "truncated" else b"plain text, not CMS")
    with pytest.raises(DecryptionFailed, match="^decrypt: not decryptable CMS EnvelopedData"):
        _decrypt(encrypted, health)


def test_only_rsa_certificates_can_receive(tmp_path, pki):
    (tmp_path / "plain").write_bytes(b"x")
    with pytest.raises(ValueError, match="must have an RSA key"):
        encrypt_file(tmp_path / "plain", io.BytesIO(), load_certificate(pki.certificate("health", "signing")))


def test_a_der_length_past_the_end_of_the_file_is_refused_before_anything_is_read(tmp_path, pki, health):
    """A length field handed straight to ``read()`` asked the file for 2^63 bytes."""
    encrypted = _encrypt(tmp_path, pki, b"a" * 1000)
    data = encrypted.read_bytes()
    assert data[:2] == b"\x30\x82"  # the outer SEQUENCE, its length in two bytes
    encrypted.write_bytes(b"\x30\x88" + (2**63).to_bytes(8, "big") + data[4:])
    with pytest.raises(DecryptionFailed, match=r"^decrypt: .* \(a DER length claims more than the file holds\)$"):
        _decrypt(encrypted, health)


def test_an_element_too_large_to_be_one_is_refused_when_the_size_is_unknown(tmp_path, pki, health):
    data = _encrypt(tmp_path, pki, b"a" * 1000).read_bytes()
    assert data[4:6] == b"\x06\x09"  # the content type's OID, read whole
    hostile = data[:4] + b"\x06\x84\x7f\xff\xff\xff" + data[6:]
    with pytest.raises(DecryptionFailed, match=r"^decrypt: .* \(a DER element is larger than 1 MiB\)$"):
        decrypt(io.BytesIO(hostile), io.BytesIO(), health)
