"""The branch teller screen (scenario S7): one page and its assets, served by the HTTP front end.

The page is a JSON caller like any other: it asks ``POST /v1/decide`` for the BRANCH_TELLER touchpoint (the
agent rendering) and records Accept / Decline / Not now through ``POST /v1/outcomes``. Everything it loads comes
from this package (no build step, nothing from the internet; the content security policy says so to the browser).
``/teller/config.json`` gives it what it needs from the schema and the message templates: which features are
sensitive, and how continuity notes (open problems, pending applications) begin in each language.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from decision.explanation import Narrator
from features.schema import FeatureSchema

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def screen_config(schema: FeatureSchema, narrator: Narrator) -> dict[str, Any]:
    """What the page needs to know besides the decision itself, from the same files the service renders with."""
    languages = narrator.languages
    continuity = narrator.texts["continuity"]
    return {
        "languages": languages,
        "touchpoint": "BRANCH_TELLER",
        # Sensitive model features may be named to the teller as a reason; their values stay off the counter
        # screen. (Sensitive texts, the open problem and the pending application, are for the teller to mention.)
        "sensitive": {
            f.derived_name: {language: f.label(language) for language in languages}
            for f in schema.features
            if f.sensitive and f.model
        },
        # "Open problem: {problem}." -> "Open problem:": where the explanation's continuity notes begin.
        "continuity": {
            language: [
                str(continuity[section].get(language) or continuity[section]["en"]).split("{", 1)[0].strip()
                for section in ("open_problem", "pending_application")
            ]
            for language in languages
        },
    }


def teller_routes(schema: FeatureSchema, narrator: Callable[[], Narrator]) -> list[BaseRoute]:
    """``/teller`` (the page; ``/`` leads there), ``/teller/config.json`` and ``/teller/static/...``.

    ``narrator`` gives the live message templates (asked per request, so a reload of the texts is followed).
    """

    async def page(request: Request) -> Response:
        return FileResponse(
            STATIC_DIR / "index.html",
            headers={
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-cache",
            },
        )

    async def configuration(request: Request) -> Response:
        return JSONResponse(screen_config(schema, narrator()))

    async def home(request: Request) -> Response:
        return RedirectResponse("/teller")

    return [
        Route("/", home, methods=["GET"]),
        Route("/teller", page, methods=["GET"]),
        Route("/teller/config.json", configuration, methods=["GET"]),
        Mount("/teller/static", StaticFiles(directory=STATIC_DIR), name="teller-static"),
    ]
