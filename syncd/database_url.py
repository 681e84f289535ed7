"""A PostgreSQL mirror's URL: whether a location is one, what is wrong with it, and how to show
it without its password. Pure, so the config checks a URL exactly as the store does when it
connects."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

SCHEMES: Final = ("postgresql", "postgres")


def is_postgres_url(location: str) -> bool:
    """True when ``location`` names a PostgreSQL server (``postgresql://`` or ``postgres://``)."""
    return urlsplit(location.strip()).scheme.lower() in SCHEMES


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def problem(url: str) -> str | None:
    """What is wrong with the PostgreSQL ``url`` (its password shown as ``***``), or None:
    another scheme than ``postgresql://``/``postgres://``, no database name, a port that is
    not a number, or an option libpq does not know."""
    text = url.strip()
    shown = redact(text)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (urlsplit checks the port only when asked)
    except ValueError as exc:
        return f"{shown!r} is not a valid URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        named = f"scheme {scheme!r}" if scheme else "no scheme"
        return f"{shown!r} has {named}; expected postgresql:// or postgres://"
    if not parts.path.strip("/"):
        return f"{shown!r} names no database (postgresql://host/DBNAME)"
    import psycopg  # only when a URL is used
    from psycopg import conninfo

    try:
        conninfo.conninfo_to_dict(normalised(text))
    except psycopg.ProgrammingError as exc:
        return f"{shown!r} is not a valid PostgreSQL URL ({str(exc).strip()})"
    return None


def normalised(url: str) -> str:
    """``url`` spelled ``postgresql://…`` (the form peewee hands psycopg as a conninfo)."""
    text = url.strip()
    return "postgresql" + text[len(urlsplit(text).scheme) :]
