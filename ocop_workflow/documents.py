"""Dossier documents: files kept in a content-addressed store, recorded and audited.

A file is stored once under ``<documents dir>/<sha256[:2]>/<sha256>`` whatever its name and however
often it is attached; the dossier records kind, name, size and hash, and the audit trail records the
attachment. ``audit verify`` re-hashes the stored files, so a file swapped on disk is found.
Real dossiers run to 300–500 pages, so files are hashed and copied in chunks, never read whole.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PayloadTooLarge, UsageError
from .inputs import check_file, check_text

if TYPE_CHECKING:  # the engine is handed in: documents, audit, engine and views form no cycle
    from .config import User
    from .engine import Engine

CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


def file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def blob_path(root: Path, sha256: str) -> Path:
    return root / sha256[:2] / sha256


#: Blobs are readable by the service's group (an auditor's ``audit verify`` under another login
#: in that group), never by others; folders likewise. mkstemp's 0600 would lock the auditor out.
BLOB_MODE = 0o640
FOLDER_MODE = 0o750


def _folder(path: Path) -> None:
    """Make ``path`` (and parents) and leave it open to the service group: mkdir's mode is cut
    by the umask (a service's 077 would lock the auditor out), and a folder someone else made
    first — an upload's temporary folder's parent, say — is widened if it is ours."""
    path.mkdir(parents=True, exist_ok=True)
    status = path.stat()
    mode = stat.S_IMODE(status.st_mode)
    if mode & FOLDER_MODE != FOLDER_MODE and status.st_uid == os.geteuid():
        os.chmod(path, mode | FOLDER_MODE)


def store_file(root: Path, source: Path, max_bytes: int | None = None) -> tuple[str, int, bool]:
    """Copy ``source`` into the store, hashing what is copied; (sha256, size, newly stored).

    One pass: the bytes are hashed as they are written to a temporary file in the store, which
    is fsynced and then renamed to the hash's name. A file that changes while it is read is
    stored under the hash of exactly the bytes stored, never under another file's hash. Over
    ``max_bytes`` (``[documents] max_bytes``) is refused (exit 2) with nothing stored.
    """
    limit = max_bytes
    if limit is not None and source.stat().st_size > limit:
        raise PayloadTooLarge(_too_big(source, limit))
    _folder(root)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".incoming-")
    digest = hashlib.sha256()
    size = 0
    try:
        os.fchmod(fd, BLOB_MODE)
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            while chunk := src.read(CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:  # it grew while we read it
                    raise PayloadTooLarge(_too_big(source, limit))
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        sha256 = digest.hexdigest()
        target = blob_path(root, sha256)
        if target.exists():
            Path(tmp).unlink()
            return sha256, size, False
        _folder(target.parent)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha256, size, True


def _too_big(source: Path, limit: int) -> str:
    return (
        f"file {source.name} is larger than [documents] max_bytes "
        f"({limit:,} bytes): nothing was stored"
    )


def attach(engine: Engine, dossier_id: str, actor: User, kind: str, source: Path) -> dict[str, Any]:
    """Store ``source`` and record it on the dossier as a document of ``kind`` (audited).

    Attaching the same content with the same kind again changes nothing.
    """
    from .store import dossier_row

    row = dossier_row(engine.store, dossier_id)
    wf = engine.registry.for_dossier(row)
    if kind not in wf.documents:
        raise UsageError(
            f"unknown document kind '{kind}' (kinds of {wf.name}: {', '.join(wf.documents)})"
        )
    engine.policy.check_attach(actor, row)
    check_text(source.name, "the file name")
    check_file(source)
    limit = engine.config.max_documents
    held = _documents(row)
    if len(held) >= limit:  # full: only the same file again, as "already there", never stored
        same_size = [d for d in held if d.get("kind") == kind and d.get("size") == _size(source)]
        already = _held_copy(same_size, kind, file_digest(source)[0]) if same_size else None
        if already is None:
            raise _full(dossier_id, len(held), limit)
        return {**already, "dossier": dossier_id, "already_attached": True}
    sha256, size, _ = store_file(
        engine.config.documents_dir, source, engine.config.max_document_bytes
    )
    entry = {
        "kind": kind,
        "name": source.name,
        "size": size,
        "sha256": sha256,
        "at": engine.clock().isoformat(),
        "by": actor.key,
    }
    existing = _held_copy(held, kind, sha256)
    if existing is not None:
        return {**existing, "dossier": dossier_id, "already_attached": True}

    def change(locked: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        now_held = data.get("documents", [])
        twin = _held_copy(now_held, kind, sha256)  # checked again under the lock
        if twin is not None:
            raise _AlreadyAttached(twin)
        if len(now_held) >= limit:  # another upload filled it meanwhile
            raise _full(dossier_id, len(now_held), limit)
        data["documents"] = [*data.get("documents", []), entry]
        return data

    try:
        seq, _ = engine.amend(
            dossier_id, actor, "attach", change, reason=f"{kind}: {source.name} ({sha256[:12]})"
        )
    except _AlreadyAttached as already:
        return {**already.document, "dossier": dossier_id, "already_attached": True}
    return {**entry, "dossier": dossier_id, "seq": seq, "already_attached": False}


def _held_copy(held: list[dict[str, Any]], kind: str, sha256: str) -> dict[str, Any] | None:
    """The document of ``kind`` with this content among ``held``, if any."""
    for document in held:
        if document.get("kind") == kind and document.get("sha256") == sha256:
            return document
    return None


def _size(source: Path) -> int:
    return source.stat().st_size


def _full(dossier_id: str, count: int, limit: int) -> UsageError:
    """A document beyond ``[documents] max_per_dossier`` (see config's default)."""
    return UsageError(
        f"dossier {dossier_id} already holds {count} documents, the most "
        f"[documents] max_per_dossier allows ({limit}): it was not recorded"
    )


class _AlreadyAttached(Exception):
    """Raised inside the transaction to leave the dossier untouched (rolled back, nothing new)."""

    def __init__(self, document: dict[str, Any]) -> None:
        super().__init__(document.get("name"))
        self.document = document


def _documents(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    import json

    return list(json.loads(row["data"]).get("documents", []))


def checklist(
    kinds: Mapping[str, str], required: Iterable[str], documents: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """For ``dossier show``: every required kind present or missing, then other attachments."""
    docs = list(documents)
    out = []
    for kind in required:
        held = [d for d in docs if d.get("kind") == kind]
        out.append(
            {
                "kind": kind,
                "label": kinds.get(kind, kind),
                "required": True,
                "present": bool(held),
                "files": [d.get("name") for d in held],
            }
        )
    required_set = set(required)
    others = [str(d.get("kind")) for d in docs if d.get("kind") not in required_set]
    for other in dict.fromkeys(others):
        held = [d for d in docs if d.get("kind") == other]
        out.append(
            {
                "kind": other,
                "label": kinds.get(other, other),
                "required": False,
                "present": True,
                "files": [d.get("name") for d in held],
            }
        )
    return out


def verify_files(root: Path, documents: Iterable[Mapping[str, Any]]) -> list[str]:
    """Problems with the stored files of one dossier: missing, unreadable, or content changed.

    The recorded hash comes from the database, so it is checked to be a SHA-256 before it
    becomes a path (a row edited to ``../../etc/x`` must not make verify read other files).
    """
    problems = []
    for document in documents:
        sha256 = str(document.get("sha256", ""))
        label = f"document {document.get('name')} ({document.get('kind')})"
        if not _SHA256.fullmatch(sha256):
            problems.append(f"{label} records no valid SHA-256")
            continue
        path = blob_path(root, sha256)
        if not path.is_file():
            problems.append(f"{label} is missing")
            continue
        try:
            actual, _ = file_digest(path)
        except OSError as exc:
            problems.append(f"{label} cannot be read: {exc.strerror or exc}")
            continue
        if actual != sha256:
            problems.append(
                f"{label} was altered on disk: sha256 {actual[:12]}… ≠ recorded {sha256[:12]}…"
            )
    return problems
