"""``HttpClient``: the upstream :class:`syncd.seams.Client` over one ``aiohttp.ClientSession``.

Each attempt takes a permit from the shared :class:`~syncd.budget.RateBudget`, sends the
request built by :mod:`syncd.api`, lets the response's rate-limit headers correct the
budget, and parses the body with :mod:`syncd.api`. Retries run through stamina:

* 429: the ``Retry-After`` deadline is written into the shared budget and the retry waits
  for it there (every process using the key waits for the same deadline);
* 5xx, transport failures (connection errors, timeouts, cut-off bodies) and malformed
  bodies: jittered exponential backoff;
* other 4xx: no retry.

Attempts are bounded by ``RetryPolicy.max_attempts`` and ``total_timeout``; then the last
error is raised. A failure never turns into an empty result.

Each failed attempt is logged once, here (``api_attempt_failed``, ``api_rate_limited`` or
``api_transport_error``, with its attempt number); stamina's own retry logging and
instrumentation are switched off, so no attempt is logged twice.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import stamina
import structlog

from syncd import api
from syncd.budget import RateBudget
from syncd.errors import (
    ApiError,
    AuthError,
    MalformedResponse,
    RateLimited,
    ResponseError,
    ServerError,
    ShutdownRequested,
    TransportError,
    timed_out,
)
from syncd.records import Priority, TimeEntry, WebhookSubscription, Workspace
from syncd.shutdown import Shutdown

log = structlog.get_logger(__name__)

# stamina would log every retry a second time (and count it in a Prometheus metric of its
# own); the attempts are logged and counted here.
stamina.instrumentation.set_on_retry_hooks([])

#: Per-request timeouts; find responses are unpaginated and may be large (§3.7).
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10, sock_read=60)
#: Answers smaller than this are parsed on the event loop; larger ones on a worker thread.
PARSE_INLINE_BYTES = 64 * 1024


@functools.cache
def _parse_thread() -> ThreadPoolExecutor:
    """The process's one thread for parsing large answers.

    One, not a pool: parsing holds the GIL, and more parsing threads would only take it
    from the database thread, which is what a backfill of several workspaces waits on.
    """
    return ThreadPoolExecutor(1, thread_name_prefix="syncd-parse")


T = TypeVar("T")
Parser = Callable[[int, Any, bytes, str], T]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long one call may be attempted (each attempt spends budget)."""

    max_attempts: int = 6
    total_timeout: float = 600.0  # seconds, budget waits included
    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_jitter: float = 1.0


@dataclass(slots=True)
class ClientStats:
    """What this client has done so far (the run summary reports these)."""

    requests: int = 0  # requests sent upstream
    rate_limited: int = 0  # 429s seen
    retries: int = 0  # attempts after a failed one
    failures: int = 0  # calls that gave up
    outcomes: dict[str, int] = field(default_factory=dict)  # per attempt, see outcome_of


def outcome_of(exc: BaseException | None) -> str:
    """The outcome label of one attempt: ok, rate_limited, server_error, auth_error,
    client_error, malformed, transport_error or error."""
    if exc is None:
        return "ok"
    for kind, label in (
        (RateLimited, "rate_limited"),
        (ServerError, "server_error"),
        (AuthError, "auth_error"),
        (MalformedResponse, "malformed"),
        (ResponseError, "client_error"),
        (TransportError, "transport_error"),
    ):
        if isinstance(exc, kind):
            return label
    return "error"


def _retry_backoff(exc: Exception) -> bool | float:
    """stamina hook: 429 → retry at once (the budget waits for the deadline); 5xx,
    transport and malformed → exponential backoff; anything else → no retry."""
    if isinstance(exc, RateLimited):
        return 0.0
    return isinstance(exc, ServerError | TransportError | MalformedResponse)


def _retry_backoff_but_timeouts(exc: Exception) -> bool | float:
    """As :func:`_retry_backoff`, except that a timeout is not retried (finds the caller
    splits into smaller windows instead)."""
    if timed_out(exc):
        return False
    return _retry_backoff(exc)


