"""Liên thông's verification kit: what a partner ministry needs to verify, decrypt and validate the packages it
receives and to sign receipts, on ``cryptography``, ``asn1crypto`` and ``lxml`` alone. The platform's
``exchange`` package uses the same code."""

__version__ = "1.1.0"  # 1.1.0: validation.released in manifests
