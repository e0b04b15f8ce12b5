"""The web application of `brainseg view` (FastAPI): pages, volumes and uploads.

Pages: `/` (the run's subjects with their Dice), `/subjects/<id>` (NiiVue: reference
beside prediction) and `/upload` (segment a new subject). Data: `/api/subjects`,
`/api/subjects/<id>/<volume>.nii.gz` with `<volume>` one of `VOLUMES`, `POST /api/upload`,
`/api/uploads/<token>/<volume>.nii.gz` and `/api/uploads/<token>/download`. An id or a
token is only ever a key of a table built by the server; an unknown one is a 404. The
browser code (NiiVue, vendored under `static/`) is served from here: no page loads
anything from another site.
"""

from __future__ import annotations

import gzip
import html
import json
import logging
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from brainseg.data.modalities import MODALITIES
from brainseg.errors import BrainsegError
from brainseg.reporting.viewer.runs import DICE_KEYS, LABEL_VOLUMES, Subject
from brainseg.reporting.viewer.uploads import (
    Segmenter,
    Upload,
    UploadError,
    UploadStore,
    keep,
    nifti_inputs,
    receive_form,
)
from brainseg.reporting.viewer.volumes import (
    error_colormap,
    error_nifti,
    label_colormap,
    tumour_point,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
NIIVUE_VERSION = "0.69.0"
#: What `/api/subjects/<id>/<volume>.nii.gz` serves: the modalities, the two label maps and
#: the whole-tumour error map.
VOLUMES: tuple[str, ...] = (*MODALITIES, *LABEL_VOLUMES, "errors")
NIFTI_TYPE = "application/gzip"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; "
    "worker-src 'self' blob:; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self' blob: data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page(name: str, title: str, body: str, config: dict[str, Any]) -> HTMLResponse:
    """A page from `templates/<name>.html` inside `templates/base.html`.

    `config` reaches the page's script as JSON in a non-executed `<script>` block (`<`,
    `>` and `&` escaped, so no value can close it).
    """
    blob = json.dumps(config).replace("<", "\\u003c").replace(">", "\\u003e").replace(
        "&", "\\u0026")
    content = Template((HERE / "templates" / f"{name}.html").read_text()).substitute(body=body)
    text = Template((HERE / "templates" / "base.html").read_text()).substitute(
        title=html.escape(title), content=content, config=blob, page=name,
        niivue_version=NIIVUE_VERSION)
    return HTMLResponse(text)


def _dice(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def index_rows(subjects: dict[str, Subject]) -> str:
    """The table rows of the index page (escaped)."""
    rows = []
    for subject in subjects.values():
        sid = html.escape(subject.id)
        cells = [f'<td><a href="/subjects/{sid}">{sid}</a></td>']
        cells.append(f"<td>{'' if subject.fold is None else subject.fold}</td>")
        cells += [f'<td data-value="{-1 if subject.dice[k] is None else subject.dice[k]}">'
                  f"{_dice(subject.dice[k])}</td>" for k in DICE_KEYS]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(rows)


def viewer_config(base: str, dice: dict[str, float | None], modalities: list[str],
                  has_reference: bool) -> dict[str, Any]:
    """What the subject page's script needs: where the volumes are, and the colours."""
    return {"base": base, "dice": dice, "modalities": modalities,
            "hasReference": has_reference, "labels": label_colormap(),
            "errors": error_colormap()}


def _nifti_name(volume: str) -> str:
    if not volume.endswith(".nii.gz") or volume[:-7] not in VOLUMES:
        raise HTTPException(404, "unknown volume")
    return volume[:-7]


def create_app(subjects: dict[str, Subject], segmenter: Segmenter, *,
               max_upload_bytes: int = 200_000_000, allowed_hosts: list[str] | None = None,
               title: str = "brainseg") -> FastAPI:
    """The viewer application over a run's subjects (`runs.read_run`).

    Args:
        subjects: the run's subjects, by id: the only ids the server answers for.
        segmenter: the model of uploads (its `model` None: uploads answer 503).
        max_upload_bytes: most bytes of one upload request (the four files together).
        allowed_hosts: Host header values accepted (guards against DNS rebinding); None:
            the loopback names.
        title: shown in every page's title.

    Every response carries `SECURITY_HEADERS` (a content security policy that allows
    this server's own scripts alone, no MIME sniffing, no referrer).
    """
    app = FastAPI(title="brainseg view", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware,
                       allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost", "[::1]"])
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    store = UploadStore()
    order = list(subjects)

    def subject_of(sid: str) -> Subject:
        if sid not in subjects:
            raise HTTPException(404, "unknown subject")
        return subjects[sid]

    def upload_of(token: str) -> Upload:
        found = store.get(token)
        if found is None:
            raise HTTPException(404, "unknown upload")
        return found

    @lru_cache(maxsize=64)
    def centre_of(sid: str) -> list[float] | None:
        files = subjects[sid].files
        return tumour_point(files.get("reference"), files["prediction"])

    @lru_cache(maxsize=8)
    def errors_of(sid: str) -> bytes:
        files = subjects[sid].files
        return error_nifti(files["reference"], files["prediction"])

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return page("index", title, index_rows(subjects), {"subjects": len(subjects)})

    @app.get("/subjects/{sid}", response_class=HTMLResponse)
    def subject_page(sid: str) -> HTMLResponse:
        subject = subject_of(sid)
        at = order.index(sid)
        config = viewer_config(f"/api/subjects/{subject.id}", subject.dice, list(MODALITIES),
                               "reference" in subject.files)
        config.update(centre=centre_of(subject.id),
                      previous=order[at - 1] if at > 0 else None,
                      next=order[at + 1] if at + 1 < len(order) else None)
        return page("subject", f"{subject.id} · {title}", html.escape(subject.id), config)

    @app.get("/uploads/{token}", response_class=HTMLResponse)
    def upload_result_page(token: str) -> HTMLResponse:
        found = upload_of(token)
        config = viewer_config(f"/api/uploads/{token}", dict.fromkeys(DICE_KEYS),
                               found.modalities, False)
        config["download"] = f"/api/uploads/{token}/download"
        return page("subject", f"upload · {title}", "uploaded subject", config)

    @app.get("/upload", response_class=HTMLResponse)
    def upload_page() -> HTMLResponse:
        config = {"modalities": list(MODALITIES), "maxBytes": max_upload_bytes,
                  "hasModel": segmenter.model is not None, "labels": label_colormap()}
        return page("upload", f"upload · {title}", "", config)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/api/subjects")
    def list_subjects() -> JSONResponse:
        return JSONResponse([{"subject": s.id, "fold": s.fold, "dice": s.dice,
                              "volumes": [v for v in VOLUMES if v in s.files
                                          or (v == "errors" and "reference" in s.files)]}
                             for s in subjects.values()])

    @app.get("/api/subjects/{sid}/{volume}")
    def subject_volume(sid: str, volume: str) -> Response:
        subject, name = subject_of(sid), _nifti_name(volume)
        if name == "errors":
            if "reference" not in subject.files:
                raise HTTPException(404, "no reference")
            try:
                return Response(errors_of(subject.id), media_type=NIFTI_TYPE)
            except BrainsegError as exc:
                raise HTTPException(500, str(exc)) from exc
        if name not in subject.files:
            raise HTTPException(404, "no such volume")
        path = subject.files[name]
        if not path.name.endswith(".gz"):  # NiiVue is told .nii.gz: send it so
            return Response(gzip.compress(path.read_bytes(), 1, mtime=0), media_type=NIFTI_TYPE)
        return FileResponse(path, media_type=NIFTI_TYPE)

    @app.post("/api/upload")
    async def upload(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_upload_bytes:
            return _refuse(UploadError(f"upload of {int(declared) / 1e6:.0f} MB is larger "
                                       f"than the limit of {max_upload_bytes / 1e6:.0f} MB "
                                       "(brainseg view --max-upload-mb)", 413))
        folder = Path(tempfile.mkdtemp(prefix="brainseg-view-"))
        try:
            files = await receive_form(request.stream(), request.headers.get("content-type", ""),
                                       folder, MODALITIES, max_upload_bytes)
            need = await run_in_threadpool(segmenter.need)
            inputs = nifti_inputs(files, need)
            output = folder / "prediction.nii.gz"
            await run_in_threadpool(segmenter.segment, inputs, output)
            kept = keep(inputs, output, need)
        except BrainsegError as exc:
            return _refuse(exc)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        token = store.add(kept)
        return JSONResponse({"token": token, "shape": kept.shape, "labels": kept.labels,
                             "modalities": list(need), "page": f"/uploads/{token}",
                             "base": f"/api/uploads/{token}",
                             "download": f"/api/uploads/{token}/download"})

    @app.get("/api/uploads/{token}/download")
    def download(token: str) -> Response:
        return Response(upload_of(token).volumes["prediction"], media_type=NIFTI_TYPE,
                        headers={"Content-Disposition":
                                 'attachment; filename="prediction_seg.nii.gz"'})

    @app.get("/api/uploads/{token}/{volume}")
    def upload_volume(token: str, volume: str) -> Response:
        found, name = upload_of(token), _nifti_name(volume)
        if name not in found.volumes:
            raise HTTPException(404, "no such volume")
        return Response(found.volumes[name], media_type=NIFTI_TYPE)

    return app


def _refuse(exc: BrainsegError) -> JSONResponse:
    status = exc.status if isinstance(exc, UploadError) else 400
    log.warning("upload refused (%d): %s", status, exc)
    return JSONResponse({"detail": str(exc)}, status_code=status)