def _where(url: str) -> str:
    """The URL without query or fragment, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0]
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def transport_error(exc: BaseException, request: api.HttpRequest) -> ApiError:
    """The syncd error for an aiohttp/timeout failure (the one place they are translated).

    Returns ``TransportError`` for everything worth retrying and a plain ``ApiError`` for
    an unusable URL.
    """
    where = f"{request.method} {_where(request.url)}"
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return ApiError(f"invalid upstream URL for {where}: {exc}")
    if isinstance(exc, TimeoutError):
        return TransportError(f"timed out: {where}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError(f"response body cut off: {where} ({exc})")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError(f"server closed the connection: {where}")
    return TransportError(f"{type(exc).__name__} on {where}: {exc}")


async def _unless_stopped_while_waiting(
    call: asyncio.Future[T], shutdown: Shutdown, waiting: asyncio.Event
) -> T:
    """The result of ``call``, unless a stop is requested while ``waiting`` is set: then
    ``call`` is cancelled and ``ShutdownRequested`` raised. Raises what ``call`` raises
    otherwise.
    """
    stopped = asyncio.ensure_future(shutdown.wait())
    try:
        await asyncio.wait({call, stopped}, return_when=asyncio.FIRST_COMPLETED)
        while not call.done():  # stopped: an exchange on the wire may finish first
            if waiting.is_set():
                call.cancel()
                await asyncio.wait({call})
                raise ShutdownRequested("stop requested; the waiting request is not sent")
            went_waiting = asyncio.ensure_future(waiting.wait())
            try:
                await asyncio.wait({call, went_waiting}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                went_waiting.cancel()
        return call.result()
    finally:
        stopped.cancel()
        call.cancel()  # when this task itself is cancelled; a no-op once the call is done


class HttpClient:
    """The real upstream client. One instance per API key, sharing one session.

    ``session`` is the process's ``aiohttp.ClientSession`` (not closed here); ``budget``
    the key's :class:`RateBudget`. ``api_url`` is the core API base (``…/v1``),
    ``app_url`` the Zapier API host. ``version`` is sent as ``X-Accept-Version``.
    ``on_outcome(label)`` is called after every attempt that reached the network (for
    metrics; labels as :func:`outcome_of`). Once ``shutdown`` is requested no retry starts,
    and a call that is waiting (for the budget, or out a backoff between attempts) ends at
    once: the call raises ``ShutdownRequested``. An exchange on the wire is let finish, so
    its window can still be committed.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        budget: RateBudget,
        *,
        api_key: str,
        api_url: str = api.DEFAULT_API_URL,
        app_url: str = api.DEFAULT_APP_URL,
        version: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[str], None] | None = None,
        shutdown: Shutdown | None = None,
    ) -> None:
        self._session = session
        self._budget = budget
        self._key = api_key
        self._api_url = api_url
        self._app_url = app_url
        self._version = version
        self._retry = retry or RetryPolicy()
        self._timeout = timeout
        self._clock = clock
        self._on_outcome = on_outcome
        self._shutdown = shutdown
        self.stats = ClientStats()

    def __repr__(self) -> str:
        return f"HttpClient(api_url={self._api_url!r}, app_url={self._app_url!r})"

    # ------------------------------------------------------------------ the Client seam

    async def list_workspaces(self, *, priority: Priority = Priority.HOT) -> list[Workspace]:
        """Every workspace of the key (``GET /v1/workspaces``). Raises ``ApiError``
        subclasses once retries are exhausted, ``BudgetExhausted`` when the day is spent."""
        request = api.list_workspaces_request(self._api_url, self._key, self._version)
        return await self._call(request, priority, api.parse_workspaces)

    async def find_time_entries(
        self,
        workspace_id: str,
        *,
        date_from: str | None,
        date_to: str | None,
        priority: Priority,
        retry_timeouts: bool = True,
    ) -> list[TimeEntry]:
        """Every entry upstream puts in the find window ``[date_from, date_to]`` (YYYY-MM-DD;
        None leaves a side open). ``retry_timeouts=False``: a 504 or a timed-out request is
        raised at once instead of retried. Raises as :meth:`list_workspaces`; ``ValueError``
        for a date that is not ``YYYY-MM-DD``."""
        request = api.find_time_entries_request(
            self._app_url, self._key, workspace_id, date_from, date_to
        )

        def parse(status: int, headers: Any, body: bytes, url: str) -> list[TimeEntry]:
            return api.parse_time_entries(status, headers, body, url, workspace_id=workspace_id)

        retry = _retry_backoff if retry_timeouts else _retry_backoff_but_timeouts
        return await self._call(request, priority, parse, retry)

    async def list_webhooks(self) -> list[WebhookSubscription]:
        """The key's webhook subscriptions. Raises as :meth:`list_workspaces`."""
        request = api.list_webhooks_request(self._app_url, self._key)
        return await self._call(request, Priority.CONTROL, api.parse_subscriptions)

    async def subscribe_webhook(
        self, url: str, events: Sequence[str], *, secret: str | None, description: str | None
    ) -> WebhookSubscription:
        """Subscribe ``url`` to ``events``. Raises as :meth:`list_workspaces`."""
        request = api.subscribe_webhook_request(
            self._app_url, self._key, url, events, secret=secret, description=description
        )
        return await self._call(request, Priority.CONTROL, api.parse_subscription)

    async def delete_webhook(self, webhook_id: str) -> None:
        """Delete a subscription; one that is already gone counts as deleted.
        Raises as :meth:`list_workspaces`."""
        request = api.delete_webhook_request(self._app_url, self._key, webhook_id)
        await self._call(request, Priority.CONTROL, api.check_webhook_deleted)

    # ------------------------------------------------------------------ machinery

    async def _call(
        self,
        request: api.HttpRequest,
        priority: Priority,
        parse: Parser[T],
        retry: Callable[[Exception], bool | float] | None = None,
    ) -> T:
        retry = retry or _retry_backoff
        if self._shutdown is None:
            return await self._retrying(request, priority, parse, None, retry)
        waiting = asyncio.Event()  # set while no exchange of this call is on the wire
        waiting.set()
        call = asyncio.ensure_future(self._retrying(request, priority, parse, waiting, retry))
        return await _unless_stopped_while_waiting(call, self._shutdown, waiting)

    async def _retrying(
        self,
        request: api.HttpRequest,
        priority: Priority,
        parse: Parser[T],
        waiting: asyncio.Event | None,
        retry: Callable[[Exception], bool | float],
    ) -> T:
        policy = self._retry
        attempt_no = 0
        try:
            async for attempt in stamina.retry_context(
                on=retry,
                attempts=policy.max_attempts,
                timeout=policy.total_timeout,
                wait_initial=policy.wait_initial,
                wait_max=policy.wait_max,
                wait_jitter=policy.wait_jitter,
            ):
                with attempt:
                    attempt_no += 1
                    if attempt_no > 1:
                        if self._shutdown is not None:
                            self._shutdown.check("stop requested; the request is not retried")
                        self.stats.retries += 1
                    return await self._attempt(request, priority, parse, attempt_no, waiting)
        except ApiError as exc:
            self.stats.failures += 1
            if retry is _retry_backoff_but_timeouts and timed_out(exc):
                raise  # the caller splits the window and says so
            # Each attempt was logged; the caller reports the failure itself.
            log.debug(
                "api_gave_up",
                method=request.method,
                url=_where(request.url),
                attempts=attempt_no,
                error=str(exc),
            )
            raise
        raise AssertionError("unreachable: stamina ends with a result or an exception")

    async def _attempt(
        self,
        request: api.HttpRequest,
        priority: Priority,
        parse: Parser[T],
        attempt_no: int,
        waiting: asyncio.Event | None,
    ) -> T:
        await self._budget.acquire(priority)
        if waiting is not None:
            waiting.clear()
        try:
            result = await self._exchange(request, parse, attempt_no)
        except ApiError as exc:
            self._record(outcome_of(exc))
            raise
        finally:
            if waiting is not None:
                waiting.set()
        self._record("ok")
        return result

    def _record(self, outcome: str) -> None:
        self.stats.outcomes[outcome] = self.stats.outcomes.get(outcome, 0) + 1
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    async def _exchange(self, request: api.HttpRequest, parse: Parser[T], attempt_no: int) -> T:
        """Send, let the rate headers correct the budget, parse. Raises ``ApiError``."""
        sent_at = self._clock()
        status, headers, body = await self._send(request, attempt_no)
        await self._budget.observe(api.parse_rate_limit(headers, self._clock()), sent_at=sent_at)
        if status == 429:
            await self._rate_limited(request, headers, body, attempt_no)
        try:
            if len(body) < PARSE_INLINE_BYTES:
                return parse(status, headers, body, request.url)
            # A large answer (a backfill window) is parsed off the event loop, which stays
            # free to send the next request the moment the budget grants it.
            return await asyncio.get_running_loop().run_in_executor(
                _parse_thread(), parse, status, headers, body, request.url
            )
        except ApiError as exc:
            log.warning(
                "api_attempt_failed",
                method=request.method,
                url=_where(request.url),
                status=status,
                attempt=attempt_no,
                error=str(exc),
            )
            raise

    async def _send(self, request: api.HttpRequest, attempt_no: int = 1) -> tuple[int, Any, bytes]:
        """One HTTP exchange. Raises ``TransportError`` when no whole response arrives."""
        self.stats.requests += 1
        try:
            async with self._session.request(
                request.method,
                request.url,
                headers=request.headers,
                json=request.json,
                timeout=self._timeout,
                raise_for_status=False,
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                return resp.status, resp.headers, body
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = transport_error(exc, request)
            log.warning(
                "api_transport_error",
                method=request.method,
                url=_where(request.url),
                attempt=attempt_no,
                error=str(error),
            )
            raise error from exc

    async def _rate_limited(
        self, request: api.HttpRequest, headers: Any, body: bytes, attempt_no: int
    ) -> None:
        """Record a 429 and write its deadline into the shared budget; raises ``RateLimited``."""
        self.stats.rate_limited += 1
        error = api.error_for_response(429, headers, body, request.url, now=self._clock())
        assert isinstance(error, RateLimited)
        await self._budget.defer(error.retry_after)
        log.warning(
            "api_rate_limited",
            method=request.method,
            url=_where(request.url),
            retry_after=error.retry_after,
            attempt=attempt_no,
        )
        raise error
