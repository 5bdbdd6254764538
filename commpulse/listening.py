"""The ports commpulse's servers listen on, checked before anything starts.

``up`` used to start the broker and its children and only then find the stream worker's
port taken: the worker crash-looped, its log's first line claiming the port it never got,
and the terminal said only "the log above says which". Now ``up`` and ``stream`` look at
each port first and stop with one line naming the port, the setting and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from commpulse.settings import Settings
from infra.ports import port_taken
from ingest.errors import ConfigurationError

__all__ = ["Listener", "PortInUse", "listeners", "require_free"]


class PortInUse(ConfigurationError):
    """A port commpulse must listen on is taken."""


@dataclass(frozen=True)
class Listener:
    """A server's address and the settings that choose it."""

    what: str
    host: str
    port: int
    #: the dotted setting of the port
    setting: str
    #: what port 0 means for this server, if it means anything
    zero: str | None = None

    @property
    def variable(self) -> str:
        return "COMMPULSE_" + self.setting.upper().replace(".", "__")


def listeners(
    settings: Settings, *, stream: bool = True, ingest: bool = True, web_port: int | None = None
) -> list[Listener]:
    """The fixed ports the chosen servers will listen on (port 0 is no fixed port);
    ``web_port`` overrides the stream worker's setting."""
    found = []
    port = settings.stream.web_port if web_port is None else web_port
    if stream and port:
        found.append(
            Listener(
                "the stream worker's web server",
                settings.stream.web_host,
                port,
                "stream.web_port",
                zero="0 runs no web server",
            )
        )
    if ingest and settings.ingest.port:
        found.append(
            Listener("HTTP ingest", settings.ingest.host, settings.ingest.port, "ingest.port")
        )
    return found


def require_free(wanted: list[Listener]) -> None:
    """Raise :class:`PortInUse` naming the first of ``wanted`` that is taken."""
    for listener in wanted:
        if port_taken(listener.host, listener.port):
            zero = f"; {listener.zero}" if listener.zero else ""
            raise PortInUse(
                f"port {listener.port} on {listener.host} ({listener.what}) is in use: stop "
                f"what listens there, or set {listener.setting} "
                f"({listener.variable}) to another port{zero}"
            )
