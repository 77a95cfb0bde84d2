"""Reports for stewards: the run's summary (JSON), the CSV of flagged rows, the Great Expectations Data Docs site
of the run, and a summary page per dataset with the four dimension scores and their trend across runs.

Every cell written for a spreadsheet is neutralised against formula injection, and every string put in HTML is
escaped: the values come from the partners' files.
"""

from __future__ import annotations

import csv
import html
import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from validation.outcome import DIMENSIONS

if TYPE_CHECKING:
    from validation.outcome import ValidationOutcome

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = ("row_number", "personal_id", "column", "expectation", "dimension", "severity", "reason", "value")
SCORE_COLUMNS = {"đúng": "score_dung", "đủ": "score_du", "sạch": "score_sach", "sống": "score_song"}
DIMENSION_MEANING = {"đúng": "correct", "đủ": "complete", "sạch": "clean", "sống": "live"}


def neutralise(cell: object) -> str:
    """A cell a spreadsheet will not run: text starting with = + - @ tab or CR gets a leading apostrophe."""
    text = "" if cell is None or cell is pd.NA or (isinstance(cell, float) and cell != cell) else str(cell)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


class FindingsCsv:
    """A finding sink writing ``quarantine.csv``: one line per failing (row, expectation), warnings included
    (the severity column says which rows were held back). Written as findings arrive, in input order."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._partial = path.with_name(path.name + ".partial")
        self._handle = self._partial.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle)
        self._writer.writerow(CSV_COLUMNS)

    def add(self, findings: pd.DataFrame, held: pd.DataFrame) -> None:
        renamed = findings.rename(columns={"expectation": "type", "rule": "expectation"})
        for row in renamed[list(CSV_COLUMNS)].itertuples(index=False):
            self._writer.writerow([neutralise(cell) for cell in row])

    def finish(self, outcome: ValidationOutcome) -> None:
        self._handle.close()
        self._partial.replace(self.path)


def write_summary(outcome: ValidationOutcome, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outcome.summary(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# -- the summary page per dataset ------------------------------------------------------------------------------


def runs_of(session, dataset: str, limit: int = 60) -> list[dict]:
    """The latest runs of a dataset, oldest first: when, rows, figures and the four scores."""
    from sqlalchemy import select

    from validation.models import ValidationRun

    runs = session.scalars(
        select(ValidationRun).where(ValidationRun.dataset == dataset).order_by(ValidationRun.id.desc()).limit(limit)
    ).all()
    return [
        dict(
            id=run.id,
            started_at=run.started_at,
            source=run.source,
            rows=run.rows,
            quarantined=run.quarantined,
            flagged=run.flagged,
            blocked=run.blocked,
            scores={d: getattr(run, SCORE_COLUMNS[d]) for d in DIMENSIONS},
        )
        for run in reversed(runs)
    ]


def _sparkline(values: list[float], width: int = 240, height: int = 40) -> str:
    """An inline SVG line of scores between 0 and 1 (lowest shown at the bottom edge)."""
    if not values:
        return ""
    low = min(min(values), 0.9)
    span = (1.0 - low) or 1.0
    step = width / max(len(values) - 1, 1)
    points = " ".join(f"{i * step:.1f},{height - (v - low) / span * height:.1f}" for i, v in enumerate(values))
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{points}"/></svg>'
    )


def render_summary_page(dataset: str, runs: list[dict], rules: list[dict] | None = None) -> str:
    """A static HTML page: the latest scores, their trend across runs, the runs, and the latest rule figures."""
    e = html.escape
    latest = runs[-1] if runs else None
    cards = "".join(
        f"<div class='card'><h2>{e(d)} <small>{e(DIMENSION_MEANING[d])}</small></h2>"
        f"<p class='score'>{latest['scores'][d]:.2%}</p>"
        f"{_sparkline([r['scores'][d] for r in runs if r['scores'][d] is not None])}</div>"
        for d in DIMENSIONS
        if latest and latest["scores"][d] is not None
    )
    run_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(str(cell))}</td>"
            for cell in (
                r["id"],
                f"{r['started_at']:%Y-%m-%d %H:%M}" if isinstance(r["started_at"], datetime) else r["started_at"],
                r["source"],
                f"{r['rows']:,}",
                f"{r['quarantined']:,}",
                f"{r['flagged']:,}",
                "blocked" if r["blocked"] else "",
                *(f"{r['scores'][d]:.2%}" if r["scores"][d] is not None else "" for d in DIMENSIONS),
            )
        )
        + "</tr>"
        for r in reversed(runs)
    )
    rule_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(str(r[key]))}</td>" for key in ("dimension", "severity", "description", "evaluated", "unexpected")
        )
        + "</tr>"
        for r in rules or []
        if r.get("unexpected")
    )
    headers = "".join(f"<th>{e(h)}</th>" for h in ("run", "started (UTC)", "source", "rows", "quarantined",
                                                    "flagged", "", *DIMENSIONS))  # fmt: skip
    return f"""<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><title>{e(dataset)}: đúng, đủ, sạch, sống</title>
<style>body{{font-family:sans-serif;margin:2em}}.card{{display:inline-block;border:1px solid #ccc;padding:1em;
margin:0 1em 1em 0;min-width:260px}}.score{{font-size:2em;margin:.2em 0}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:.3em .6em;text-align:left}}</style></head>
<body><h1>{e(dataset)}</h1><p>Share of rows with no finding in each dimension, latest run, and the trend over
{len(runs)} run(s).</p>{cards}
<h2>Failing expectations, latest run</h2><table><tr><th>dimension</th><th>severity</th><th>rule</th>
<th>judged</th><th>failing</th></tr>{rule_rows}</table>
<h2>Runs</h2><table><tr>{headers}</tr>{run_rows}</table></body></html>
"""


def write_summary_page(path: Path, dataset: str, runs: list[dict], rules: list[dict] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_summary_page(dataset, runs, rules), encoding="utf-8")


def outcome_as_run(outcome: ValidationOutcome) -> dict:
    """A run that was not recorded in the database, in the shape of ``runs_of``."""
    return dict(id="-", started_at=outcome.started_at, source=outcome.source, rows=outcome.rows,
                quarantined=outcome.quarantined, flagged=outcome.flagged, blocked=bool(outcome.blocked),
                scores=outcome.scores)  # fmt: skip
