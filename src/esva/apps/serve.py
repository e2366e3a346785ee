"""``esva serve``: a web page and an HTTP API over the loaded-once models.

Routes (every error is ``{"error": "..."}`` with a status that says whose fault it is):

``GET /``              the page (``esva/assets/web``: plain HTML, JS and CSS; works offline)
``GET /api/health``    ``{"status": "ok"}``
``GET /api/info``      the model's name and classes, the upload limit, whether explain works
``POST /api/predict``  multipart ``file`` (+ optional ``audio``) -> ``esva predict --json``'s
                       object, plus ``alignment`` (the C(τ) curve) when the sync heads measured
                       the offset
``POST /api/explain``  multipart ``file`` (+ ``audio``, ``task``) -> ``esva explain --json``'s
                       object; 503 when the server was started without an LLM adapter

400 the media cannot be read (any :class:`EsvaError` of the pipeline), the form is malformed, or
the Host header names a host this server does not serve; 408 an upload that stalls; 413 a file
over ``max_upload_mb``, refused while it streams in (nothing past the limit is stored); 415 a
suffix that is not audio or video, or content that PyAV reads as neither; 500 a bug, or a worker
process that died on the request (below); 503 the queue is full, or explanations are off or
their language model's weights are not in the cache.

Isolation. The models run in worker processes (:class:`esva.apps.workers.WorkerPool`, spawned,
``workers`` of them, 1 by default: each holds its own copy of the models, loaded once), never
in the server's own process. A file that crashes native code (libav, soxr, torch) kills only its
worker: that request gets a 500 with a plain message, its upload is deleted as always, the pool
is replaced and the server goes on answering. Only a ``service`` object handed to
:func:`create_app` (tests, embedding) runs in the server's process, in threads.

Uploads stream straight from the socket into a per-request temporary folder and are deleted
when the answer is sent. The client's file name is only used for its (sanitised) suffix and, in
the answer, for display: nothing a client sends chooses a path. At most ``concurrency`` requests
run inference at a time (the event loop keeps answering), and at most ``queue`` more wait; past
that the answer is 503. Only the Host names in ``allowed_hosts`` are served (loopback names by
default: a DNS-rebinding page cannot reach the API), and the API docs page is off (Swagger UI
loads its scripts from a CDN): the schema is at ``/api/openapi.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

import esva.assets
from esva.apps.workers import WorkerCrashed, WorkerPool
from esva.data.datasets.base import VIDEO_SUFFIXES
from esva.data.sources import AUDIO_SUFFIXES
from esva.errors import EsvaError
from esva.tasks import ADAPTER_TASKS, DEFAULT_EXPLAIN_TASK, EXPLAIN_TASKS

log = logging.getLogger("esva.serve")

WEB_DIR = Path(esva.assets.__file__).resolve().parent / "web"
# Multipart headers, boundaries and the small text fields ride on top of the file bytes.
FORM_OVERHEAD = 64 * 1024
TEXT_FIELD_LIMIT = 1024
# An upload that sends nothing for this long is dropped (408): a stalled or deliberately slow
# client must not hold one of the admitted slots for ever.
UPLOAD_IDLE_S = 60.0
NO_LLM = (
    "this server does not explain (started with --no-explain): restart without it for esva "
    "explain's default, or with `--llm-model RUN/best` for an LLM adapter from `esva train-llm`"
)

NO_LM_WEIGHTS = (
    "explanations are unavailable on this server: its language model's weights are not in the "
    "weights cache (the administrator can fetch them with `esva weights pull "
    "smollm2-135m-instruct`, then restart the server)"
)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

# (path, audio, task) -> the JSON object of `esva explain --json`
Explainer = Callable[[Path, Path | None, str | None], dict[str, Any]]


class ExplainUnavailable(Exception):
    """Explanations cannot be given (the LM could not be loaded): a 503, not the file's fault."""


