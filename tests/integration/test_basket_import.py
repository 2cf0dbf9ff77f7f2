"""Basket imports on the real broker: records read back per format; and imported baskets
flowing through a real stream worker into Redis and out of the basket endpoint."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from infra.importers.baskets import read_basket_lines, read_baskets, read_catalog
from infra.producer import produce_records
from infra.stack import child_env, spawn, stop_process
from inference.basket import profiles
from tests.integration.support import api_client
from schemas.keys import Keys

pytestmark = pytest.mark.integration
K = Keys("sr:")

LINES = ("basket_id,item_id,user_id,segment,timestamp,price\n"
         "o1,drill,u1,plumber,1700000000,99\no1,pipe,u1,plumber,1700000001,5\no1,ptfe,u1,plumber,1700000002,2\n"
         "o2,drill,u2,painter,1700000100,99\no2,brush,u2,painter,1700000101,4\n"
         "o3,drill,u3,plumber,1700000200,99\no3,pipe,u3,plumber,1700000201,5\n")
CATALOG = ("item_id,title,category,private_label\ndrill,Drill,tools,0\npipe,Copper pipe,plumbing,0\n"
           "ptfe,PTFE tape,plumbing,1\nbrush,Brush,painting,0\n")


async def consume(settings, topic: str, want: int, timeout_s: float = 20) -> list[tuple[str, dict]]:
    c = AIOKafkaConsumer(settings.topic(topic), bootstrap_servers=settings.kafka_bootstrap,
                         auto_offset_reset="earliest", group_id=None)
    await c.start()
    out: list[tuple[str, dict]] = []
    try:
        end = time.monotonic() + timeout_s
        while len(out) < want and time.monotonic() < end:
            got = await c.getmany(timeout_ms=500)
            out += [(m.key.decode(), json.loads(m.value)) for msgs in got.values() for m in msgs]
    finally:
        await c.stop()
    return out


async def test_each_format_reaches_its_topic(settings, tmp_path):
    (tmp_path / "g.csv").write_text("whole milk,rolls/buns\nwhole milk\n")
    (tmp_path / "l.csv").write_text(LINES)
    (tmp_path / "c.csv").write_text(CATALOG + "bad id,Nope,,0\n")
    r1 = await produce_records(settings, read_baskets(tmp_path / "g.csv"), progress=False)
    r2 = await produce_records(settings, read_basket_lines(tmp_path / "l.csv"), progress=False)
    r3 = await produce_records(settings, read_catalog(tmp_path / "c.csv"), progress=False)
    assert r1.by_topic == {"catalog": 2, "interactions": 3} and r2.by_topic == {"interactions": 7}
    assert r3.by_topic == {"catalog": 4} and len(r3.rejected) == 1 and "line 6" in r3.rejected[0]
    events = await consume(settings, "interactions", 10)
    assert len(events) == 10
    by_id = {v["event_id"]: (k, v) for k, v in events}
    key, ev = by_id["bk-o1-pipe"]
    assert key == "u1" and ev["type"] == "purchase" and ev["context"]["basket_id"] == "o1"
    assert ev["context"]["profession"] == "plumber"
    assert by_id["bk-b2-whole_milk"][0] == "b2"
    catalog = dict(await consume(settings, "catalog", 6))
    assert catalog["rolls_buns"]["title"] == "rolls/buns" and catalog["ptfe"]["private_label"] is True


@pytest.fixture
def worker(settings, tmp_path: Path):
    env = child_env(kafka_bootstrap=settings.kafka_bootstrap, redis_url=settings.redis_url,
                    topic_prefix=settings.topic_prefix, worker_id=settings.worker_id,
                    data_dir=str(tmp_path / "data"), artifact_dir=str(tmp_path / "artifacts"))
    proc = spawn([sys.executable, "-m", "streams"], tmp_path / "worker.log", env=env)
    try:
        yield proc
    finally:
        stop_process(proc)
        log = tmp_path / "worker.log"
        if log.exists():
            sys.stderr.write(f"--- worker.log (tail) ---\n{log.read_text()[-2000:]}\n")


async def test_imported_baskets_become_complements(settings, tmp_path, worker, redis_client):
    (tmp_path / "l.csv").write_text(LINES)
    (tmp_path / "c.csv").write_text(CATALOG)
    await produce_records(settings, read_catalog(tmp_path / "c.csv"), progress=False)
    await produce_records(settings, read_basket_lines(tmp_path / "l.csv"), progress=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # the worker counts basket pairs (and session pairs of one user's consecutive lines)
        written = redis_client.zrange(K.pairs("drill"), 0, -1, desc=True)
        if (written == ["pipe", "brush", "ptfe"] and redis_client.zscore(K.pairs("drill"), "pipe") == 4
                and redis_client.hget(K.item("ptfe"), "category") and redis_client.exists(K.pairs("drill", "painter"))):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"the worker never wrote the pairs: {redis_client.zrange(K.pairs('drill'), 0, -1, withscores=True)}")
    profiles.configure(None, "precision")
    try:
        async with api_client(settings.model_copy(update={"emit_impressions": False})) as (_, c):
            body = (await c.post("/api/v1/recommendations/basket",
                                 json={"product_ids": ["drill"], "k": 3, "expand": True})).json()
            assert [i["item_id"] for i in body["items"]][:3] == ["pipe", "brush", "ptfe"]
            assert body["items"][2]["metadata"] == {"title": "PTFE tape", "category": "plumbing", "private_label": True}
            body = (await c.post("/api/v1/recommendations/basket",
                                 json={"product_ids": ["drill"], "k": 2, "profession": "painter"})).json()
            assert [i["item_id"] for i in body["items"]][0] == "brush"
    finally:
        profiles.configure(None, "tuned")  # the settings' default, which other tests expect
