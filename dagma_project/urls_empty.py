"""No routes: for processes that serve no HTTP (Celery worker and beat)."""

urlpatterns: list[object] = []
