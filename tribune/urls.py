"""Tribune's URLconf: the client-server API and media. Nothing else is reachable here."""

from django.urls import re_path

from tribune.http import client_route
from tribune.views import discovery

urlpatterns = [
    re_path(r"^_matrix/client/versions$", discovery.versions),
    re_path(r"^\.well-known/matrix/client$", discovery.well_known_client),
    re_path(r"^health$", discovery.health),
    client_route("capabilities", discovery.capabilities),
]

_catch_all = re_path(r"^.*$", discovery.unrecognized)
_catch_all.dagma_catch_all = True  # type: ignore[attr-defined]
urlpatterns.append(_catch_all)
