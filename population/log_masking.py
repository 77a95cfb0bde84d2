"""No personal ID in any log (Law 91/2025 on personal data protection; DESIGN.md, "Conventions").

``install_log_masking()`` makes every log line this process writes go out with its 12-digit personal IDs masked
the way ``population.identity.mask_personal_id`` masks them (``001******456``). It is called where the project's
processes start: the ``lienthong`` command line (and with it the partners it serves and the demo), the DAG file
when Airflow parses it, and the Airflow plugin's listener when a task starts (Airflow may configure its logging
again for the task, after the DAG file was parsed). It is idempotent, and it covers both kinds of logging in play:

- the standard library's: a log record factory masks each record's message and arguments when the record is made,
  whichever logger and handler it goes to (the project's ``logging.getLogger(__name__)``, uvicorn, Airflow's stdlib
  loggers), and the text of the exception it carries, for handlers that format it from ``exc_text``;
- structlog's (Airflow 3's task and component logs): the last processor, the renderer that makes the line, is
  wrapped so that the line it makes is masked, whatever it holds (event, keyword values, the traceback), in
  structlog's configuration and in every ``structlog.stdlib.ProcessorFormatter`` of the handlers in place.

What is not a log is never touched: payload files, receipts, manifests and signed documents are written by their
own code, not through logging.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

from population.identity import mask_personal_ids

_MARK = "_lienthong_masks_personal_ids"
_MAX_DEPTH = 8


def mask_value(value: Any, depth: int = 0) -> Any:
    """A log value with the personal IDs in its text masked: strings and bytes, and the strings inside dicts, lists
    and tuples (what structlog renderers return); anything else as it is."""
    if isinstance(value, str):
        return mask_personal_ids(value)
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", errors="surrogateescape")
        masked = mask_personal_ids(text)
        return value if masked == text else masked.encode("utf-8", errors="surrogateescape")
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {key: mask_value(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_value(item, depth + 1) for item in value]
    if isinstance(value, tuple):
        return tuple(mask_value(item, depth + 1) for item in value)
    return value


def _masked_argument(value: Any) -> Any:
    if isinstance(value, str):
        return mask_personal_ids(value)
    if value is None or isinstance(value, int | float | bool | bytes):
        return value
    try:
        shown = str(value)
    except Exception:  # noqa: BLE001 - an object that cannot show itself: the handler reports it as it would
        return value
    masked = mask_personal_ids(shown)
    return value if masked == shown else masked


def mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask a standard library record in place: its message, its arguments (kept as arguments, so that formatters
    that read them, like uvicorn's access log, still can), and the text of its exception."""
    if getattr(record, _MARK, False):
        return record
    setattr(record, _MARK, True)
    if isinstance(record.msg, str):
        record.msg = mask_personal_ids(record.msg)
    elif record.msg is not None and not isinstance(record.msg, int | float | bool):
        record.msg = _masked_argument(record.msg)
    if isinstance(record.args, dict):
        record.args = {key: _masked_argument(value) for key, value in record.args.items()}
    elif isinstance(record.args, tuple):
        record.args = tuple(_masked_argument(value) for value in record.args)
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        masked = mask_personal_ids(text)
        if masked != text:
            record.exc_text = masked
    return record


class PersonalIdFilter(logging.Filter):
    """A logging filter that masks personal IDs in the records it sees (``mask_record``); it never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


def _masking_factory(original):
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = original(*args, **kwargs)
        try:
            return mask_record(record)
        except Exception:  # noqa: BLE001 - a record that cannot be masked is not lost; its formatting will say why
            return record

    setattr(factory, _MARK, True)
    return factory


def _masking_renderer(renderer):
    if getattr(renderer, _MARK, False):
        return renderer

    def render(logger: Any, method_name: str, event_dict: Any) -> Any:
        return mask_value(renderer(logger, method_name, event_dict))

    setattr(render, _MARK, True)
    render.__wrapped__ = renderer  # type: ignore[attr-defined]
    return render


def _wrap_last(processors: Any) -> None:
    if isinstance(processors, list) and processors:
        processors[-1] = _masking_renderer(processors[-1])


def _handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()]
    loggers += [item for item in logging.Logger.manager.loggerDict.values() if isinstance(item, logging.Logger)]
    return [handler for logger in loggers for handler in logger.handlers]


def install_log_masking() -> None:
    """Mask personal IDs in every log line of this process from now on (see the module's text)."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, _MARK, False):
        logging.setLogRecordFactory(_masking_factory(factory))
    for handler in _handlers():
        if not any(isinstance(f, PersonalIdFilter) for f in handler.filters):
            handler.addFilter(PersonalIdFilter())
    structlog = sys.modules.get("structlog")  # only when something configured it: not imported for nothing
    if structlog is None:
        return
    _wrap_last(structlog.get_config().get("processors"))
    for handler in _handlers():
        formatter = handler.formatter
        if isinstance(formatter, structlog.stdlib.ProcessorFormatter):
            _wrap_last(getattr(formatter, "processors", None))
