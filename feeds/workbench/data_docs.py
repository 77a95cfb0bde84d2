"""Each validation run's Great Expectations Data Docs, served through the workbench, offline.

A run's Data Docs are the folder of its ``report`` (``validation_run.report``: the site's ``index.html``). A file
is served only from inside that folder: the path asked for is relative, has no ``..``, and once resolved (symlinks
followed) still lies inside the folder; anything else is ``NotServed``.

Great Expectations writes its pages with their front-end assets on public CDNs (jQuery, Bootstrap, bootstrap-table,
Font Awesome, a date picker, Vega) and its logo on a public bucket; offline, the index lists nothing. Great
Expectations has no setting for where they come from, and a site's custom views (``plugins/custom_data_docs/views``)
are looked up after its own templates, so they cannot replace ``js_script_imports.j2``. So the addresses are
rewritten as the pages are served, to the copies vendored from npm in ``static/data-docs/`` (its README says
where each comes from and its licence). What is not vendored is dropped, and any other outside address left
becomes ``#``: a served page names no http(s) URL (the SVG and XHTML namespaces aside: names, not addresses).
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

VENDORED = Path(__file__).with_name("static") / "data-docs"
_CDN = {  # the address Great Expectations 1.x writes: the vendored copy (a path under VENDORED)
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper-1.12.9.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap-4.3.1/bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap-4.3.1/bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table-1.19.1/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table-1.19.1/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": (
        "bootstrap-table-1.19.1/bootstrap-table-filter-control.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": (
        "bootstrap-table-1.19.1/bootstrap-table-filter-control.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": (
        "bootstrap-table-1.19.1/bootstrap-table-filter-control.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker-1.9.0/bootstrap-datepicker.min.js"  # the index's run-time filter: without it, no list
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker-1.9.0/bootstrap-datepicker.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "fontawesome-free-6.6.0/css/all.min.css"
    ),
}
_OUTSIDE = r"https?://(?!www\.w3\.org/)[^\"'\s<>)]+"
_SCRIPT = re.compile(rf"<script[^>]*\bsrc=\"({_OUTSIDE})\"[^>]*>\s*</script>", re.IGNORECASE)
_LINK = re.compile(rf"<link[^>]*\bhref=\"({_OUTSIDE})\"[^>]*>", re.IGNORECASE)
_LOGO = re.compile(r"https://great-expectations-web-assets\.s3[^\"'\s<>)]*")
_ANY_OUTSIDE = re.compile(_OUTSIDE)
SERVED_TYPES = {".html", ".css", ".js", ".png", ".gif", ".svg", ".ico", ".jpg", ".woff", ".woff2", ".ttf"}


class NotServed(LookupError):
    """The file is not one of the run's Data Docs (or a vendored asset): 404, whatever the reason."""


@dataclass(frozen=True)
class DocFile:
    content: bytes
    media_type: str


def docs_folder(report: str | None) -> Path:
    """The folder of a run's Data Docs, from its ``report`` (the site's index.html)."""
    if not report:
        raise NotServed("this run has no Data Docs")
    folder = Path(report).parent
    if not folder.is_dir():
        raise NotServed("this run's Data Docs are no longer on disk")
    return folder.resolve()


def confined(folder: Path, asked: str) -> Path:
    """The file ``asked`` (a relative path) inside ``folder``, or ``NotServed``: no absolute path, no ``..``, and
    after resolving symlinks still inside the folder."""
    relative = PurePosixPath(asked or "index.html")
    if relative.is_absolute() or ".." in relative.parts or "\\" in asked or "\x00" in asked:
        raise NotServed("not a path inside the run's Data Docs")
    found = (folder / relative).resolve()
    if not found.is_relative_to(folder) or not found.is_file():
        raise NotServed("no such file in the run's Data Docs")
    if found.suffix.lower() not in SERVED_TYPES:
        raise NotServed("not a file Data Docs are made of")
    return found


def offline(html: str, assets: str, run_static: str) -> str:
    """A Data Docs page with its CDN assets taken from ``assets`` (the URL of the vendored copies, ending in /),
    its logo from ``run_static`` (the run's own ``static/``, ending in /), the rest of the outside dropped."""

    def script(match: re.Match[str]) -> str:
        local = _CDN.get(match.group(1))
        return match.group(0).replace(match.group(1), assets + local) if local else ""

    html = _SCRIPT.sub(script, html)
    html = _LINK.sub(script, html)
    html = _LOGO.sub(run_static + "images/logo-long.png", html)
    return _ANY_OUTSIDE.sub("#", html)


def doc_file(folder: Path, asked: str, assets: str, run_static: str) -> DocFile:
    """One file of a run's Data Docs, its pages made to work offline."""
    path = confined(folder, asked)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix.lower() in (".html", ".css"):
        text = offline(path.read_text(encoding="utf-8", errors="replace"), assets, run_static)
        return DocFile(text.encode("utf-8"), f"{media_type}; charset=utf-8")
    return DocFile(path.read_bytes(), media_type)


@cache
def vendored_files() -> dict[str, Path]:
    """The vendored assets by their path under ``static/data-docs/``: the only names the asset route serves."""
    return {
        path.relative_to(VENDORED).as_posix(): path
        for path in VENDORED.rglob("*")
        if path.is_file() and path.suffix in (".js", ".css", ".woff2")
    }


def vendored(asked: str) -> DocFile:
    path = vendored_files().get(asked)
    if path is None:
        raise NotServed("no such asset")
    media_type = "font/woff2" if path.suffix == ".woff2" else mimetypes.guess_type(path.name)[0]
    return DocFile(path.read_bytes(), media_type or "application/octet-stream")
