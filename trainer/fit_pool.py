"""Fitting models side by side, one core each, in worker processes beside the training one.

A retrain fits five models whose fits do not depend on each other. On a machine with two cores,
torch's own threads are a poor way to use the second one: a Mult-VAE or two-tower step is a few
small matrix products, so two threads wait on each other at every product, and on a loaded
machine a thread that is not scheduled stalls the other at the barrier (measured under load 7:
Mult-VAE's 5 × 35 epochs took 126 s wall with 2 threads against 18 s with 1 on a quiet machine).
A whole fit per process keeps every process on one thread and needs no synchronisation.

``FitPool(workers)`` runs jobs (a module-level function and its arguments) in ``workers``
processes beside this one; ``result(job)`` returns a job's value, and while it waits the
calling process takes jobs nobody has started (so with jobs queued, every core is busy). Jobs
go out in the order they were submitted: submit the longest first. Each worker is a spawned
process with one torch / BLAS thread; its fits are the ones this process would make (every model
seeds its own random streams at the start of a fit), so a run's choices do not depend on where a
model was fitted. ``FitPool(0)`` runs everything in this process.

Datasets cross to a worker once: an ``Interactions`` is written to a temporary file the first
time a job refers to it, and a worker keeps what it read; a model sent back refers to the
dataset it was fitted on by that file's name, and comes back attached to this process's own
object. A worker that dies (killed, out of memory) hands its job back to this process, and the
run goes on here.
"""
from __future__ import annotations

import io
import logging
import os
import pickle
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

#: Below this many user–item pairs a retrain takes a few seconds in all, and starting a worker
#: (a fresh interpreter importing torch: about 2 CPU s) costs more than it saves.
PARALLEL_MIN_PAIRS = 20_000


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which a container's limit narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(setting: int, pairs: int) -> int:
    """Worker processes for a retrain: ``setting`` cores in all (0: every available core), the
    training process being one of them; none for a dataset too small to be worth it.

    >>> worker_count(2, 100_000), worker_count(1, 100_000), worker_count(4, 1_000)
    (1, 0, 0)
    """
    cores = setting or available_cores()
    if pairs < PARALLEL_MIN_PAIRS:
        return 0
    return max(0, cores - 1)


