"""What operators watch: Prometheus metrics and the per-request access line.

``metrics`` declares every ``dagma_*`` series the hot paths update (cheap: a counter or
histogram observation); ``requests`` carries what one HTTP request did (route, requester,
database time) from the layers that know it to the observer that logs and counts it;
``gauges`` computes the costly figures (queues, disk, database size) at most every
:data:`~dagcore.observability.gauges.CACHE_SECONDS`, only when scraped.
"""
