"""The cpu backend's results are the same bits whatever the thread count, run after run and
process after process (the README's "Guarantees")."""
import json
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(__file__), "determinism_worker.py")


def _digests(threads):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, WORKER], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def by_threads():
    return {threads: _digests(threads) for threads in (1, 2, 3)}


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
