"""``manage.py serve tribune|embassy|politburo|all`` — run one server in the foreground.

The same on every install (systemd units and our tests use it): listeners come
from the config (``--config`` or ``$DAGMA_CONFIG``, default ``./dagma.yaml``),
logs go to stdout as JSON (or text: ``log_format``) lines, one access line per request,
``--metrics-port N`` serves this process's Prometheus metrics on N, SIGTERM stops gracefully (in-flight requests
finish, then the process exits 0).

``all`` is the quick start: Tribune + Embassy in one process plus the
in-process task runner when no broker is configured. On the embedded default
(SQLite) a missing config is generated (server_name ``localhost``) and
migrations are applied at start; on PostgreSQL run ``manage.py migrate`` first.
"""

from __future__ import annotations

import faulthandler
import gc
import importlib
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dagcore.actions.accounts import count_accounts
from dagcore.management.commands.generate_config import write_new_config
from dagcore.store import schema
from dagcore.taskqueue.runner import start_in_process_runner
from dagcore.taskqueue.schedule import beat_jobs_for_role
from dagma_project.asgi.common import PortRouter, UrlconfMiddleware
from dagma_project.config import ConfigError, check_database_for_production, check_tls_files
from dagma_project.metrics import MetricsListenerError

ROLES = ("tribune", "embassy", "politburo", "all")
ROLE_RESOURCES = {
    "tribune": {"client", "media", "health", "metrics"},
    "embassy": {"federation", "keys"},
    "politburo": {"admin"},
    "all": {"client", "media", "health", "metrics", "federation", "keys"},
}
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _escape(value: str) -> str:
    """A value inside a Twisted endpoint description (``:`` and ``\\`` separate and escape)."""
    return value.replace("\\", "\\\\").replace(":", r"\:")


def _endpoint(port: int, address: str, tls: tuple[Path, Path] | None = None) -> str:
    """The daphne/Twisted endpoint for one bind address; ``tls`` = (certificate, private key).

    TLS listeners use Twisted's ``ssl:`` endpoint (pyOpenSSL + service_identity), which
    listens on IPv4 and IPv6 alike by its ``interface``.
    """
    if tls is not None:
        cert, key = tls
        return (
            f"ssl:port={port}:interface={_escape(address)}"
            f":privateKey={_escape(str(key))}:certKey={_escape(str(cert))}"
        )
    if ":" in address:
        return f"tcp6:port={port}:interface={_escape(address)}"
    return f"tcp:port={port}:interface={address}"


@dataclass(frozen=True)
class Listener:
    port: int
    bind_addresses: list[str]
    urlconf: str
    tls: bool = False


