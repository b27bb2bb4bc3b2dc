"""Politburo's URLconf: the admin console and admin API. Only ever served on 127.0.0.1.

Each area keeps its routes in one block below, marked with a comment naming it (simple merges).
Console pages are named (``name="users"``...): ``politburo.console.nav`` shows an area in the
navigation as soon as its index page's name is routed. Admin API paths are Synapse's, matched
on the raw path (``[^/]+`` for a user ID, decoded by the view).
"""

from django.urls import path, re_path

from politburo.api import federation, media, register, registration_tokens, rooms, server, users
from politburo.console import dag, keys, login, operations, pages, static
from politburo.console import federation as federation_pages
from politburo.console import media as media_pages
from politburo.console import rooms as room_pages
from politburo.console import users as users_pages

urlpatterns = [
    # -- console: skeleton (login, logout, the admin's account, static files, health)
    path("login", login.login, name="login"),
    path("logout", login.logout, name="logout"),
    path("account", login.account, name="account"),
    re_path(r"^static/(?P<name>[a-z0-9_.-]+)$", static.static_file, name="static"),
    path("health", pages.health, name="health"),
    # -- console: dashboard, users, registration tokens, jobs, audit (helper console)
    path("", pages.dashboard, name="dashboard"),
    path("users", users_pages.users, name="users"),
    path("users/new", users_pages.create_user, name="user_new"),
    path("users/<str:user_id>", users_pages.user_detail, name="user"),
    path("users/<str:user_id>/action", users_pages.user_action, name="user_action"),
    path("registration-tokens", users_pages.registration_tokens, name="registration_tokens"),
    path("jobs", operations.jobs, name="jobs"),
    path("jobs/<str:job_id>", operations.job_detail, name="job"),
    path("audit", operations.audit, name="audit"),
    # -- console: DAG inspector, event page, forks (helper dag)
    path("dag", dag.dag_index, name="dag"),
    path("dag/room", dag.dag_room, name="dag_room"),
    path("dag/event", dag.dag_event, name="dag_event"),
    path("dag/forks", dag.dag_forks, name="dag_forks"),
    path("dag/forks/resolve.json", dag.dag_forks_input, name="dag_forks_input"),
    # -- console: rooms, reports (helper rooms)
    path("rooms", room_pages.rooms, name="rooms"),
    path("rooms/<str:room_id>", room_pages.room, name="room"),
    path("rooms/<str:room_id>/block", room_pages.room_block, name="room_block"),
    path("rooms/<str:room_id>/make_admin", room_pages.room_make_admin, name="room_make_admin"),
    path("rooms/<str:room_id>/delete", room_pages.room_delete, name="room_delete"),
    path("rooms/<str:room_id>/purge", room_pages.room_purge, name="room_purge"),
    path("rooms/<str:room_id>/extremities", room_pages.room_drop_extremities, name="room_drop_extremities"),
    path("rooms/<str:room_id>/upgrade", room_pages.room_upgrade, name="room_upgrade"),
    path("reports", room_pages.reports, name="reports"),
    path("reports/<int:report_id>", room_pages.report_action, name="report_action"),
    # -- admin API: users and registration tokens (helper console)
    re_path(r"^_synapse/admin/v1/register$", register.Register.as_view()),
    re_path(r"^_synapse/admin/v1/server_version$", users.ServerVersion.as_view()),
    re_path(r"^_synapse/admin/v2/users$", users.Users.as_view()),
    re_path(r"^_synapse/admin/v3/users$", users.UsersV3.as_view()),
    re_path(r"^_synapse/admin/v2/users/(?P<user_id>[^/]+)$", users.UserDetail.as_view()),
    re_path(r"^_synapse/admin/v2/users/(?P<user_id>[^/]+)/devices$", users.Devices.as_view()),
    re_path(
        r"^_synapse/admin/v2/users/(?P<user_id>[^/]+)/devices/(?P<device_id>[^/]+)$", users.Device.as_view()
    ),
    re_path(r"^_synapse/admin/v2/users/(?P<user_id>[^/]+)/delete_devices$", users.DeleteDevices.as_view()),
    re_path(r"^_synapse/admin/v1/whois/(?P<user_id>[^/]+)$", users.Whois.as_view()),
    re_path(r"^_synapse/admin/v1/users/(?P<user_id>[^/]+)/joined_rooms$", users.JoinedRooms.as_view()),
    re_path(r"^_synapse/admin/v1/users/(?P<user_id>[^/]+)/memberships$", users.Memberships.as_view()),
    re_path(r"^_synapse/admin/v1/users/(?P<user_id>[^/]+)/pushers$", users.Pushers.as_view()),
    re_path(r"^_synapse/admin/v1/users/(?P<user_id>[^/]+)/accountdata$", users.AccountData.as_view()),
    re_path(r"^_synapse/admin/v1/users/(?P<user_id>[^/]+)/media$", users.Media.as_view()),
    re_path(r"^_synapse/admin/v1/users/(?P<user_id>[^/]+)/admin$", users.Admin.as_view()),
    re_path(r"^_synapse/admin/v1/users/(?P<user_id>[^/]+)/shadow_ban$", users.ShadowBan.as_view()),
    re_path(
        r"^_synapse/admin/v1/users/(?P<user_id>[^/]+)/override_ratelimit$", users.OverrideRatelimit.as_view()
    ),
    re_path(r"^_synapse/admin/v1/users/(?P<user_id>[^/]+)/login$", users.LoginAs.as_view()),
    re_path(
        r"^_synapse/admin/v1/users/(?P<user_id>[^/]+)/sent_invite_count$", users.SentInviteCount.as_view()
    ),
    re_path(
        r"^_synapse/admin/v1/users/(?P<user_id>[^/]+)/cumulative_joined_room_count$",
        users.CumulativeJoinedRoomCount.as_view(),
    ),
    re_path(
        r"^_synapse/admin/v1/auth_providers/(?P<provider>[^/]+)/users/(?P<external_id>[^/]+)$",
        users.UserByExternalId.as_view(),
    ),
    re_path(
        r"^_synapse/admin/v1/threepid/(?P<medium>[^/]+)/users/(?P<address>[^/]+)$",
        users.UserByExternalId.as_view(),
    ),
    re_path(r"^_synapse/admin/v1/suspend/(?P<user_id>[^/]+)$", users.Suspend.as_view()),
    re_path(r"^_synapse/admin/v1/user/(?P<user_id>[^/]+)/redact$", users.Redact.as_view()),
    re_path(r"^_synapse/admin/v1/user/redact_status/(?P<redact_id>[^/]+)$", users.RedactStatus.as_view()),
    re_path(r"^_synapse/admin/v1/username_available$", users.UsernameAvailable.as_view()),
    re_path(r"^_synapse/admin/v1/reset_password/(?P<user_id>[^/]+)$", users.ResetPassword.as_view()),
    re_path(r"^_synapse/admin/v1/deactivate/(?P<user_id>[^/]+)$", users.Deactivate.as_view()),
    # -- admin API + console: federation destinations, the federation tester (helper health)
    path("federation", federation_pages.federation, name="federation"),
    path("federation/retry", federation_pages.retry, name="federation_retry"),
    path("federation/test", federation_pages.tester, name="federation_test"),
    re_path(r"^_synapse/admin/v1/federation/destinations$", federation.Destinations.as_view()),
    re_path(
        r"^_synapse/admin/v1/federation/destinations/(?P<destination>[^/]+)$",
        federation.Destination.as_view(),
    ),
    re_path(
        r"^_synapse/admin/v1/federation/destinations/(?P<destination>[^/]+)/rooms$",
        federation.DestinationRooms.as_view(),
    ),
    re_path(
        r"^_synapse/admin/v1/federation/destinations/(?P<destination>[^/]+)/reset_connection$",
        federation.ResetConnection.as_view(),
    ),
    # -- admin API: the server itself (background updates, scheduled tasks, features, counts) (lead)
    re_path(r"^_synapse/admin/v1/background_updates/status$", server.BackgroundUpdatesStatus.as_view()),
    re_path(r"^_synapse/admin/v1/background_updates/enabled$", server.BackgroundUpdatesEnabled.as_view()),
    re_path(r"^_synapse/admin/v1/background_updates/start_job$", server.BackgroundUpdatesStartJob.as_view()),
    re_path(r"^_synapse/admin/v1/scheduled_tasks$", server.ScheduledTasks.as_view()),
    re_path(
        r"^_synapse/admin/v1/experimental_features/(?P<user_id>[^/]+)$", server.ExperimentalFeatures.as_view()
    ),
    # -- admin API: rooms, history purge, event reports, server notices (helper rooms)
    re_path(r"^_synapse/admin/v1/rooms$", rooms.Rooms.as_view()),
    re_path(r"^_synapse/admin/v1/rooms/(?P<room_id>[^/]+)$", rooms.RoomDetail.as_view()),
    re_path(r"^_synapse/admin/v1/rooms/(?P<room_id>[^/]+)/members$", rooms.RoomMembers.as_view()),
    re_path(r"^_synapse/admin/v1/rooms/(?P<room_id>[^/]+)/state$", rooms.RoomState.as_view()),
    re_path(r"^_synapse/admin/v1/rooms/(?P<room_id>[^/]+)/messages$", rooms.RoomMessages.as_view()),
    re_path(
        r"^_synapse/admin/v1/rooms/(?P<room_id>[^/]+)/context/(?P<event_id>[^/]+)$",
        rooms.RoomContext.as_view(),
    ),
    re_path(
        r"^_synapse/admin/v1/rooms/(?P<room_id>[^/]+)/timestamp_to_event$",
        rooms.RoomTimestampToEvent.as_view(),
    ),
    re_path(r"^_synapse/admin/v1/rooms/(?P<room_id>[^/]+)/block$", rooms.RoomBlock.as_view()),
    re_path(
        r"^_synapse/admin/v1/rooms/(?P<room_id>[^/]+)/forward_extremities$",
        rooms.ForwardExtremities.as_view(),
    ),
    re_path(r"^_synapse/admin/v1/rooms/(?P<room_id>[^/]+)/make_room_admin$", rooms.MakeRoomAdmin.as_view()),
    re_path(r"^_synapse/admin/v1/room/(?P<room_id>[^/]+)/media$", rooms.RoomMedia.as_view()),
    re_path(r"^_synapse/admin/v1/join/(?P<room_id>[^/]+)$", rooms.JoinRoom.as_view()),
    re_path(
        r"^_synapse/admin/v2/rooms/delete_status/(?P<delete_id>[^/]+)$", rooms.DeleteStatusById.as_view()
    ),
    re_path(r"^_synapse/admin/v2/rooms/(?P<room_id>[^/]+)$", rooms.RoomDeleteV2.as_view()),
    re_path(r"^_synapse/admin/v2/rooms/(?P<room_id>[^/]+)/delete_status$", rooms.RoomDeleteStatus.as_view()),
    re_path(r"^_synapse/admin/v1/purge_history/(?P<room_id>[^/]+)$", rooms.PurgeHistory.as_view()),
    re_path(
        r"^_synapse/admin/v1/purge_history/(?P<room_id>[^/]+)/(?P<event_id>[^/]+)$",
        rooms.PurgeHistory.as_view(),
    ),
    re_path(
        r"^_synapse/admin/v1/purge_history_status/(?P<purge_id>[^/]+)$", rooms.PurgeHistoryStatus.as_view()
    ),
    re_path(r"^_synapse/admin/v1/event_reports$", rooms.EventReports.as_view()),
    re_path(r"^_synapse/admin/v1/event_reports/(?P<report_id>[^/]+)$", rooms.EventReportDetail.as_view()),
    re_path(r"^_synapse/admin/v1/room_reports$", rooms.RoomReports.as_view()),
    re_path(r"^_synapse/admin/v1/room_reports/(?P<report_id>[^/]+)$", rooms.RoomReportDetail.as_view()),
    re_path(r"^_synapse/admin/v1/fetch_event/(?P<event_id>[^/]+)$", rooms.FetchEvent.as_view()),
    re_path(r"^_synapse/admin/v1/statistics/database/rooms$", rooms.DatabaseRoomStatistics.as_view()),
    re_path(r"^_synapse/admin/v1/send_server_notice$", rooms.SendServerNotice.as_view()),
    re_path(r"^_synapse/admin/v1/send_server_notice/(?P<txn_id>[^/]+)$", rooms.SendServerNotice.as_view()),
    re_path(r"^_synapse/admin/v1/registration_tokens$", registration_tokens.RegistrationTokens.as_view()),
    re_path(
        r"^_synapse/admin/v1/registration_tokens/new$", registration_tokens.NewRegistrationToken.as_view()
    ),
    re_path(
        r"^_synapse/admin/v1/registration_tokens/(?P<token>[^/]+)$",
        registration_tokens.RegistrationToken.as_view(),
    ),
    # -- console: media and keys (helper mediakeys)
    path("media", media_pages.media, name="media"),
    path("media/view", media_pages.media_view, name="media_view"),
    re_path(r"^media/raw/(?P<media_id>[A-Za-z0-9_-]{1,255})$", media_pages.media_raw, name="media_raw"),
    path("media/item", media_pages.media_item, name="media_item"),
    path("media/quarantine", media_pages.media_bulk_quarantine, name="media_quarantine"),
    path("media/purge", media_pages.media_purge, name="media_purge"),
    path("keys", keys.keys, name="keys"),
    path("keys/rotate", keys.keys_rotate, name="keys_rotate"),
    path("keys/compromised", keys.keys_compromised, name="keys_compromised"),
    # -- admin API: media (helper mediakeys)
    re_path(r"^_synapse/admin/v1/media/delete$", media.DeleteBefore.as_view()),
    re_path(
        r"^_synapse/admin/v1/media/quarantine/(?P<server_name>[^/]+)/(?P<media_id>[^/]+)$",
        media.Quarantine.as_view(),
    ),
    re_path(
        r"^_synapse/admin/v1/media/unquarantine/(?P<server_name>[^/]+)/(?P<media_id>[^/]+)$",
        media.Unquarantine.as_view(),
    ),
    re_path(r"^_synapse/admin/v1/media/protect/(?P<media_id>[^/]+)$", media.Protect.as_view()),
    re_path(r"^_synapse/admin/v1/media/unprotect/(?P<media_id>[^/]+)$", media.Unprotect.as_view()),
    re_path(r"^_synapse/admin/v1/media/(?P<server_name>[^/]+)/delete$", media.DeleteBefore.as_view()),
    re_path(
        r"^_synapse/admin/v1/media/(?P<server_name>[^/]+)/(?P<media_id>[^/]+)$", media.MediaItem.as_view()
    ),
    re_path(r"^_synapse/admin/v1/purge_media_cache$", media.PurgeMediaCache.as_view()),
    re_path(r"^_synapse/admin/v1/room/(?P<room_id>[^/]+)/media/quarantine$", media.QuarantineRoom.as_view()),
    re_path(r"^_synapse/admin/v1/quarantine_media/(?P<room_id>[^/]+)$", media.QuarantineRoom.as_view()),
    re_path(r"^_synapse/admin/v1/user/(?P<user_id>[^/]+)/media/quarantine$", media.QuarantineUser.as_view()),
    re_path(r"^_synapse/admin/v1/statistics/users/media$", media.UsersMediaStatistics.as_view()),
    # DELETE /_synapse/admin/v1/users/{userId}/media: users.Media above (its GET lists the page)
]
