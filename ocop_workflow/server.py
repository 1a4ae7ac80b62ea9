"""``ocop serve``: the JSON API over HTTP (FastAPI on uvicorn), standing on the facade.

Why FastAPI: the engine is synchronous SQLAlchemy Core, and FastAPI runs plain ``def`` endpoints
in a thread pool, so the facade is called as is; it speaks pydantic, which SQLModel already
brings; and it writes the OpenAPI document (``/openapi.json``) from the endpoints themselves.

Every request acts as the person its bearer token (or, where a province enables it, its trusted
reverse-proxy header) names — never as a name the request sends. Errors are the CLI's error
hierarchy mapped to HTTP statuses with the body ``{"error": {"code", "message"}}``. A rehearsal
instant comes from ``OCOP_NOW`` in the server's environment or a request's ``X-Ocop-Now`` header,
both only where ``[clock] allow_override`` allows it, exactly as on the command line.
"""

import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .clock import FixedClock, override_instant
from .config import User
from .errors import (
    AuditFailure,
    ConfigError,
    Conflict,
    EnvironmentProblem,
    MissingTool,
    NotFound,
    OcopError,
    PayloadTooLarge,
    PermissionDenied,
    TransitionRefused,
    Unauthenticated,
    UsageError,
)
from .inputs import may_be_token, printable
from .render import when
from .service import MAX_PAGE, Ocop
from .sqlite_reads import ReaderBusy, sqlite_path
from .store import WriterBusy

if TYPE_CHECKING:
    from .pg_reads import PgReads

T = TypeVar("T")
API = "/api/v1"
NOW_HEADER = "X-Ocop-Now"
#: Threads a server process runs requests in (anyio's default is 40): the size of SQLAlchemy's
#: connection pool, so that no request opens and closes a connection of its own (on PostgreSQL
#: a new backend process each time), and few enough that they do not spend their time taking
#: the one interpreter lock from each other. More throughput comes from ``--workers``. On a
#: SQLite file the short writes run on one thread apart from these (``Writer``).
THREADS = 5
#: Password logins checked at once, on threads apart from ``THREADS`` (see ``login``).
LOGIN_THREADS = 2
#: How long a read on the event loop (a SQLite file) waits for a lock before the thread pool
#: takes it over: every other request of the process waits meanwhile.
LOOP_BUSY_MS = 50
#: After a read on the event loop found the database locked, how long the loop leaves the short
#: reads to the thread pool (a lock held that long is likely to be held a while longer).
LOOP_BUSY_BACKOFF_S = 1.0


def status_of(error: OcopError) -> int:
    """The HTTP status of an error of the one hierarchy (most specific class first)."""
    from .auth import Throttled

    for kind, status in (
        (Unauthenticated, 401),
        (Throttled, 429),
        (PermissionDenied, 403),
        (NotFound, 404),
        (Conflict, 409),
        (TransitionRefused, 409),
        # Exit 7: the trail or a checkpoint does not hold up (a failed report is 409 too).
        (AuditFailure, 409),
        (PayloadTooLarge, 413),
        (UsageError, 422),
        # Config is checked at start; during a request only a refused rehearsal instant
        # (X-Ocop-Now without [clock] allow_override) raises it: the request's fault.
        (ConfigError, 422),
        (EnvironmentProblem, 503),
    ):
        if isinstance(error, kind):
            return status
    return 500


#: What a client is told when the server cannot use its database (503): the cause names the
#: database URL (user, host, port, name; a SQLite file's path) and the driver's words, which are
#: for the operator, not for whoever asks ``/readyz`` or sends a made-up token.
UNAVAILABLE = (
    "the server cannot use its database now: its log says why "
    "(a database never prepared needs `ocop init`)"
)


#: What a client is told of a bug (500): its detail may name anything the server holds.
INTERNAL = "the server failed on this request: its log says why"


def unavailable(exc: OcopError) -> JSONResponse:
    """The 503 answer to ``exc`` (an :class:`EnvironmentProblem`), its cause logged instead."""
    from .log import get_logger

    get_logger("ocop.server").warning("server.unavailable", error=exc.message)
    return JSONResponse(error_body(exc.code, UNAVAILABLE), status_code=503)


def error_response(exc: OcopError) -> JSONResponse:
    """The answer to an error of the one hierarchy: its status and the error body."""
    if isinstance(exc, EnvironmentProblem) and not isinstance(exc, MissingTool):
        return unavailable(exc)
    reasons = getattr(exc, "reasons", None) or getattr(exc, "problems", None)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthenticated) else None
    return JSONResponse(
        error_body(exc.code, exc.message, reasons, exc.fields),
        status_code=status_of(exc),
        headers=headers,
    )


