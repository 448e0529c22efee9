"""configsvc: configuration and service discovery with per-namespace consistency."""

__version__ = "0.1.0"