def _can_bind(address: str) -> bool:
    """IPv6 may be disabled (containers): skip such addresses instead of failing to start."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
        return True
    except OSError:
        return False


def plan_listeners(role: str, config: Any) -> list[Listener]:
    """The listeners this role serves, each with its URLconf."""
    wanted = set(ROLE_RESOURCES[role])
    if not config.federation_enabled:
        wanted -= {"federation", "keys"}
    plan: list[Listener] = []
    for listener in config.listeners:
        names = set(listener["names"]) & wanted
        if not names:
            continue
        if role == "politburo":
            bad = [a for a in listener["bind_addresses"] if a not in LOOPBACK]
            if bad:
                raise CommandError(
                    f"listeners: the admin resource must only bind to 127.0.0.1/::1, not {', '.join(bad)} "
                    "(Politburo is never public; reach it through SSH or a VPN)"
                )
        client = bool(names & {"client", "media", "health", "metrics"})
        federation = bool(names & {"federation", "keys"})
        if role == "all":
            urlconf = (
                "dagma_project.urls_all"
                if client and federation
                else "tribune.urls"
                if client
                else "embassy.urls"
            )
        else:
            urlconf = f"{role}.urls"
        plan.append(Listener(listener["port"], listener["bind_addresses"], urlconf, listener["tls"]))
    if role == "politburo" and not plan:
        plan.append(Listener(config.admin_listener_port, ["127.0.0.1"], "politburo.urls"))
    return plan


#: Net new container objects between two youngest-generation collections (CPython's default
#: is 700). A server's requests make and drop thousands of dicts and lists each; at 700 the
#: collector ran ~1,900 young and 170 middle collections in one bench run (1.1 s of CPU),
#: at 20,000 23 and 1 (0.45 s). What is left for the collector is cyclic garbage only, a
#: few thousand objects more held a little longer: the RSS after the bench did not move.
YOUNG_COLLECTION_THRESHOLD = 20_000


def _tune_garbage_collector() -> None:
    """Before serving: move what start-up made (modules, URL patterns, settings: ~130,000
    tracked objects) out of the cyclic collector's reach, and collect the young less often.

    Start-up's objects live as long as the process, yet every full collection walked them
    all: ~90 ms each on the bench machine, a stall of the event loop every time. Measured
    over one bench run (bench/client_api_bench.py, sustained and send scenarios, 15-16 full
    collections): 1,360 ms of full collections before, 370-430 ms after ``gc.freeze``
    (CPython's tool for exactly this, documented for use after start-up).
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def _trim_log_records() -> None:
    """Log records without what no line of ours shows: the caller's file, function and line
    (found by walking the stack on every record), the thread's and the process's names.

    Every request writes an access line; the record's making was a third of its cost
    (62 -> 43 us a line). These are the switches the logging HOWTO ("Optimization") names
    for exactly this; the JSON and text formatters (``dagma_project.logging``) use none of
    those attributes, nor does any other formatter of the server's configuration.
    """
    logging._srcfile = None  # documented in the HOWTO despite the underscore
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class Command(BaseCommand):
    help = "Run a Dagma server (tribune, embassy, politburo or all) in the foreground."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", choices=ROLES)
        parser.add_argument("--config", help="config file (default: $DAGMA_CONFIG or ./dagma.yaml)")
        parser.add_argument(
            "--server-name",
            default="localhost",
            help="server name for a config generated on first start (default localhost)",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            help="serve this process's Prometheus metrics on this port (turns enable_metrics on; "
            "one port per process when several share a host)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        role = options["role"]
        config_path = Path(options["config"] or os.environ.get("DAGMA_CONFIG", "dagma.yaml")).resolve()
        settings_module = "dagma_project.settings." + role
        if os.environ.get("DAGMA_SERVE_CHILD") != "1":
            if not config_path.exists():
                if role != "all":
                    raise CommandError(
                        f"{config_path}: no configuration file; create one with "
                        "`python3 manage.py generate_config --server-name example.com`"
                    )
                write_new_config(server_name=options["server_name"], out=config_path)
                self.stderr.write(f"generated {config_path} for server_name {options['server_name']}\n")
            # Re-execute with this role's settings (each server has its own settings module).
            env = dict(
                os.environ,
                DAGMA_CONFIG=str(config_path),
                DJANGO_SETTINGS_MODULE=settings_module,
                DAGMA_SERVE_CHILD="1",
            )
            if options["metrics_port"] is not None:
                if not 1 <= options["metrics_port"] <= 65535:
                    raise CommandError(
                        f"--metrics-port: expected a port from 1 to 65535, got {options['metrics_port']}"
                    )
                # The config's environment overrides (dagma_project.config), for this process only.
                env.update(DAGMA_METRICS_PORT=str(options["metrics_port"]), DAGMA_ENABLE_METRICS="true")
            argv = [sys.executable, str(Path(__file__).resolve().parents[3] / "manage.py"), "serve", role]
            os.execve(sys.executable, argv, env)
        self._serve(role)

    def _serve(self, role: str) -> None:
        # Imported here, not at the top: daphne installs the asyncio Twisted reactor on import,
        # which must happen in the serving process before anything imports twisted.
        import daphne.server

        # `kill -USR1 <pid>` writes every thread's stack to the log: what a stuck request is
        # waiting on, without stopping the server.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        config = settings.DAGMA
        tls_files: tuple[Path, Path] | None = None
        try:
            plan = plan_listeners(role, config)
            if any(listener.tls for listener in plan):
                # Before anything else: a bad certificate must stop start-up, naming the option.
                tls_files = check_tls_files(config)
            check_database_for_production(config)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        if not plan:
            raise CommandError(f"listeners: no listener has a resource served by {role}")
        self._prepare_database(role)

        module = "all" if role == "all" else role
        try:
            base_app = importlib.import_module(f"dagma_project.asgi.{module}").application
        except MetricsListenerError as exc:
            raise CommandError(str(exc)) from None
        apps = {listener.port: UrlconfMiddleware(base_app, listener.urlconf) for listener in plan}
        app = PortRouter(apps, default=base_app)

        if role in ("all", "embassy", "tribune") and not settings.CELERY_BROKER_URL:
            # Without a broker each server runs its tasks itself, on threads, never inside the
            # request that queued them (a push gateway is a remote server too). Only Embassy and
            # `all` send federation traffic; Tribune alone writes outbox rows and runs the rest.
            start_in_process_runner(jobs=beat_jobs_for_role(role), sends_federation=role != "tribune")

        endpoints = [
            _endpoint(listener.port, addr, tls_files if listener.tls else None)
            for listener in plan
            for addr in listener.bind_addresses
            if _can_bind(addr)
        ]
        for listener in plan:
            self.stderr.write(
                f"dagma {role}: listening on {', '.join(listener.bind_addresses)} port {listener.port}"
                f"{' (TLS)' if listener.tls else ''} ({listener.urlconf})\n"
            )
        if any("metrics" in listener["names"] for listener in config.listeners):
            # Synapse serves /_synapse/metrics on such listeners; Dagma has one of its own.
            self.stderr.write(
                "dagma: listeners: the metrics resource is not served on HTTP listeners; metrics have "
                "their own listener (enable_metrics: true, metrics_port)\n"
            )
        if role in ("all", "tribune"):
            self._hint_first_account()
        self.stderr.flush()
        server = daphne.server.Server(
            application=app,
            endpoints=endpoints,
            signal_handlers=True,
            server_name="Dagma",
            http_timeout=None,
            application_close_timeout=10,
            proxy_forwarded_address_header="X-Forwarded-For"
            if settings.DAGMA_TRUST_X_FORWARDED_FOR
            else None,
            proxy_forwarded_port_header="X-Forwarded-Port" if settings.DAGMA_TRUST_X_FORWARDED_FOR else None,
            verbosity=0,
        )
        _trim_log_records()
        _tune_garbage_collector()
        server.run()
        self.stderr.write(f"dagma {role}: stopped\n")

    def _hint_first_account(self) -> None:
        """A fresh server with closed registration cannot be used until someone makes an account."""
        if not settings.DAGMA.enable_registration and count_accounts() == 0:
            self.stderr.write(
                "dagma: no accounts yet and registration is closed; create the first (admin) one with\n"
                "       python3 manage.py register_user alice --admin\n"
            )

    def _prepare_database(self, role: str) -> None:
        if schema.is_embedded_database():
            call_command("migrate", interactive=False, verbosity=0)
            return
        if schema.has_unapplied_migrations():
            raise CommandError("database: migrations are not applied; run `python3 manage.py migrate` first")
