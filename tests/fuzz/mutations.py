"""Inputs for the fuzz harnesses: arbitrary bytes, and byte-level mutations of a valid input (so that the
readers get past their first check and are tried deep inside)."""

from __future__ import annotations

from hypothesis import strategies as st

# Bytes that make parsers change state: delimiters, quotes, escapes, NUL, lengths and tags at their edges.
INTERESTING = [
    b"\x00",
    b"\xff",
    b"\x80",
    b"\x7f",
    b"\n",
    b"\r",
    b'"',
    b"'",
    b",",
    b"{",
    b"}",
    b"[",
    b"]",
    b"<",
    b">",
    b"&",
    b"\\",
    b":",
    b"-",
    b"0",
    b"9" * 30,
    b"\xe2\x80",
    b"\x30\x80",
    b"\x82\xff\xff",
    b"\x84\x7f\xff\xff\xff",
    b"<!DOCTYPE x [<!ENTITY e 'e'>]>",
    b"&e;",
    b"*a",
    b"&a ",
    b"!!python/object",
    b"NaN",
]


@st.composite
def mutated(draw, seed: bytes, max_mutations: int = 6) -> bytes:
    """``seed`` changed a few times: a byte flipped or replaced, bytes inserted, a slice cut, copied or the input
    truncated."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_mutations))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "set", "insert", "interesting", "delete", "duplicate", "truncate"]))
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "interesting":
            data[at:at] = draw(st.sampled_from(INTERESTING))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 256))]
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


def hostile(seed: bytes) -> st.SearchStrategy[bytes]:
    """Mostly mutations of ``seed``, some bytes from nowhere."""
    return st.one_of(st.binary(max_size=512), mutated(seed), mutated(seed, max_mutations=1))


def assert_one_line(error: BaseException) -> None:
    message = str(error)
    assert message and "\n" not in message and "\r" not in message, f"{type(error).__name__} on many lines"
