"""Failed logins are counted by the client's real address, also behind a reverse proxy, and
the table of failures stays about one window long whatever floods it.

Real requests against the app (FastAPI's TestClient, the peer's address set per client), on
SQLite and PostgreSQL; the default (no trusted proxy) is also checked on a real ``ocop serve``,
where uvicorn itself used to believe ``X-Forwarded-For`` from 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import Workspace, serving, write_config
from test_server import NOW, Api, make_api

pytestmark = pytest.mark.filterwarnings("ignore:.*httpx2:DeprecationWarning")

PROXIES = '[server]\ntrusted_proxies = ["10.0.0.0/8", "192.0.2.1"]\n'


@pytest.fixture
def behind(tmp_path: Path, db_url: str) -> Iterator[Api]:
    made = make_api(tmp_path, db_url, extra=PROXIES)
    try:
        yield made
    finally:
        made.ocop.store.dispose()


def peer(api: Api, address: str) -> Any:
    """A client whose TCP peer address the app sees as ``address``."""
    from fastapi.testclient import TestClient

    return TestClient(api.client.app, client=(address, 50000))


def fail(client: Any, user: str, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    sent = client.post(
        "/api/v1/login", json={"user": user, "password": "sai mật khẩu"}, headers=headers
    )
    return int(sent.status_code)


def counted(api: Api) -> list[str]:
    """The addresses of the failed logins on file, oldest first."""
    from ocop_workflow.store import login_failure_t

    with api.ocop.store.read() as conn:
        query = sa.select(login_failure_t.c.address).order_by(login_failure_t.c.id)
        return list(conn.execute(query).scalars())


def test_behind_a_trusted_proxy_failures_count_by_the_forwarded_address(behind: Api) -> None:
    proxy = peer(behind, "10.1.2.3")
    # five different names: only the address counter can trip
    assert [fail(proxy, f"khach{i}", "203.0.113.7") for i in range(5)] == [401] * 5
    assert fail(proxy, "khach9", "203.0.113.7") == 429
    # another client behind the same proxy is not punished for the first one's guesses
    assert fail(proxy, "khach10", "203.0.113.8") == 401
    assert counted(behind) == ["203.0.113.7"] * 5 + ["203.0.113.8"]


def test_the_right_most_untrusted_address_counts_not_what_the_client_wrote(behind: Api) -> None:
    proxy = peer(behind, "192.0.2.1")
    # the client wrote 198.51.100.1; its proxy appended 203.0.113.9; an inner proxy 10.0.0.3
    for i in range(5):
        assert fail(proxy, f"khach{i}", f"198.51.100.{i + 1}, 203.0.113.9, 10.0.0.3") == 401
    assert fail(proxy, "khach9", "198.51.100.99, 203.0.113.9, 10.0.0.3") == 429
    assert set(counted(behind)) == {"203.0.113.9"}


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(behind: Api) -> None:
    attacker = peer(behind, "203.0.113.50")
    # a fresh made-up address each time: it would never be throttled if the header counted
    for i in range(5):
        assert fail(attacker, f"khach{i}", f"198.51.100.{i}") == 401
    assert fail(attacker, "khach9", "198.51.100.200") == 429
    assert set(counted(behind)) == {"203.0.113.50"}


def test_a_trusted_proxy_reaching_a_dual_stack_socket_is_trusted_for_its_forwarded_address(
    behind: Api,
) -> None:
    """``ocop serve --host ::`` sees an IPv4 proxy as ``::ffff:10.1.2.3``. It is the trusted
    proxy for forwarded addresses as it is for the sign-on header: its clients are counted by
    their own addresses, not all as the proxy's (five guesses would then lock everyone out)."""
    proxy = peer(behind, "::ffff:10.1.2.3")
    assert [fail(proxy, f"khach{i}", "203.0.113.7") for i in range(5)] == [401] * 5
    assert fail(proxy, "khach10", "203.0.113.8") == 401
    assert counted(behind) == ["203.0.113.7"] * 5 + ["203.0.113.8"]


def test_ipv4_clients_of_a_dual_stack_socket_are_counted_each_by_its_own_address(
    tmp_path: Path, db_url: str
) -> None:
    """Without proxies too: ``::ffff:203.0.113.7`` is 203.0.113.7. Counted as IPv6, every IPv4
    client would share the one /64 (``::/64``), and five guesses would lock out them all."""
    api = make_api(tmp_path, db_url)
    try:
        for i in range(5):
            assert fail(peer(api, "::ffff:203.0.113.7"), f"khach{i}") == 401
        assert fail(peer(api, "::ffff:203.0.113.7"), "khach9") == 429
        assert fail(peer(api, "::ffff:198.51.100.9"), "khach10") == 401
        assert counted(api) == ["203.0.113.7"] * 5 + ["198.51.100.9"]
    finally:
        api.ocop.store.dispose()