def lm_unavailable() -> str | None:
    """Why the default explainer cannot run here (its LM not in the cache), or None.

    A server does not download 100 MB of weights in the middle of a request (nor offline);
    ``/api/info`` says so, and ``/api/explain`` answers 503.
    """
    from esva.llm.backbone import DEFAULT_BACKBONE, converted_dir
    from esva.weights.cache import cached_path

    try:
        if converted_dir(DEFAULT_BACKBONE).is_dir() or cached_path(DEFAULT_BACKBONE).exists():
            return None
    except OSError:
        pass
    return NO_LM_WEIGHTS


class DefaultExplainer:
    """``esva explain --json`` with no flags (:class:`esva.apps.explain.CueExplainer`): the
    label from the server's own recogniser, the shipped explanation adapter writing the
    reasoning.

    The language model loads on the first ``/api/explain`` request, not at start-up: a server
    that only predicts never pays its ~0.5 GB. The recogniser is the one ``/api/predict``
    uses (one copy of the models per process).
    """

    def __init__(self, recognizer: Any) -> None:
        self.recognizer = recognizer
        self.tasks: tuple[str, ...] = EXPLAIN_TASKS
        self._explainer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._explainer is None:
                from esva.apps.explain import CueExplainer

                try:
                    self._explainer = CueExplainer.with_recognizer(self.recognizer)
                except EsvaError as err:  # the LM's weights: the server's problem, not the file's
                    log.error("the explainer could not be loaded: %s", err)
                    raise ExplainUnavailable(
                        "explanations are unavailable on this server: its language model could "
                        "not be loaded (see the server log)"
                    ) from None
            return self._explainer

    def __call__(self, path: Path, audio: Path | None, task: str | None) -> dict[str, Any]:
        explainer = self._load()
        with self._lock:  # one generation at a time: the LM is not shared across threads
            return explainer.explain(path, audio=audio, task=task or DEFAULT_EXPLAIN_TASK)


class _Service:
    """The recognizer (model, feature extractor, sync heads) loaded once per process.

    The one place that knows how a prediction is made: :class:`esva.apps.inference.Recognizer`,
    the same path as ``esva predict`` (decode once, extract once, offset from the same streams).
    """

    def __init__(
        self, model_dir: str | Path | None = None, explain: bool | str | Path = False
    ) -> None:
        from esva.apps.inference import Recognizer

        if model_dir is not None and not Path(model_dir).is_dir():
            raise EsvaError("model folder not found", model_dir)
        self.recognizer = Recognizer.from_pretrained(model_dir)
        self.recognizer.space  # noqa: B018  (load the sync heads now, not on the first request)
        self.name = self.recognizer.name
        self.classes = list(self.recognizer.classes)
        # explain: False (off), True (esva explain's default) or an adapter folder (--llm-model)
        self.explainer: Any = None
        self.explain_unavailable: str | None = NO_LLM
        if explain is True:
            self.explain_unavailable = lm_unavailable()
            if self.explain_unavailable is None:
                self.explainer = DefaultExplainer(self.recognizer)
        elif explain:
            self.explainer = adapter_explainer(Path(explain))
            self.explain_unavailable = None

    def predict(self, path: Path, audio: Path | None = None) -> dict[str, Any]:
        """``esva predict --json``'s object for ``path`` (with the C(τ) curve when measured)."""
        return self.recognizer.predict(path, audio=audio).to_dict()

    def probe(self, path: Path) -> Any:
        """The media's headers (``esva.media.decode.probe``), read in this worker."""
        from esva.media.decode import probe

        return probe(path)

    def explain(self, path: Path, audio: Path | None, task: str | None) -> dict[str, Any]:
        if self.explainer is None:
            raise ExplainUnavailable(self.explain_unavailable or NO_LLM)
        return self.explainer(path, audio, task)

    def describe(self) -> dict[str, Any]:
        """What the server's process needs to know (the models stay in the worker)."""
        return {
            "name": self.name,
            "classes": self.classes,
            "explain_unavailable": self.explain_unavailable,
            "tasks": list(getattr(self.explainer, "tasks", EXPLAIN_TASKS)),
        }


