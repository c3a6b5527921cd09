"""Routes of the web dashboard.

The HTML pages carry no job data: the browser fetches it from the JSON API with the API key the user
typed (kept in localStorage), so the pages themselves need no authentication. The one JSON route here,
`/ui/api/progress`, answers what the job list cannot get from `GET /jobs` in one request (how many
epochs each job has finished) and is scoped to the caller like every other API route.
"""

from __future__ import annotations

import hashlib
import html
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from api.auth import CallerDep
from api.deps import SessionDep
from api.errors import InvalidField, NotFound
from models.jobs import service as jobs

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"

MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

# Pages load only this origin's scripts and styles and talk only to this origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

MAX_PROGRESS_IDS = 1000

router = APIRouter(prefix="/ui", tags=["dashboard"], include_in_schema=False)


@lru_cache
def asset_version() -> str:
    """A digest of the static files, appended to their URLs so browsers never mix old and new assets."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@lru_cache
def template(name: str) -> str:
    return (TEMPLATES_DIR / name).read_text(encoding="utf-8")


def render(request: Request, name: str, **values: str) -> HTMLResponse:
    """Fill `{{key}}` placeholders with HTML-escaped values; the templates hold no other logic."""
    root = request.scope.get("root_path", "").rstrip("/")
    text = template(name)
    for key, value in {"root": root, "v": asset_version(), **values}.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return HTMLResponse(text, headers=PAGE_HEADERS)


@router.get("", response_class=HTMLResponse)
def jobs_page(request: Request) -> HTMLResponse:
    """The job list."""
    return render(request, "index.html")


@router.get("/", include_in_schema=False)
def jobs_page_slash(request: Request) -> RedirectResponse:
    return RedirectResponse(str(request.url_for("jobs_page")), status_code=308)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: uuid.UUID, request: Request) -> HTMLResponse:
    """One job: curves, per-class recall, the diagnosis and its remedies."""
    return render(request, "job.html", job_id=str(job_id))


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    """Files directly inside api/dashboard/static; nothing else is reachable from here."""
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR or not path.is_file() or path.suffix not in MEDIA_TYPES:
        raise NotFound(f"static file {name!r}")
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[path.suffix],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/api/progress")
def progress(
    session: SessionDep,
    caller: CallerDep,
    ids: Annotated[str, Query(description="Comma-separated job ids.")] = "",
) -> dict:
    """`{"items": {job id: epochs finished}}` for the caller's jobs among `ids`; unknown ids are left out."""
    try:
        wanted = list(dict.fromkeys(uuid.UUID(part.strip()) for part in ids.split(",") if part.strip()))
    except ValueError as exc:
        raise InvalidField(
            [{"loc": ["query", "ids"], "msg": "not a comma-separated list of job ids", "type": "value_error"}]
        ) from exc
    if len(wanted) > MAX_PROGRESS_IDS:
        raise InvalidField([{"loc": ["query", "ids"], "msg": f"at most {MAX_PROGRESS_IDS} ids", "type": "value_error"}])
    if not wanted:
        return {"items": {}}
    done = jobs.epochs_finished(session=session, job_ids=wanted, owner=caller.scope)
    return {"items": {str(job_id): epochs for job_id, epochs in done.items()}}