class Job:
    """One call: pending (nobody started it), sent to a worker, or done."""

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn, self.args = fn, args
        self.state = "pending"
        self.value: Any = None
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def _done(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error, self.state = value, error, "done"
        self.finished.set()


class FitPool:
    """Jobs run in ``workers`` processes beside this one, or here (see the module's docstring)."""

    def __init__(self, workers: int, log_level: int | None = None) -> None:
        self.workers = max(0, workers)
        self.log_level = logging.getLogger().getEffectiveLevel() if log_level is None else log_level
        self._pending: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._feeders: list[threading.Thread] = []
        self._workers: list[_Worker] = []
        # CPU seconds the workers spent, and those this process waited for (what the workers computed
        # while this process had nothing to do): the process's own CPU time plus ``waited_cpu_s`` is the
        # run's critical path, its wall time on an idle machine with these cores (benchmarks/training.py)
        self.workers_cpu_s = 0.0
        self.waited_cpu_s = 0.0
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._files: dict[int, tuple[str, Any]] = {}  # id(dataset) -> (file, dataset: kept alive)
        self._by_file: dict[str, Any] = {}
        self._file_lock = threading.Lock()

    # --- the caller's side ----------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any) -> Job:
        """Queue ``fn(*args)``; ``fn`` must be importable by name (a module-level function)."""
        job = Job(fn, args)
        if not self.workers:
            return job  # run by ``result``, here
        with self._cond:
            self._pending.append(job)
            self._cond.notify()
        if not self._feeders:
            self._feeders = [threading.Thread(target=self._feed, name=f"fit-pool-{n}", daemon=True)
                             for n in range(self.workers)]
            for thread in self._feeders:
                thread.start()
        return job

    def result(self, job: Job) -> Any:
        """``job``'s value (its exception raised here); runs queued jobs here while waiting."""
        waiting_from: dict[int, float] | None = None
        while job.state != "done":
            if job.state == "pending" and not self.workers:
                self._run_here(job)
                continue
            other = self._take(job)
            if other is not None:
                self._run_here(other)
            else:
                waiting_from = waiting_from or self._workers_cpu()
                job.finished.wait(0.5)
        if waiting_from is not None:  # idle here while a worker computed: that compute is on the critical path
            now = self._workers_cpu()
            self.waited_cpu_s += max((now.get(pid, t) - t for pid, t in waiting_from.items()), default=0.0)
        if job.error is not None:
            raise job.error
        if isinstance(job.value, _Reply):
            # here, not in the thread that received it: rebuilding a model builds torch modules, whose
            # initialisation draws from torch's global generator, which a fit running meanwhile in this
            # process is drawing from (measured: the two-tower's validation NDCG moved 0.4379 -> 0.4335)
            job.value = self._loads(job.value.payload)
        return job.value

    def _workers_cpu(self) -> dict[int, float]:
        return {w.proc.pid: w.cpu_s() for w in list(self._workers)}

    def worker_pids(self) -> list[int]:
        """Process ids of the workers running now."""
        return [w.proc.pid for w in list(self._workers) if w.proc.poll() is None]

    def cancel(self, job: Job) -> bool:
        """Drop ``job`` if nobody started it; True when dropped."""
        with self._cond:
            if job.state != "pending":
                return False
            if job in self._pending:
                self._pending.remove(job)
            job._done(error=RuntimeError("cancelled"))
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for job in self._pending:
                job._done(error=RuntimeError("the fit pool was closed"))
            self._pending.clear()
            self._cond.notify_all()
        for thread in self._feeders:
            thread.join()
        self._feeders = []
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "FitPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self, wanted: Job) -> Job | None:
        """A job nobody started, ``wanted`` first."""
        with self._cond:
            if wanted.state == "pending" and wanted in self._pending:
                self._pending.remove(wanted)
            elif self._pending:
                wanted = self._pending.popleft()
            else:
                return None
            wanted.state = "here"
            return wanted

    @staticmethod
    def _run_here(job: Job) -> None:
        try:
            job._done(value=job.fn(*job.args))
        except Exception as exc:  # noqa: BLE001 - raised by result() in the caller
            job._done(error=exc)

    # --- the workers ------------------------------------------------------------------------------
    def _feed(self) -> None:
        """One worker process: send it the next pending job, wait for the answer, repeat."""
        worker = _Worker(self.log_level)
        self._workers.append(worker)
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                    job = self._pending.popleft()
                    job.state = "sent"
                try:
                    worker.send(self._dumps((job.fn, job.args)))
                    reply = worker.receive(lambda: self._closed)
                except (_WorkerGone, OSError) as exc:  # its job, and the rest, run here
                    log.warning("a fit worker stopped (%s): %s runs in the training process", exc,
                                getattr(job.fn, "__name__", job.fn))
                    with self._cond:
                        job.state = "pending"
                        self._pending.appendleft(job)
                    return
                if reply is None:  # closed while it ran
                    job._done(error=RuntimeError("the fit pool was closed"))
                    return
                if reply[:2] == b"ok":  # unpickled by ``result``, in the caller's thread (below)
                    job._done(value=_Reply(reply[2:]))
                else:
                    job._done(error=pickle.loads(reply[2:]))
        finally:
            self.workers_cpu_s += worker.cpu_s()
            worker.stop()
            self._workers.remove(worker)

    def _dumps(self, obj: Any) -> bytes:
        from trainer.data.interactions import Interactions

        return _dumps(obj, lambda o: self._file_of(o) if isinstance(o, Interactions) else None)

    def _loads(self, payload: bytes) -> Any:
        return _loads(payload, self._by_file.__getitem__)

    def _file_of(self, data: Any) -> str:
        with self._file_lock:
            known = self._files.get(id(data))
            if known is not None:
                return known[0]
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="streamrec-fit-")
            path = str(Path(self._tmp.name) / f"data-{len(self._files)}.pkl")
            with open(path, "wb") as fh:
                pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
            self._files[id(data)] = (path, data)
            self._by_file[path] = data
            return path


# --- inside a worker process ------------------------------------------------------------------------
_DATASETS: dict[str, Any] = {}  # file -> the dataset read from it


class _WorkerGone(Exception):
    pass


