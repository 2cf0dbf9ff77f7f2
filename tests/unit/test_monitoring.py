"""infra/monitoring/ ships a Prometheus config, alert rules and a Grafana dashboard that stay
true to the metrics the worker and the API export.

promtool (Debian's ``prometheus`` package) checks the config and the rules and runs the rules'
unit tests where it is installed; a JSON schema checks their shape everywhere."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

MONITORING = Path(__file__).resolve().parents[2] / "infra" / "monitoring"
PROMTOOL = shutil.which("promtool")

RULE_SCHEMA = {
    "type": "object", "required": ["alert", "expr", "labels", "annotations"], "additionalProperties": False,
    "properties": {"alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                   "expr": {"type": "string", "minLength": 1},
                   "for": {"type": "string", "pattern": "^[0-9]+[smhd]$"},
                   "labels": {"type": "object", "required": ["severity"]},
                   "annotations": {"type": "object", "required": ["summary"]}},
}
RULES_SCHEMA = {
    "type": "object", "required": ["groups"],
    "properties": {"groups": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["name", "rules"],
        "properties": {"name": {"type": "string"}, "rules": {"type": "array", "items": RULE_SCHEMA}}}}},
}
CONFIG_SCHEMA = {
    "type": "object", "required": ["scrape_configs"],
    "properties": {"rule_files": {"type": "array", "items": {"type": "string"}},
                   "scrape_configs": {"type": "array", "minItems": 2, "items": {
                       "type": "object", "required": ["job_name"],
                       "anyOf": [{"required": ["static_configs"]}, {"required": ["dns_sd_configs"]}],
                       "properties": {"job_name": {"type": "string"},
                                      "static_configs": {"type": "array", "items": {
                                          "type": "object", "required": ["targets"]}}}}}},
}
DASHBOARD_SCHEMA = {
    "type": "object", "required": ["uid", "title", "panels", "schemaVersion"],
    "properties": {"panels": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["id", "type", "title", "gridPos", "targets"],
        "properties": {"targets": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["refId", "expr"]}}}}}},
}


def _promtool(*args: str) -> str:
    out = subprocess.run([PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus); "
                                             "the JSON-schema tests below still check the files")
def test_promtool_accepts_the_config_and_the_rules_and_their_unit_tests_pass():
    assert "SUCCESS" in _promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in _promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in _promtool("test", "rules", "alerts_test.yml")


def test_the_files_have_the_expected_shape():
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jsonschema.validate(config, CONFIG_SCHEMA)
    assert {j["job_name"] for j in config["scrape_configs"]} == {"streamrec-worker", "streamrec-api"}
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    jsonschema.validate(rules, RULES_SCHEMA)
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    # the health checks the issue names: lag, DLQ rate, error rate, freshness
    assert {"StreamrecConsumerLagHigh", "StreamrecDlqRateHigh", "StreamrecApiErrorRate",
            "StreamrecFreshnessSlow"} <= names
    jsonschema.validate(json.loads((MONITORING / "grafana" / "streamrec.json").read_text()), DASHBOARD_SCHEMA)


def _exported_names() -> set[str]:
    """Every series name the worker and the API can export."""
    import prometheus_client

    import streams.metrics  # noqa: F401  (registers the worker's metrics on the default registry)
    from inference.metrics import ApiMetrics

    names = set()
    for registry in (prometheus_client.REGISTRY, ApiMetrics().registry):
        for family in registry.collect():
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                        "summary": ["_sum", "_count"], "info": ["_info"]}.get(family.type, [""])
            names.update(family.name + s for s in suffixes)
    return names


def test_every_metric_the_rules_and_the_dashboard_use_is_exported():
    used = set(re.findall(r"streamrec_[a-z0-9_]+", (MONITORING / "alerts.yml").read_text()
                          + (MONITORING / "grafana" / "streamrec.json").read_text()))
    missing = used - _exported_names()
    assert not missing, f"no such metric in streams/metrics.py or inference/metrics.py: {sorted(missing)}"
