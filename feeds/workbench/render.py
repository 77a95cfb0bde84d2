"""The workbench's HTML: Jinja2 templates (``templates/``), every value escaped, no script and no asset from
anywhere (the style is in the page), labels in the visitor's language and times in Hà Nội's."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from feeds.workbench.i18n import LABELS, LANGUAGES, Words, explain_rule, local_time
from feeds.workbench.pages import DIMENSION_KEYS, province_names

TEMPLATES = Path(__file__).with_name("templates")
TRANSLATED_KINDS = ("status", "severity", "scope", "decision", "mismatch", "resolution", "receipt")
# No script runs on these pages, and nothing is loaded from elsewhere: whatever a hostile value smuggled past the
# escaping could not run. Airflow's UI shows the plugin's pages in a frame of its own origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'self'; base-uri 'none'"
)


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["local_time"] = local_time
    return environment


def render(template: str, *, lang: str, path: str, query: dict[str, str], visitor, csrf: str, **page) -> str:
    """One page. ``path`` and ``query`` are the page's own address, for the language switch."""
    words = Words(lang)

    def dimension(value: str) -> str:
        key = DIMENSION_KEYS.get(value)
        return words(f"dimension.{key}") if key else value

    def explain(value: str) -> str:
        key = DIMENSION_KEYS.get(value)
        return words(f"explain.{key}") if key else ""

    def label(kind: str, value: object) -> str:
        """A facet's value in words: statuses, severities and dimensions translated, provinces named."""
        text = "" if value is None else str(value)
        if kind == "dimension":
            return dimension(text)
        if kind in TRANSLATED_KINDS and f"{kind}.{text}" in LABELS:
            return words(f"{kind}.{text}")
        if kind == "province":
            return f"{text} {province_names().get(text, '')}".strip()
        return text

    def rule(name: str) -> str:
        return explain_rule(name, lang)

    switch = {other: f"{path}?{urlencode({**query, 'lang': other})}" for other in LANGUAGES}
    helpers = dict(t=words, label=label, explain=explain, explain_rule=rule)
    template = _environment().get_template(template)
    return template.render(lang=lang, switch=switch, visitor=visitor, csrf=csrf, **helpers, **page)
