"""The shipped alert rules (contrib/prometheus) are valid and do what their tests say.

``promtool`` comes with Debian's ``prometheus`` package, which ``manage.py runtests``
installs when it is missing: its absence here is a failure, not a skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "dagma-alerts.yml"
RULE_TESTS = ROOT / "contrib" / "prometheus" / "dagma-alerts.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: install Debian's prometheus package (manage.py runtests does)"
    return subprocess.run([tool, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=60)


def test_the_alert_rules_are_valid_prometheus_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_each_alert_fires_on_its_series_and_stays_quiet_on_a_healthy_server() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_rule_has_a_firing_and_a_quiet_case() -> None:
    """A rule added without its tests would pass `promtool test rules` unnoticed."""
    import yaml

    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c["exp_alerts"]}
    quiet = {c["alertname"] for t in tests for c in t["alert_rule_test"] if not c["exp_alerts"]}
    assert alerts == fired == quiet


def test_the_dashboard_has_synapses_rows_and_every_panel_queries_prometheus() -> None:
    """Which series it names is checked live (test_metrics_live); here, its shape."""
    import json

    dashboard = json.loads((ROOT / "contrib" / "grafana" / "dagma.json").read_text())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == [
        "Overview", "Requests", "Events", "Federation", "Database", "Caches", "Background tasks",
        "Storage and identity",
    ]  # fmt: skip
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert all(t["expr"] and t["datasource"]["uid"] == "${DS_PROMETHEUS}" for t in panel["targets"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    # No two panels overlap on the grid.
    cells = [
        (x, y)
        for p in dashboard["panels"]
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))
