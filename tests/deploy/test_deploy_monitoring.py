"""deploy/monitoring and the scrape configurations: the alert rules and the Grafana dashboard
checked with promtool and against a real exporter's metric names; the PodMonitoring (GMP) and
PodMonitor (Prometheus Operator) against the worker pods they must scrape. Their objects' CRD
validation is in tests/deploy/test_deploy_ops.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from batchml.observe.metrics import MetricsServer, PrometheusObserver
from batchml.queue.base import QueueOptions
from batchml.queue.sqlite.queue import SqliteQueue
from tests.deploy.test_deploy_ops import render_with_component
from tests.support.ci import unavailable
from tests.support.deploy_manifests import (
    REPO,
    Obj,
    environment,
    is_worker,
    of_kind,
    render,
    workloads,
)

MONITORING = REPO / "deploy" / "monitoring"


# --- scraping ---------------------------------------------------------------------------------


def _scrape_configs(tmp_path: Path) -> list[tuple[Obj, list[Obj]]]:
    """(scrape object, the objects it would run beside) for GMP's and the operator's."""
    gmp = render("monitoring")
    operator = render_with_component(tmp_path, "keda", "monitoring-operator")
    return [(of_kind(gmp, "PodMonitoring")[0], gmp), (of_kind(operator, "PodMonitor")[0], operator)]


def test_scrape_configs_select_every_worker_pod_and_its_metrics_port(tmp_path: Path) -> None:
    for monitor, objs in _scrape_configs(tmp_path):
        spec = monitor["spec"]
        selector = spec["selector"]["matchLabels"]
        endpoints = spec.get("endpoints") or spec["podMetricsEndpoints"]
        selected = [w for w in workloads(objs) if selector.items() <= w.labels.items()]
        workers = [w for w in workloads(objs) if any(map(is_worker, w.spec["containers"]))]
        assert selected == workers and len(workers) >= 2, monitor["kind"]
        for w in workers:
            (worker,) = filter(is_worker, w.spec["containers"])
            ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
            assert [e["port"] for e in endpoints] == ["metrics"] and "metrics" in ports
            assert [e["path"] for e in endpoints] == ["/metrics"]
            env = environment(objs, worker)
            assert env["BATCHML_METRICS_PORT"].value == str(ports["metrics"]), w.name
            assert env["BATCHML_METRICS_ADDRESS"].value == "0.0.0.0", w.name


# --- alert rules and dashboard ----------------------------------------------------------------

ALERTS = MONITORING / "alerts.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
#: PromQL's words that look like metric names
PROMQL_WORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
})  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("(") or match[0].lower() in PROMQL_WORDS:
            continue  # a function, an aggregation, a keyword
        names.add(match[0])
    return names


def alert_rules() -> list[Obj]:
    return [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def exported_names(tmp_path: Path) -> set[str]:
    """Every sample name a worker's /metrics serves, scraped from a real exporter whose queue
    holds an item (so the depth, lineage and per-outcome series all exist)."""
    queue = SqliteQueue(tmp_path / "queue.db", QueueOptions())
    exporter = PrometheusObserver(queue, depth_ttl=0.0, run="default")
    exporter.on_start("w-1")
    with MetricsServer(exporter.registry, 0, "127.0.0.1") as server:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_expression_names_only_metrics_a_worker_exports(tmp_path: Path) -> None:
    exported = exported_names(tmp_path)
    expressions = [r["expr"] for r in alert_rules()] + dashboard_exprs()
    assert len(expressions) >= 12
    for expr in expressions:
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, f"{expr}: {sorted(names - exported)} not exported"


def test_the_metric_name_check_sees_a_misspelt_or_unsuffixed_metric(tmp_path: Path) -> None:
    expr = 'sum by (outcome) (rate(batchml_items{outcome="done"}[5m])) and on (x) up'
    assert metric_names(expr) == {"batchml_items", "up"}
    assert "batchml_items" not in exported_names(tmp_path)  # the counter is *_total


def test_the_dashboard_has_each_panel_the_runbook_needs() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    by_title = {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}
    wanted = {
        "Queue depth per state": "batchml_queue_items",
        "Items per minute by outcome": "batchml_items_total",
        "Task duration quantiles (done)": "batchml_task_duration_seconds_bucket",
        "Lease losses (15 min)": "batchml_lease_losses_total",
        "Lineage version": "batchml_lineage_version",
        "Worker memory (resident)": "process_resident_memory_bytes",
    }
    for title, metric in wanted.items():
        assert any(metric in metric_names(e) for e in by_title[title]), title
    assert all(
        e.startswith("histogram_quantile(") for e in by_title["Task duration quantiles (done)"]
    )
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert variables == ["datasource"]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        unavailable(
            "promtool is not installed (Debian package prometheus; .ci/install-system-deps)"
        )
    return found


def _check_rules(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "check", "rules", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_alert_rules_pass_promtool_and_alert_on_what_the_runbook_names() -> None:
    done = _check_rules(ALERTS)
    assert done.returncode == 0, done.stdout + done.stderr
    names = {r["alert"] for r in alert_rules()}
    assert {"BatchmlDeadItems", "BatchmlQueueUnreachable", "BatchmlNoProgress"} <= names
    assert "BatchmlLeaseLossesRising" in names


def test_dashboard_expressions_pass_promtool(tmp_path: Path) -> None:
    """As recording rules, each dashboard query goes through Prometheus' own parser."""
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(dashboard_exprs())]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = _check_rules(path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rejects_a_broken_expression(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    bad = {"alert": "Broken", "expr": "sum by (state (batchml_queue_items) > 0"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "b", "rules": [bad]}]}))
    assert _check_rules(path).returncode != 0


def test_in_cluster_rule_objects_carry_the_alert_rules_unchanged(tmp_path: Path) -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    (gmp,) = of_kind(render("monitoring"), "Rules")
    (operator,) = of_kind(
        render_with_component(tmp_path, "local", "monitoring-operator"), "PrometheusRule"
    )
    assert gmp["spec"]["groups"] == groups
    assert operator["spec"]["groups"] == groups
