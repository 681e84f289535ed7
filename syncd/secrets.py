"""Secrets at rest: the webhook token file and the verifier of the webhook secret.

Readers of the mirror (a readers group, BI tools) see data, never secrets:

* **The webhook path token** lives in a file of its own, mode 0600, beside the mirror or in
  ``$STATE_DIRECTORY`` (``Config.webhook_token_path``). It is written once, atomically.
* **The webhook secret** is in the config only. The mirror keeps a salted scrypt verifier of
  it (``scrypt$n$r$p$salt$hash``), just enough to notice that the configured secret changed
  and the subscription must be made again. scrypt rather than a salted HMAC-SHA256: the
  verifier is checked about once an hour, so 80 ms and 16 MiB per check cost syncd nothing,
  while they make every guess tested offline by someone who can read the mirror as
  expensive, where an HMAC costs a microsecond per guess.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import stat
from pathlib import Path

import structlog

from syncd.errors import StoreError

log = structlog.get_logger("syncd.secrets")

TOKEN_FILE_MODE = 0o600
# What webhook.new_token makes (URL-safe base64 of 32 bytes); older tokens are the same.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,256}")

# scrypt cost: 2**14 × 8 × 128 bytes = 16 MiB and about 80 ms per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_SALT_BYTES, _HASH_BYTES = 16, 32
_MAXMEM = 64 * 1024 * 1024


def read_token(path: Path) -> str | None:
    """The token in the file at ``path``, or None when there is no such file. A file readable
    by others than its owner is made 0600 (with a warning).

    Raises ``StoreError`` (naming the path, never the content) when the file cannot be read or
    holds no valid token.
    """
    try:
        with open(path, encoding="ascii") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = handle.read(1024).strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not ASCII text"
        raise StoreError(f"cannot read the webhook token file {path}: {reason}") from None
    if not _TOKEN.fullmatch(text):
        raise StoreError(
            f"the webhook token file {path} holds no valid token; remove it and syncd makes "
            "a new one (the subscription is then renewed)"
        )
    if stat.S_IMODE(mode) & 0o077:
        _restrict(path, stat.S_IMODE(mode))
    return text


def keep_token(path: Path, token: str) -> str:
    """The token of the file at ``path``, which is first written with ``token`` (mode 0600)
    when it does not exist. A token already in the file wins.

    Raises ``StoreError`` when the file cannot be read or written, ``ValueError`` for a
    ``token`` that is not a valid token.
    """
    if not _TOKEN.fullmatch(token):
        raise ValueError("not a webhook token (32 to 256 URL-safe characters)")
    existing = read_token(path)
    if existing is not None:
        return existing
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, TOKEN_FILE_MODE)
        try:
            os.fchmod(fd, TOKEN_FILE_MODE)
            os.write(fd, token.encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)  # never replaces a file another process just wrote
        except FileExistsError:
            pass
    except OSError as exc:
        raise StoreError(
            f"cannot write the webhook token file {path}: {exc.strerror or exc}"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
    stored = read_token(path)
    if stored is None:
        raise StoreError(f"the webhook token file {path} vanished while it was written")
    return stored


def _restrict(path: Path, mode: int) -> None:
    try:
        os.chmod(path, TOKEN_FILE_MODE)
    except OSError as exc:
        log.warning("webhook_token_file_readable", path=str(path), mode=oct(mode), error=str(exc))
    else:
        log.warning("webhook_token_file_mode_fixed", path=str(path), was=oct(mode), now="0o600")


def secret_verifier(secret: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt verifier of ``secret``: ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (base64).

    Raises ``ValueError`` for an empty secret.
    """
    if not secret:
        raise ValueError("an empty secret has no verifier")
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    fields = ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)]
    return "$".join(fields)


def matches_verifier(secret: str, verifier: str | None) -> bool:
    """Whether ``verifier`` was made from ``secret``. No secret matches no verifier; anything
    that is not a verifier of :func:`secret_verifier`'s form matches nothing. Never raises."""
    if not secret or not verifier:
        return not secret and not verifier
    parts = verifier.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = (int(v) for v in parts[1:4])
        salt, expected = _unb64(parts[4]), _unb64(parts[5])
        if not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16 and expected):
            return False
        digest = _scrypt(secret, salt, n, r, p, len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(digest, expected)


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int, size: int = _HASH_BYTES) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=size, maxmem=_MAXMEM)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_TOKEN_IN_PATH = re.compile(r"(/hooks/)[^/?#]+")


def redact_path(path: str) -> str:
    """``path`` with the webhook token replaced, for logs (the token is a credential)."""
    return _TOKEN_IN_PATH.sub(r"\1<token>", path)
