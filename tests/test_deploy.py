"""The shipped Prometheus rules and Grafana dashboard (deploy/): the rules pass `promtool check
rules` and their `promtool test rules` unit tests, and every metric they or the dashboard use
is one evcam exports (a renamed metric cannot silently blank a panel or an alert)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from evcam.exporter import Exporter
from evcam.metrics import EventMetrics
from evcam.receiver import ReceiverStats
from evcam.state import State
from tests.conftest import IN_CI, ROOT
from tests.support.metricsevents import W1, ev, lifecycle
from tests.test_exporter import FakeCamera, FakeReceiver, scrape

RULES = ROOT / "deploy" / "prometheus" / "evcam-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "evcam-alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "evcam-celery.json"
METRIC = re.compile(r"\b((?:celery|evcam)_[a-z_]+)")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is missing (Debian package `prometheus`)"
        if IN_CI:
            pytest.fail(f"{message}; CI=true: .ci/run installs it")
        pytest.skip(message)
    return found


def test_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts the alert rules."""
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_pass() -> None:
    """The rules fire (and stay quiet) as their promtool unit tests say."""
    result = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULE_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def exported_names() -> set[str]:
    """Every sample name evcam's /metrics can show, with every family populated."""
    m = EventMetrics()
    lifecycle(m, "t1", "p.a", runtime=0.1)
    lifecycle(m, "t2", "p.f", etype="task-failed", exception="ValueError()")
    m.event(ev("task-sent", "t3", name="p.a", queue="q", hostname="c@x"))
    m.event(ev("worker-heartbeat", at=1000.0, hostname=W1, freq=2.0, active=1))
    stats = ReceiverStats(events=1, connected=True, oldest_unacked_age=1.0)
    stats.last_event_at = 999.0
    families = scrape(
        Exporter(
            m,
            receiver=FakeReceiver(stats),
            cameras={"c": FakeCamera(1, 0, 999.0)},
            state=State(),
            clock=lambda: 1000.0,
        )
    )
    names = set()
    for family in families.values():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
        names.update(family.name + s for s in suffixes.get(family.type, [""]))
    return names


def used_in_rules() -> set[str]:
    return set(METRIC.findall(RULES.read_text())) | set(METRIC.findall(RULE_TESTS.read_text()))


def used_in_dashboard() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    exprs.append(json.dumps(dashboard["templating"]))
    return {name for expr in exprs for name in METRIC.findall(expr)}


@pytest.mark.parametrize("used", [used_in_rules, used_in_dashboard], ids=["rules", "dashboard"])
def test_every_metric_used_is_exported(used) -> None:  # type: ignore[no-untyped-def]
    """No panel or rule refers to a metric evcam does not export."""
    names = used()
    assert names, "no metric found: the pattern or the file is wrong"
    assert names - exported_names() == set()


def test_dashboard_panels_have_queries_and_unique_ids() -> None:
    """The dashboard loads: unique panel ids, every non-row panel has a query."""
    dashboard = json.loads(Path(DASHBOARD).read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
