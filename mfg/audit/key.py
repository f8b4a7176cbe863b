"""The audit key and the checkpoint file: both live outside the database, so that the database's own users
cannot forge an event (no key) or rewrite the chain unseen (the checkpoints hold its earlier heads).

MFG_AUDIT_KEY_FILE     the key (default: instance folder, ``audit.key``, made by ``mfg init``, mode 0600)
MFG_CHECKPOINT_FILE    the append-only checkpoint file (default: instance folder, ``audit-checkpoints.jsonl``)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from mfg.audit import rules

KEY_BYTES = 32


class AuditKeyMissing(RuntimeError):
    """No usable audit key: nothing may be written to the trail, and the trail cannot be verified."""


def _instance_path() -> Path:
    # mfg.config.instance_path's rule, restated: mfg.config imports services that write the audit trail.
    return Path(os.environ.get("MFG_INSTANCE_PATH") or Path.cwd() / "instance").resolve()


def key_path() -> Path:
    configured = os.environ.get("MFG_AUDIT_KEY_FILE")
    return Path(configured).resolve() if configured else _instance_path() / "audit.key"


def checkpoint_path() -> Path:
    configured = os.environ.get("MFG_CHECKPOINT_FILE")
    return Path(configured).resolve() if configured else _instance_path() / "audit-checkpoints.jsonl"


def create_key_file(path: Path) -> bool:
    """Write a new random key to ``path`` (mode 0600) unless a file is there already. True if created."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(KEY_BYTES) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return True


def load_key(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise AuditKeyMissing(
            f"no audit key at {path}: point MFG_AUDIT_KEY_FILE at the key this database was written with "
            "(a new installation: run `mfg init`, which makes one)"
        ) from None
    except OSError as exc:
        raise AuditKeyMissing(f"cannot read the audit key at {path}: {exc.strerror}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise AuditKeyMissing(f"the audit key at {path} is not {KEY_BYTES} bytes of hex")
    return key


_installed: bytes | None = None


def use_key(key: bytes | None) -> None:
    """Install the key this process writes with (the web app at start-up); None forgets it."""
    global _installed
    _installed = key


def current_key() -> bytes:
    """The installed key, else the configured key file's (scripts and workers that did not install one)."""
    global _installed
    if _installed is None:
        _installed = load_key(key_path())
    return _installed


def read_checkpoints(path: Path) -> tuple[list[tuple[int, rules.Checkpoint]], list[str]]:
    """Every checkpoint in the file, with its line number, and a sentence for each line that is not one."""
    found: list[tuple[int, rules.Checkpoint]] = []
    problems: list[str] = []
    if not path.exists():
        return found, problems
    for line_no, raw in enumerate(_lines(path), start=1):
        # Whoever can write the file can write anything into it: one bad line is one problem, never a crash.
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"checkpoint line {line_no}: not a checkpoint (not UTF-8)")
            continue
        if not line.strip():
            continue
        try:
            found.append((line_no, rules.parse_checkpoint(line)))
        except ValueError as exc:
            problems.append(f"checkpoint line {line_no}: {exc}")
    return found, problems


def _lines(path: Path) -> Iterator[bytes]:
    # Bytes, decoded line by line: text mode would stop at the first invalid byte and lose every later line.
    with path.open("rb") as f:
        yield from f


def append_checkpoint(path: Path, checkpoint: rules.Checkpoint) -> None:
    """Append one line and make it durable; the file is only ever appended to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(checkpoint.line() + "\n")
        f.flush()
        os.fsync(f.fileno())
