"""Request validation with the service's (Zod-style) messages."""

from __future__ import annotations

import re

from .timefmt import parse_iso

UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HEX_COLOR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
COLOR_NAMES = {
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "indigo",
    "purple",
    "pink",
    "gray",
    "grey",
    "black",
    "white",
    "brown",
    "teal",
    "cyan",
}

_MISSING = object()


class Invalid(Exception):
    """One or more fields failed validation; ``details`` lists ``{field, message}``."""

    def __init__(self, details: list[dict]) -> None:
        super().__init__(details)
        self.details = details


class Checker:
    """Collects Zod-like field errors for one request body."""

    def __init__(self, body: dict) -> None:
        self.body = body
        self.details: list[dict] = []

    def fail(self, field: str, message: str) -> None:
        self.details.append({"field": field, "message": message})

    def done(self) -> None:
        if self.details:
            raise Invalid(self.details)

    def string(
        self,
        field: str,
        *,
        required: bool = False,
        min_len: int = 0,
        max_len: int | None = None,
        nullable: bool = True,
    ):
        v = self.body.get(field, _MISSING)
        if v is _MISSING or (v is None and not required and nullable):
            if required:
                self.fail(field, "Required")
            return None
        if not isinstance(v, str):
            self.fail(field, f"Expected string, received {_type(v)}")
            return None
        if len(v) < min_len:
            self.fail(field, f"String must contain at least {min_len} character(s)")
            return None
        if max_len is not None and len(v) > max_len:
            self.fail(field, f"String must contain at most {max_len} character(s)")
            return None
        return v

    def uuid(self, field: str, *, required: bool = False):
        v = self.string(field, required=required, min_len=1 if required else 0)
        if v is not None and v != "" and not UUID_RE.match(v):
            self.fail(field, "Invalid uuid")
            return None
        return v or None

    def datetime(self, field: str, *, required: bool = False):
        v = self.string(field, required=required, min_len=1 if required else 0)
        if v is None or v == "":
            return None
        try:
            return parse_iso(v)
        except ValueError:
            self.fail(field, "Invalid datetime")
            return None

    def boolean(self, field: str, *, required: bool = False, default=None):
        v = self.body.get(field, _MISSING)
        if v is _MISSING or v is None:
            if required:
                self.fail(field, "Required")
            return default
        if isinstance(v, bool):
            return v
        self.fail(field, f"Expected boolean, received {_type(v)}")
        return default

    def positive(self, field: str):
        v = self.body.get(field, _MISSING)
        if v is _MISSING or v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(field, f"Expected number, received {_type(v)}")
            return None
        if v <= 0:
            self.fail(field, "Number must be greater than 0")
            return None
        return v

    def integer(self, field: str, *, minimum: int | None = None):
        v = self.body.get(field, _MISSING)
        if v is _MISSING or v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
            self.fail(field, f"Expected integer, received {_type(v)}")
            return None
        if minimum is not None and v < minimum:
            self.fail(field, f"Number must be greater than or equal to {minimum}")
            return None
        return int(v)

    def enum(self, field: str, allowed: tuple[str, ...], default: str | None = None):
        v = self.body.get(field, _MISSING)
        if v is _MISSING or v is None:
            return default
        if v not in allowed:
            options = " | ".join(f"'{a}'" for a in allowed)
            self.fail(field, f"Invalid enum value. Expected {options}, received '{v}'")
            return default
        return v

    def email(self, field: str):
        v = self.string(field)
        if v is not None and not EMAIL_RE.match(v):
            self.fail(field, "Invalid email")
            return None
        return v

    def string_list(self, field: str):
        v = self.body.get(field, _MISSING)
        if v is _MISSING or v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.fail(field, f"Expected array, received {_type(v)}")
            return []
        return v


def _type(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def bool_filter(v: object) -> bool | None:
    """``"true"``/``"false"`` (documented) or a JSON boolean; ValueError otherwise."""
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return v == "true"
    raise ValueError("not a boolean")


def int_filter(v: object) -> int | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise ValueError("not an integer")
    if isinstance(v, (int, float)) and v == int(v):
        return int(v)
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
        return int(v)
    raise ValueError("not an integer")


def uuid_filter(v: object, *, required: bool = False) -> str | None:
    if v is None or v == "":
        if required:
            raise ValueError("required")
        return None
    if not isinstance(v, str) or not UUID_RE.match(v):
        raise ValueError("not a uuid")
    return v


def date_filter(v: object) -> int | None:
    if v is None or v == "":
        return None
    return parse_iso(v)
