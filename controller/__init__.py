"""boosterd: edge controller for water booster pump stations."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("boosterd")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
