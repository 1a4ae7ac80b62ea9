"""Every operation of the API by every kind of user: allowed, refused (403), or hidden (404).

One table, written from the documented policy (README "Who may do what, and the trust model",
the API's table in "The server", and ``policy.py``'s docstring) rather than recorded from what
the code answers: a row that disagrees with the code is a finding, not a row to adjust. Each
column is one kind of user of the test config (``conftest.USERS_TOML``, plus a records officer
scoped to one commune, which it lacks) and a request without any token.

The world the table is about: three dossiers ``A-*`` (their ids sort before every other, so a
workflow's first ten ids show them), of which ``P`` is before the province council with one
document. A request that changes a dossier acts on a twin of ``P`` of its own (same producer,
commune and state, so the same people may see it), made ready for the operation (the scores a
close needs), so that no cell's outcome depends on the cells before it, and an allowed cell
really succeeds (2xx) instead of stopping at a guard. Where a dossier is hidden (404), the
answer must be the very one given for a dossier that never existed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_server import NOW, Api, make_api

pytestmark = pytest.mark.filterwarnings("ignore:.*httpx2:DeprecationWarning")

P = "A-coffee-iale"  # HTX Cà phê Ia Le (htx_iale's), Ia Le, before the province council
Q = "A-pepper-iaphang"  # an organisation without a login, Ia Phang, just registered
R = "A-pepper-iale"  # HTX Hồ tiêu Ia Le (htx_other's), Ia Le, just registered
WORLD = frozenset({P, Q, R})
NEVER = "A-never-was"  # the dossier a hidden one must look like
COFFEE = "HTX Cà phê Ia Le"

#: The kind of user missing from the shared test config: a records officer of one commune.
RECORDS_OF_IA_PHANG = """
[users.records_ip]
name = "Văn thư Ia Phang"
roles = ["records_officer"]
communes = ["Ia Phang"]
"""

ANONYMOUS = "anonymous"  # no token at all
#: One user of each kind: officers in and out of the dossiers' commune, the records officers of
#: the province and of another commune, the auditor, the producer of P and another, a
#: council_member on no council, the chair and two members of the council P is before, and
#: the chair and a member of a council it is not before.
USERS = (
    "lan",  # commune_officer, Ia Le
    "tuan",  # commune_officer, Ia Phang
    "dung",  # district_officer, Ia Le and Ia Phang
    "hung",  # province_officer, every commune
    "minh",  # central_officer
    "records",  # records_officer, every commune
    "records_ip",  # records_officer, Ia Phang
    "auditor",
    "htx_iale",  # producer: HTX Cà phê Ia Le
    "htx_other",  # producer: HTX Hồ tiêu Ia Le
    "council",  # council_member of no council
    "chair",  # chair of the province council (tinh)
    "m1",  # member of the province council
    "m2",  # another member of it: may not enter m1's score
    "h1",  # member of the district council
    "h_chair",  # chair of the district council
    ANONYMOUS,
)

#: Which dossiers each person reads (the policy's "read" row): central officers and auditors
#: everything; commune, district, province and records officers their communes; a producer its
#: organisation's; a council member or chair those now before one of their councils.
SEES: dict[str, frozenset[str]] = {
    "lan": frozenset({P, R}),
    "tuan": frozenset({Q}),
    "dung": WORLD,
    "hung": WORLD,
    "minh": WORLD,
    "records": WORLD,
    "records_ip": frozenset({Q}),
    "auditor": WORLD,
    "htx_iale": frozenset({P}),
    "htx_other": frozenset({R}),
    "council": frozenset(),
    "chair": frozenset({P}),
    "m1": frozenset({P}),
    "m2": frozenset({P}),
    "h1": frozenset(),
    "h_chair": frozenset(),
}
READS_P = tuple(u for u, seen in SEES.items() if P in seen)
#: Who reads every dossier of every commune: the province-wide reads (the audit trail, the
#: reports) are theirs alone, since a partial reader would learn of dossiers it may not see. The
#: district officer reads all three dossiers here, but not every commune's: refused all the same.
READS_ALL = ("hung", "minh", "records", "auditor")
#: Who may register (and import new ideas, and attach) for HTX Cà phê Ia Le in Ia Le: an
#: officer or records officer covering the commune, the producer itself in its communes.
ACTS_FOR_P = ("lan", "dung", "hung", "minh", "records", "htx_iale")


def outcome(
    allowed: Iterable[str], *, status: int = 200, refused: Iterable[str] = ()
) -> dict[str, int]:
    """Each user's status: ``allowed`` get ``status``, ``refused`` 403, the rest of those with
    a token 404 (the dossier is hidden from them), a request without a token 401."""
    may, may_not = set(allowed), set(refused)
    assert not may & may_not and may | may_not <= set(USERS) - {ANONYMOUS}
    wanted = {user: 404 for user in USERS}
    wanted.update({user: status for user in may} | {user: 403 for user in may_not})
    wanted[ANONYMOUS] = 401
    return wanted


def readers_of_p(allowed: Iterable[str], status: int = 200) -> dict[str, int]:
    """An act on P (or its twin): ``allowed`` may, other readers of P are refused, and those who
    may not read P are told it does not exist."""
    return outcome(allowed, status=status, refused=set(READS_P) - set(allowed))


def everyone_else_refused(allowed: Iterable[str], status: int = 200) -> dict[str, int]:
    """An operation that reveals no one dossier (a new one, a province-wide read): who may
    not is refused, as there is nothing to hide."""
    return outcome(allowed, status=status, refused=set(USERS) - set(allowed) - {ANONYMOUS})


EVERYONE = everyone_else_refused(set(USERS) - {ANONYMOUS})


SCORE = {"a": 30, "b": 20, "c": 22}


def sheet(state: str | None = None) -> Callable[[str], dict[str, Any]]:
    """The upload of a sheet of one new dossier of HTX Cà phê Ia Le in Ia Le (placed in
    ``state``: a records migration)."""
    header, row = "product,producer,commune", f"Cà phê hạt,{COFFEE},Ia Le"
    if state:
        header, row = f"{header},state", f"{row},{state}"
    content = f"{header}\n{row}\n".encode()
    return lambda _user: {"files": {"file": ("y-tuong.csv", content, "text/csv")}}


def register_in(commune: str) -> Callable[[str], dict[str, Any]]:
    body = {"product": "Cà phê bột", "producer": COFFEE, "commune": commune}
    return lambda _user: {"json": body}


def json_body(**body: Any) -> Callable[[str], dict[str, Any]]:
    return lambda _user: {"json": body}


def upload(user: str) -> dict[str, Any]:
    scan = {"file": (f"{user}.pdf", f"bản scan của {user}".encode(), "application/pdf")}
    return {"data": {"kind": "business_plan"}, "files": scan}


def own_score(user: str) -> dict[str, Any]:
    return {"json": {"member": user, **SCORE}}


def page(body: Any) -> set[str]:
    """The dossiers of a page of ``GET /dossiers``, whose total counts nothing hidden."""
    assert body["total"] == len(body["items"]), body["total"]
    return {item["id"] for item in body["items"]}


def dossiers_of(body: Any) -> set[str]:
    """The dossiers of a list of timers or of notifications."""
    return {element["dossier"] for element in body}


def scored_by_the_council(api: Api, dossier: str) -> None:
    """Six of the seven province councillors scored: a round the chair may close."""
    chair = api.ocop.user("chair")
    for member in ("chair", "m1", "m2", "m3", "m4", "m5"):
        api.ocop.score(chair, dossier, member=member, parts=SCORE)


def scored_by_the_chair(api: Api, dossier: str) -> None:
    """One score in the round: something for a re-score to clear."""
    api.ocop.score(api.ocop.user("chair"), dossier, member="chair", parts=SCORE)


@dataclass(frozen=True)
class Op:
    """One operation of the API and who gets what from it.

    ``path`` may name ``{d}`` (the dossier acted on) and ``{sha}`` (P's document); ``request``
    gives the body a user sends, or ``sends`` names the piece of the world that is the body.
    ``own``: each cell acts on a twin of P of its own, made ready by ``prepare``. ``shows``:
    the answer is a list, and each user must find in it exactly the dossiers of the world
    they read."""

    name: str
    method: str
    path: str
    expect: Mapping[str, int]
    request: Callable[[str], dict[str, Any]] = lambda _user: {}
    sends: str | None = None
    own: bool = False
    prepare: Callable[[Api, str], None] | None = None
    shows: Callable[[Any], set[str]] | None = None


D = "/api/v1/dossiers/{d}"
AUDIT = "/api/v1/audit"
REGISTERS_IN_IA_PHANG = ("tuan", "dung", "hung", "minh", "records", "records_ip")
OPERATIONS = (
    # --- one dossier, read: those who read P, and to the rest it does not exist -------------
    Op("show", "GET", D, outcome(READS_P)),
    Op("history", "GET", D + "/history", outcome(READS_P)),
    Op("triggers", "GET", D + "/triggers", outcome(READS_P)),
    Op("download a document", "GET", D + "/documents/{sha}", outcome(READS_P)),
    Op("its timers", "GET", "/api/v1/timers?dossier={d}&all=true", outcome(READS_P)),
    Op("its notifications", "GET", "/api/v1/notifications?dossier={d}", outcome(READS_P)),
    Op("verify its chain", "GET", AUDIT + "/verify?dossier={d}", everyone_else_refused(READS_ALL)),
    # --- one dossier, acted on: the act's own rule among those who read it --------------------
    Op(
        "withdraw",  # producer, commune, province and central officers, covering the commune
        "POST",
        D + "/advance",
        readers_of_p({"lan", "hung", "minh", "htx_iale"}),
        json_body(trigger="withdraw", reason="Rút hồ sơ"),
        own=True,
    ),
    Op("upload", "POST", D + "/documents", readers_of_p(ACTS_FOR_P, 201), upload, own=True),
    Op(
        "score oneself",
        "POST",
        D + "/scores",
        readers_of_p({"chair", "m1", "m2"}),
        own_score,
        own=True,
    ),
    Op(
        "score m1",  # the member themself or the chair
        "POST",
        D + "/scores",
        readers_of_p({"chair", "m1"}),
        json_body(member="m1", **SCORE),
        own=True,
    ),
    Op(
        "close",
        "POST",
        D + "/scoring/close",
        readers_of_p({"chair"}),
        json_body(),
        own=True,
        prepare=scored_by_the_council,
    ),
    Op(
        "rescore",
        "POST",
        D + "/scoring/rescore",
        readers_of_p({"chair"}),
        json_body(reason="Nhập nhầm điểm"),
        own=True,
        prepare=scored_by_the_chair,
    ),
    # --- new dossiers: nothing to hide, so a refusal is a refusal --------------------------
    Op(
        "register in Ia Le",
        "POST",
        "/api/v1/dossiers",
        everyone_else_refused(ACTS_FOR_P, 201),
        register_in("Ia Le"),
    ),
    Op(
        "register in Ia Phang",  # the producer itself only in its own communes
        "POST",
        "/api/v1/dossiers",
        everyone_else_refused(REGISTERS_IN_IA_PHANG, 201),
        register_in("Ia Phang"),
    ),
    Op("import a new idea", "POST", "/api/v1/imports", everyone_else_refused(ACTS_FOR_P), sheet()),
    Op(
        "import mid-cycle",  # a records migration: a records officer covering the commune
        "POST",
        "/api/v1/imports",
        everyone_else_refused({"records"}),
        sheet("evaluation_province"),
    ),
    # --- lists: everyone may ask, and is shown what they may see ------------------------------
    Op("list dossiers", "GET", "/api/v1/dossiers?limit=1000", EVERYONE, shows=page),
    Op("list timers", "GET", "/api/v1/timers?all=true", EVERYONE, shows=dossiers_of),
    Op("list notifications", "GET", "/api/v1/notifications", EVERYONE, shows=dossiers_of),
    Op(
        "show a workflow",
        "GET",
        "/api/v1/workflows/ocop-1489",
        EVERYONE,
        shows=lambda body: set(body["dossier_ids"]),
    ),
    Op("list workflows", "GET", "/api/v1/workflows", EVERYONE),
    Op("diagram", "GET", "/api/v1/workflows/ocop-1489/diagram?format=mermaid", EVERYONE),
    Op("me", "GET", "/api/v1/me", EVERYONE),
    # --- the province's reads: for those who read every dossier ---------------------------------
    Op("progress", "GET", "/api/v1/reports/progress?year=2026", everyone_else_refused(READS_ALL)),
    Op("html report", "GET", "/api/v1/reports/html?year=2026", everyone_else_refused(READS_ALL)),
    Op("verify", "GET", AUDIT + "/verify", everyone_else_refused(READS_ALL)),
    Op(
        "verify a checkpoint",
        "POST",
        AUDIT + "/verify",
        everyone_else_refused(READS_ALL),
        sends="checkpoint",
    ),
    Op(
        "verify a body it cannot parse",  # refused before the body is read
        "POST",
        AUDIT + "/verify",
        everyone_else_refused(READS_ALL, 422),
        lambda _user: {"content": b'{"checkpoints": ['},
    ),
    Op("export", "GET", AUDIT + "/export?format=jsonl", everyone_else_refused(READS_ALL)),
    Op("export CSV", "GET", AUDIT + "/export?format=csv", everyone_else_refused(READS_ALL)),
    # last: it revokes the token the other rows used
    Op("logout", "POST", "/api/v1/logout", EVERYONE),
)


def twin(op: Op, user: str) -> str:
    return f"X-{op.name.replace(' ', '-')}-{user}"


def world(api: Api, tmp_path: Path) -> dict[str, Any]:
    """P, Q and R; P's document; a twin of P for each cell of an act; timers fired so that the
    outbox holds notifications; a signed checkpoint of the trail. What the paths and bodies of
    the table need."""
    from ocop_workflow import checkpoint
    from ocop_workflow.clock import ManualClock

    twins = [twin(op, user) for op in OPERATIONS if op.own for user in USERS]
    rows = "".join(f"{d},Cà phê,{COFFEE},Ia Le,evaluation_province\n" for d in [P, *twins])
    imported = api.post(
        "/api/v1/imports",
        "records",
        files={"file": ("ho-so.csv", f"id,product,producer,commune,state\n{rows}".encode())},
    )
    assert imported.status_code == 200, imported.text
    api.register("tuan", id=Q, commune="Ia Phang", producer="HTX Nông nghiệp Ia Phang")
    api.register("htx_other", id=R, producer="HTX Hồ tiêu Ia Le", product="Hồ tiêu")
    document = api.upload(P, "htx_iale", "business_plan", "ke-hoach.pdf", b"%PDF-1.4 ke hoach")
    assert document.status_code == 201, document.text
    # the reminders of all three fall before this: each dossier gets notifications
    api.ocop.at(ManualClock(NOW + timedelta(days=37))).sweep()
    for op in OPERATIONS:
        if op.prepare is not None:
            for user in USERS:
                op.prepare(api, twin(op, user))
    public = checkpoint.keygen(tmp_path / "keys" / "audit.pem")
    signed = checkpoint.build(api.ocop.store, tmp_path / "keys" / "audit.pem", NOW)
    return {
        "sha": document.json()["sha256"],
        "checkpoint": {"checkpoints": [signed], "public_key": public.read_text(encoding="utf-8")},
    }


@pytest.fixture
def api(tmp_path: Path, db_url: str, request: pytest.FixtureRequest) -> Api:
    made = make_api(tmp_path, db_url, extra=RECORDS_OF_IA_PHANG)
    request.addfinalizer(made.ocop.store.dispose)
    return made


def send(api: Api, op: Op, user: str, dossier: str, given: Mapping[str, Any]) -> Any:
    path = op.path.format(d=dossier, sha=given["sha"])
    request = {"json": given[op.sends]} if op.sends else op.request(user)
    token = None if user == ANONYMOUS else user
    return api.post(path, token, **request) if op.method == "POST" else api.get(path, token)


ERROR_CODES = {401: "unauthenticated", 403: "permission_denied", 404: "not_found", 422: "usage"}


def error_code(response: Any) -> str | None:
    """The error body's code (None for an answer): a refusal must say what it is."""
    if response.is_success:
        return None
    body = response.json()
    assert set(body) <= {"error", "report"}, response.text  # an import's report beside it
    return str(body["error"]["code"])


@pytest.mark.slow(5)
def test_every_operation_by_every_kind_of_user_is_allowed_refused_or_hidden(
    api: Api, tmp_path: Path
) -> None:
    """The whole table at once, every difference reported: (operation, user) → status, and
    what each list shows. A refusal names its error code; a hidden dossier is answered word
    for word as one that never existed, so nobody learns that it does."""
    given = world(api, tmp_path)
    seen: dict[tuple[str, ...], Any] = {}
    wanted: dict[tuple[str, ...], Any] = {}
    for op in OPERATIONS:
        for user in USERS:
            dossier = twin(op, user) if op.own else P
            response = send(api, op, user, dossier, given)
            status = response.status_code
            seen[(op.name, user)] = (status, error_code(response))
            wanted[(op.name, user)] = (op.expect[user], ERROR_CODES.get(op.expect[user]))
            if status == 404:
                never = send(api, op, user, NEVER, given)
                told = response.text.replace(dossier, NEVER)
                seen[(op.name, user, "as if it never was")] = (never.status_code, never.text)
                wanted[(op.name, user, "as if it never was")] = (404, told)
            if op.shows is not None and status == 200:
                seen[(op.name, user, "shows")] = sorted(op.shows(response.json()) & WORLD)
                wanted[(op.name, user, "shows")] = sorted(SEES[user])
    differences = {
        key: f"{seen.get(key)}, not {wanted.get(key)}"
        for key in seen.keys() | wanted.keys()
        if seen.get(key) != wanted.get(key)
    }
    assert not differences, "\n".join(f"{k}: {v}" for k, v in sorted(differences.items()))


def test_the_table_has_a_row_for_every_route_of_the_api(tmp_path: Path, sqlite_url: str) -> None:
    """A route added to the server without its row here would be checked for nobody: each row
    is sent to the route the app itself would choose, and every route needing a token must be
    chosen by one (the login, /healthz and /readyz are for anyone)."""
    from starlette.routing import Match, Route

    app = make_api(tmp_path, sqlite_url)
    app.ocop.store.dispose()  # only the routes are read
    routes = [r for r in app.client.app.routes if isinstance(r, Route)]

    def route_of(method: str, path: str) -> str:
        scope = {"type": "http", "method": method, "path": path.partition("?")[0]}
        chosen = next(r for r in routes if r.matches(scope)[0] == Match.FULL)
        return f"{method} {chosen.path}"

    rows = {route_of(op.method, op.path.format(d=P, sha="0" * 64)) for op in OPERATIONS}
    every = {f"{m} {r.path}" for r in routes if r.path.startswith("/api/") for m in r.methods}
    assert every - rows == {"POST /api/v1/login"}
