"""Dagma's shared core: the protocol, storage and actions every server uses."""

__version__ = "0.1.0"
