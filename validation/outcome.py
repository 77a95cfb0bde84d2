"""What a validation run found, in plain Python: its figures (``ValidationOutcome``, a ``RuleTally`` per
expectation) and the two ways it can fail. Nothing here imports Great Expectations or pandas, so classifying a
failure (a blocked dataset is final; see ``feeds.tasks.is_final``) costs no import of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

DIMENSIONS = ("đúng", "đủ", "sạch", "sống")  # correct, complete, clean, live


class DatasetBlocked(Exception):
    """A block-severity expectation failed: the dataset must not go out. The message names the expectation and
    the figures; ``outcome`` holds the run's figures so far."""

    def __init__(self, reasons: list[str], outcome: ValidationOutcome):
        super().__init__(f"{outcome.dataset} is blocked: " + "; ".join(reasons))
        self.reasons = reasons
        self.outcome = outcome


class ValidationFailed(Exception):
    """An expectation could not be evaluated (not a data problem): nothing may be assumed to have passed."""


# -- the run's figures ------------------------------------------------------------------------------------------


@dataclass
class RuleTally:
    """One expectation over the whole run."""

    rule: str
    expectation: str
    columns: list[str]
    dimension: str
    severity: str
    description: str
    mostly: float = 1.0
    row_level: bool = True
    evaluated: int = 0  # rows (or households) the rule judged: not missing, not ignored
    unexpected: int = 0
    table_failure: str | None = None  # what a table-level rule observed when it failed

    @property
    def share(self) -> float:
        return self.unexpected / self.evaluated if self.evaluated else 0.0

    @property
    def success(self) -> bool:
        if not self.row_level:
            return self.table_failure is None
        return self.share <= 1 - self.mostly + 1e-12

    def as_dict(self) -> dict:
        return dict(rule=self.rule, expectation=self.expectation, columns=self.columns, dimension=self.dimension,
                    severity=self.severity, description=self.description, evaluated=self.evaluated,
                    unexpected=self.unexpected, share=round(self.share, 6), success=self.success)  # fmt: skip


@dataclass
class ValidationOutcome:
    dataset: str
    suite: str
    source: str
    started_at: datetime
    finished_at: datetime | None = None
    rows: int = 0
    passed: int = 0
    quarantined: int = 0  # rows held back
    flagged: int = 0  # rows with any finding, warnings included
    flagged_by_dimension: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIMENSIONS, 0))
    rules: list[RuleTally] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    run_id: int | None = None  # the validation_run row, when recorded in the database
    data_docs: str | None = None  # index.html of the run's Data Docs site

    @property
    def scores(self) -> dict[str, float]:
        """Per dimension, the share of rows with no finding in it."""
        return {d: 1.0 - (self.flagged_by_dimension[d] / self.rows if self.rows else 0.0) for d in DIMENSIONS}

    def summary(self) -> dict:
        return {
            "dataset": self.dataset,
            "suite": self.suite,
            "source": self.source,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "rows": self.rows,
            "passed": self.passed,
            "quarantined": self.quarantined,
            "flagged": self.flagged,
            "blocked": bool(self.blocked),
            "block_reasons": self.blocked,
            "scores": {d: round(s, 6) for d, s in self.scores.items()},
            "flagged_by_dimension": self.flagged_by_dimension,
            "expectations": [r.as_dict() for r in self.rules],
            "run_id": self.run_id,
            "data_docs": self.data_docs,
        }
