"""The README's database roles, run against a real PostgreSQL: what they allow and refuse.

The grants are taken from README.md itself (the second ```sql block of "Database roles"), with
the role names made unique for this test and ``public`` replaced by the test's own schema.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import ROOT, Workspace, postgres_base_url, write_config

pytestmark = pytest.mark.postgres
T0 = "2026-03-02T09:00:00+07:00"


def readme_grants() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Database roles (PostgreSQL)") :]
    blocks = re.findall(r"```sql\n(.*?)```", section, flags=re.S)
    return [s.strip() for s in blocks[1].split(";") if s.strip()]


@pytest.fixture
def roles(tmp_path: Path) -> Iterator[tuple[str, str, str, str]]:
    """(schema, owner role, app role, base URL): a schema owned by a non-superuser owner."""
    base = postgres_base_url()
    if not base:
        pytest.skip("OCOP_TEST_POSTGRES_URL not set")
    tag = uuid.uuid4().hex[:10]
    schema, owner, app = f"r_{tag}", f"ocop_owner_{tag}", f"ocop_app_{tag}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{owner}" LOGIN'))
        conn.execute(sa.text(f'CREATE ROLE "{app}" LOGIN'))
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{owner}"'))
    try:
        yield schema, owner, app, base
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            for role in (app, owner):
                conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
                conn.execute(sa.text(f'DROP ROLE "{role}"'))
        admin.dispose()


def as_role(base: str, role: str, schema: str) -> str:
    url = sa.engine.make_url(base).set(username=role, password=None)
    rendered = url.render_as_string(hide_password=False)
    sep = "&" if "?" in rendered else "?"
    return f"{rendered}{sep}options=-csearch_path%3D{schema}"


def test_the_readme_roles_let_the_app_work_but_not_touch_the_trail(
    roles: tuple[str, str, str, str], tmp_path: Path
) -> None:
    schema, owner, app, base = roles
    write_config(tmp_path)
    owner_ws = Workspace(tmp_path, as_role(base, owner, schema))
    created = owner_ws.run("init")
    assert created.code == 0, created
    assert "superuser" not in created.stderr  # the owner is not one: no warning
    owner_db = sa.create_engine(owner_ws.url)
    with owner_db.begin() as conn:
        for statement in readme_grants():
            statement = statement.replace("SCHEMA public", f'SCHEMA "{schema}"')
            conn.execute(sa.text(statement.replace("ocop_app", f'"{app}"')))
    owner_db.dispose()

    ws = Workspace(tmp_path, as_role(base, app, schema))
    assert ws.run("init").code == 0  # up to date: the app role's ExecStartPre passes
    register = ws.run(
        "dossier",
        "register",
        "--product",
        "Cà phê bột Ia Le",
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        "--id",
        "OCOP-R-1",
        "--json",
        user="lan",
        now=T0,
    )
    assert register.code == 0, register
    advanced = ws.run("dossier", "advance", "OCOP-R-1", "accept_idea", user="lan", now=T0)
    assert advanced.code == 0, advanced
    assert ws.run("sweep", now=T0).code == 0
    assert ws.run("audit", "verify").code == 0
    token = ws.run("token", "create", "--user", "lan", "--json", now=T0)  # the server's logins
    assert token.code == 0, token

    app_db = sa.create_engine(ws.url)
    try:
        for statement in (
            "UPDATE audit_entry SET actor = 'hung'",
            "DELETE FROM audit_entry",
            "DROP TRIGGER audit_entry_no_change ON audit_entry",
            "ALTER TABLE audit_entry DISABLE TRIGGER ALL",
            "SET session_replication_role = replica",
        ):
            with pytest.raises(sa.exc.DBAPIError) as refused, app_db.begin() as conn:
                conn.execute(sa.text(statement))
            assert "permission denied" in str(refused.value) or "must be owner" in str(
                refused.value
            ), statement
    finally:
        app_db.dispose()
    assert ws.run("audit", "verify").code == 0


def test_init_warns_as_a_superuser(roles: tuple[str, str, str, str], tmp_path: Path) -> None:
    schema, _, _, base = roles
    write_config(tmp_path)
    sep = "&" if "?" in base else "?"
    ws = Workspace(tmp_path, f"{base}{sep}options=-csearch_path%3D{schema}")
    result = ws.run("init")
    assert result.code == 0, result
    warnings = [line for line in result.stderr.splitlines() if "superuser" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: "), result
