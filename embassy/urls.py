"""Embassy's URLconf: server-server federation and key distribution."""

from django.urls import re_path

from embassy.views import events, keys, media, membership, queries, transactions, user_keys

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
    re_path(r"^_matrix/federation/v1/query/profile$", queries.query_profile),
    re_path(r"^_matrix/federation/v1/publicRooms$", queries.public_rooms),
    re_path(r"^_matrix/federation/v1/hierarchy/(?P<room_id>[^/]+)$", queries.hierarchy),
    # Devices and E2EE keys of our users (issue 11).
    re_path(r"^_matrix/federation/v1/user/devices/(?P<user_id>[^/]+)$", user_keys.user_devices),
    re_path(r"^_matrix/federation/v1/user/keys/query$", user_keys.query_user_keys),
    re_path(r"^_matrix/federation/v1/user/keys/claim$", user_keys.claim_user_keys),
    # Our media and queries about our users and rooms, for other servers (issue 11).
    re_path(r"^_matrix/federation/v1/media/download/(?P<media_id>[^/]+)$", media.download),
    re_path(r"^_matrix/federation/v1/media/thumbnail/(?P<media_id>[^/]+)$", media.thumbnail),
    # Transactions and reads (the outbox/sender side of issue #10).
    re_path(r"^_matrix/federation/v1/send/(?P<txn_id>[^/]+)$", transactions.send_transaction),
    re_path(r"^_matrix/federation/v1/event/(?P<event_id>[^/]+)$", events.get_event),
    re_path(r"^_matrix/federation/v1/state/(?P<room_id>[^/]+)$", events.get_state),
    re_path(r"^_matrix/federation/v1/state_ids/(?P<room_id>[^/]+)$", events.get_state_ids),
    re_path(
        r"^_matrix/federation/v1/event_auth/(?P<room_id>[^/]+)/(?P<event_id>[^/]+)$", events.get_event_auth
    ),
    re_path(r"^_matrix/federation/v1/backfill/(?P<room_id>[^/]+)$", events.backfill),
    re_path(r"^_matrix/federation/v1/get_missing_events/(?P<room_id>[^/]+)$", events.get_missing_events),
    re_path(r"^_matrix/federation/v1/timestamp_to_event/(?P<room_id>[^/]+)$", events.timestamp_to_event),
]

_catch_all = re_path(r"^.*$", keys.unrecognized)
_catch_all.dagma_catch_all = True  # type: ignore[attr-defined]
urlpatterns.append(_catch_all)
