"""Outbound networking shared by every server-side fetch (URL previews, federation, remote media)."""
