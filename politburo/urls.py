"""Politburo's URLconf: the admin console and admin API. Only ever served on 127.0.0.1.

Each area keeps its routes in one block below, marked with a comment naming it (simple merges).
Console pages are named (``name="users"``...): ``politburo.console.nav`` shows an area in the
navigation as soon as its index page's name is routed. Admin API paths are Synapse's, matched
on the raw path (``[^/]+`` for a user ID, decoded by the view).
"""

from django.urls import path, re_path

from politburo.api import register, users
from politburo.console import login, pages, static

urlpatterns = [
    # -- console: skeleton (login, logout, the admin's account, static files, health)
    path("login", login.login, name="login"),
    path("logout", login.logout, name="logout"),
    path("account", login.account, name="account"),
    re_path(r"^static/(?P<name>[a-z0-9_.-]+)$", static.static_file, name="static"),
    path("health", pages.health, name="health"),
    # -- console: dashboard, users, jobs, audit (helper console)
    path("", pages.dashboard, name="dashboard"),
    # -- admin API: users (helper console)
    re_path(r"^_synapse/admin/v1/register$", register.Register.as_view()),
    re_path(r"^_synapse/admin/v1/server_version$", users.ServerVersion.as_view()),
    re_path(r"^_synapse/admin/v2/users$", users.Users.as_view()),
    re_path(r"^_synapse/admin/v2/users/(?P<user_id>[^/]+)$", users.UserDetail.as_view()),
    re_path(r"^_synapse/admin/v1/reset_password/(?P<user_id>[^/]+)$", users.ResetPassword.as_view()),
    re_path(r"^_synapse/admin/v1/deactivate/(?P<user_id>[^/]+)$", users.Deactivate.as_view()),
]