def adapter_explainer(llm_model: Path) -> Explainer:
    """``esva explain --json`` with an adapter from ``esva train-llm``, loaded once (the object
    carries the recognition answer and the explanation: only the ``reason`` task, as ``esva
    explain --model``)."""
    from esva.apps.explain import Explainer as AdapterExplainer

    if not llm_model.is_dir():
        raise EsvaError("LLM adapter folder not found", llm_model)
    explainer = AdapterExplainer.from_pretrained(llm_model)

    def explain(path: Path, audio: Path | None, task: str | None) -> dict[str, Any]:
        return explainer.explain(path, audio=audio)

    explain.tasks = ADAPTER_TASKS  # type: ignore[attr-defined]  (as `esva explain --model`)
    return explain


class IsolatedService:
    """:class:`_Service` in worker processes (:class:`WorkerPool`): a native crash on one file
    costs that request, not the server. ``factory`` (picklable) builds the object each worker
    holds; by default ``_Service(model, explain)``."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        workers: int = 1,
        explain: bool | str | Path = False,
        factory: Callable[[], Any] | None = None,
    ) -> None:
        if factory is None:
            model = None if model is None else str(model)
            factory = functools.partial(
                _Service, model, str(explain) if explain not in (True, False) else explain
            )
        self.pool = WorkerPool(factory, workers)
        try:
            info = self.pool.call("describe")  # the models load now: a bad --model is one line
        except WorkerCrashed:
            self.pool.close()
            raise EsvaError("the models could not be loaded: the worker process crashed") from None
        except BaseException:
            self.pool.close()
            raise
        self.name, self.classes = info["name"], list(info["classes"])
        self.explain_unavailable: str | None = info["explain_unavailable"]
        self.tasks = tuple(info["tasks"])

    def predict(self, path: Path, audio: Path | None = None) -> dict[str, Any]:
        return self.pool.call("predict", path, audio)

    def probe(self, path: Path) -> Any:
        return self.pool.call("probe", path)

    def explain(self, path: Path, audio: Path | None, task: str | None) -> dict[str, Any]:
        return self.pool.call("explain", path, audio, task)

    def close(self) -> None:
        self.pool.close()


# ---------------------------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    """An answer other than 200: ``status`` and a one-line ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())
        self.headers = headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# ---------------------------------------------------------------------------------------------
# Uploads


@dataclass
class Upload:
    field: str
    name: str  # the client's base name, for display only
    suffix: str  # lower-case, sanitised; "" when the name had none usable
    path: Path  # chosen by the server: <request folder>/<field><suffix>
    size: int = 0


