"""Combined URLconf of the quick-start process: Embassy's routes, then Tribune's (with its catch-all last)."""

from embassy.urls import urlpatterns as embassy_patterns
from tribune.urls import urlpatterns as tribune_patterns

urlpatterns = [p for p in embassy_patterns if not getattr(p, "dagma_catch_all", False)] + tribune_patterns
