"""Parsing XML that comes from outside: no DTD, no entities, no network, no huge trees.
The code lives in the verification kit that partners install
(``lienthong_verify.safe_xml``): one place for both sides."""

from lienthong_verify.safe_xml import (
    MAX_BYTES,
    InvalidDocument,
    UnsafeDocument,
    declared_names,
    parse_untrusted,
    schema,
    schema_problem,
    validate,
)

__all__ = [
    "MAX_BYTES",
    "InvalidDocument",
    "UnsafeDocument",
    "declared_names",
    "parse_untrusted",
    "schema",
    "schema_problem",
    "validate",
]
