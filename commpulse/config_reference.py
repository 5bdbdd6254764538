"""The configuration reference, rendered from the settings model.

``python -m commpulse.config_reference > docs/configuration.md`` regenerates
the page; a test checks that the file equals :func:`render`, so the page
cannot drift from :class:`~commpulse.settings.Settings`. Every field is
listed with its TOML key, its environment variable, its type, its default
and its description. Descriptions come from the model (``Field(description=
...)``); :data:`FALLBACK_DESCRIPTIONS` covers the fields that have none yet.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from commpulse.settings import Settings

__all__ = ["FALLBACK_DESCRIPTIONS", "SECTION_DESCRIPTIONS", "Entry", "entries", "render"]

PREFIX: Final = "COMMPULSE_"
DELIMITER: Final = "__"
UNDOCUMENTED: Final = "(undocumented)"

#: Descriptions for fields whose model declares none, by dotted TOML key.
#: Better: give the field a ``description`` in commpulse/settings.py and drop it here.
FALLBACK_DESCRIPTIONS: Final[dict[str, str]] = {
    "kafka.security_protocol": "how clients talk to the brokers: plain or TLS, "
    "with or without SASL",
    "kafka.sasl_mechanism": "SASL mechanism; required with SASL_PLAINTEXT and SASL_SSL",
    "kafka.sasl_username": "SASL user name; required with SASL_PLAINTEXT and SASL_SSL",
    "kafka.sasl_password": "SASL password; required with SASL_PLAINTEXT and SASL_SSL",
    "kafka.ssl_check_hostname": "check that the broker's certificate names the host connected to",
    "kafka.client_id": "client id sent to the brokers (their logs and quotas show it)",
    "broker.host": "address the embedded broker listens on",
    "broker.start_timeout_s": "how long to wait for the embedded broker to answer",
    "topics.events": "the event log, the source of truth (key = channel id)",
    "topics.events_partitions": "partitions of the event log",
    "topics.dlq": "dead-letter topic: invalid input with the reason",
    "topics.dlq_partitions": "partitions of the dead-letter topic",
    "topics.kpis": "KPI window updates from the stream worker",
    "topics.kpis_partitions": "partitions of the KPI topic",
    "topics.alerts": "idle-channel alert transitions (firing, resolved)",
    "topics.alerts_partitions": "partitions of the alerts topic",
    "topics.replication_factor": "replicas of each topic `commpulse topics` creates; "
    "3 on a multi-broker cluster",
    "ingest.port": "HTTP ingest port",
}

#: Section introductions for models without a docstring, by section name.
SECTION_DESCRIPTIONS: Final[dict[str, str]] = {
    "": "Settings outside any section.",
    "topics": "Kafka topics: names, partitions and replication, as `commpulse topics` "
    "creates and verifies them. Every topic keeps its history (`retention.ms=-1`) "
    "except the packed topic.",
    "ingest": "Ingest: validation limits, the producer, and HTTP ingest "
    "(`commpulse serve-ingest`).",
    "privacy": "Pseudonymisation of actor ids at ingest (see docs/events.md).",
}

_HEADER: Final = """\
# Configuration reference

<!-- Generated from commpulse/settings.py: do not edit. Regenerate with
     python -m commpulse.config_reference > docs/configuration.md
     (tests/unit/commpulse/test_config_reference.py fails when it is stale). -->

This page is generated from the settings model (`commpulse/settings.py`):
run `python -m commpulse.config_reference > docs/configuration.md` after
changing a setting.

Settings come from, strongest first:

1. command-line options: `--data-dir` and `--config` for every command, and a
   few per command (`serve-ingest --host/--port`, `stream --web-port`,
   `broker --port`);
2. environment variables: `COMMPULSE_` + the section + `__` + the field, in
   capitals, e.g. `COMMPULSE_KAFKA__BOOTSTRAP_SERVERS`;
3. a TOML file: `commpulse.toml` in the working directory, or `--config FILE`
   (which must exist); a field goes under its section's table (`[kafka]`,
   then `bootstrap_servers = "..."`), or as a dotted key
   (`kafka.bootstrap_servers = "..."`);
4. the defaults below.

An unknown setting, in the file or as a `COMMPULSE_` variable with a known
section, is an error, as is a value of the wrong type; the error names the
setting. Durations are in seconds (`_s`) or milliseconds (`_ms`), sizes in
bytes.

