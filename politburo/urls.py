"""Politburo's URLconf: the admin console and admin API. Only ever served on 127.0.0.1.

Each area keeps its routes in one block below, marked with a comment naming it (simple merges).
Console pages are named (``name="users"``...): ``politburo.console.nav`` shows an area in the
navigation as soon as its index page's name is routed. Admin API paths are Synapse's, matched
on the raw path (``[^/]+`` for a user ID, decoded by the view).
"""

from django.urls import path, re_path

from politburo.api import register, rooms, users
from politburo.console import login, pages, static
from politburo.console import rooms as room_pages

urlpatterns = [
    # -- console: skeleton (login, logout, the admin's account, static files, health)
    path("login", login.login, name="login"),
    path("logout", login.logout, name="logout"),
    path("account", login.account, name="account"),
    re_path(r"^static/(?P<name>[a-z0-9_.-]+)$", static.static_file, name="static"),
    path("health", pages.health, name="health"),
    # -- console: dashboard, users, jobs, audit (helper console)
    path("", pages.dashboard, name="dashboard"),
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
    # -- admin API: users (helper console)
    re_path(r"^_synapse/admin/v1/register$", register.Register.as_view()),
    re_path(r"^_synapse/admin/v1/server_version$", users.ServerVersion.as_view()),
    re_path(r"^_synapse/admin/v2/users$", users.Users.as_view()),
    re_path(r"^_synapse/admin/v2/users/(?P<user_id>[^/]+)$", users.UserDetail.as_view()),
    re_path(r"^_synapse/admin/v1/reset_password/(?P<user_id>[^/]+)$", users.ResetPassword.as_view()),
    re_path(r"^_synapse/admin/v1/deactivate/(?P<user_id>[^/]+)$", users.Deactivate.as_view()),
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
]
