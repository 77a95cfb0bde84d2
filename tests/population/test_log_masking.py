"""No personal ID in any log: the masking of 12-digit IDs in text, in standard library records (messages,
arguments, exceptions) and in structlog's rendered lines."""

from __future__ import annotations

import io
import json
import logging

import structlog

from population.identity import mask_personal_id, mask_personal_ids
from population.log_masking import PersonalIdFilter, install_log_masking, mask_value

ID = "001200012345"


def test_ids_in_text_are_masked_as_mask_personal_id_masks_one():
    text = f"citizen {ID} and 079085001234; ({ID}), id={ID}."
    assert mask_personal_ids(text) == (f"citizen {mask_personal_id(ID)} and 079******234; ({mask_personal_id(ID)}), "
                                       f"id={mask_personal_id(ID)}.")  # fmt: skip
    assert ID not in mask_personal_ids(text)


def test_what_is_not_a_personal_id_stays_whole():
    uuid = "3f2a1b4c-1234-4abc-8def-123456789012"  # a package id whose last group is twelve digits
    digest = "ab" + "0" * 6 + "123456789012" + "cdef" * 10  # a SHA-256 with twelve digits in a row
    for text in (uuid, digest, "sequence 0000000000123", "12345678901", "1234567890123", "2026-12-05T17:40:00"):
        assert mask_personal_ids(f"x {text} y") == f"x {text} y"


def test_standard_library_records_are_masked_in_message_arguments_and_exception():
    install_log_masking()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tests.log_masking.stdlib")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("citizen %s moved, dict %s", ID, {"personal_id": ID})
        logger.warning(f"inline {ID}")
        try:
            raise ValueError(f"no citizen {ID}")
        except ValueError:
            logger.exception("lookup failed")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert ID not in written
    assert written.count(mask_personal_id(ID)) == 4 and "Traceback" in written


def test_the_filter_masks_records_made_before_the_factory():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "id %s", (ID,), None)
    assert PersonalIdFilter().filter(record) and record.getMessage() == f"id {mask_personal_id(ID)}"


def test_structlog_lines_are_masked_whatever_they_carry():
    output = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(output),
        cache_logger_on_first_use=True,
    )
    try:
        log = structlog.get_logger("tests")
        log.info("before", personal_id=ID)  # a logger made and cached before masking is installed
        install_log_masking()
        log.info(f"event {ID}", personal_id=ID, nested={"ids": [ID]})
        try:
            raise KeyError(ID)
        except KeyError:
            log.exception("failed")
        lines = [json.loads(line) for line in output.getvalue().splitlines()]
    finally:
        structlog.reset_defaults()
    assert lines[0]["personal_id"] == ID  # before: as it was
    assert ID not in json.dumps(lines[1:]) and lines[1]["nested"] == {"ids": [mask_personal_id(ID)]}


def test_values_of_every_shape_are_masked():
    assert mask_value((f"a {ID}".encode(), [ID], {"k": ID}, 7)) == (
        f"a {mask_personal_id(ID)}".encode(),
        [mask_personal_id(ID)],
        {"k": mask_personal_id(ID)},
        7,
    )
