"""Embassy's URLconf: server-server federation and key distribution."""

from django.urls import re_path

from embassy.views import keys, membership, queries

urlpatterns = [
    re_path(r"^_matrix/key/v2/server/?$", keys.server_keys),
    re_path(r"^_matrix/key/v2/query$", keys.query_keys),
    re_path(r"^_matrix/key/v2/query/(?P<server_name>[^/]+)$", keys.query_server_keys),
    re_path(r"^_matrix/federation/v1/version$", keys.server_version),
    re_path(r"^\.well-known/matrix/server$", keys.well_known_server),
    # Joins, leaves, knocks and invites (resident side) and alias queries. Routed on the raw
    # path (dagma_project.asgi.common): a v3 event ID's "/" stays %2F inside its segment.
    re_path(r"^_matrix/federation/v1/make_join/(?P<room_id>[^/]+)/(?P<user_id>[^/]+)$", membership.make_join),
    re_path(
        r"^_matrix/federation/v1/make_knock/(?P<room_id>[^/]+)/(?P<user_id>[^/]+)$", membership.make_knock
    ),
    re_path(
        r"^_matrix/federation/v1/make_leave/(?P<room_id>[^/]+)/(?P<user_id>[^/]+)$", membership.make_leave
    ),
    re_path(
        r"^_matrix/federation/v2/send_join/(?P<room_id>[^/]+)/(?P<event_id>[^/]+)$", membership.send_join
    ),
    re_path(
        r"^_matrix/federation/v2/send_leave/(?P<room_id>[^/]+)/(?P<event_id>[^/]+)$", membership.send_leave
    ),
    re_path(
        r"^_matrix/federation/v1/send_knock/(?P<room_id>[^/]+)/(?P<event_id>[^/]+)$", membership.send_knock
    ),
    re_path(r"^_matrix/federation/v2/invite/(?P<room_id>[^/]+)/(?P<event_id>[^/]+)$", membership.invite),
    re_path(r"^_matrix/federation/v1/query/directory$", queries.query_directory),
]

_catch_all = re_path(r"^.*$", keys.unrecognized)
_catch_all.dagma_catch_all = True  # type: ignore[attr-defined]
urlpatterns.append(_catch_all)
