"""The cpu backend's results are the same bits whatever the thread count, run after run and
process after process (the README's "Guarantees")."""
import json
import os
import sys

import pytest

import background

WORKER = os.path.join(os.path.dirname(__file__), "determinism_worker.py")
# one worker process per thread count, run beside the suite (tests/background.py)
WORKERS = {threads: background.command(f"determinism worker, {threads} thread(s)", [sys.executable, WORKER],
                                       dict(os.environ, NUMBA_NUM_THREADS=str(threads)), timeout=900)
           for threads in (1, 2, 3)}
pytestmark = [pytest.mark.background(name) for name in WORKERS.values()]


def _digests(name):
    done = background.result(name)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def by_threads():
    return {threads: _digests(name) for threads, name in WORKERS.items()}


def test_every_result_is_the_same_bits_run_after_run(by_threads):
    for threads, report in by_threads.items():
        for case, runs in report.items():
            differ = sorted(name for name in runs["first"] if runs["first"][name] != runs["again"][name])
            assert not differ, f"{threads} threads, {case}: a second run changed {differ}"


@pytest.mark.parametrize("threads", [2, 3])
def test_every_result_is_the_same_bits_whatever_the_thread_count(by_threads, threads):
    for case, runs in by_threads[1].items():
        other = by_threads[threads][case]["first"]
        differ = sorted(name for name in runs["first"] if runs["first"][name] != other[name])
        assert not differ, f"{case}: {threads} threads and 1 thread give different {differ}"
