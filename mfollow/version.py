"""The package version (read by the build backend and by ``mfollow --version``)."""

__version__ = "0.1.0"
