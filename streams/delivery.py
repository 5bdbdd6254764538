"""Delivering idle-channel alerts to Prometheus Alertmanager and to a generic webhook.

:class:`AlertDelivery` only calls out; nothing listens. Each target is tried
with retries and exponential backoff on connection errors, timeouts and 5xx
answers; a 4xx answer is final (the request itself is wrong). A failure is
logged as one line and counted in the :class:`DeliveryReport`, never raised:
the alert is already safe on ``commpulse.alerts``.

Alertmanager forgets an alert at its ``endsAt``. A firing alert is sent with
``endsAt = now + resend_ttl`` where ``resend_ttl`` is four resend intervals
(what Prometheus does), and :meth:`AlertDelivery.resend_firing` re-posts every
alert still firing, so Alertmanager keeps them active, and picks them up again
after it restarted. A resolved alert takes its channel out of that set.
The set lives in memory: after a restart of the worker it is empty until the
worker delivers the channel's next transition; Alertmanager then resolves the
forgotten alerts by itself when their ``endsAt`` passes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Literal, Self

import aiohttp
from yarl import URL

from ingest import ConfigurationError
from streams.alerting import IdleAlert, alertmanager_payload, webhook_payload

__all__ = ["AlertDelivery", "DeliveryReport", "TargetResult"]

log = logging.getLogger(__name__)

Target = Literal["alertmanager", "webhook"]

_ALERTS_PATH: Final = "api/v2/alerts"
_TTL_INTERVALS: Final = 4  # Prometheus sends endsAt = now + 4 x max(resend delay, interval)
_MAX_BACKOFF_S: Final = 30.0
_ERROR_BODY_CHARS: Final = 200
_TOKEN: Final = re.compile(r"[\x21-\x7e]*")  # what an HTTP header value can carry as is


@dataclass(frozen=True, slots=True)
class TargetResult:
    """What became of one POST to one target."""

    target: Target
    ok: bool
    attempts: int
    alerts: int
    status: int | None = None  # the last HTTP status, if any answer came
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One result per target that was tried; empty when there was nothing to send."""

    results: tuple[TargetResult, ...] = ()

    @property
    def sent(self) -> int:
        return sum(1 for result in self.results if result.ok)

    @property
    def failed(self) -> int:
        return sum(1 for result in self.results if not result.ok)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def result(self, target: Target) -> TargetResult | None:
        return next((r for r in self.results if r.target == target), None)


