"""``syncd emulator``: run the emulator until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import signal
import sys

import click
from aiohttp import web

from .ratelimit import SCOPES
from .settings import EXTENSIONS, EmulatorSettings, is_header_value
from .timefmt import parse_iso


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _delays(ctx, param, value: str) -> tuple[float, ...]:
    if value.strip() in ("", "none"):
        return ()
    try:
        delays = tuple(float(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter("a comma-separated list of seconds, e.g. 1,5,25") from None
    if any(d < 0 for d in delays):
        raise click.BadParameter("delays must not be negative")
    return delays


def _extensions(ctx, param, values: tuple[str, ...]) -> frozenset[str]:
    names = {n.strip() for v in values for n in v.split(",") if n.strip()}
    unknown = names - EXTENSIONS
    if unknown:
        raise click.BadParameter(
            f"unknown: {', '.join(sorted(unknown))} (known: {', '.join(sorted(EXTENSIONS))})"
        )
    return frozenset(names)


def _header_value(ctx, param, value: str) -> str:
    if not is_header_value(value):
        raise click.BadParameter("a non-empty header value in printable ASCII, e.g. text/plain")
    return value


def _now(ctx, param, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_iso(value) / 1000
    except ValueError:
        raise click.BadParameter("an ISO 8601 datetime, e.g. 2026-11-27T12:00:00Z") from None


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address only.")
@click.option("--port", default=8765, show_default=True, type=int, help="0 picks a free port.")
@click.option("--seed", default=42, show_default=True, type=int, help="Seed of the generated data.")
@click.option(
    "--workspaces", default=3, show_default=True, type=click.IntRange(0), help="Seeded workspaces."
)
@click.option(
    "--entries",
    default=5000,
    show_default=True,
    type=click.IntRange(0),
    help="Seeded time entries in total (split evenly across workspaces).",
)
@click.option(
    "--days",
    default=365,
    show_default=True,
    type=click.IntRange(1),
    help="Entries spread over the last N days.",
)
@click.option("--api-key", "api_keys", multiple=True, help="Repeatable. Default: demo-key.")
@click.option("--now", callback=_now, help="Start the clock at this instant (ISO 8601).")
@click.option("--no-rate-limit", is_flag=True, help="Switch every rate limit off.")
@click.option(
    "--rate-per-second",
    default=10,
    show_default=True,
    type=click.IntRange(0),
    help="At most N accepted requests in any 1 s (0 = no such window).",
)
@click.option(
    "--rate-per-minute",
    default=100,
    show_default=True,
    type=click.IntRange(0),
    help="At most N in any rolling 60 s (0 = none).",
)
@click.option(
    "--rate-per-day",
    default=10_000,
    show_default=True,
    type=click.IntRange(0),
    help="At most N per UTC day (0 = none).",
)
@click.option(
    "--rate-scope",
    type=click.Choice(SCOPES),
    default=SCOPES[0],
    show_default=True,
    help="One budget per key, or per key and workspace (requests naming none share one).",
)
@click.option(
    "--allow-http-webhooks",
    is_flag=True,
    help="Accept http://127.0.0.1 and http://localhost webhook targets.",
)
@click.option(
    "--webhook-retry-delays",
    default="1,5,25",
    show_default=True,
    callback=_delays,
    help="Seconds between delivery attempts; 'none' for no retries.",
)
@click.option(
    "--webhook-timeout",
    default=10.0,
    show_default=True,
    type=float,
    help="Seconds per delivery attempt.",
)
@click.option(
    "--webhook-scope",
    type=click.Choice(["all-workspaces", "default-workspace"]),
    default="all-workspaces",
    show_default=True,
    help="default-workspace: a key only hears events from its first workspace.",
)
@click.option(
    "--extensions",
    "extensions",
    multiple=True,
    callback=_extensions,
    help=f"Comma-separated: {', '.join(sorted(EXTENSIONS))}.",
)
@click.option(
    "--webhook-id-format",
    type=click.Choice(["wh", "uuid"]),
    default="wh",
    show_default=True,
    help="wh: wh_ and 16 hex digits; uuid: a UUID, and subscribe answers carry the secret.",
)
@click.option(
    "--delete-unknown-webhook",
    type=click.Choice(["400", "404", "200"]),
    default="400",
    show_default=True,
    help="What deleting an unknown webhook answers: 400 or 404 (not found), or 200.",
)
@click.option(
    "--delete-webhook-success",
    type=click.Choice(["success", "webhook-id", "204"]),
    default="success",
    show_default=True,
    help='A delete answers {"success":true}, that plus webhookId, or 204 without a body.',
)
@click.option(
    "--tag-create-path",
    type=click.Choice(["triggers", "actions", "both"]),
    default="triggers",
    show_default=True,
    help="Where tags are created: POST .../triggers/tags, .../actions/tags or both.",
)
@click.option("--billable-optional", is_flag=True, help="billable may be omitted (default true).")
@click.option(
    "--team-member-required",
    is_flag=True,
    help="Time-entry create: team_member_id required instead of optional.",
)
@click.option(
    "--date-filter-field",
    type=click.Choice(["date", "created_at"]),
    default="date",
    show_default=True,
    help="What find's date_after/date_before filter: the entry date or its creation time.",
)
@click.option("--lenient-auth", is_flag=True, help="Accept either surface's auth header.")
@click.option(
    "--date-bounds",
    type=click.Choice(["inclusive", "exclusive"]),
    default="inclusive",
    show_default=True,
    help="Whether find's date_after/date_before include the bound itself.",
)
@click.option(
    "--find-cap",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Time-entry find answers silently hold at most N entries (0 = no cap).",
)
@click.option(
    "--find-timeout-above",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="A time-entry find matching more than N entries answers 504 (0 = never).",
)
@click.option(
    "--find-timeout-delay",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds that 504 takes to come.",
)
@click.option(
    "--webhook-headers",
    type=click.Choice(["full", "none"]),
    default="full",
    show_default=True,
    help="none: deliveries carry no X-Timetracker-* headers and no signature.",
)
@click.option(
    "--webhook-content-type",
    default="application/json",
    show_default=True,
    callback=_header_value,
    help="Content-Type of webhook deliveries.",
)
def emulator_command(
    host,
    port,
    seed,
    workspaces,
    entries,
    days,
    api_keys,
    now,
    no_rate_limit,
    rate_per_second,
    rate_per_minute,
    rate_per_day,
    rate_scope,
    allow_http_webhooks,
    webhook_retry_delays,
    webhook_timeout,
    webhook_scope,
    extensions,
    webhook_id_format,
    delete_unknown_webhook,
    delete_webhook_success,
    tag_create_path,
    billable_optional,
    team_member_required,
    date_filter_field,
    lenient_auth,
    date_bounds,
    find_cap,
    find_timeout_above,
    find_timeout_delay,
    webhook_headers,
    webhook_content_type,
) -> None:
    """Run an offline Timetracker (core /v1 API, Zapier /api, control /__emulator/)."""
    if not is_loopback(host):
        raise click.BadParameter(
            f"{host!r} is not a loopback address; the control API at /__emulator/ has no "
            "authentication, so the emulator only listens on 127.0.0.1, ::1 or localhost",
            param_hint="--host",
        )
    settings = EmulatorSettings(
        host=host,
        port=port,
        seed=seed,
        workspaces=workspaces,
        entries=entries,
        days=days,
        api_keys=tuple(dict.fromkeys(api_keys)) or ("demo-key",),
        now=now,
        rate_limit=not no_rate_limit,
        rate_per_second=rate_per_second,
        rate_per_minute=rate_per_minute,
        rate_per_day=rate_per_day,
        rate_scope=rate_scope,
        allow_http_webhooks=allow_http_webhooks,
        webhook_retry_delays=webhook_retry_delays,
        webhook_timeout=webhook_timeout,
        webhook_scope=webhook_scope,
        extensions=extensions,
        webhook_id_format=webhook_id_format,
        delete_unknown_webhook=delete_unknown_webhook,
        delete_webhook_success=delete_webhook_success,
        tag_create_path=tag_create_path,
        billable_required=not billable_optional,
        team_member_required=team_member_required,
        date_filter_field=date_filter_field,
        lenient_auth=lenient_auth,
        date_bounds=date_bounds,
        find_cap=find_cap,
        find_timeout_above=find_timeout_above,
        find_timeout_delay=find_timeout_delay,
        webhook_headers=webhook_headers,
        webhook_content_type=webhook_content_type,
    )
    asyncio.run(serve(settings))


async def serve(settings: EmulatorSettings) -> None:
    from .app import create_app

    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    server = site._server
    port = server.sockets[0].getsockname()[1] if server and server.sockets else settings.port
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    url = f"http://{host}:{port}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    line = {"event": "emulator_ready", "url": url, "api_url": f"{url}/v1", "app_url": url}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
