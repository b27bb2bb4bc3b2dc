"""``/sync``'s cross-process long-poll wake-up (``notifier``); the response is built by the
sync engine, ``dagcore.sync``."""
