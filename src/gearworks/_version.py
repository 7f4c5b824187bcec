"""The package version, importable with nothing else (the server's ``version`` reply and ``--version`` use it)."""

__version__ = "0.1.0"
