"""Embassy's URLconf: server-server federation and key distribution."""

from django.urls import re_path

from embassy.views import keys

urlpatterns = [
    re_path(r"^_matrix/key/v2/server/?$", keys.server_keys),
    re_path(r"^_matrix/key/v2/query$", keys.query_keys),
    re_path(r"^_matrix/key/v2/query/(?P<server_name>[^/]+)$", keys.query_server_keys),
    re_path(r"^_matrix/federation/v1/version$", keys.server_version),
    re_path(r"^\.well-known/matrix/server$", keys.well_known_server),
]

_catch_all = re_path(r"^.*$", keys.unrecognized)
_catch_all.dagma_catch_all = True  # type: ignore[attr-defined]
urlpatterns.append(_catch_all)
