"""Tests for the pure protocol core (run with ``pytest -p no:django``)."""
