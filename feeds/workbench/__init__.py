"""The data stewards' workbench in Airflow's UI: the quarantine queue with its facets, a held record with its
findings, and decisions (release or reject, four eyes for block findings), server-rendered in Vietnamese and
English. ``views`` answers the plugin's routes (``plugins/airflow_lienthong.py``); ``pages`` reads the database,
``render`` writes the HTML, ``access`` maps Airflow's roles and keeps the forms safe against CSRF."""

from feeds.workbench.access import CSRF_COOKIE, CSRF_FIELD, CsrfRefused, Visitor, check_csrf, csrf_token, new_nonce
from feeds.workbench.i18n import LANGUAGE_COOKIE, pick_language
from feeds.workbench.render import CONTENT_SECURITY_POLICY
from feeds.workbench.views import Answer, Request, decide, queue, record

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "LANGUAGE_COOKIE",
    "Answer",
    "CsrfRefused",
    "Request",
    "Visitor",
    "check_csrf",
    "csrf_token",
    "decide",
    "new_nonce",
    "pick_language",
    "queue",
    "record",
]