class _Retryable(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AlertDelivery:
    """Posts each alert transition to Alertmanager's v2 API and/or a webhook.

    Nothing happens until :meth:`start` (or ``async with``), which opens one
    :class:`aiohttp.ClientSession`; :meth:`close` releases it.
    """

    def __init__(
        self,
        *,
        alertmanager_url: str | None = None,
        webhook_url: str | None = None,
        webhook_token: str | None = None,
        timeout_s: float = 5.0,
        retries: int = 3,
        resend_interval: timedelta = timedelta(minutes=1),
        backoff_s: float = 0.5,
        receiver: str = "commpulse",
    ) -> None:
        if timeout_s <= 0:
            raise ConfigurationError(f"alert delivery timeout must be positive, got {timeout_s}")
        if retries < 0:
            raise ConfigurationError(f"alert delivery retries cannot be negative, got {retries}")
        if resend_interval <= timedelta(0):
            raise ConfigurationError("the alert resend interval must be positive")
        if backoff_s < 0:
            raise ConfigurationError(f"alert delivery backoff cannot be negative, got {backoff_s}")
        self._alertmanager = _alerts_endpoint(alertmanager_url) if alertmanager_url else None
        self._webhook = _http_url(webhook_url, "webhook") if webhook_url else None
        if webhook_token is not None and not _TOKEN.fullmatch(webhook_token):
            raise ConfigurationError("the webhook token must be printable, without spaces")
        self._headers: Mapping[str, str] = (
            {"Authorization": f"Bearer {webhook_token}"} if webhook_token else {}
        )
        self.timeout_s = timeout_s
        self.retries = retries
        self.resend_interval = resend_interval
        self.backoff_s = backoff_s
        self.receiver = receiver
        self._firing: dict[str, IdleAlert] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def resend_ttl(self) -> timedelta:
        """How long Alertmanager keeps a firing alert active without hearing from us."""
        return self.resend_interval * _TTL_INTERVALS

    @property
    def firing(self) -> tuple[IdleAlert, ...]:
        """The alerts firing now, one per channel, oldest first."""
        return tuple(self._firing.values())

    async def start(self) -> Self:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"User-Agent": "commpulse-alerts"},
            )
        return self

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def restore(self, firing: Iterable[IdleAlert]) -> None:
        """Replace what is known to be firing (after a restart, from durable state)."""
        self._firing = {alert.channel_id: alert for alert in firing if alert.status == "firing"}

    async def deliver(self, alert: IdleAlert, *, now: datetime | None = None) -> DeliveryReport:
        """Send one transition to every configured target; remember what is firing."""
        self._started()
        if alert.status == "firing":
            self._firing[alert.channel_id] = alert
        else:
            self._firing.pop(alert.channel_id, None)
        moment = now or datetime.now(UTC)
        posts = []
        if self._alertmanager is not None:
            body = alertmanager_payload([alert], resend_ttl=self.resend_ttl, now=moment)
            posts.append(self._post("alertmanager", self._alertmanager, body, 1, alert.channel_id))
        if self._webhook is not None:
            payload = webhook_payload([alert], receiver=self.receiver)
            posts.append(
                self._post("webhook", self._webhook, payload, 1, alert.channel_id, self._headers)
            )
        return DeliveryReport(tuple(await asyncio.gather(*posts)))

    async def resend_firing(self, now: datetime | None = None) -> DeliveryReport:
        """Re-post every firing alert to Alertmanager (call it every ``resend_interval``)."""
        self._started()
        if self._alertmanager is None or not self._firing:
            return DeliveryReport()
        alerts = list(self._firing.values())
        body = alertmanager_payload(
            alerts, resend_ttl=self.resend_ttl, now=now or datetime.now(UTC)
        )
        channel = alerts[0].channel_id if len(alerts) == 1 else f"{len(alerts)} channels"
        result = await self._post("alertmanager", self._alertmanager, body, len(alerts), channel)
        return DeliveryReport((result,))

    async def _post(
        self,
        target: Target,
        url: URL,
        body: Any,
        count: int,
        channel: str,
        headers: Mapping[str, str] | None = None,
    ) -> TargetResult:
        session = self._started()
        attempts = 0
        status: int | None = None
        error = ""
        while attempts <= self.retries:
            if attempts:
                await asyncio.sleep(min(self.backoff_s * 2 ** (attempts - 1), _MAX_BACKOFF_S))
            attempts += 1
            try:
                status, error = await self._post_once(session, url, body, headers)
            except _Retryable as exc:
                status, error = exc.status, str(exc)
                log.debug(
                    "alert delivery retry target=%s attempt=%s error=%s", target, attempts, error
                )
                continue
            if status < 300:
                log.debug(
                    "alert delivered target=%s channel_id=%s status=%s", target, channel, status
                )
                return TargetResult(target, True, attempts, count, status)
            break  # 3xx/4xx: the request is wrong, sending it again will not help
        log.warning(
            "alert delivery failed target=%s url=%s channel_id=%s alerts=%s attempts=%s error=%s",
            target,
            _redacted(url),
            channel,
            count,
            attempts,
            error,
        )
        return TargetResult(target, False, attempts, count, status, error)

    def _started(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("AlertDelivery is not started: use 'async with' or await start()")
        return self._session

    @staticmethod
    async def _post_once(
        session: aiohttp.ClientSession, url: URL, body: Any, headers: Mapping[str, str] | None
    ) -> tuple[int, str]:
        """Status and description of one POST; raises :class:`_Retryable` if a retry may pass."""
        try:
            async with session.post(url, json=body, headers=headers) as response:
                text = await response.text(errors="replace")
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        described = _described(status, text if status >= 300 else "")
        if status >= 500:
            raise _Retryable(described, status)
        return status, described


def _described(status: int, text: str) -> str:
    detail = " ".join(text.split())[:_ERROR_BODY_CHARS]
    return f"HTTP {status}: {detail}" if detail else f"HTTP {status}"


def _http_url(value: str, what: str) -> URL:
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"the {what} URL must be http(s)://host[:port]/..., got {value!r}")
    return url


def _alerts_endpoint(base: str) -> URL:
    url = _http_url(base, "alertmanager")
    return url if url.path.rstrip("/").endswith(_ALERTS_PATH) else url.joinpath(_ALERTS_PATH)


def _redacted(url: URL) -> str:
    """The URL without credentials or query (chat-bot webhooks carry their key there)."""
    return str(url.with_user(None).with_query(None).with_fragment(None))
