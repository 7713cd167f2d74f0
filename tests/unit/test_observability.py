"""The Grafana dashboard and Prometheus example stay true to the metrics Convoy exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from server.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "convoy.json").read_text())
# Labels Prometheus adds to every scraped series, beside the ones Convoy sets.
TARGET_LABELS = {"job", "instance"}
# What each Grafana variable looks like once Grafana has substituted it.
GRAFANA_VARS = {"$__rate_interval": "1m", "$job": ".*", "$model": ".*"}


def _exported() -> dict[str, set[str]]:
    """Every series name Convoy's registry can export -> the labels it may carry."""
    metrics = Metrics(max_batch_size=32)
    series: dict[str, set[str]] = {}
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        # Labelled collectors export nothing until used, so read the family's shape instead.
        labels = set(collector._labelnames)
        for family in collector.describe():
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
            for suffix in suffixes[family.type]:
                series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


EXPORTED = _exported()


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in _panels(DASHBOARD["panels"]) for t in p.get("targets", [])]


def _walk(node: Any) -> Iterator[Any]:
    yield node
    for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, str | int | float):
            yield from _walk(child)
    for arg in getattr(node, "args", None) or []:
        yield from _walk(arg)


def _parse(expr: str) -> Any:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return promql_parser.parse(expr)


@pytest.mark.parametrize(("title", "expr"), _exprs())
def test_every_query_parses_and_uses_exported_series_and_labels(title: str, expr: str) -> None:
    tree = _parse(expr)
    selectors = [n for n in _walk(tree) if isinstance(n, promql_parser.VectorSelector)]
    assert selectors, f"{title}: no metric in {expr}"
    available: set[str] = set(TARGET_LABELS)
    for sel in selectors:
        assert sel.name in EXPORTED, f"{title}: {sel.name} is not a Convoy metric"
        labels = EXPORTED[sel.name]
        available |= labels
        used = {m.name for m in sel.matchers.matchers}
        assert used <= labels | TARGET_LABELS, f"{title}: {sel.name} has no label(s) {used - labels}"
    for node in _walk(tree):
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouped = set(node.modifier.labels)
            assert grouped <= available, f"{title}: groups by unknown label(s) {grouped - available}"
    for legend in re.findall(r"\{\{(\w+)\}\}", " ".join(_legends(title))):
        assert legend in available, f"{title}: legend uses unknown label {legend}"


def _legends(title: str) -> list[str]:
    return [
        t.get("legendFormat", "")
        for p in _panels(DASHBOARD["panels"])
        if p["title"] == title
        for t in p.get("targets", [])
    ]


def test_dashboard_covers_the_operational_questions() -> None:
    used = {sel.name for _, expr in _exprs() for sel in _walk(_parse(expr)) if hasattr(sel, "matchers")}
    for series in (
        "convoy_requests_total",  # request rate
        "convoy_request_latency_seconds_bucket",  # p50 / p99 latency
        "convoy_queue_depth",
        "convoy_batch_size_bucket",  # batch size distribution
        "convoy_rejected_total",
        "convoy_cancelled_total",
    ):
        assert series in used, f"no panel shows {series}"
    titles = " ".join(p["title"] for p in _panels(DASHBOARD["panels"]))
    assert "p50" in titles and "p99" in titles


def test_dashboard_is_importable() -> None:
    assert DASHBOARD["uid"] and DASHBOARD["title"] and isinstance(DASHBOARD["schemaVersion"], int)
    ids = [p["id"] for p in _panels(DASHBOARD["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in DASHBOARD["templating"]["list"]}
    assert {"datasource", "job", "model"} <= variables
    for panel in _panels(DASHBOARD["panels"]):
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_prometheus_example_scrapes_the_metrics_route() -> None:
    from server.app import create_app
    from server.config import Settings

    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    routes = create_app(Settings()).openapi()["paths"]
    jobs = config["scrape_configs"]
    assert jobs
    for job in jobs:
        assert job["metrics_path"] in routes
    # A target label named like one of Convoy's (model, route...) would overwrite it on scrape.
    convoy_labels = set().union(*EXPORTED.values())
    labelled = {label for job in jobs for label in _label_values(job)}
    assert labelled and not labelled & convoy_labels


def _label_values(job: dict[str, Any]) -> Iterator[str]:
    for static in job.get("static_configs", []):
        yield from static.get("labels", {})
    for relabel in job.get("relabel_configs", []):
        target = relabel.get("target_label")
        if target and not target.startswith("__"):
            yield target
