"""Tribune's URLconf: the client-server API and media. Nothing else is reachable here.

Each spec area's module declares its own ``routes``; the JSON 404 catch-all comes last.
"""

from django.conf import settings
from django.urls import URLPattern, re_path

from tribune.http import client_route
from tribune.views import (
    account_data,
    accounts,
    devices,
    directory,
    discovery,
    ephemeral,
    events,
    filters,
    keys,
    media,
    membership,
    presence,
    profile,
    pushers,
    pushrules,
    rooms,
    search,
    spaces,
    sync,
    testing,
    thirdparty,
    to_device,
    voip,
)

urlpatterns: list[URLPattern] = [
    re_path(r"^_matrix/client/versions$", discovery.versions),
    re_path(r"^\.well-known/matrix/client$", discovery.well_known_client),
    re_path(r"^health$", discovery.health),
    client_route("capabilities", discovery.capabilities),
]
for area in (
    accounts, devices, profile, rooms, membership, events, directory, sync, filters, ephemeral,
    account_data, pushrules, pushers, presence, to_device, keys, media, thirdparty, voip, search, spaces,
):  # fmt: skip
    urlpatterns += area.routes
if settings.DAGMA.enable_test_hooks:  # test-only: never on a real server (dagma_project/config.py)
    urlpatterns += testing.routes

_catch_all = re_path(r"^.*$", discovery.unrecognized)
_catch_all.dagma_catch_all = True  # type: ignore[attr-defined]
urlpatterns.append(_catch_all)
