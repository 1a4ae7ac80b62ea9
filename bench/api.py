"""How fast ``ocop serve`` answers: 16 concurrent clients, on SQLite and on PostgreSQL.

Run it from the project folder::

    .venv/bin/python bench/api.py              # SQLite, and PostgreSQL when OCOP_TEST_POSTGRES_URL
    .venv/bin/python bench/api.py --quick      # fewer requests, a smoke check
    .venv/bin/python bench/api.py --workers 2  # ocop serve --workers 2 (default: one process)
    .venv/bin/python bench/api.py --no-sqlite  # PostgreSQL only (--no-postgres: SQLite only)

For each database: a fresh one (an SQLite file in a temporary folder; a fresh schema on the
PostgreSQL server ``OCOP_TEST_POSTGRES_URL`` names) is brought up with ``migrate.upgrade`` and
filled with dossiers through the facade; one ``ocop serve --port 0`` subprocess serves it; a
bearer token is made for a commune officer. Then 16 clients, each on its own keep-alive
connection, send all at once:

* ``GET /api/v1/dossiers/{id}`` on dossiers picked at random — p50 and p99 latency;
* the same GETs from one client alone — p50 without queueing behind the others;
* ``POST /api/v1/dossiers/{id}/advance`` ``accept_idea`` with ``expect_version`` on dossiers of
  their own — p50 and p99 latency, and advances per second over the wall time of the phase.

The clients (``--client raw``, the default) are one asyncio loop in this process writing each
request as bytes and reading the answer by its ``Content-Length``: a few tens of microseconds
per request, so they leave the 2 cores to the server. ``--client httpx`` is the earlier client,
16 threads of ``httpx.Client``, whose own work and GIL contention sat inside every latency.
Either way a latency is what the client saw, queueing included.

The server's CPU time (user + system, from /proc, worker processes included) per request of
each phase is printed too: unlike latencies it hardly moves with whatever else runs on the
machine, so it is the figure to compare across runs.

In the same run, before the server starts, the engine's own rate is measured in this process:
the same ``accept_idea`` through ``Ocop.advance`` on as many other dossiers, one after another.
``ratio`` = server advances/s ÷ engine advances/s: the share of the engine's speed that HTTP,
authentication, JSON and concurrency leave.

One server process is the default: on the 2 cores of the development machine, shared with the
clients, the database and other work, a second one helped little (README, Benchmarks). The first
line printed says how many processes served, and each figure's line the load average.

Targets (the issue): GET p50 < 10 ms, advance p50 < 25 ms, ratio >= 0.5.
Figures are printed as they come; the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# bench/transitions.py would shadow the state-machine library of the same name.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
CLIENTS = 16
CONFIG = """
[database]
url = "sqlite:///unused.db"

[engine]
workflows_dir = "{workflows}"
default_workflow = "ocop-1489"

[clock]
allow_override = true

[notifications]
channels = ["file"]

[notifications.file]
path = "outbox.jsonl"

