"""The cached home path's p99 while a retrain runs on the same machine: the training process
niced only, against niced and under SCHED_IDLE (what the scheduler of ``streamrec up`` does,
``STREAMREC_SCHEDULER_IDLE_CPU``), rounds alternated, beside the p99 with no training.

    python benchmarks/serving_beside_training.py [--rounds 2] [--threads 2]

Starts ``streamrec up --demo --no-scheduler`` in a scratch data dir; in each round starts
``streamrec train`` on MovieLens-100K (``../shared/data/ml-100k``) in its own artifact dir with
``nice -n 10`` (and ``chrt --idle 0``), waits a few seconds for it to reach its models, and
measures the p99 of the cached home list at 500 req/s (hey -c10 -q50, as the serving check) twice
in 8 s windows; then stops the training. Needs ``hey`` and ``chrt`` (util-linux).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import hey_at_rate, stop_session, wait_http  # noqa: E402 - after the path

ML100K = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"


def training(mode: str, threads: int, scratch: Path) -> subprocess.Popen:
    art = Path(tempfile.mkdtemp(prefix=f"train-{mode}-", dir=scratch))
    env = {**os.environ, "STREAMREC_ARTIFACT_DIR": str(art), "STREAMREC_DATA_DIR": str(art),
           "STREAMREC_KAFKA_BOOTSTRAP": "", "STREAMREC_REDIS_URL": "", "STREAMREC_TRAIN_THREADS": str(threads),
           "STREAMREC_SEARCH_INDEX_ON_TRAIN": "false"}
    prefix = ["nice", "-n", "10"] + (["chrt", "--idle", "0"] if mode == "idle" else [])
    cmd = prefix + [str(Path(sys.executable).parent / "streamrec"), "train", "-i", str(ML100K), "--no-progress"]
    return subprocess.Popen(cmd, env=env, stdout=open(art / "train.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="training threads (the scheduler's default is 1)")
    ap.add_argument("--duration", type=int, default=8)
    args = ap.parse_args()
    if not ML100K.exists():
        sys.exit(f"needs MovieLens-100K at {ML100K}")
    if not (shutil.which("hey") and shutil.which("chrt")):
        sys.exit("needs hey and chrt (apt-get install -y hey util-linux)")
    scratch = Path(tempfile.mkdtemp(prefix="sr-beside-"))
    port = 18700 + os.getpid() % 90
    env = {**os.environ, "STREAMREC_DATA_DIR": str(scratch)}
    sr = Path(sys.executable).parent / "streamrec"
    up = subprocess.Popen([str(sr), "up", "--demo", "--no-scheduler", "--api-port", str(port)], cwd=scratch, env=env,
                          stdout=open(scratch / "up.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=180)
        url = f"http://127.0.0.1:{port}/api/v1/recommendations/home?user_id=bench-user&k=10"
        wait_http(url), wait_http(url)
        time.sleep(15)  # the worker is still applying the demo's history at first
        p99 = lambda: hey_at_rate(url, 500, args.duration)["p99_ms"]  # noqa: E731
        print(f"no training: p99 {p99():.1f} / {p99():.1f} ms", flush=True)
        for _ in range(args.rounds):
            for mode in ("nice", "idle"):
                train = training(mode, args.threads, scratch)
                time.sleep(6)  # past the data loading, into the models
                got = (p99(), p99())
                os.killpg(train.pid, signal.SIGKILL)
                train.wait()
                print(f"training beside it ({'nice 10 + SCHED_IDLE' if mode == 'idle' else 'nice 10'}): "
                      f"p99 {got[0]:.1f} / {got[1]:.1f} ms", flush=True)
                time.sleep(2)
    finally:
        stop_session(up)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