class _Reply:
    """A job's pickled value, as it came from a worker."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class _Worker:
    """A worker process (``python -c`` running ``_serve``) and the two pipes to it: length-prefixed
    messages on file descriptors of their own, so nothing a library prints can garble them. Not
    ``multiprocessing``: its spawn start re-imports the caller's ``__main__``, which runs the script
    again in the worker when the script has no ``if __name__ == "__main__"`` guard."""

    def __init__(self, log_level: int) -> None:
        import subprocess
        import sys

        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()
        root = str(Path(__file__).resolve().parents[1])  # the same code as this process, first on the path
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        code = f"from trainer.fit_pool import _serve; _serve({to_child}, {from_child}, {log_level})"
        self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(to_child, from_child), env=env)
        os.close(to_child)
        os.close(from_child)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the worker has used so far (Linux ``/proc``; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def send(self, payload: bytes) -> None:
        _write(self._out, payload)

    def receive(self, closed: Callable[[], bool]) -> bytes | None:
        """The reply to the last message; None when ``closed()`` turned true meanwhile."""
        import select

        while not select.select([self._in], [], [], 0.2)[0]:
            if closed():
                return None
            if self.proc.poll() is not None:
                raise _WorkerGone(f"exit code {self.proc.returncode}")
        return _read(self._in)

    def stop(self) -> None:
        """Ask it to exit; one still busy (the pool closed on an error) is terminated."""
        try:
            os.close(self._out)  # end of input: the worker exits when it next reads
        except OSError:
            pass
        try:
            self.proc.wait(2.0)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: still fitting
            self.proc.terminate()
            self.proc.wait()
        os.close(self._in)


def _write(fd: int, payload: bytes) -> None:
    data = memoryview(len(payload).to_bytes(8, "big") + payload)
    while data:
        data = data[os.write(fd, data):]


def _read(fd: int) -> bytes:
    def exactly(n: int) -> bytes:
        parts, left = [], n
        while left:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise _WorkerGone("the pipe closed")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    return exactly(int.from_bytes(exactly(8), "big"))


def _serve(read_fd: int, write_fd: int, log_level: int) -> None:
    """A worker process: answer jobs until its input closes."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from trainer.pipeline import _limit_threads

    _limit_threads(1)
    while True:
        try:
            msg = _read(read_fd)
        except _WorkerGone:
            return
        try:
            reply = b"ok" + _run(msg)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, raised there
            try:
                reply = b"er" + pickle.dumps(exc)
            except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
                reply = b"er" + pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
        _write(write_fd, reply)


def _run(payload: bytes) -> bytes:
    def load(path: str) -> Any:
        if path not in _DATASETS:
            with open(path, "rb") as fh:
                _DATASETS[path] = pickle.load(fh)
        return _DATASETS[path]

    fn, args = _loads(payload, load)
    value = fn(*args)
    files = {id(d): path for path, d in _DATASETS.items()}
    return _dumps(value, lambda o: files.get(id(o)))


# --- what crosses ------------------------------------------------------------------------------------
def _dumps(obj: Any, dataset_file: Callable[[Any], str | None]) -> bytes:
    """``obj`` pickled, datasets by file name (``dataset_file``), models by what they save."""
    from trainer.base import Recommender

    class Pickler(pickle.Pickler):
        def persistent_id(self, o: Any) -> str | None:
            return dataset_file(o)

        def reducer_override(self, o: Any) -> Any:
            # a model crosses as what ``save`` writes: its parameters and ``_state`` (torch networks
            # are built from local classes, which pickle cannot name); a run loads it the same way
            if isinstance(o, Recommender):
                fitted = o.data is not None
                return _rebuild, (type(o), o.get_params(), o.data, o._state() if fitted else None)  # noqa: SLF001
            return NotImplemented

    buf = io.BytesIO()
    Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def _loads(payload: bytes, dataset: Callable[[str], Any]) -> Any:
    class Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: str) -> Any:
            return dataset(pid)

    return Unpickler(io.BytesIO(payload)).load()


def _rebuild(cls: type, params: dict[str, Any], data: Any, state: dict[str, Any] | None) -> Any:
    """A model from its parameters and saved state (``Recommender.load`` without the files)."""
    model = cls(**params)
    if data is not None:
        model.data = data
        model._load_state(state)  # noqa: SLF001 - the load half of the model's own save contract
    return model
