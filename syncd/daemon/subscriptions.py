"""The upstream webhook subscription of this installation: kept to exactly one active
subscription for the configured public URL, removed on request, and its record in the mirror
kept free of secrets (the token lives in its own file).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog

from syncd.config import Config
from syncd.daemon.webhook import HOOK_PREFIX, webhook_url
from syncd.log import register_secret
from syncd.records import DOCUMENTED_EVENTS
from syncd.secrets import keep_token, matches_verifier, redact_path, secret_verifier
from syncd.service import Runtime, open_runtime, timestamp
from syncd.status import SUBSCRIPTION_SETTING
from syncd.store import AsyncStore
from syncd.store.housekeeping import rewrite_settings

log = structlog.get_logger("syncd.daemon")

SUBSCRIBED_EVENTS = tuple(sorted(DOCUMENTED_EVENTS))  # the documented events, and only those
TOKEN_SETTING = "webhook_token"  # where versions before the token file kept the token


def hook_base(url: str) -> str | None:
    """The public URL a subscribed ``url`` was made from (what precedes ``/hooks/<token>``),
    or None when ``url`` is not of that shape."""
    base, sep, token = url.rpartition(HOOK_PREFIX)
    if not sep or not base or not token or any(c in token for c in "/?#"):
        return None
    return base


def _redacted_record(raw: str | None) -> str | None:
    """A stored subscription record without secrets: the URL's token hidden, the unsalted
    secret digest of older versions dropped (``raw`` itself when there is nothing to drop)."""
    if raw is None:
        return None
    record = json.loads(raw)
    cleaned = dict(record)
    if isinstance(cleaned.get("url"), str):
        cleaned["url"] = redact_path(cleaned["url"])
    cleaned.pop("secret_digest", None)
    return raw if cleaned == record else json.dumps(cleaned)


async def move_secrets_out_of_mirror(store: AsyncStore, config: Config) -> bool:
    """Move a webhook token that an older syncd kept in the mirror to the token file (a token
    already in the file wins), and strip the token and the unsalted secret digest from the
    stored subscription record; the old values are erased from the file, not just unlinked.
    Returns whether anything was moved.

    Raises ``StoreError`` when the mirror or the token file cannot be used.
    """
    legacy = await store.get_setting(TOKEN_SETTING)
    raw = await store.get_setting(SUBSCRIPTION_SETTING)
    cleaned = _redacted_record(raw)
    if legacy is None and cleaned == raw:
        return False
    if legacy is not None:
        register_secret(legacy)
        try:
            await asyncio.to_thread(keep_token, config.webhook_token_path, legacy)
        except ValueError:
            pass  # not a usable token: dropped, and a new one is made when needed
    await store.call(
        rewrite_settings, store.store, {TOKEN_SETTING: None, SUBSCRIPTION_SETTING: cleaned}
    )
    log.info(
        "webhook_secrets_moved_out_of_mirror",
        token_file=str(config.webhook_token_path) if legacy is not None else None,
    )
    return True


async def ensure_subscription(runtime: Runtime, url: str) -> dict[str, Any]:
    """Keep exactly one active upstream subscription for ``url``.

    Reuses a matching active subscription made with the configured secret and deletes every
    other subscription of this installation: a disabled one, duplicates, those with another
    token at the same public URL (left by a re-created mirror or token file) and those of the
    previous public URL. Returns what is stored in the ``installation`` table: the URL with
    its token hidden and a salted verifier of the secret, never the token or the secret.

    Raises ``ApiError`` or ``BudgetExhausted``.
    """
    store, client, config = runtime.store, runtime.client, runtime.config
    stored = json.loads(await store.get_setting(SUBSCRIPTION_SETTING) or "{}")
    secret = config.webhooks.secret.get_secret_value()
    verifier = stored.get("secret_verifier")
    same_secret = await asyncio.to_thread(matches_verifier, secret, verifier)
    wanted = {str(e) for e in SUBSCRIBED_EVENTS}
    subscriptions = await client.list_webhooks()
    keep = None
    if same_secret:
        keep = next(
            (
                s
                for s in subscriptions
                if s.url == url and s.status == "ACTIVE" and wanted <= set(s.events)
            ),
            None,
        )
    here, before = hook_base(url), hook_base(stored.get("url") or "")
    for subscription in subscriptions:
        if subscription is keep:
            continue
        base = hook_base(subscription.url)
        if subscription.url == url:
            reason = "replaced" if subscription.status == "ACTIVE" else "disabled"
        elif base is not None and base == here:
            reason = "another_token"
        elif base is not None and base == before:
            reason = "previous_address"
        else:
            continue
        await client.delete_webhook(subscription.id)
        log.info(
            "webhook_unsubscribed",
            webhook_id=subscription.id,
            status=subscription.status,
            url=redact_path(subscription.url),
            reason=reason,
        )
    if keep is None:
        keep = await client.subscribe_webhook(
            url, sorted(wanted), secret=secret or None, description="syncd mirror"
        )
        log.info("webhook_subscribed", webhook_id=keep.id, url=redact_path(url))
        verifier = await asyncio.to_thread(secret_verifier, secret) if secret else None
    record = {
        "id": keep.id,
        "url": redact_path(url),
        "status": keep.status,
        "events": sorted(keep.events),
        "secret_verifier": verifier,
        "checked_at": timestamp(),
    }
    await store.set_setting(SUBSCRIPTION_SETTING, json.dumps(record))
    return record


async def remove_subscriptions(runtime: Runtime) -> int:
    """Delete this installation's subscriptions upstream (``syncd webhooks remove``): every
    subscription at the configured or the last subscribed public URL, whatever its token.

    Raises ``ApiError`` or ``BudgetExhausted``.
    """
    store, client = runtime.store, runtime.client
    stored = json.loads(await store.get_setting(SUBSCRIPTION_SETTING) or "{}")
    ours = {hook_base(stored.get("url") or "")}
    public_url = runtime.config.webhooks.public_url
    if public_url:
        ours.add(hook_base(webhook_url(public_url, "token")))
    ours.discard(None)
    removed = 0
    for subscription in await client.list_webhooks():
        if hook_base(subscription.url) in ours or subscription.id == stored.get("id"):
            await client.delete_webhook(subscription.id)
            removed += 1
    await store.set_setting(SUBSCRIPTION_SETTING, None)
    return removed


async def remove_webhooks(config: Config) -> int:
    """Delete this installation's webhook subscriptions upstream; returns how many.

    Raises ``ApiError`` or ``BudgetExhausted``.
    """
    async with open_runtime(config) as runtime:
        return await remove_subscriptions(runtime)
