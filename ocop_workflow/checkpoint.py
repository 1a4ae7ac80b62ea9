"""Signed checkpoints: the audit chains' heads, anchored outside the database.

A hash chain proves that nobody changed history *without recomputing the chain*; someone with
write access to the database can recompute it, cut its last entries or delete a dossier with
its history, and the chain is consistent again. A checkpoint records every chain head (dossier,
seq, hash) at one instant, with a root hash over them, signed with an Ed25519 key that the
database does not hold. Copies kept elsewhere (an auditor's mailbox, another machine) then
prove what the trail was: ``audit verify --checkpoint`` names each dossier whose chain no longer
extends the head a checkpoint saw.

The file is canonical JSON (sorted keys) of the body plus ``signature`` (base64 Ed25519 over the
canonical body), so it can be checked with nothing but the public key (``--verify-only``).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .audit import ANCHORS_DISAGREE, canonical, iso_utc
from .errors import AuditFailure, UsageError
from .inputs import json_document, read_small_file
from .store import Store, audit_t

FORMAT = "ocop-audit-checkpoint/1"
#: A PEM key is a few hundred bytes.
KEY_MAX_BYTES = 64 << 10
#: About 150 bytes a chain: 256 MiB is over a million dossiers. A FIFO or /dev/zero is refused.
CHECKPOINT_MAX_BYTES = 256 << 20


# --- keys -----------------------------------------------------------------------------------


def public_key_path(private: Path) -> Path:
    """Where ``keygen`` writes the public half: ``audit.pem`` → ``audit.pub.pem``."""
    return private.with_name(private.stem + ".pub" + (private.suffix or ".pem"))


def keygen(private: Path) -> Path:
    """A new Ed25519 key pair: the private key 0600 (never overwritten), the public key beside."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = public_key_path(private)
    try:
        private.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{private} exists: a signing key is never overwritten") from None
    except OSError as exc:
        raise UsageError(f"cannot write {private}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return public


def _load_private(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = read_small_file(path, "signing key", KEY_MAX_BYTES, missing=UsageError)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise UsageError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an Ed25519 key (create one with `ocop audit keygen`)")
    return key


def load_public(path: Path) -> Any:
    """An Ed25519 public key from a PEM file, or the public half of a private key file."""
    data = read_small_file(path, "public key", KEY_MAX_BYTES, missing=UsageError)
    return public_from_pem(data, str(path))


def public_from_pem(data: bytes, where: str) -> Any:
    """An Ed25519 public key from PEM text (or the public half of a PEM private key), else
    :class:`UsageError` naming ``where`` (a file, or the API request's ``public_key``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise UsageError(f"{where} is not a PEM Ed25519 key") from None
        if isinstance(key, Ed25519PrivateKey):
            key = key.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{where} is not an Ed25519 key")
    return key


def key_id(public: Any) -> str:
    """A short name for a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# --- writing --------------------------------------------------------------------------------


def heads(store: Store) -> list[dict[str, Any]]:
    """Every chain's newest entry, in byte order of dossier id (one grouped query)."""
    byte_order = "C" if store.dialect == "postgresql" else "BINARY"
    newest = (
        sa.select(audit_t.c.dossier_id, sa.func.max(audit_t.c.seq).label("seq"))
        .group_by(audit_t.c.dossier_id)
        .subquery()
    )
    query = (
        sa.select(audit_t.c.dossier_id, audit_t.c.seq, audit_t.c.hash)
        .join(
            newest,
            sa.and_(audit_t.c.dossier_id == newest.c.dossier_id, audit_t.c.seq == newest.c.seq),
        )
        .order_by(audit_t.c.dossier_id.collate(byte_order))
    )
    with store.read() as conn:
        return [
            {"dossier": row.dossier_id, "seq": row.seq, "hash": row.hash}
            for row in conn.execute(query)
        ]


def root_hash(chain_heads: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 over the canonical JSON of the heads: one value to compare two checkpoints."""
    return hashlib.sha256(canonical({"heads": list(chain_heads)})).hexdigest()


def build(store: Store, signing_key: Path, now: datetime) -> dict[str, Any]:
    """A signed checkpoint document of the database's chains as they are now."""
    key = _load_private(signing_key)
    chain_heads = heads(store)
    body = {
        "format": FORMAT,
        "created_at": iso_utc(now),
        "count": len(chain_heads),
        "entries": sum(h["seq"] for h in chain_heads),
        "root": root_hash(chain_heads),
        "key_id": key_id(key.public_key()),
        "heads": chain_heads,
    }
    signature = key.sign(canonical(body))
    return {**body, "signature": base64.b64encode(signature).decode("ascii")}


def text_of(document: Mapping[str, Any]) -> str:
    """The file's text: canonical JSON plus a newline (the same bytes on every machine)."""
    return canonical(dict(document)).decode("utf-8") + "\n"


def write(document: Mapping[str, Any], path: Path) -> None:
    """Write to a temporary file beside ``path`` (a fresh name, never one an intruder could
    have planted as a symlink), fsync, rename: never a half checkpoint. A path that cannot be
    written (a file where a folder should be, a folder where the file should be, no
    permission) is a usage error naming it."""
    import tempfile

    from .outputs import rename_target

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "is a folder")
        path, direct = rename_target(path)
        if direct:
            path.write_text(text_of(document), encoding="utf-8")
            return
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o644)  # a checkpoint is public: it is sent to auditors
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text_of(document))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- reading and checking -------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose signature was checked."""

    path: str
    created_at: str
    count: int
    root: str
    key_id: str
    heads: tuple[tuple[str, int, str], ...]

    def document(self) -> dict[str, Any]:
        """What ``checkpoint --verify-only --json`` and ``audit verify`` say of it."""
        return {
            "file": self.path,
            "created_at": self.created_at,
            "count": self.count,
            "root": self.root,
            "key_id": self.key_id,
        }


def read(path: Path, public: Any) -> Checkpoint:
    """Load ``path`` and check its signature and root; :class:`AuditFailure` when they fail."""
    raw = read_small_file(path, "checkpoint", CHECKPOINT_MAX_BYTES, missing=UsageError)
    document = json_document(raw, f"checkpoint {path} (damaged or not a checkpoint)", AuditFailure)
    return check(document, str(path), public)


def check(document: Any, where: str, public: Any) -> Checkpoint:
    """A checkpoint document (parsed JSON: a file's, or one sent to the API) whose signature and
    root hold; :class:`AuditFailure` naming ``where`` when they do not."""
    from cryptography.exceptions import InvalidSignature

    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise AuditFailure(f"checkpoint {where} is not an {FORMAT} file")
    body = {k: v for k, v in document.items() if k != "signature"}
    try:
        signature = base64.b64decode(str(document.get("signature", "")), validate=True)
        public.verify(signature, canonical(body))
    except (InvalidSignature, ValueError, TypeError):
        raise AuditFailure(
            f"checkpoint {where}: bad signature (changed after it was signed, or signed by "
            f"another key than {key_id(public)})"
        ) from None
    try:
        chain_heads = tuple(
            (str(h["dossier"]), int(h["seq"]), str(h["hash"])) for h in body["heads"]
        )
        count = int(body["count"])
    except (KeyError, TypeError, ValueError):
        raise AuditFailure(f"checkpoint {where}: signed but malformed heads") from None
    if count != len(chain_heads) or root_hash(body["heads"]) != body.get("root"):
        raise AuditFailure(f"checkpoint {where}: count or root does not match its heads")
    return Checkpoint(
        path=where,
        created_at=str(body.get("created_at")),
        count=count,
        root=str(body["root"]),
        key_id=str(body.get("key_id")),
        heads=chain_heads,
    )


def anchors(checkpoints: Iterable[Checkpoint]) -> dict[str, dict[int, tuple[str, str]]]:
    """dossier → {seq: (hash, checkpoint file)}: what the chains must still contain.

    Two signed checkpoints that saw different entries at the same (dossier, seq) prove the
    chain was rewritten between them (the worker signs whatever the database holds, a
    rewritten chain included): that entry becomes :data:`audit.ANCHORS_DISAGREE`, which no
    entry matches — never "the last file given wins".
    """
    out: dict[str, dict[int, tuple[str, str]]] = {}
    for checkpoint in checkpoints:
        for dossier, seq, digest in checkpoint.heads:
            seen = out.setdefault(dossier, {})
            if seq in seen and seen[seq][0] != digest:
                first = seen[seq][1].split(" and ")[0]
                seen[seq] = (ANCHORS_DISAGREE, f"{first} and {checkpoint.path}")
            else:
                seen.setdefault(seq, (digest, checkpoint.path))
    return out


# --- the worker's schedule ------------------------------------------------------------------


def file_name(now: datetime) -> str:
    return "checkpoint-" + now.strftime("%Y%m%dT%H%M%S%fZ") + ".json"


def due(directory: Path, now: datetime, interval_hours: float) -> bool:
    """True when no checkpoint in ``directory`` is younger than the interval.

    The file names carry their UTC time, so the decision needs neither the database (which an
    intruder could edit) nor file modification times (which a copy changes). A name that is no
    time, or a time after ``now`` (a rehearsal's checkpoint, a planted file), is not the last
    checkpoint: it would otherwise stop the schedule until that date.
    """
    from datetime import UTC

    last = None
    for path in directory.glob("checkpoint-*.json"):
        try:
            stamp = datetime.strptime(
                path.name[len("checkpoint-") : -len(".json")], "%Y%m%dT%H%M%S%fZ"
            ).replace(tzinfo=UTC)
        except ValueError:
            continue
        if stamp <= now and (last is None or stamp > last):
            last = stamp
    return last is None or (now - last).total_seconds() >= interval_hours * 3600


def write_scheduled(store: Store, audit: Any, now: datetime) -> Path | None:
    """The worker's checkpoint: written when due into ``[audit] checkpoint_dir``, and queued in
    the outbox for each of ``checkpoint_recipients`` (so copies leave the machine); None when
    not due or not configured.

    The outbox row is written after the file, in one short transaction; the idempotency key is
    the checkpoint's file name, so a redelivered copy is recognisably the same checkpoint.
    """
    from .store import notification_t

    if audit.checkpoint_interval_hours is None or audit.signing_key is None:
        return None
    directory = Path(audit.checkpoint_dir)
    if not due(directory, now, audit.checkpoint_interval_hours):
        return None
    document = build(store, Path(audit.signing_key), now)
    path = directory / file_name(now)
    write(document, path)
    if audit.checkpoint_recipients:
        body = text_of(document)
        rows = [
            {
                "key": f"{path.stem}:{recipient}",
                "dossier_id": "-",
                "timer_id": None,
                "kind": "audit_checkpoint",
                "channel": audit.checkpoint_channel,
                "recipient": recipient,
                "subject": (
                    f"OCOP audit checkpoint {document['created_at']}: "
                    f"{document['count']} chains, root {document['root'][:16]}"
                ),
                "body": body,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for recipient in audit.checkpoint_recipients
        ]
        with store.write() as conn:
            conn.execute(notification_t.insert(), rows)
    _log().info(
        "audit.checkpoint_written",
        file=str(path),
        chains=document["count"],
        root=document["root"],
        recipients=len(audit.checkpoint_recipients),
    )
    return path


def _log() -> Any:
    import structlog

    return structlog.get_logger("ocop.audit")
