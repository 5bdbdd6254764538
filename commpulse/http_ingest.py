"""Run the HTTP ingest server (uvicorn) wired to Kafka and the settings."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import uvicorn

from commpulse import __version__
from commpulse.kafka import connect, make_producer
from commpulse.keys import ingest_token
from commpulse.settings import Settings
from infra import kafka_reachable
from ingest.errors import ConfigurationError
from ingest.http import EVENTS_PATH, create_app

__all__ = ["serve"]

log = logging.getLogger(__name__)


def serve(settings: Settings, *, on_ready: Callable[[str], None] = print) -> None:
    """Serve until interrupted; the producer is flushed and closed on the way out."""
    token, token_file = ingest_token(settings)
    config = settings.ingest
    if config.host not in {"127.0.0.1", "localhost", "::1"}:
        log.warning("HTTP ingest listens on %s, beyond loopback, as configured", config.host)
    _check_listen(config.host, config.port)
    with connect(settings) as target, make_producer(settings, target) as producer:
        app = create_app(
            producer,
            token=token,
            max_body_bytes=config.max_body_bytes,
            kafka_ok=lambda: (
                kafka_reachable(target.bootstrap_servers, client_options=target.client_options)
                is None
            ),
            grace_s=settings.stream.grace_s,
            version=__version__,
        )
        server = uvicorn.Server(
            uvicorn.Config(
                app, host=config.host, port=config.port, log_level="warning", access_log=False
            )
        )
        where = f"token in {token_file}" if token_file else "token from settings"
        on_ready(
            f"HTTP ingest on http://{config.host}:{config.port}{EVENTS_PATH} ({where}); Ctrl-C stops it"
        )
        server.run()


def _check_listen(host: str, port: int) -> None:
    """Fail with one clear line before connecting anything if the port is taken."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise ConfigurationError(
            f"HTTP ingest cannot listen on {host}:{port}: {exc.strerror or exc}; choose another with --port"
        ) from exc
