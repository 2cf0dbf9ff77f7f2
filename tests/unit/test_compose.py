"""docker-compose.yml is a valid Compose file that runs streamrec the way production needs:
Kafka with an internal and an external listener, volumes, Redis with AOF, healthchecks on the
worker and the API, configurable topic replication, and Prometheus scraping both.

Checked against the Compose Specification's JSON schema (vendored in tests/schemas/) everywhere,
and with `docker compose config` where a Docker CLI with the compose plugin is installed."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # YAML merge keys (<<:) resolved


def test_the_file_follows_the_compose_specification(compose):
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    # the schema names draft 07 by a URI jsonschema does not map to it: say so explicitly
    jsonschema.Draft7Validator(schema).validate(compose)


def test_kafka_advertises_an_internal_and_an_external_listener_and_keeps_its_data(compose):
    env = compose["services"]["kafka"]["environment"]
    advertised = dict(part.split("://") for part in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised == {"INTERNAL": "kafka:9092", "EXTERNAL": "localhost:29092"}
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert "29092:29092" in compose["services"]["kafka"]["ports"]
    assert any(v.startswith("kafka-data:") for v in compose["services"]["kafka"]["volumes"])


def test_redis_uses_aof_on_a_volume(compose):
    redis = compose["services"]["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(v.startswith("redis-data:") for v in redis["volumes"])
    assert {"kafka-data", "redis-data", "streamrec-data"} <= set(compose["volumes"])


def test_worker_and_api_have_healthchecks_and_the_settings_they_need(compose):
    services = compose["services"]
    assert "/metrics" in " ".join(services["worker"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    for name in ("worker", "api", "scheduler"):
        env = services[name]["environment"]
        assert env["STREAMREC_KAFKA_BOOTSTRAP"] == "kafka:9092" and env["STREAMREC_REDIS_URL"].startswith("redis://redis")
        assert "STREAMREC_TOPIC_REPLICATION" in env  # topic replication is configurable
    assert services["worker"]["environment"]["STREAMREC_WORKER_METRICS_HOST"] == "0.0.0.0"
    assert "STREAMREC_ADMIN_KEY" in services["api"]["environment"]


def test_prometheus_scrapes_the_worker_and_the_api(compose):
    prom = compose["services"]["prometheus"]
    assert "./infra/monitoring:/etc/prometheus:ro" in prom["volumes"]
    config = yaml.safe_load((ROOT / "infra" / "monitoring" / "prometheus.yml").read_text())
    targets = json.dumps(config["scrape_configs"])
    assert '"worker"' in targets and "9108" in targets and "api:8000" in targets


def _docker_compose() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    ok = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0
    return [docker, "compose"] if ok else None


@pytest.mark.skipif(_docker_compose() is None, reason="no Docker CLI with the compose plugin here; "
                                                      "the JSON-schema test above checks the file")
def test_docker_compose_config_accepts_it():
    out = subprocess.run([*_docker_compose(), "-f", str(COMPOSE), "config", "--quiet"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, env={"STREAMREC_ADMIN_KEY": "x", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
