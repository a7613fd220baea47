"""The ``kush`` command: the top layer, which imports the services it runs.

Nothing below this package imports it (see ``docs/architecture.md``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kush-edge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
