"""The content repository's pure parts: no ORM here (the store layer owns the tables).

- ``ids``: media IDs and ``mxc://`` URIs;
- ``filestore``: the content-addressed file store under ``MEDIA_STORE_PATH``;
- ``content_types``: parsing upload Content-Types and answering downloads safely;
- ``thumbnailer``: Pillow thumbnails (scale / crop, animated, bomb-proof);
- ``preview``: the URL preview fetcher (SSRF-safe) and OpenGraph parsing.
"""