[users.lan]
name = "Nguyễn Thị Lan"
roles = ["commune_officer"]
communes = ["Ia Le"]
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def server(root: Path, env: dict[str, str], workers: int = 1) -> Iterator[str]:
    """One ``ocop serve --port 0``; its log goes to a file, shown if the bench fails."""
    log = root / "serve.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ocop_workflow",
                "serve",
                "--port",
                "0",
                "--workers",
                str(workers),
            ],
            env=env,
            cwd=root,
            stderr=err,
            stdout=subprocess.DEVNULL,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not log.read_text().startswith("serving on ") or "\n" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ocop serve did not start: {log.read_text()}")
            time.sleep(0.05)
        yield log.read_text().splitlines()[0].split()[2], process.pid
    except BaseException:
        print(f"ocop serve's log (last lines):\n{log.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of the server process and its worker processes so far, from
    /proc (None elsewhere). Divided by the requests of a phase, it is what one request costs
    the server, whatever else loads the machine — unlike a latency."""
    try:
        pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
        ticks = 0
        for one in pids:
            fields = Path(f"/proc/{one}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, ValueError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_per_request(pid: int, before: float | None, requests: int) -> float | None:
    after = cpu_seconds(pid)
    if before is None or after is None:
        return None
    return round((after - before) / requests * 1000, 3)


def wait_ready(base: str, token: str) -> None:
    """Worker processes answer a moment after the socket listens."""
    import httpx

    deadline = time.monotonic() + 60
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            got = httpx.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            if got.status_code == 200:
                return
            last = f"{got.status_code} {got.text[:300]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    raise RuntimeError(f"ocop serve did not answer within a minute: {last}")


def run_clients(work: list[list[Any]], call: dict[str, Any]) -> tuple[list[float], float]:
    """Each client does its own list at once; returns every latency and the wall time."""
    if call["client"] == "httpx":
        return _httpx_clients(work, call)
    return asyncio.run(_raw_clients(work, call))


async def _raw_clients(work: list[list[Any]], call: dict[str, Any]) -> tuple[list[float], float]:
    """One asyncio loop in this process drives every client: one keep-alive HTTP/1.1 connection
    each, requests written as bytes and responses read by ``Content-Length``. A client costs a
    few tens of microseconds per request here, so the client side takes little of the 2 cores
    the server needs (16 threads of ``httpx`` spent their own time and fought over the GIL)."""
    host, _, port = call["url"].removeprefix("http://").rpartition(":")
    headers = "".join(f"{k}: {v}\r\n" for k, v in call["headers"].items())
    latencies: list[list[float]] = [[] for _ in work]
    errors: list[str] = []
    start = asyncio.Barrier(len(work) + 1)

    async def exchange(reader: Any, writer: Any, method: str, path: str, body: Any) -> bytes:
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        writer.write(head.encode() + b"\r\n" + payload)
        status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        length = next(
            (
                int(v)
                for k, _, v in (x.partition(":") for x in lines)
                if k.lower() == "content-length"
            ),
            None,
        )
        if length is None:
            raise RuntimeError(f"no Content-Length in the answer to {method} {path}")
        answer = await reader.readexactly(length)
        status = int(status_line.split()[1])
        if status >= 400:
            errors.append(f"{status} {answer[:200]!r}")
        return answer

    async def client(n: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            await exchange(reader, writer, "GET", "/healthz", None)  # connected before the clock
            await start.wait()
            for item in work[n]:
                method, path, body = call["request"](item)
                t0 = time.perf_counter()
                await exchange(reader, writer, method, path, body)
                latencies[n].append(time.perf_counter() - t0)
        finally:
            writer.close()

    tasks = [asyncio.create_task(client(n)) for n in range(len(work))]
    await start.wait()
    t0 = time.perf_counter()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    return [x for per in latencies for x in per], wall


def _httpx_clients(work: list[list[Any]], call: dict[str, Any]) -> tuple[list[float], float]:
    """The earlier client: one thread and one ``httpx.Client`` (keep-alive) per client."""
    import httpx

    latencies: list[list[float]] = [[] for _ in work]
    errors: list[str] = []
    start = threading.Barrier(len(work) + 1)

    def client(n: int) -> None:
        try:
            with httpx.Client(base_url=call["url"], headers=call["headers"], timeout=60) as http:
                http.get("/healthz")  # connect before the clock starts
                start.wait(timeout=120)
                for item in work[n]:
                    method, path, body = call["request"](item)
                    t0 = time.perf_counter()
                    response = http.request(method, path, json=body)
                    latencies[n].append(time.perf_counter() - t0)
                    if response.status_code >= 400:
                        errors.append(f"{response.status_code} {response.text[:200]}")
        except Exception as exc:  # a failed client must not leave the others at the barrier
            errors.append(f"{type(exc).__name__}: {exc}")
            start.abort()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(len(work))]
    for thread in threads:
        thread.start()
    with suppress(threading.BrokenBarrierError):
        start.wait(timeout=120)
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    return [x for per in latencies for x in per], wall


def bench(
    name: str, url: str, gets: int, advances: int, workers: int = 1, client: str = "raw"
) -> dict[str, Any]:
    from ocop_workflow.clock import FixedClock
    from ocop_workflow.config import load_config
    from ocop_workflow.migrate import upgrade
    from ocop_workflow.service import Ocop

    with tempfile.TemporaryDirectory(prefix="ocop-bench-api-") as tmp:
        root = Path(tmp)
        (root / "config.toml").write_text(
            CONFIG.format(workflows=ROOT / "workflows"), encoding="utf-8"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCOP_")}
        env |= {"OCOP_CONFIG": str(root / "config.toml"), "OCOP_DATABASE_URL": url}
        now = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
        env["OCOP_NOW"] = now.isoformat()
        ocop = Ocop(load_config(root / "config.toml", env), FixedClock(now))
        upgrade(ocop.store)
        lan = ocop.user("lan")
        per_client = advances // CLIENTS
        total = per_client * CLIENTS

        def register(n: int) -> list[str]:
            return [
                ocop.register(
                    lan, product=f"Sản phẩm {i}", producer="HTX Cà phê Ia Le", commune="Ia Le"
                ).id
                for i in range(n)
            ]

        t0 = time.perf_counter()
        engine_ids = register(total)
        server_ids = register(total)
        print(f"[{name}] registered {2 * total} dossiers in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        for dossier in engine_ids:
            ocop.advance(lan, dossier, "accept_idea", expect_version=1)
        engine_rate = total / (time.perf_counter() - t0)
        print(f"[{name}] engine: {engine_rate:.0f} advances/s (in process, one after another)")
        token = ocop.create_token("lan", label="bench").token
        ocop.store.dispose()

        with server(root, env, workers) as (base, pid):
            wait_ready(base, token)
            headers = {"Authorization": f"Bearer {token}"}
            rng = random.Random(1489)
            picks = [
                [rng.choice(server_ids) for _ in range(gets // CLIENTS)] for _ in range(CLIENTS)
            ]
            cpu0 = cpu_seconds(pid)
            get_lat, get_wall = run_clients(
                picks,
                {
                    "url": base,
                    "headers": headers,
                    "client": client,
                    "request": lambda d: ("GET", f"/api/v1/dossiers/{d}", None),
                },
            )
            get_cpu = cpu_per_request(pid, cpu0, len(get_lat))
            print(
                f"[{name}] GET dossier: p50 {percentile(get_lat, 0.5) * 1000:.1f} ms, "
                f"p99 {percentile(get_lat, 0.99) * 1000:.1f} ms, "
                f"{len(get_lat) / get_wall:.0f} requests/s, server CPU {get_cpu} ms per request "
                f"(load average {os.getloadavg()[0]:.1f})"
            )
            alone, _ = run_clients(
                [[rng.choice(server_ids) for _ in range(gets // CLIENTS)]],
                {
                    "url": base,
                    "headers": headers,
                    "client": client,
                    "request": lambda d: ("GET", f"/api/v1/dossiers/{d}", None),
                },
            )
            print(
                f"[{name}] GET dossier, one client alone: "
                f"p50 {percentile(alone, 0.5) * 1000:.1f} ms"
            )
            mine = [server_ids[n * per_client : (n + 1) * per_client] for n in range(CLIENTS)]
            cpu0 = cpu_seconds(pid)
            adv_lat, adv_wall = run_clients(
                mine,
                {
                    "url": base,
                    "headers": headers,
                    "client": client,
                    "request": lambda d: (
                        "POST",
                        f"/api/v1/dossiers/{d}/advance",
                        {"trigger": "accept_idea", "expect_version": 1},
                    ),
                },
            )
            adv_cpu = cpu_per_request(pid, cpu0, total)
        server_rate = total / adv_wall
        ratio = server_rate / engine_rate
        print(
            f"[{name}] advance: p50 {percentile(adv_lat, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(adv_lat, 0.99) * 1000:.1f} ms, {server_rate:.0f} advances/s "
            f"= {ratio:.2f}× the engine, server CPU {adv_cpu} ms per advance "
            f"(load average {os.getloadavg()[0]:.1f})"
        )
        return {
            "get_p50_ms": round(percentile(get_lat, 0.5) * 1000, 2),
            "get_p99_ms": round(percentile(get_lat, 0.99) * 1000, 2),
            "get_per_s": round(len(get_lat) / get_wall, 1),
            "get_p50_ms_one_client": round(percentile(alone, 0.5) * 1000, 2),
            "get_server_cpu_ms": get_cpu,
            "advance_p50_ms": round(percentile(adv_lat, 0.5) * 1000, 2),
            "advance_p99_ms": round(percentile(adv_lat, 0.99) * 1000, 2),
            "server_advances_per_s": round(server_rate, 1),
            "engine_advances_per_s": round(engine_rate, 1),
            "ratio": round(ratio, 3),
            "advance_server_cpu_ms": adv_cpu,
            "load_average": round(os.getloadavg()[0], 1),
            "gets": len(get_lat),
            "advances": total,
            "clients": CLIENTS,
        }


def quiet_logs() -> None:
    """The facade logs each transition as a JSON line; the bench sends them nowhere."""
    import structlog

    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=open(os.devnull, "w"))  # noqa: SIM115
    )


def main() -> None:
    quiet_logs()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke check)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--workers", type=int, default=1, help="ocop serve --workers N")
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="raw: one asyncio loop, bytes over keep-alive sockets (default); httpx: the earlier "
        "16 threads of httpx.Client",
    )
    args = parser.parse_args()
    gets, advances = (320, 160) if args.quick else (1600, 800)
    print(
        f"{CLIENTS} clients against ocop serve --workers {args.workers} "
        f"({args.workers} server process{'es' if args.workers > 1 else ''}) on {os.cpu_count()} "
        f"cores shared with the clients, the database and whatever else runs; "
        f"load average {os.getloadavg()[0]:.1f} at the start"
    )
    figures: dict[str, Any] = {"sqlite": None, "postgresql": None}
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="ocop-bench-db-") as tmp:
            figures["sqlite"] = bench(
                "sqlite", f"sqlite:///{tmp}/ocop.db", gets, advances, args.workers, args.client
            )
    pg = os.environ.get("OCOP_TEST_POSTGRES_URL")
    if pg and not args.no_postgres:
        with postgres_schema(pg) as url:
            figures["postgresql"] = bench(
                "postgresql", url, gets, advances, args.workers, args.client
            )
    else:
        print("[postgresql] skipped: set OCOP_TEST_POSTGRES_URL")
    measured = [f for f in figures.values() if f is not None]
    ok = bool(measured) and all(
        f["get_p50_ms"] < 10 and f["advance_p50_ms"] < 25 and f["ratio"] >= 0.5 for f in measured
    )
    figures["targets_met"] = ok
    figures["workers"] = args.workers
    figures["client"] = args.client
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