def test_ipv6_guessers_are_counted_by_their_64_network(behind: Api) -> None:
    """One subscriber holds a whole /64: rotating addresses inside it must not reset the count."""
    for i in range(5):
        assert fail(peer(behind, f"2001:db8:aa:bb::{i + 1}"), f"khach{i}") == 401
    assert fail(peer(behind, "2001:db8:aa:bb:ffff::9"), "khach9") == 429
    assert fail(peer(behind, "2001:db8:aa:cc::1"), "khach10") == 401  # another /64
    assert counted(behind) == ["2001:db8:aa:bb::/64"] * 5 + ["2001:db8:aa:cc::/64"]


def test_failed_logins_older_than_the_window_are_purged(tmp_path: Path, db_url: str) -> None:
    """Every failure forgets those that no longer count: a steady stream of guesses under
    random names (none throttled: each name once, each address under the limit) leaves about
    one window of rows, not one row per guess forever."""
    api = make_api(tmp_path, db_url, extra="[server]\nlogin_window_seconds = 60\n")
    try:
        sizes = []
        for i in range(10):  # the steady state (3 rows) is reached by the fourth
            api.ocop.clock.instant = NOW + timedelta(seconds=20 * i)
            client = peer(api, f"198.51.100.{i}")
            assert fail(client, f"ten-ngau-nhien-{i}") == 401
            sizes.append(len(counted(api)))
        # 60 s window, one failure every 20 s: the three still counting, and the new one
        assert max(sizes) <= 4 and sizes[-1] == 3, sizes
    finally:
        api.ocop.store.dispose()


def test_the_purge_keeps_every_failure_still_counting(tmp_path: Path, db_url: str) -> None:
    api = make_api(tmp_path, db_url)
    try:
        guesser = peer(api, "198.51.100.7")
        for minute in (0, 10):
            api.ocop.clock.instant = NOW + timedelta(minutes=minute)
            assert fail(guesser, "lan") == 401
        # 16 minutes in: the first (minute 0) is out of the 15-minute window, the second is not
        api.ocop.clock.instant = NOW + timedelta(minutes=16)
        assert fail(peer(api, "198.51.100.8"), "tuan") == 401
        assert counted(api) == ["198.51.100.7", "198.51.100.8"]
        for _ in range(4):
            assert fail(guesser, "lan") == 401
        # minute 10's failure still counts: these four make five in the window (had it been
        # purged, this would be a fifth attempt, 401)
        assert fail(guesser, "lan") == 429
    finally:
        api.ocop.store.dispose()


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ('["10.0.0.1/8"]', "'10.0.0.1/8' is not an IP address or network"),
        ('["10.0.0.0/33"]', "'10.0.0.0/33' is not an IP address or network"),
        ('["proxy.tinh.gov.vn"]', "'proxy.tinh.gov.vn' is not an IP address or network"),
        ('"10.0.0.1"', "must be a list of strings"),
    ],
)
def test_a_bad_trusted_proxies_entry_is_exit_1_naming_it(
    tmp_path: Path, value: str, said: str
) -> None:
    write_config(tmp_path, extra=f"[server]\ntrusted_proxies = {value}\n")
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    result = ws.run("dossier", "list", user="lan")
    assert result.code == 1, result
    (line,) = result.stderr.strip().splitlines()
    assert "server.trusted_proxies" in line and said in line, line


def test_a_single_sign_on_header_without_trusted_proxies_is_exit_1(tmp_path: Path) -> None:
    write_config(tmp_path, extra='[server]\ntrusted_user_header = "X-Remote-User"\n')
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    result = ws.run("dossier", "list", user="lan")
    assert result.code == 1, result
    assert "server.trusted_proxies" in result.stderr and "Traceback" not in result.stderr


def test_a_real_server_without_trusted_proxies_ignores_forwarded_for_from_127_0_0_1(
    sqlite_workspace: Workspace,
) -> None:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 unless told not to: any process on the
    server machine (or a proxy that passes the header through) could then pick a fresh address
    for every guess."""
    import httpx

    ws = sqlite_workspace
    with serving(ws) as server:
        url = server.url
        with httpx.Client(base_url=url, timeout=60) as http:
            codes = [
                http.post(
                    "/api/v1/login",
                    json={"user": f"khach{i}", "password": "sai mật khẩu"},
                    headers={"X-Forwarded-For": f"198.51.100.{i}"},
                ).status_code
                for i in range(6)
            ]
        assert codes == [401] * 5 + [429]
        engine = sa.create_engine(ws.url)
        with engine.connect() as conn:
            found = set(conn.execute(sa.text("SELECT address FROM login_failure")).scalars())
        engine.dispose()
        assert found == {"127.0.0.1"}
