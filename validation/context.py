"""The Great Expectations context every validation runs in: in memory, quiet, with nothing sent anywhere.

Great Expectations is created here once per process and configured so that it never writes into the repository
(stores are in memory; Data Docs go only where a run asks) and never phones home (analytics off, before the
package is even imported). Importing Great Expectations takes seconds, so this module is imported lazily by the
command line.
"""

from __future__ import annotations

import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from pathlib import Path  # noqa: E402
from uuid import uuid4  # noqa: E402

import great_expectations as gx  # noqa: E402
from great_expectations.data_context import AbstractDataContext  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.execution_engine import pandas_execution_engine  # noqa: E402

import validation.expectations  # noqa: E402, F401  (registers the custom expectations and their metrics)


def _skip_batch_fingerprint() -> None:
    """Great Expectations fingerprints every in-memory DataFrame it is given with a full hash of its contents
    (``pandas_data_fingerprint``, a batch marker nothing here reads), and does it twice per validation: 0.36 s
    per 100,000 extract rows each time, more than the expectations themselves. Frames smaller than
    ``HASH_THRESHOLD`` bytes are hashed; a threshold of 0 turns the fingerprint off."""
    if not hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        raise RuntimeError("great_expectations changed: pandas_execution_engine.HASH_THRESHOLD is gone; revisit this")
    pandas_execution_engine.HASH_THRESHOLD = 0


_skip_batch_fingerprint()


def new_context(data_docs_dir: Path | None = None) -> AbstractDataContext:
    """An ephemeral context; with ``data_docs_dir``, one local Data Docs site written there."""
    sites = {}
    if data_docs_dir is not None:
        sites["run"] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(Path(data_docs_dir).resolve()),  # GE wants it absolute
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:8]}"
