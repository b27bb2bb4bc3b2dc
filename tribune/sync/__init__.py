"""``/sync``: the response builder (``builder``) and the cross-process long-poll wake-up (``notifier``)."""