def error_body(
    code: str, message: str, reasons: list[str] | None = None, fields: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``{"error": {"code", "message"}}``, with ``reasons`` when there are several and
    ``fields`` (the request's inputs at fault: ``reason``, ``data.certificate_no``) when known.
    What they quote of the request is shown escaped where it is a control character or a
    lone surrogate (``inputs.printable``): the latter cannot be encoded, a 500 otherwise."""
    document: dict[str, Any] = {"code": code, "message": printable(message)}
    if reasons and len(reasons) > 1:
        document["reasons"] = [printable(r) for r in reasons]
    if fields:
        document["fields"] = [printable(f) for f in fields]
    return {"error": document}


# --- request bodies -------------------------------------------------------------------------


class Body(BaseModel):
    """Request bodies are strict: ``true`` is not version 1, ``"5"`` is not a score of 5, and a
    key the endpoint does not know is refused rather than silently ignored."""

    model_config = ConfigDict(strict=True, extra="forbid")


class RegisterBody(Body):
    product: str
    producer: str
    commune: str
    group: str | None = None
    workflow: str | None = None
    id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class AdvanceBody(Body):
    trigger: str
    reason: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    expect_version: int | None = None


class ScoreBody(Body):
    member: str
    a: float | None = None
    b: float | None = None
    c: float | None = None
    note: str | None = None
    council: str | None = None


class CloseBody(Body):
    council: str | None = None


class RescoreBody(Body):
    reason: str | None = None
    member: str | None = None
    council: str | None = None


class VerifyBody(Body):
    """``POST /audit/verify``: signed checkpoint documents (each file's JSON, as written by
    ``ocop audit checkpoint``) the chains must still extend."""

    dossier: str | None = None
    checkpoints: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)
    #: What to call each checkpoint in messages (its file name), in order; default "#1", "#2"…
    names: list[Annotated[str, Field(max_length=255)]] | None = None
    #: The signer's Ed25519 public key (PEM); default: the server's ``[audit] public_key``.
    public_key: str | None = Field(default=None, max_length=64 * 1024)


class LoginBody(Body):
    user: str
    password: str


# --- the app --------------------------------------------------------------------------------


def create_app(ocop: Ocop, *, prepare: bool = False) -> FastAPI:
    """The ASGI app on ``ocop`` (its clock is the server's: system or rehearsal).

    ``prepare``: a server process's app (``serve``, ``app_from_env``), which at start-up builds
    what requests will need and then freezes what it holds (``prepared``)."""
    ocop = ocop.at(ocop.clock)
    ocop.conceal = True
    ocop.read_per_thread()
    inline = sqlite_path(ocop.config.database_url) is not None
    writer = Writer() if inline else None

    def pg_reads() -> "PgReads":
        """This thread's reader on PostgreSQL (``read_per_thread``)."""
        from .pg_reads import PgReads

        reads = ocop.reads()
        assert isinstance(reads, PgReads), reads
        return reads

    batches = None
    if not inline and ocop.store.dialect == "postgresql":
        from .page_batch import PageBatches

        batches = PageBatches(lambda asked: pg_reads().pages(asked))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        if prepare:
            prepared(ocop)
        try:
            yield
        finally:
            if writer is not None:
                writer.close()
            if batches is not None:
                batches.close()

    app = FastAPI(
        lifespan=lifespan,
        title="OCOP workflow API",
        version="1",
        description="Dossiers of Vietnam's OCOP programme: register, advance, score, audit.",
    )
    settings = ocop.config.server
    # Innermost of the three: the sender of an upload is known before its body is read.
    app.add_middleware(KnownSender, check=lambda request: principal(request))
    # The multipart envelope adds a little to the file itself.
    app.add_middleware(BodyLimit, limit=ocop.config.max_document_bytes, envelope=64 * 1024)
    app.add_middleware(ClientAddress, trusted=settings.trusted_proxies)

    config_path = str(ocop.config.path)

    @app.exception_handler(OcopError)
    async def _ocop_error(_request: Request, exc: OcopError) -> JSONResponse:
        # (the handlers are async: Starlette runs a plain def on the thread pool, where every
        # 401 of a flood of made-up tokens would queue behind the requests' threads)
        # a message pointing an officer at the config file names it, not where it lies on
        # the server ("see [councils] in config.toml")
        exc.message = exc.message.replace(config_path, ocop.config.path.name)
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _framework_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """The framework's own refusals (unknown route, wrong method, a body it cannot parse)
        keep the API's one error body instead of ``{"detail": …}``."""
        status = exc.status_code
        if status == 400:  # "There was an error parsing the body": bad input like any other
            status = 422
        code = {404: "not_found", 405: "usage", 413: "too_large", 422: "usage"}.get(status, "error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=status, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        """Anything outside the one hierarchy is a bug of ours: the caller gets the API's error
        body (500 ``error``) and no detail; the traceback goes to the log, where the framework
        then writes it too."""
        from .log import get_logger

        get_logger("ocop.server").error("server.bug", error=f"{type(exc).__name__}: {exc}")
        return JSONResponse(error_body("error", INTERNAL), status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422, once the sender is known, on every route but the open ones: a body that is not
        JSON is refused before any dependency runs, and a write checks its token after its body
        is parsed (``acting_write``), so a request both unauthenticated and malformed would
        otherwise learn of its body's faults before being told to log in. A request whose
        token a dependency already checked (``authenticated`` noted its id) is not read again."""
        known = getattr(request.state, "token_id", None) is not None
        if not known and request.scope.get("endpoint") not in open_routes:
            try:
                await principal(request)
            except OcopError as refused:
                return await _ocop_error(request, refused)
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        ]
        return JSONResponse(error_body("usage", "; ".join(problems), problems), status_code=422)

    def clocked(request: Request) -> Ocop:
        """The facade on this request's clock: the server's, or the rehearsal header's."""
        header = request.headers.get(NOW_HEADER)
        if not header:
            return ocop
        instant = override_instant(ocop.config, header, NOW_HEADER)
        assert instant is not None
        return ocop.at(FixedClock(instant))

    async def facade(request: Request) -> Ocop:
        """``clocked`` as a dependency. ``async``: it only reads a header, and a plain ``def``
        dependency would cost a trip through the thread pool of its own."""
        return clocked(request)

    busy = {"until": 0.0}  # monotonic instant until which the loop reads nothing itself

    async def short_read(read: Callable[..., T], *args: Any) -> T:
        """A read of a few indexed rows: on a SQLite file right here on the event loop, else
        (PostgreSQL: network round trips) on the thread pool.

        A handful of indexed reads of a local file through this thread's plain sqlite3
        connection take tens of microseconds (and a WAL reader waits for no writer); handing
        them to a thread costs more than that, and the thread and the loop then trade the one
        interpreter lock at every statement. Only bounded reads go here: a long one (a list, a
        report) would hold up every other request. For the same reason the loop's reader
        waits at most ``LOOP_BUSY_MS`` for a lock (``Ocop.read_briefly_here``): a database
        locked longer (``ReaderBusy``) is waited for on the thread pool, where the reader
        waits as long as any other; and for ``LOOP_BUSY_BACKOFF_S`` after that, every short
        read goes to the pool at once, rather than each first stalling the loop 50 ms.
        """
        if inline and time.monotonic() >= busy["until"]:
            ocop.read_briefly_here(LOOP_BUSY_MS)
            try:
                return read(*args)
            except ReaderBusy:
                busy["until"] = time.monotonic() + LOOP_BUSY_BACKOFF_S
        return await run_in_threadpool(read, *args)

    async def writing(write: Callable[[], T]) -> T:
        """A short write request's work (its reads and its one write transaction).

        On a SQLite file, right here on the event loop when the write lock is free
        (``Store.at_once``): a transition takes a few tenths of a millisecond, less than
        handing it to another thread and back, and one thread never fights another for the
        interpreter lock. When the lock is held (a write queued on the writer thread, a worker
        or a command in another process) or a read waits for one (``ReaderBusy``), nothing was
        written: the same work goes to the process's one writer thread (``Writer``), which
        waits as long as the busy timeout allows while the loop goes on. Every
        ``AT_ONCE_CHECKPOINT_EVERY`` commits, the writer thread also copies the WAL back
        (the loop's commits do not). On PostgreSQL, on the thread pool (its writers do not
        wait for one another).
        """
        if writer is None:
            return await run_in_threadpool(write)
        store = ocop.store
        if time.monotonic() >= busy["until"]:
            with store.at_once() as attempt:
                ocop.read_briefly_here(LOOP_BUSY_MS)
                try:
                    done = write()
                except (WriterBusy, ReaderBusy) as exc:
                    if attempt.begun:  # after the write began: its own error, not a retry
                        raise
                    if isinstance(exc, ReaderBusy):
                        busy["until"] = time.monotonic() + LOOP_BUSY_BACKOFF_S
                else:
                    if store.checkpoint_due():
                        writer.submit(store.checkpoint)
                    return done
        return await writer.run(write)

    def bearer(request: Request) -> str | None:
        authorization = request.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def authenticated(request: Request) -> User:
        """The authenticated person: bearer token, or the trusted proxy header where enabled.

        Always on the server's own clock (``ocop``), never the request's rehearsal instant: a
        client that could name the time could revive its expired token. The token's row is
        read on every request: a token revoked through any server process is refused from the
        next request on.
        """
        token = bearer(request)
        if token is not None:
            user, token_id = ocop.authenticate(token)
            request.state.token_id = token_id
            return user
        if settings.trusted_user_header and trusted_peer(request, settings.trusted_proxies):
            key = request.headers.get(settings.trusted_user_header)
            if key:
                try:
                    return ocop.config.user(key)
                except OcopError:
                    raise Unauthenticated("invalid or expired token") from None
        raise Unauthenticated("authentication required: send Authorization: Bearer TOKEN")

    async def principal(request: Request) -> User:
        """``authenticated`` as a dependency: a token's row is a ``short_read`` (on the event
        loop on a SQLite file); a request without one reads nothing."""
        if bearer(request) is None:
            return authenticated(request)
        return await short_read(authenticated, request)

    async def acting(
        request: Request, work: Callable[[User, Ocop], T], *, page: str | None = None
    ) -> T:
        """``work(actor, facade)`` for a short read, with the token check in the same trip:
        on PostgreSQL one hand-over to the thread pool instead of two. The person is
        authenticated before the request's clock is even looked at, as ``Actor`` before
        ``Core``. ``page``: the dossier whose page ``work`` reads (on PostgreSQL read with the
        token's row in one statement, ``Ocop.reading``)."""

        def job() -> T:
            # the token's row and the reads of ``work``: one snapshot
            with ocop.reading(token=bearer(request), page=page):
                actor = authenticated(request)
                return work(actor, clocked(request))

        token = bearer(request)
        # A made-up token, or an id the database cannot take (a NUL), reads nothing ahead: the
        # request is then told 401 before anything is said of its input (``job``).
        if (
            batches is not None
            and page is not None
            and token is not None
            and may_be_token(token)
            and "\x00" not in page
        ):
            from .auth import token_digest
            from .page_batch import ALONE
            from .pg_reads import NotAhead

            digest = token_digest(token)
            found = await batches.fetch(digest, page)
            if found is not ALONE:
                try:
                    with pg_reads().answered(digest, page, found):
                        actor = authenticated(request)
                        return work(actor, clocked(request))
                except NotAhead:  # the page needs another read: all of it on the pool after all
                    pass
        return await short_read(job)

    async def sender(request: Request) -> None:
        """A write request names someone: a bearer token (checked in the write's own trip,
        ``acting_write``) or the trusted proxy header, else 401 before its body is looked at."""
        if bearer(request) is None:
            authenticated(request)

    async def acting_write(
        request: Request, work: Callable[[User, Ocop], T], *, dossier: str | None = None
    ) -> T:
        """``work(actor, facade)`` for a short write (``writing``). On PostgreSQL the token's
        row is read in the write's own trip to a thread: one hand-over instead of two; with
        ``dossier`` (the dossier ``work`` acts on) read with the dossier's row in one statement,
        and the transaction on the same pooled connection (``Ocop.acting``). On a SQLite file
        there is no hand-over to save (the token's row is read on the loop), and it is read
        first: a request nobody sent must not queue on the writer thread behind real writes
        when the loop cannot take it. As in ``acting``, the person is authenticated before the
        request's clock is looked at."""
        if writer is not None:
            actor = await principal(request)
            return await writing(lambda: work(actor, clocked(request)))
        if dossier is None:
            return await writing(lambda: work(authenticated(request), clocked(request)))

        def job() -> T:
            with ocop.acting(token=bearer(request), dossier=dossier):
                return work(authenticated(request), clocked(request))

        return await writing(job)

    Core = Annotated[Ocop, Depends(facade)]
    Actor = Annotated[User, Depends(principal)]
    Sender = Depends(sender)

    # --- process and readiness ------------------------------------------------------------

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """The database is reachable and up to date, and the workflows load."""
        try:
            ocop.store.check_schema()
            workflows = [wf.name for wf in ocop.registry.all()]
        except EnvironmentProblem as exc:
            return unavailable(exc)
        except OcopError as exc:  # anyone may ask: the file and the problem go to the log
            from .log import get_logger

            get_logger("ocop.server").warning("server.not_ready", error=exc.message)
            body = error_body(exc.code, "the workflows do not load: the server's log says why")
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "workflows": workflows})

    # --- logins ---------------------------------------------------------------------------

    login_threads: dict[str, Any] = {}

    @app.post(f"{API}/login", tags=["logins"])
    async def login(body: LoginBody, request: Request) -> dict[str, Any]:
        """A session token for a correct password (throttled per user and per address).

        On the server's own clock, whatever ``X-Ocop-Now`` says: the throttling window and the
        session's lifetime are not the client's to choose. At most ``LOGIN_THREADS`` password
        checks run at once, on threads of their own: each costs an Argon2 hash (tens of
        milliseconds by design), and a flood of guesses must not take the threads every other
        request runs on.
        """
        import anyio.to_thread

        if "limiter" not in login_threads:
            login_threads["limiter"] = anyio.CapacityLimiter(LOGIN_THREADS)
        address = request.client.host if request.client else "unknown"
        made = await anyio.to_thread.run_sync(
            ocop.login, body.user, body.password, address, limiter=login_threads["limiter"]
        )
        return {
            "token": made.token,
            "user": made.info.user,
            "expires_at": when(made.info.expires_at, ocop.tz),
        }

    #: The routes anyone may call: a bad request to one of them is told what is wrong with it.
    open_routes = {healthz, readyz, login}

    @app.post(f"{API}/logout", tags=["logins"])
    async def logout(request: Request, actor: Actor, core: Core) -> dict[str, Any]:
        """Revoke the token this request came with."""
        token_id = getattr(request.state, "token_id", None)
        if token_id is not None:
            await writing(lambda: core.revoke_token(token_id, user_key=actor.key))
        return {"revoked": token_id is not None}

    @app.get(f"{API}/me", tags=["logins"])
    async def me(actor: Actor) -> dict[str, Any]:
        """Who the token belongs to. (``async``: it reads nothing, so no hop to a thread.)"""
        return {
            "key": actor.key,
            "name": actor.name,
            "roles": sorted(actor.roles),
            "communes": sorted(actor.communes),
            "organisation": actor.organisation,
        }

    # --- dossiers -------------------------------------------------------------------------

    @app.get(f"{API}/dossiers", tags=["dossiers"])
    def list_dossiers(
        actor: Actor,
        core: Core,
        state: str | None = None,
        stage: str | None = None,
        commune: str | None = None,
        workflow: str | None = None,
        overdue: bool = False,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> JSONResponse:
        """The dossiers you may see, filtered as ``ocop dossier list``, one page."""
        from .views import DossierFilter

        filters = DossierFilter(state, stage, commune, workflow, overdue)
        page = core.list_dossiers(actor, filters, limit=limit, offset=offset)
        return JSONResponse(page.to_json())

    @app.post(f"{API}/dossiers", tags=["dossiers"], status_code=201, dependencies=[Sender])
    async def register(body: RegisterBody, request: Request) -> JSONResponse:
        """Register a new dossier in its workflow's initial state."""
        registered = await acting_write(
            request,
            lambda actor, core: core.register(
                actor,
                product=body.product,
                producer=body.producer,
                commune=body.commune,
                group=body.group,
                workflow=body.workflow,
                dossier_id=body.id,
                data=body.data,
            ),
        )
        return JSONResponse(registered.to_json(), status_code=201)

    @app.get(API + "/dossiers/{dossier_id:path}/history", tags=["dossiers"])
    def history(dossier_id: str, actor: Actor, core: Core) -> JSONResponse:
        """The audit trail of the dossier, oldest first."""
        return JSONResponse([entry.to_json() for entry in core.history(actor, dossier_id)])

    @app.get(API + "/dossiers/{dossier_id:path}/triggers", tags=["dossiers"])
    def triggers(dossier_id: str, actor: Actor, core: Core) -> JSONResponse:
        """Each trigger from the current state: may you fire it now, and every reason why not."""
        return JSONResponse([t.to_json() for t in core.triggers(actor, dossier_id)])

    @app.post(API + "/dossiers/{dossier_id:path}/advance", tags=["dossiers"], dependencies=[Sender])
    async def advance(dossier_id: str, body: AdvanceBody, request: Request) -> JSONResponse:
        """Fire a trigger (409 when ``expect_version`` is stale or the move is refused)."""
        moved = await acting_write(
            request,
            lambda actor, core: core.advance(
                actor,
                dossier_id,
                body.trigger,
                reason=body.reason,
                data=body.data,
                expect_version=body.expect_version,
            ),
            dossier=dossier_id,
        )
        return JSONResponse(moved.to_json())

    @app.post(API + "/dossiers/{dossier_id:path}/documents", tags=["documents"], status_code=201)
    def attach(
        dossier_id: str,
        request: Request,
        actor: Actor,
        core: Core,
        kind: Annotated[str, Form()],
        file: Annotated[UploadFile, File()],
    ) -> JSONResponse:
        """Attach an uploaded file as a document of ``kind`` (stored once by SHA-256, audited)."""
        attached = core.attach_stream(
            actor,
            dossier_id,
            kind,
            file.filename or "",
            file.file,
            max_bytes=ocop.config.max_document_bytes,
        )
        return JSONResponse(attached.to_json(), status_code=201)

    @app.get(API + "/dossiers/{dossier_id:path}/documents/{sha256}", tags=["documents"])
    def download(dossier_id: str, sha256: str, actor: Actor, core: Core) -> FileResponse:
        """A stored document's file, for those who may see the dossier."""
        path, name = core.document_file(actor, dossier_id, sha256)
        return FileResponse(path, filename=name, media_type="application/octet-stream")

    @app.post(API + "/dossiers/{dossier_id:path}/scores", tags=["council"], dependencies=[Sender])
    async def score(dossier_id: str, body: ScoreBody, request: Request) -> JSONResponse:
        """A council member's score (entered by the member or the chair)."""
        parts = {k: v for k, v in (("a", body.a), ("b", body.b), ("c", body.c)) if v is not None}
        scored = await acting_write(
            request,
            lambda actor, core: core.score(
                actor,
                dossier_id,
                member=body.member,
                parts=parts,
                note=body.note,
                council=body.council,
            ),
        )
        return JSONResponse(scored.to_json())

    @app.post(
        API + "/dossiers/{dossier_id:path}/scoring/close", tags=["council"], dependencies=[Sender]
    )
    async def close_scoring(dossier_id: str, body: CloseBody, request: Request) -> JSONResponse:
        """The chair closes the round: mean score, stars."""
        closed = await acting_write(
            request,
            lambda actor, core: core.close_scoring(actor, dossier_id, council=body.council),
        )
        return JSONResponse(closed.to_json())

    @app.post(
        API + "/dossiers/{dossier_id:path}/scoring/rescore", tags=["council"], dependencies=[Sender]
    )
    async def rescore(dossier_id: str, body: RescoreBody, request: Request) -> JSONResponse:
        """The chair clears the scores (or one member's) to redo them."""
        cleared = await acting_write(
            request,
            lambda actor, core: core.rescore(
                actor, dossier_id, reason=body.reason, member=body.member, council=body.council
            ),
        )
        return JSONResponse(cleared.to_json())

    @app.get(API + "/dossiers/{dossier_id:path}", tags=["dossiers"])
    async def show(dossier_id: str, request: Request) -> JSONResponse:
        """The dossier, its deadline and why, its pending timers, documents, next triggers."""
        shown = await acting(
            request, lambda actor, core: core.show(actor, dossier_id), page=dossier_id
        )
        return JSONResponse(shown.to_json())

    # --- import ---------------------------------------------------------------------------

    @app.post(f"{API}/imports", tags=["dossiers"])
    def import_(
        actor: Actor,
        core: Core,
        file: Annotated[UploadFile, File()],
        dry_run: Annotated[bool, Form()] = False,
    ) -> JSONResponse:
        """Register dossiers from an uploaded CSV or XLSX: every row checked, all or nothing."""
        import tempfile
        from pathlib import Path

        from .importer import ImportRejected
        from .service import safe_file_name

        name = safe_file_name(file.filename or "")
        if Path(name).suffix.lower() not in {".csv", ".xlsx"}:
            raise UsageError(f"{name}: give a .csv or .xlsx file")
        with tempfile.TemporaryDirectory(prefix="ocop-import-") as tmp:
            path = Path(tmp) / name
            _save(file, path, ocop.config.max_document_bytes)
            try:
                report = core.import_file(actor, path, dry_run=dry_run)
            except ImportRejected as rejected:
                body = error_body(rejected.code, rejected.message, rejected.problems)
                body["report"] = rejected.report.document()
                return JSONResponse(body, status_code=status_of(rejected))
            except OcopError as exc:  # named as the caller sent it, not the server's folder
                exc.message = exc.message.replace(str(path), name)
                raise
        return JSONResponse(report.document())

    # --- timers, notifications ------------------------------------------------------------

    @app.get(f"{API}/timers", tags=["timers"])
    def timers(
        actor: Actor,
        core: Core,
        dossier: str | None = None,
        due: bool = False,
        all: bool = False,
        limit: Annotated[int | None, Query(ge=1, le=MAX_PAGE)] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> JSONResponse:
        """Pending timers of the dossiers you may see (``all``: whatever their status), soonest
        first; ``limit`` and ``offset``: one page of them."""
        found = core.timers(
            actor, dossier_id=dossier, due=due, include_all=all, limit=limit, offset=offset
        )
        return JSONResponse([t.to_json() for t in found])

    @app.get(f"{API}/notifications", tags=["notifications"])
    def notifications(
        actor: Actor,
        core: Core,
        status: str | None = None,
        dossier: str | None = None,
        limit: Annotated[int | None, Query(ge=1, le=MAX_PAGE)] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> JSONResponse:
        """The outbox entries of the dossiers you may see, oldest first; ``limit`` and
        ``offset``: one page of them."""
        found = core.notifications(
            actor, status=status, dossier_id=dossier, limit=limit, offset=offset
        )
        return JSONResponse([n.to_json() for n in found])

    # --- reports and audit ----------------------------------------------------------------

    @app.get(f"{API}/reports/progress", tags=["reports"])
    def progress(actor: Actor, core: Core, year: int) -> JSONResponse:
        """Each target of ``year``: reached, left, by commune and stage; overdue and stuck."""
        return JSONResponse(core.progress(actor, year).to_json())

    @app.get(f"{API}/reports/html", tags=["reports"], response_class=HTMLResponse)
    def report_html(
        actor: Actor,
        core: Core,
        year: int,
        weeks: Annotated[int, Query(ge=1, le=260)] = 4,
    ) -> HTMLResponse:
        """``ocop report html``: the year's self-contained page (for those who read every
        dossier, like the progress report)."""
        return HTMLResponse(core.report_html(actor, year, weeks=weeks))

    # --- workflows ------------------------------------------------------------------------

    @app.get(f"{API}/workflows", tags=["workflows"])
    def workflows(actor: Actor, core: Core) -> JSONResponse:
        """``ocop workflow list``: the workflows that load, the default marked."""
        return JSONResponse([w.to_json() for w in core.workflows()])

    @app.get(API + "/workflows/{name}/diagram", tags=["workflows"])
    def workflow_diagram(
        name: str,
        actor: Actor,
        core: Core,
        format: Annotated[str, Query(pattern="^(mermaid|dot|svg)$")] = "mermaid",
    ) -> Response:
        """``ocop workflow diagram``: Mermaid or DOT text, or SVG (Graphviz on the server)."""
        media = "image/svg+xml" if format == "svg" else "text/plain; charset=utf-8"
        return Response(core.diagram(name, format), media_type=media)

    @app.get(API + "/workflows/{name}", tags=["workflows"])
    def workflow_show(name: str, actor: Actor, core: Core) -> JSONResponse:
        """``ocop workflow show``: states, stages, triggers, roles, deadlines, and the dossiers
        on it that you may see."""
        return JSONResponse(core.workflow(actor, name).to_json())

    @app.get(f"{API}/audit/verify", tags=["audit"])
    def audit_verify(actor: Actor, core: Core, dossier: str | None = None) -> JSONResponse:
        """Recompute the hash chains; ``ok`` false (and status 409) names every problem."""
        verified = core.audit_verify(actor, dossier)
        return JSONResponse(verified.to_json(), status_code=200 if verified.ok else 409)

    @app.post(
        f"{API}/audit/verify",
        tags=["audit"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": VerifyBody.model_json_schema()}},
            }
        },
    )
    async def audit_verify_checkpoints(request: Request, actor: Actor, core: Core) -> JSONResponse:
        """As ``GET``, and the chains must still extend every head the signed checkpoints saw
        (``ocop audit verify --checkpoint``): 409 with the report naming each rewritten, cut or
        deleted chain; 409 ``audit_failed`` for a checkpoint whose signature does not hold.

        The body (up to ``[documents] max_bytes``: a checkpoint holds every chain's head) is
        read and parsed only once the caller is known to read the whole trail, so nobody else
        can make the server parse megabytes of JSON."""
        core.check_reads_all(actor, "the audit trail")
        raw = await request.body()
        return await run_in_threadpool(_verify_checkpoints, core, actor, raw)

    @app.get(f"{API}/audit/export", tags=["audit"])
    def audit_export(
        actor: Actor,
        core: Core,
        since: str | None = None,
        format: Annotated[str, Query(pattern="^(csv|jsonl)$")] = "jsonl",
    ) -> StreamingResponse:
        """The audit trail for auditors, oldest first per dossier (JSON lines or CSV), sent as
        it is read: the server holds a batch of entries, never the whole export."""
        from .config import parse_instant

        since_at = parse_instant(since, "since", UsageError) if since else None
        pieces = core.audit_export_text(actor, fmt=format, since=since_at)
        media = "text/csv" if format == "csv" else "application/x-ndjson"
        return StreamingResponse(read_first(in_chunks(pieces)), media_type=media)

    return app


#: About how many bytes of a streamed answer go to the event loop at once: one hand-over per
#: chunk, not per line of an export of millions.
CHUNK_BYTES = 1 << 16


def in_chunks(pieces: Iterable[str], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``pieces`` of text as UTF-8 chunks of about ``size`` bytes (the last may be shorter)."""
    held: list[bytes] = []
    length = 0
    for piece in pieces:
        encoded = piece.encode("utf-8")
        held.append(encoded)
        length += len(encoded)
        if length >= size:
            yield b"".join(held)
            held, length = [], 0
    if held:
        yield b"".join(held)


def read_first(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks`` with the first already read, here: a streamed answer's status goes out
    before its body, so a failure of the first read (the database unreachable) must happen
    while the status can still say so, not after a 200."""
    import itertools

    first = next(chunks, None)
    return chunks if first is None else itertools.chain([first], chunks)


class Writer:
    """The one thread on which a server process on a SQLite file runs the short write requests
    (register, advance, score, close, rescore, logout) that could not start at once on the event
    loop (``writing``), one after another in the order they reached it (the loop may write
    others meanwhile), and the checkpoints that the loop's own writes leave due.

    SQLite lets one writer in at a time anyway, and a write usually finds the lock free: then it
    runs on the loop. This thread takes the others — the lock held by another process (a
    worker's sweep, a command) or by a write already here — and waits for the lock as long as
    the busy timeout allows while the loop goes on answering. (On the thread pool, five threads
    took writes at once, queued on the store's write lock and fought the event loop for the
    interpreter lock at every ``sqlite3`` call: 0.9-1.4 ms of the server's CPU per advance where
    the engine takes about 0.4; with every write handed to this thread, about 0.75; on the loop
    when the lock is free, about 0.45.) The thread starts with its first work; ``close`` ends it.
    """

    def __init__(self) -> None:
        self._executor: Any = None

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` on the writer thread, in the caller's context (its context variables)."""
        import asyncio
        import contextvars

        context = contextvars.copy_context()
        return await asyncio.wrap_future(self._start().submit(context.run, work))

    def submit(self, work: Callable[[], object]) -> None:
        """``work()`` on the writer thread, nobody waiting for it; a failure, to run it or to
        hand it over (no thread to be had, the interpreter shutting down), is logged: the
        request that hands it over has committed already and must not be told it failed."""
        try:
            future = self._start().submit(work)
        except RuntimeError as exc:
            _log_failure_of(exc)
            return
        future.add_done_callback(lambda done: _log_failure_of(done.exception()))

    def _start(self) -> Any:
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(1, thread_name_prefix="ocop-writer")
        return self._executor

    def close(self) -> None:
        """Finish the writes queued and end the thread (the server stops)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


def _log_failure_of(exc: BaseException | None) -> None:
    """A ``Writer.submit``'s failure, which no request is waiting to be told: to the log."""
    if exc is not None:
        from .log import get_logger

        get_logger("ocop.server").warning("server.background_failed", error=str(exc))


class ClientAddress:
    """Who the client is: the peer, or — when the peer is one of ``[server] trusted_proxies`` —
    the right-most address of ``X-Forwarded-For`` that is not itself a trusted proxy (each proxy
    appends the address it was reached from, so what lies left of the last untrusted one is
    whatever the client chose to send). Login throttling counts failures by this address.

    The parsing is uvicorn's ``ProxyHeadersMiddleware`` (which ``serve`` turns off in uvicorn
    itself: it trusts 127.0.0.1 by default, and a header from any local process would then
    choose the address). The direct peer is kept in the scope as ``ocop.peer``: whether the
    single sign-on header may be believed depends on it, not on what the proxy forwarded.
    """

    def __init__(self, app: Any, trusted: tuple[str, ...]) -> None:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        self.app = ProxyHeadersMiddleware(app, trusted_hosts=list(trusted)) if trusted else app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if client:  # one form of the peer for both decisions: who forwards, who signs on
                scope["client"] = (unmapped(client[0]), *client[1:])
            scope["ocop.peer"] = scope.get("client")
        await self.app(scope, receive, send)


def unmapped(host: str) -> str:
    """An IPv4 client on a dual-stack socket (``--host ::``) as IPv4: ``::ffff:127.0.0.1`` is
    127.0.0.1, for ``trusted_proxies`` as for login throttling — with or without proxies: kept
    mapped, every IPv4 client would fall in the one IPv6 /64 throttling counts by."""
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    mapped = getattr(address, "ipv4_mapped", None)
    return host if mapped is None else str(mapped)


def trusted_peer(request: Request, trusted: tuple[str, ...]) -> bool:
    """Whether the direct peer of ``request`` is one of the trusted proxies."""
    import ipaddress

    peer = request.scope.get("ocop.peer") or request.scope.get("client")
    try:
        address = ipaddress.ip_address(peer[0]) if peer else None  # unmapped by ClientAddress
    except ValueError:
        return False
    if address is None:
        return False
    return any(address in ipaddress.ip_network(entry) for entry in trusted)


def _verify_checkpoints(core: Ocop, actor: User, raw: bytes) -> JSONResponse:
    """``POST /audit/verify`` past its permission check, on a worker thread: parsing megabytes
    of checkpoints must not hold up the event loop. A malformed body is the same 422 as any
    other endpoint's (``body.…`` in the message)."""
    from pydantic import ValidationError

    from . import checkpoint as cp

    try:
        body = VerifyBody.model_validate_json(raw)
    except ValidationError as exc:
        problems = exc.errors(include_url=False)
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in problems]
        ) from None
    names = body.names or []
    if names and len(names) != len(body.checkpoints):
        raise UsageError("give one name per checkpoint, or none")
    if body.public_key is not None:
        key = cp.public_from_pem(body.public_key.encode("utf-8"), "public_key")
    elif core.config.audit.public_key is not None:
        key = cp.load_public(core.config.audit.public_key)
    else:
        raise UsageError("no public key: send public_key, or set [audit] on the server")
    checked = [
        cp.check(document, names[i] if names else f"#{i + 1}", key)
        for i, document in enumerate(body.checkpoints)
    ]
    verified = core.audit_verify(actor, body.dossier, checkpoints=checked)
    return JSONResponse(verified.to_json(), status_code=200 if verified.ok else 409)


#: The largest body of a request that carries neither a file nor checkpoints (a login, a
#: registration, an advance's data, a score): far above any honest one.
JSON_BODY_LIMIT = 1 << 20
#: The requests whose body may be as large as a document (``[documents] max_bytes``): a file
#: upload, a spreadsheet import, and the signed checkpoints of ``POST /audit/verify`` (about
#: 150 bytes a dossier), which its endpoint reads only once the caller may read the whole trail.
LARGE_BODIES = re.compile(
    rf"^{re.escape(API)}/(?:dossiers/.*/documents|imports|audit/verify)$", re.DOTALL
)


def carries_files(scope: Any) -> bool:
    """An HTTP request that may carry a document's worth of body (``LARGE_BODIES``): the one
    test of ``BodyLimit`` and ``KnownSender``, so that they never disagree on a path."""
    return scope.get("method") == "POST" and LARGE_BODIES.match(scope.get("path", "")) is not None


class KnownSender:
    """Uploads, imports and checkpoints (``LARGE_BODIES``) only from a sender the server knows.

    The framework spools a multipart body to disk before the endpoint's dependencies ask who
    sent it: anonymous clients sending files just under ``[documents] max_bytes`` at once could
    fill the server's disk. Here the token (or trusted proxy header) is checked first, with
    ``check`` (the endpoints' own ``principal``). An unknown sender's declared body is not read
    at all; a chunked one is read and dropped in memory, so that ``BodyLimit`` still answers
    413 past the limit, before the 401.
    """

    def __init__(self, app: Any, check: Callable[[Request], Any]) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and carries_files(scope):
            try:
                await self.check(Request(scope))
            except OcopError as exc:
                declared = any(name == b"content-length" for name, _ in scope.get("headers", ()))
                if not declared:
                    while (message := await receive())["type"] == "http.request":
                        if not message.get("more_body", False):
                            break
                await error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse a request whose body exceeds its limit (413), before anyone is asked who they
    are: the upload limit for the few requests that carry files or checkpoints
    (``LARGE_BODIES``), ``JSON_BODY_LIMIT`` for every other one.

    The framework parses a JSON body (and spools a multipart one to disk) before the endpoint's
    dependencies run, so without this an anonymous client could make the server parse 50 MiB
    of JSON per ``POST /login``, or fill the disk. A declared Content-Length over the limit is
    refused before any of the body is read. A body without one (chunked) is counted as it
    arrives: past the limit, reading stops and whatever the app would have answered is replaced
    by the 413.
    """

    def __init__(
        self, app: Any, limit: int, envelope: int = 0, small: int = JSON_BODY_LIMIT
    ) -> None:
        self.app = app
        #: (the bytes allowed, the 413's message)
        self.large = (limit + envelope, _too_large(limit, "[documents] max_bytes"))
        self.small = (small, _too_large(small))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, refusal = self.large if carries_files(scope) else self.small
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(scope, receive, send, refusal)
                return
        state = {"received": 0, "over": False, "answered": False}

        async def counted() -> Any:
            message = await receive()
            if message["type"] == "http.request" and not state["over"]:
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["over"] = True
                    raise PayloadTooLarge(refusal)
            return message

        async def guarded(message: Any) -> None:
            if not state["over"]:
                await send(message)
            elif message["type"] == "http.response.start" and not state["answered"]:
                state["answered"] = True
                await self._refuse(scope, receive, send, refusal)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["answered"]:
            await self._refuse(scope, receive, send, refusal)

    async def _refuse(self, scope: Any, receive: Any, send: Any, message: str) -> None:
        response = JSONResponse(error_body(PayloadTooLarge.code, message), status_code=413)
        await response(scope, receive, send)


def _too_large(limit: int, setting: str | None = None) -> str:
    said = f"request larger than the limit of {limit:,} bytes"
    return f"{said} ({setting})" if setting else said


def _save(upload: UploadFile, path: Any, limit: int) -> None:
    size = 0
    with open(path, "wb") as out:
        while chunk := upload.file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(_too_large(limit, "[documents] max_bytes"))
            out.write(chunk)


def serve(ocop: Ocop, host: str, port: int, *, workers: int = 1, announce: Any = print) -> None:
    """Run the API until SIGINT/SIGTERM. Binds first (port 0: any free port), then says where.

    ``workers`` > 1 starts that many server processes on the one listening socket (uvicorn's
    supervisor); each builds its own facade from the environment (``app_from_env``), so the
    caller must have put ``OCOP_CONFIG`` there.
    """
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every small response waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listen before saying where: a client that connects at once queues in the backlog
        # until uvicorn accepts, instead of being refused while the server still starts.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise EnvironmentProblem(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    announce(
        f"serving on http://{shown}:{bound}" + (f" ({workers} workers)" if workers > 1 else "")
    )
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        config = uvicorn.Config(
            "ocop_workflow.server:app_from_env",
            factory=True,
            workers=workers,
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # create_app's ClientAddress decides, from [server]
        )
        Multiprocess(config, sockets=[sock]).run()
        return
    config = uvicorn.Config(
        create_app(ocop, prepare=True), log_level="warning", access_log=False, proxy_headers=False
    )
    uvicorn.Server(config).run(sockets=[sock])


def app_from_env() -> FastAPI:
    """The app of one worker process of ``ocop serve --workers N``: config and clock from the
    environment the command line left (``OCOP_CONFIG``, ``OCOP_DATABASE_URL``, ``OCOP_NOW``)."""
    import os

    from .clock import clock_from_env
    from .config import load_config
    from .log import configure

    configure()
    config = load_config(os.environ.get("OCOP_CONFIG", "config.toml"))
    return create_app(Ocop(config, clock_from_env(config, moving=True)), prepare=True)


def prepared(ocop: Ocop) -> None:
    """A server process, before its first request: builds what every write needs (the engine,
    each workflow's state machine), then leaves every object it holds by then out of the garbage
    collector's full passes (``gc.freeze``).

    Built by the first requests instead, they held up the first advance 40-50 ms, and the 16
    first advances of bench/api.py with it. A full pass walked every tracked object, some
    115,000 once the app is built, and took 80-150 ms on the development machine in the middle
    of a request: under bench/api.py one came every few hundred advances and held up all 16
    clients at once (their p99), and cost the server a tenth of a millisecond per request. These
    objects live as long as the process; what requests make is still collected as before. A
    database not ready or a workflow that does not load is left to the requests (and
    ``/readyz``) to report. Not for every ``create_app``: a test process building apps must keep
    collecting what its earlier tests left."""
    import gc

    from .machine import machine_for

    try:
        ocop.engine  # noqa: B018 (built on first use)
        for workflow in ocop.registry.loadable():
            machine_for(workflow)
    except OcopError:
        pass
    gc.freeze()
