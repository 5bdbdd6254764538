"""commpulse: event-sourced analytics for an organisation's communication channels.

The application shell: the CLI and the settings, wiring the packages together.
"""

from importlib.metadata import PackageNotFoundError, version

from commpulse.settings import Settings, load_settings

try:
    __version__ = version("commpulse")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["Settings", "__version__", "load_settings"]