**Secrets** (marked *secret* below) are never printed or logged. Give them as
environment variables or in a TOML file readable only by commpulse, not on a
shared command line. When the HTTP ingest token and the pseudonym key are
unset, commpulse generates them once into `<data dir>/secrets/` (mode 0600).
"""


@dataclass(frozen=True)
class Entry:
    """One setting as the reference lists it."""

    section: str  # "" for top-level fields
    name: str
    annotation: Any
    field: FieldInfo

    @property
    def key(self) -> str:
        """The dotted TOML key, e.g. ``kafka.bootstrap_servers``."""
        return f"{self.section}.{self.name}" if self.section else self.name

    @property
    def env(self) -> str:
        parts = [self.section, self.name] if self.section else [self.name]
        return PREFIX + DELIMITER.join(parts).upper()

    @property
    def secret(self) -> bool:
        return SecretStr in _members(self.annotation)

    @property
    def description(self) -> str:
        own = (self.field.description or "").strip()
        return own or FALLBACK_DESCRIPTIONS.get(self.key, UNDOCUMENTED)


def entries(model: type[BaseModel] = Settings) -> Iterator[Entry]:
    """Every leaf setting, top-level fields first, then each section in model order."""
    sections = []
    for name, field in model.model_fields.items():
        sub = _model(field.annotation)
        if sub is None:
            yield Entry("", name, field.annotation, field)
        else:
            sections.append((name, sub))
    for section, sub in sections:
        for name, field in sub.model_fields.items():
            yield Entry(section, name, field.annotation, field)


def render(model: type[BaseModel] = Settings) -> str:
    """The whole reference as Markdown, ending with a newline."""
    lines = [_HEADER]
    by_section: dict[str, list[Entry]] = {}
    for entry in entries(model):
        by_section.setdefault(entry.section, []).append(entry)
    for section, items in by_section.items():
        title = f"`[{section}]`" if section else "Top level"
        lines += [f"## {title}", "", _section_text(model, section), ""]
        lines += [
            "| TOML key | environment variable | type | default | description |",
            "|---|---|---|---|---|",
        ]
        lines += [_row(entry) for entry in items]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _section_text(model: type[BaseModel], section: str) -> str:
    if not section:
        return SECTION_DESCRIPTIONS[""]
    sub = _model(model.model_fields[section].annotation)
    doc = (sub.__doc__ or "").strip() if sub is not None else ""
    text = doc.split("\n\n")[0] if doc else SECTION_DESCRIPTIONS.get(section, "")
    return " ".join(text.replace("``", "`").split())


def _row(entry: Entry) -> str:
    kind = _type(entry.annotation, entry.field)
    if entry.secret:
        kind += ", *secret*"
    cells = [
        f"`{entry.key}`",
        f"`{entry.env}`",
        kind,
        _default(entry),
        entry.description.replace("|", "\\|"),
    ]
    return "| " + " | ".join(cells) + " |"


def _model(annotation: Any) -> type[BaseModel] | None:
    """The model class of a section field, or None for a plain setting."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _members(annotation: Any) -> tuple[Any, ...]:
    """The members of a union (``X | None``), or the annotation alone."""
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _type(annotation: Any, field: FieldInfo) -> str:
    members = [m for m in _members(annotation) if m is not type(None)]
    names = " or ".join(_type_name(m) for m in members)
    bounds = ", ".join(_bounds(field))
    return f"{names} ({bounds})" if bounds else names


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    simple = {
        str: "text",
        int: "integer",
        float: "number",
        bool: "boolean",
        Path: "path",
        SecretStr: "text",
    }
    if annotation in simple:
        return simple[annotation]
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        (item, *_) = get_args(annotation) or (Any,)
        return f"list of {_type_name(item)}"
    if origin is dict:
        return "table"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: FieldInfo) -> Iterator[str]:
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            yield f"≥ {item.ge}"
        elif isinstance(item, annotated_types.Gt):
            yield f"> {item.gt}"
        elif isinstance(item, annotated_types.Le):
            yield f"≤ {item.le}"
        elif isinstance(item, annotated_types.Lt):
            yield f"< {item.lt}"


def _default(entry: Entry) -> str:
    value = entry.field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    text = f"`{_toml(value)}`"
    hint = _hint(entry.name, value)
    return f"{text} ({hint})" if hint else text


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, SecretStr):
        return "***"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _hint(name: str, value: Any) -> str:
    """A readable form of a large size or duration, e.g. ``8 MiB`` or ``30 days``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return ""
    if name.endswith("_bytes") and value >= 1024:
        for unit, size in (("MiB", 1024**2), ("KiB", 1024)):
            if value >= size and value % size == 0:
                return f"{value // size} {unit}"
    seconds = value / 1000 if name.endswith("_ms") else value if name.endswith("_s") else None
    if seconds is not None and seconds >= 3600:
        for unit, size in (("days", 86_400), ("hours", 3600)):
            if seconds % size == 0:
                count = int(seconds // size)
                return f"{count} {unit[:-1] if count == 1 else unit}"
    return ""


if __name__ == "__main__":
    sys.stdout.buffer.write(render().encode("utf-8"))
