"""``streamrec up``: the whole stack on this machine, supervised.

Starts (or connects to) the broker and Redis, creates the topics, optionally loads the
demo data, then runs the worker, the API and the retrain scheduler as child processes.
A child that dies is restarted with backoff; ``stack.json`` in the data dir always names
the live pids. Ctrl-C or SIGTERM stops the children, then the embedded services.
"""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.stack import EmbeddedStack, child_env, spawn, stop_process
from schemas.settings import Settings

log = logging.getLogger("streamrec.up")


@dataclass
class Child:
    name: str
    cmd: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    env: dict[str, str] = field(default_factory=dict)  # STREAMREC_* settings of this child only


@dataclass
class Supervisor:
    settings: Settings
    demo: bool = False
    with_scheduler: bool = True
    stack: EmbeddedStack | None = None
    children: list[Child] = field(default_factory=list)
    stopping: bool = False

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir).resolve()

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def run(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._start_services()
            self._start_children()
            self._wait_for_workers()
            self._write_stack_json()  # written once the stack serves fresh state: scripts wait on it
            self._announce()
            while not self.stopping:
                self._watch()
                time.sleep(0.5)
        finally:
            self.shutdown()

    # --- steps ---------------------------------------------------------------------------
    def _start_services(self) -> None:
        s = self.settings
        if s.kafka_bootstrap is None or s.redis_url is None:
            self.stack = EmbeddedStack(self.data_dir)
            self.stack.start()
            self.settings = s = s.model_copy(update={
                "kafka_bootstrap": s.kafka_bootstrap or self.stack.kafka_bootstrap,
                "redis_url": s.redis_url or self.stack.redis_url,
            })
        from streams.admin import ensure_topics

        asyncio.run(ensure_topics(s))
        if self.demo:
            self._load_demo()

    def _load_demo(self) -> None:
        from infra.demo import generate, summary
        from infra.producer import produce_records

        data = generate()
        n = len(data.catalog) + len(data.users) + len(data.events)
        asyncio.run(produce_records(self.settings, data.records(), total=n, progress=False))
        print(f"demo data on the broker: {summary(data)}", flush=True)
        self._demo_search_index(data.catalog)
        self._demo_experiment(data)

    def _demo_experiment(self, data) -> None:  # noqa: ANN001 - infra.demo.DemoData
        """The demo's experiment, declared in a file the API creates it from at start (unless the
        user names their own file): its report has the demo's history of arm-labelled traffic."""
        from datetime import datetime

        from infra.demo import experiment

        if self.settings.experiments_file is not None:
            return
        start = min(datetime.fromisoformat(e["ts"]) for e in data.events)
        path = self.data_dir / "demo_experiments.json"
        path.write_text(json.dumps([experiment(start)], indent=1))
        self.settings = self.settings.model_copy(update={"experiments_file": path})
        print(f"demo experiment declared in {path}", flush=True)

    def _demo_search_index(self, catalog: list[dict]) -> None:
        """The demo's catalogue searchable from the start (``streamrec search-index`` does this for
        a real catalogue): an index already there is kept."""
        from trainer.text_index import (build_text_index, current_index, item_text, new_index_dir, point_current,
                                        search_root)
        from trainer.text_models import load_bi_encoder

        art = Path(self.settings.artifact_dir)
        if current_index(art) is not None:
            return
        texts = {c["item_id"]: item_text(c.get("title"), c.get("text"), c.get("category")) for c in catalog}
        try:
            out = build_text_index(texts, new_index_dir(art), load_bi_encoder(self.settings.hf_offline))
        except Exception as exc:  # noqa: BLE001 - the demo runs without search rather than not at all
            print(f"no search index for the demo ({exc}); build one with `streamrec search-index`", flush=True)
            return
        point_current(search_root(art), out)
        print(f"demo catalogue indexed for search: {len(texts)} items", flush=True)

    def _start_children(self) -> None:
        py = sys.executable
        self.children = [*self._workers(py), Child("api", [py, "-m", "inference"])]
        if self.with_scheduler:
            self.children.append(Child("scheduler", [py, "-m", "trainer.scheduler"]))
        for child in self.children:
            self._spawn(child)

    def _wait_for_workers(self, timeout_s: float = 90.0) -> None:
        """Until a stream worker consumes (its lag report names assigned partitions), so that
        events sent once `up` says it is up are applied at once; a slow start is said, not fatal."""
        import redis

        from schemas.keys import Keys
        from trainer.redis_client import sync_client

        client = sync_client(self.settings, socket_timeout=2)
        key, started = Keys(self.settings.redis_prefix).worker_lag, time.time()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.stopping:
            try:
                for raw in client.hvals(key):
                    report = json.loads(raw)
                    if report.get("partitions") and float(report.get("reported_at", 0)) >= started:
                        client.close()
                        return
            except (redis.RedisError, ValueError):
                pass
            self._watch()  # a worker that dies while starting is restarted meanwhile
            time.sleep(0.2)
        client.close()
        print(f"no stream worker consuming after {timeout_s:.0f} s: see {self.data_dir / 'logs'}", flush=True)

    def _workers(self, py: str) -> list[Child]:
        """``stream_workers`` workers in one group: ``worker``, ``worker2``... (each its own metrics port)."""
        s = self.settings
        out = [Child("worker", [py, "-m", "streams"])]
        for i in range(2, s.stream_workers + 1):
            port = s.worker_metrics_port  # None (off) and 0 (any free port) need no change
            env = {"worker_metrics_port": str(port + i - 1)} if port else {}
            out.append(Child(f"worker{i}", [py, "-m", "streams"], env=env))
        return out

    def _env(self, **extra: str) -> dict[str, str]:
        s = self.settings
        passed = {"admin_key": s.admin_key} if s.admin_key else {}  # the key `up` made (infra/secrets.py)
        if s.experiments_file is not None:  # the demo's (an environment's own passes through as it is)
            passed["experiments_file"] = str(s.experiments_file)
        return child_env(
            kafka_bootstrap=s.kafka_bootstrap or "", redis_url=s.redis_url or "",
            data_dir=str(self.data_dir), api_port=str(s.api_port), api_host=s.api_host,
            artifact_dir=str(Path(s.artifact_dir).resolve()), **passed, **extra,
        )

    def _spawn(self, child: Child) -> None:
        child.proc = spawn(child.cmd, self.data_dir / "logs" / f"{child.name}.log", env=self._env(**child.env))
        child.started = time.monotonic()

    def _watch(self) -> None:
        changed = False
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                continue
            if child.proc is not None:  # it just died: schedule a restart with backoff
                code = child.proc.returncode
                uptime = now - child.started
                child.restarts = 0 if uptime > 60 else child.restarts + 1
                delay = min(30.0, 0.5 * 2 ** child.restarts)
                log.warning("%s exited with %s after %.0f s; restarting in %.1f s", child.name, code, uptime, delay)
                print(f"{child.name} exited ({code}); restarting in {delay:.1f} s "
                      f"(log: {self.data_dir / 'logs' / (child.name + '.log')})", flush=True)
                child.proc = None
                child.next_start = now + delay
            if now >= child.next_start:
                self._spawn(child)
                changed = True
        if changed:
            self._write_stack_json()

    def _write_stack_json(self) -> None:
        pids = {c.name: (c.proc.pid if c.proc else None) for c in self.children}
        if self.stack:
            pids["broker"] = self.stack.procs["broker"].pid
            pids["redis"] = self.stack.procs["redis"].pid
        body = {"kafka_bootstrap": self.settings.kafka_bootstrap, "redis_url": self.settings.redis_url,
                "api_url": self.api_url, "pids": pids}
        tmp = self.data_dir / "stack.json.tmp"
        tmp.write_text(json.dumps(body, indent=2))
        tmp.replace(self.data_dir / "stack.json")

    def _announce(self) -> None:
        s = self.settings
        print(
            "streamrec is up\n"
            f"  API      {self.api_url}  (docs {self.api_url}/docs)\n"
            f"  dashboard {self.api_url}/dashboard\n"
            f"  try      curl '{self.api_url}/api/v1/recommendations/home?user_id=user-0001&k=5'\n"
            f"  Kafka    {s.kafka_bootstrap}\n"
            f"  Redis    {s.redis_url}\n"
            f"  stack    {self.data_dir / 'stack.json'}   logs {self.data_dir / 'logs'}\n"
            "  Ctrl-C stops everything.",
            flush=True,
        )

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                child.proc.terminate()
        for child in reversed(self.children):
            stop_process(child.proc, timeout=10)
        if self.stack:
            self.stack.stop()
        stack_json = self.data_dir / "stack.json"
        if stack_json.exists():
            stack_json.unlink()
