"""Fault injection: make the next N matching requests fail in a chosen way."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("status", "delay", "malformed", "truncated", "drop")


class FaultSpecError(ValueError):
    pass


@dataclass
class Fault:
    kind: str
    path: str | None  # path prefix; None matches every non-control path
    method: str | None
    count: int
    status: int = 500
    seconds: float = 0.0
    retry_after: int | None = None
    body: object = None  # replaces the default error body of a status fault
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path is None or path.startswith(self.path)

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "path": self.path,
            "method": self.method,
            "remaining": self.count,
            "status": self.status if self.kind == "status" else None,
            "seconds": self.seconds if self.kind == "delay" else None,
            "retry_after": self.retry_after,
            "hits": self.hits,
        }


def parse_fault(spec: object) -> Fault:
    """Build a fault from a control request body. Raises FaultSpecError."""
    if not isinstance(spec, dict):
        raise FaultSpecError("body must be a JSON object")
    kind = spec.get("kind")
    if kind is None:
        kind = "status" if "status" in spec else None
    if kind not in KINDS:
        raise FaultSpecError(f"kind must be one of {', '.join(KINDS)}")
    path = spec.get("path")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        raise FaultSpecError("path must be a string starting with /")
    method = spec.get("method")
    if method is not None:
        if not isinstance(method, str):
            raise FaultSpecError("method must be a string")
        method = method.upper()
    count = spec.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise FaultSpecError("count must be a positive integer")
    fault = Fault(kind=kind, path=path, method=method, count=count)
    if kind == "status":
        status = spec.get("status")
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise FaultSpecError("status must be an HTTP status code")
        fault.status = status
        ra = spec.get("retry_after")
        if ra is not None and (not isinstance(ra, int) or ra < 0):
            raise FaultSpecError("retry_after must be a non-negative integer")
        fault.retry_after = ra
        fault.body = spec.get("body")
    if kind == "delay":
        seconds = spec.get("seconds")
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise FaultSpecError("seconds must be a non-negative number")
        fault.seconds = float(seconds)
    return fault


class Faults:
    def __init__(self) -> None:
        self.active: list[Fault] = []
        self.fired = 0

    def add(self, fault: Fault) -> None:
        self.active.append(fault)

    def clear(self) -> None:
        self.active.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The first armed fault matching the request, consuming one of its shots."""
        for fault in self.active:
            if fault.matches(method, path):
                fault.count -= 1
                fault.hits += 1
                self.fired += 1
                if fault.count <= 0:
                    self.active.remove(fault)
                return fault
        return None
