"""Response helpers: JSON the way the service writes it, and each surface's error format."""

from __future__ import annotations

import json

from aiohttp import web

V1_MESSAGES = {
    "INVALID_API_KEY": "API key is invalid or expired",
    "RATE_LIMIT_EXCEEDED": "Too many requests in time period",
    "RESOURCE_NOT_FOUND": "Requested resource doesn't exist",
    "PERMISSION_DENIED": "Insufficient permissions for operation",
    "VALIDATION_ERROR": "Request parameters are invalid",
    "INTERNAL_ERROR": "Internal server error",
}
V1_CODES = {
    400: "VALIDATION_ERROR",
    401: "INVALID_API_KEY",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_NOT_FOUND",
    429: "RATE_LIMIT_EXCEEDED",
}
API_MESSAGES = {
    400: "Invalid request body",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    429: "Too many requests",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json")


def raw_json(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="application/json")


def api_error(status: int, message: str, **extra: object) -> web.Response:
    return json_response({"error": message, **extra}, status)


def v1_error(
    status: int, code: str | None = None, message: str | None = None, details: dict | None = None
) -> web.Response:
    code = code or V1_CODES.get(status, "INTERNAL_ERROR")
    body = {
        "error": {
            "code": code,
            "message": message or V1_MESSAGES.get(code, "Internal server error"),
            "details": details or {},
        }
    }
    return json_response(body, status)


def surface_error(surface: str, status: int, message: str | None = None) -> web.Response:
    """The default error body of a surface for a status code."""
    if surface == "v1":
        return v1_error(status)
    return api_error(status, message or API_MESSAGES.get(status, "Internal server error"))


GATEWAY_TIMEOUT_HTML = (
    "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    "<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n"
)


def gateway_timeout() -> web.Response:
    """What a reverse proxy in front of the service sends when the service is too slow:
    504 with its own HTML page, not the API's JSON error body."""
    return web.Response(text=GATEWAY_TIMEOUT_HTML, status=504, content_type="text/html")