def safe_name(filename: str) -> tuple[str, str]:
    """(display name, suffix) of a client's file name; neither is ever used as a path."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable())[:200] or "upload"
    dot = base.rfind(".")
    suffix = base[dot:].lower() if dot > 0 else ""
    return base, suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


@dataclass
class _Form:
    """Callbacks for python-multipart's streaming parser: file parts go straight to disk."""

    directory: Path
    allowed: dict[str, set[str]]  # file field -> suffixes it accepts
    text_fields: tuple[str, ...]
    limit: int  # bytes per file
    files: dict[str, Upload] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    ended: bool = False
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _name: bytes = b""
    _value: bytes = b""
    _sink: Any = None  # the open file, a bytearray (text field) or None (ignored part)
    _current: Upload | str | None = None

    def callbacks(self) -> dict[str, Callable]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, a, b: self._extend("_name", d[a:b]),
            "on_header_value": lambda d, a, b: self._extend("_value", d[a:b]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _extend(self, attr: str, data: bytes) -> None:
        value = getattr(self, attr) + data
        if len(value) > 8192:
            raise ApiError(400, "malformed multipart body (a part header is too long)")
        setattr(self, attr, value)

    def _part_begin(self) -> None:
        self._headers, self._sink, self._current = {}, None, None

    def _header_end(self) -> None:
        self._headers[self._name.lower()] = self._value
        self._name = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if name in self.allowed and filename is not None:
            if name in self.files:
                raise ApiError(400, f"field {name!r} was sent twice")
            display, suffix = safe_name(filename.decode("utf-8", "replace"))
            # Refused before its bytes arrive: the suffix says what it claims to be.
            if suffix not in self.allowed[name]:
                kinds = "audio" if self.allowed[name] == AUDIO_SUFFIXES else "video or audio"
                raise ApiError(
                    415,
                    f"{display}: unsupported file type {suffix or '(no suffix)'}; send a {kinds} "
                    f"file ({', '.join(sorted(self.allowed[name]))})",
                )
            upload = Upload(name, display, suffix, self.directory / f"{name}{suffix}")
            self.files[name] = upload
            self._current, self._sink = upload, upload.path.open("wb")
        elif name in self.text_fields and filename is None:
            self._current, self._sink = name, bytearray()
        # Any other part is read and dropped (it still counts towards the body limit).

    def _data(self, data: bytes, start: int, end: int) -> None:
        if isinstance(self._current, Upload):
            self._current.size += end - start
            if self._current.size > self.limit:
                raise ApiError(413, f"{self._current.name}: larger than {_mb(self.limit)}")
            # A local-disk write of one socket chunk (<= 64 KiB) does not stall the loop.
            self._sink.write(data[start:end])
        elif isinstance(self._current, str):
            self._sink += data[start:end]
            if len(self._sink) > TEXT_FIELD_LIMIT:
                raise ApiError(400, f"field {self._current!r} is too long")

    def _part_end(self) -> None:
        if isinstance(self._current, Upload):
            self._sink.close()
        elif isinstance(self._current, str):
            self.texts[self._current] = self._sink.decode("utf-8", "replace").strip()
        self._sink, self._current = None, None

    def _end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if isinstance(self._current, Upload):
            self._sink.close()


def host_name(header: str) -> str:
    """The host of a Host header, lower-case, without its port or IPv6 brackets."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header[1:]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _mb(limit: int) -> str:
    return f"the {limit / 2**20:g} MB upload limit"


async def receive_form(
    request: Request,
    directory: Path,
    allowed: dict[str, set[str]],
    text_fields: tuple[str, ...],
    limit: int,
) -> _Form:
    """Stream a multipart/form-data body into ``directory``; 413 as soon as it passes ``limit``."""
    ctype, params = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise ApiError(415, "send the media as multipart/form-data with the file in field 'file'")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise ApiError(413, f"request body of {int(declared)} bytes is over {_mb(limit)}")
    form = _Form(directory, allowed, text_fields, limit)
    parser = MultipartParser(params[b"boundary"], form.callbacks())  # type: ignore[arg-type]
    total = 0
    chunks = request.stream().__aiter__()
    try:
        while True:
            try:
                with anyio.fail_after(UPLOAD_IDLE_S):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise ApiError(
                    408, f"upload stalled: nothing received for {UPLOAD_IDLE_S:g} s"
                ) from None
            total += len(chunk)
            if total > limit + FORM_OVERHEAD:
                raise ApiError(413, f"request body is over {_mb(limit)}")
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise ApiError(400, f"malformed multipart body ({exc})") from None
    finally:
        form.close()
    if not form.ended:
        raise ApiError(400, "incomplete multipart body")
    if "file" not in form.files:
        raise ApiError(400, "no file: send the media in the multipart field 'file'")
    for upload in form.files.values():
        if upload.size == 0:
            raise ApiError(400, f"{upload.name}: file is empty")
    return form


# Demuxers that PyAV opens but that hold no audio or video (a picture, a text file).
_NOT_AV_FORMATS = ("image2", "tty", "srt", "webvtt", "ass", "lrc")


def sniff(upload: Upload, need_audio: bool = False, probe: Callable | None = None) -> None:
    """Check with PyAV that the content is audio or video whatever its suffix says.

    ``probe`` reads the headers (:func:`esva.media.decode.probe` here by default; a worker
    process's for an :class:`IsolatedService`, so that not even libav's header parsing runs in
    the server's process).
    """
    if probe is None:
        from esva.media.decode import probe

    try:
        info = probe(upload.path)
    except EsvaError as err:
        raise ApiError(400, _scrub(str(err), upload)) from None
    fmt = info.format or ""
    if fmt.endswith("_pipe") or fmt in _NOT_AV_FORMATS:
        raise ApiError(415, f"{upload.name}: {fmt} content, not audio or video")
    if need_audio and not info.has_audio:
        raise ApiError(400, f"{upload.name}: no audio stream")


def _scrub(text: str, *uploads: Upload) -> str:
    """The server's temporary paths in a message replaced by the client's names."""
    for upload in uploads:
        text = text.replace(str(upload.path), upload.name)
    return text


def _clean(value: Any, uploads: tuple[Upload, ...]) -> Any:
    """JSON-safe: no NaN or infinity (-> None), no server paths in strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _scrub(value, *uploads)
    if isinstance(value, dict):
        return {k: _clean(v, uploads) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, uploads) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Admission


class Gate:
    """At most ``concurrency`` inferences at once and ``queue`` more admitted requests waiting.

    A request holds its admission from before its upload is read until its answer, so the
    disk used by uploads is bounded too: (concurrency + queue) × the upload limit.
    """

    def __init__(self, concurrency: int, queue: int) -> None:
        if concurrency < 1 or queue < 0:
            raise EsvaError("--concurrency must be >= 1 and --queue >= 0")
        self.capacity = concurrency + queue
        self.admitted = 0
        self._running = asyncio.Semaphore(concurrency)

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self.admitted >= self.capacity:
            raise ApiError(
                503,
                f"busy: {self.admitted} requests in hand; try again shortly",
                {"Retry-After": "5"},
            )
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker thread once a slot is free (the event loop stays free)."""
        async with self._running:
            # A client that goes away does not stop the thread; the slot is held until it ends.
            return await anyio.to_thread.run_sync(fn, *args)


# ---------------------------------------------------------------------------------------------
# The app


def create_app(
    model: str | Path | None = None,
    *,
    max_upload_mb: float = 200.0,
    concurrency: int = 1,
    queue: int = 32,
    explainer: Explainer | None = None,
    service: Any = None,
    default_explain: bool = False,
    llm_model: str | Path | None = None,
    workers: int = 1,
    service_factory: Callable[[], Any] | None = None,
    allowed_hosts: tuple[str, ...] | None = None,
) -> FastAPI:
    """The web app, its models loaded now (once): ``uvicorn.run(create_app(), port=7860)``.

    By default the models load in ``workers`` worker processes (:class:`IsolatedService`;
    ``service_factory``, a picklable callable, replaces what each builds), with
    ``/api/explain`` from ``esva explain``'s default (``default_explain``) or from the
    ``llm_model`` adapter folder, also in the workers. ``service`` instead runs an object in
    this process (an object with ``predict(path, audio) -> dict``, ``name`` and ``classes``;
    tests, embedding); ``explainer`` then enables ``/api/explain`` (or ``default_explain``,
    :class:`DefaultExplainer` on the service's recogniser). An explainer with a ``tasks``
    attribute accepts those tasks; others accept ``esva explain --task``'s
    (:data:`esva.tasks.EXPLAIN_TASKS`). ``allowed_hosts``: the Host names served (default:
    loopback names; ``"*"`` serves any).
    """
    if max_upload_mb <= 0:
        raise EsvaError("--max-upload-mb must be positive")
    limit = int(max_upload_mb * 2**20)
    gate = Gate(concurrency, queue)
    explain_off = NO_LLM
    if service is None:
        explain: bool | str | Path = llm_model if llm_model is not None else default_explain
        service = IsolatedService(model, workers=workers, explain=explain, factory=service_factory)
        if service.explain_unavailable is None:
            explainer = service.explain
        explain_off = service.explain_unavailable or NO_LLM
    elif explainer is None and default_explain:
        if getattr(service, "recognizer", None) is None:
            raise EsvaError("the default explainer needs the server's recogniser")
        missing = lm_unavailable()
        explain_off = missing or NO_LLM
        if missing is None:
            explainer = DefaultExplainer(service.recognizer)
    tasks: tuple[str, ...] = tuple(
        getattr(service, "tasks", None) or getattr(explainer, "tasks", EXPLAIN_TASKS)
    )
    media_suffixes = set(VIDEO_SUFFIXES) | set(AUDIO_SUFFIXES)
    hosts = {h.lower().strip("[]") for h in (allowed_hosts or LOOPBACK_HOSTS)}
    state: dict[str, Path] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["root"] = app.state.upload_root = Path(tempfile.mkdtemp(prefix="esva-serve-"))
        try:
            yield
        finally:
            shutil.rmtree(state["root"], ignore_errors=True)
            if isinstance(service, IsolatedService):
                await anyio.to_thread.run_sync(service.close)

    # No /api/docs: Swagger UI loads its scripts and styles from a CDN (a page that fails
    # offline and runs third-party code); the schema itself is served.
    app = FastAPI(
        title="esva",
        docs_url=None,
        openapi_url="/api/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.gate = gate
    app.state.service = service

    @app.middleware("http")
    async def _host_check(request: Request, call_next: Callable) -> Any:
        host = host_name(request.headers.get("host", ""))
        if "*" not in hosts and host not in hosts:
            return _error(400, f"host {host or '(none)'!r} is not served here (see --allow-host)")
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, f"bad request: {exc.errors()}")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, f"internal server error ({type(exc).__name__}); see the server log")

    @contextlib.asynccontextmanager
    async def _request_dir() -> AsyncIterator[Path]:
        directory = Path(tempfile.mkdtemp(dir=state["root"]))
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    async def _media(request: Request, directory: Path, text_fields: tuple[str, ...] = ()) -> _Form:
        try:
            allowed = {"file": media_suffixes, "audio": set(AUDIO_SUFFIXES)}
            form = await receive_form(request, directory, allowed, text_fields, limit)
        except ClientDisconnect:
            raise ApiError(400, "the client went away during the upload") from None
        probe = getattr(service, "probe", None) if isinstance(service, IsolatedService) else None
        try:
            await anyio.to_thread.run_sync(sniff, form.files["file"], False, probe)
            if "audio" in form.files:
                await anyio.to_thread.run_sync(sniff, form.files["audio"], True, probe)
        except WorkerCrashed:
            raise _crashed(form) from None
        return form

    def _crashed(form: _Form) -> ApiError:
        name = form.files["file"].name
        log.error("the worker process died on %s; replaced", name)
        return ApiError(
            500,
            f"{name}: the analysis crashed (its worker process died) and was abandoned; "
            "the server has replaced the worker and is still running",
        )

    async def _answer(form: _Form, fn: Callable[..., dict], *args: Any) -> JSONResponse:
        uploads = tuple(form.files.values())
        try:
            result = await gate.run(fn, *args)
        except EsvaError as err:
            raise ApiError(400, _scrub(str(err), *uploads)) from None
        except WorkerCrashed:
            raise _crashed(form) from None
        except ExplainUnavailable as err:
            raise ApiError(503, str(err)) from None
        result["file"] = form.files["file"].name
        return JSONResponse(_clean(result, uploads))

    @app.get("/api/health")
    @app.head("/api/health", include_in_schema=False)  # monitors probe with HEAD
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        return {
            "model": service.name,
            "classes": list(service.classes),
            "max_upload_mb": max_upload_mb,
            "explain": explainer is not None,
            "explain_unavailable": None if explainer is not None else explain_off,
            "video_suffixes": sorted(VIDEO_SUFFIXES),
            "audio_suffixes": sorted(AUDIO_SUFFIXES),
        }

    @app.post("/api/predict")
    async def predict(request: Request) -> JSONResponse:
        async with gate.admit(), _request_dir() as directory:
            form = await _media(request, directory)
            audio = form.files.get("audio")
            return await _answer(
                form, service.predict, form.files["file"].path, audio.path if audio else None
            )

    @app.post("/api/explain")
    async def explain(request: Request) -> JSONResponse:
        if explainer is None:
            return _error(503, explain_off)
        async with gate.admit(), _request_dir() as directory:
            form = await _media(request, directory, text_fields=("task",))
            task = form.texts.get("task") or None
            if task is not None and task not in tasks:
                raise ApiError(400, f"unknown task {task!r} (choose {', '.join(tasks)})")
            audio = form.files.get("audio")
            return await _answer(
                form, explainer, form.files["file"].path, audio.path if audio else None, task
            )

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app
