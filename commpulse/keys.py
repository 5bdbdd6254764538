"""Secrets that commpulse generates on first use when they are not configured.

The pseudonymisation key and the HTTP ingest token live in
``<data dir>/secrets/`` (directory 0700, files 0600). Creation is atomic, so
two commands starting at once agree on one value.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from commpulse.settings import Settings
from ingest.errors import ConfigurationError
from ingest.pseudonym import MIN_KEY_BYTES

__all__ = ["ingest_token", "pseudonym_key", "secrets_dir"]


def secrets_dir(settings: Settings) -> Path:
    return settings.data_dir / "secrets"


def pseudonym_key(settings: Settings) -> bytes:
    """The HMAC key for pseudonyms: configured, or generated once into the data dir."""
    configured = settings.privacy.pseudonym_key
    if configured is not None:
        key = configured.get_secret_value().encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise ConfigurationError(
                f"privacy.pseudonym_key must be at least {MIN_KEY_BYTES} bytes long"
            )
        return key
    return _stored_secret(secrets_dir(settings) / "pseudonym.key").encode("utf-8")


def ingest_token(settings: Settings) -> tuple[str, Path | None]:
    """The HTTP ingest bearer token, and the file it came from if it was generated."""
    configured = settings.ingest.token
    if configured is not None:
        token = configured.get_secret_value()
        if len(token) < 16:
            raise ConfigurationError("ingest.token must be at least 16 characters long")
        return token, None
    path = secrets_dir(settings) / "ingest.token"
    return _stored_secret(path), path


def _stored_secret(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
        tmp = Path(name)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)  # atomic; fails if another process won the race
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not value:
        raise ConfigurationError(f"{path} is empty; delete it to generate a new secret")
    return value
