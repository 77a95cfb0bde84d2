"""Scoring the suites against the ground truth of a generated population (``injected_defect``).

Recall per defect type: the share of injected defects whose record has at least one finding. Precision on clean
records: the share of records without an injected defect that have a finding (warnings included). A defect is
counted only where it changed the record: ``name_nfd`` on a name without diacritics (NFD of "Mai Lan" is
"Mai Lan") leaves nothing to find, and is reported as "no effect".
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Engine, select

from population.models import Citizen, InjectedDefect


@dataclass
class Score:
    records: int
    clean: int
    clean_flagged: int
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)  # type -> injected, no_effect, found

    @property
    def clean_flagged_share(self) -> float:
        return self.clean_flagged / self.clean if self.clean else 0.0

    def recall(self, defect_type: str) -> float:
        counts = self.by_type[defect_type]
        effective = counts["injected"] - counts["no_effect"]
        return counts["found"] / effective if effective else 1.0

    def table(self) -> str:
        """The Markdown table for docs/data-quality.md."""
        lines = ["| defect type | injected | no effect | found | recall |", "|---|---:|---:|---:|---:|"]
        for kind, counts in sorted(self.by_type.items()):
            lines.append(f"| `{kind}` | {counts['injected']:,} | {counts['no_effect']:,} | {counts['found']:,} | "
                         f"{self.recall(kind):.1%} |")  # fmt: skip
        lines.append(f"| clean records flagged | {self.clean:,} clean | | {self.clean_flagged:,} | "
                     f"{self.clean_flagged_share:.3%} of clean |")  # fmt: skip
        return "\n".join(lines)


class FlaggedRecords:
    """A finding sink that keeps only which personal IDs were flagged."""

    def __init__(self):
        self.personal_ids: set[str] = set()

    def add(self, findings: pd.DataFrame, held: pd.DataFrame) -> None:
        self.personal_ids.update(findings["personal_id"].dropna())

    def finish(self, outcome) -> None:
        pass


def score(engine: Engine, flagged_personal_ids: set[str]) -> Score:
    with engine.connect() as connection:
        defects = connection.execute(
            select(InjectedDefect.personal_id, InjectedDefect.defect_type, Citizen.full_name).join(
                Citizen, Citizen.id == InjectedDefect.citizen_id
            )
        ).all()
        records = connection.execute(select(Citizen.personal_id)).scalars().all()
    result = Score(records=len(records), clean=0, clean_flagged=0)
    defective = set()
    for personal_id, kind, full_name in defects:
        defective.add(personal_id)
        counts = result.by_type.setdefault(kind, {"injected": 0, "no_effect": 0, "found": 0})
        counts["injected"] += 1
        if kind == "name_nfd" and unicodedata.is_normalized("NFC", full_name):
            counts["no_effect"] += 1
        elif personal_id in flagged_personal_ids:
            counts["found"] += 1
    clean = set(records) - defective
    result.clean = len(clean)
    result.clean_flagged = len(clean & flagged_personal_ids)
    return result
