"""The database: reachable, migrations applied, PostgreSQL bloat."""

from __future__ import annotations

from dagcore.doctor import FAIL, OK, WARN, Verdict
from dagcore.store import health as store

#: Dead tuples over this share of a table (live + dead): VACUUM is overdue.
BLOAT_WARN_RATIO = 0.2
BLOAT_FAIL_RATIO = 0.5


def check_database() -> Verdict:
    try:
        store.ping()
    except Exception as exc:  # any driver error: the verdict is the point
        return Verdict(
            "database", FAIL, f"cannot reach the database: {type(exc).__name__}: {str(exc)[:200]}",
            fix="check `database` in dagma.yaml and that PostgreSQL runs (`systemctl status postgresql`)",
        )  # fmt: skip
    kind = "PostgreSQL" if store.is_postgres() else "SQLite"
    return Verdict("database", OK, f"{kind} reachable", details={"engine": kind})


def check_migrations() -> Verdict:
    pending = store.unapplied_migrations()
    if pending:
        return Verdict(
            "migrations", FAIL, f"{len(pending)} migration(s) not applied: {', '.join(pending[:5])}",
            fix="python3 manage.py migrate", details={"pending": pending},
        )  # fmt: skip
    return Verdict("migrations", OK, "every migration applied")


def check_bloat() -> Verdict:
    tables = store.table_bloat()
    if tables is None:
        return Verdict("bloat", OK, "SQLite: no dead-tuple statistics (`manage.py vacuum` compacts the file)")
    bad = [t for t in tables if t.dead_ratio >= BLOAT_WARN_RATIO]
    details = {"tables": [{"table": t.table, "live": t.live, "dead": t.dead} for t in tables[:20]]}
    if not bad:
        return Verdict(
            "bloat", OK, f"dead tuples under {BLOAT_WARN_RATIO:.0%} in every table", details=details
        )
    status = FAIL if any(t.dead_ratio >= BLOAT_FAIL_RATIO for t in bad) else WARN
    shown = ", ".join(f"{t.table} {t.dead_ratio:.0%} dead" for t in bad[:5])
    return Verdict(
        "bloat", status, shown,
        fix="python3 manage.py vacuum " + " ".join(t.table for t in bad[:5]), details=details,
    )  # fmt: skip
