"""Slow subprocess checks that run beside the rest of the suite.

A few tests only start a process and read what it printed (the CUDA simulator's suite, ``python
-m fastlstm check``): minutes of one core each, while the rest of the suite spends most of its
time compiling on the other. A test module declares such a process with :func:`command` when it
is imported; once collection is done, ``conftest.py`` starts the commands of the selected tests
one after the other on a thread of their own, and each test takes its process's outcome with
:func:`result`, waiting for it if it is still running. Nothing about what the processes check
changes: only when they start.
"""
import subprocess
import threading

_commands = {}     # name -> (argv, environment, working directory, timeout in seconds)
_outcomes = {}     # name -> subprocess.CompletedProcess, or the exception running it raised
_finished = {}     # name -> threading.Event
_running = []      # the process of the command now running, to stop it when the session ends
_stopping = threading.Event()


def command(name, argv, environment=None, cwd=None, timeout=1500):
    """Declare the process ``argv`` (run with ``environment`` in ``cwd``, stdout and stderr
    captured as text, killed after ``timeout`` seconds) under ``name``; returns ``name`` for the
    test's ``@pytest.mark.background(name)``."""
    _commands[name] = (list(argv), environment, cwd, timeout)
    return name


def start(names):
    """Run the commands ``names`` one after the other on a daemon thread (those already
    started are skipped)."""
    names = [name for name in dict.fromkeys(names) if name not in _finished]
    for name in names:
        _finished[name] = threading.Event()
    if names:
        threading.Thread(target=_run_all, args=(names,), name="background-tests", daemon=True).start()


def result(name):
    """The ``subprocess.CompletedProcess`` of command ``name``: started now if it was not
    (a test run on its own, without the plugin's start), waited for if it is running."""
    if name not in _commands:
        raise KeyError(f"no background command named {name!r}; declared: {sorted(_commands)}")
    start([name])
    _finished[name].wait()
    outcome = _outcomes[name]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def stop():
    """Kill the command running now and skip those not started (the session is over)."""
    _stopping.set()
    for process in list(_running):
        process.kill()


def _run_all(names):
    for name in names:
        if _stopping.is_set():
            _outcomes[name] = RuntimeError(f"background command {name!r} not run: the session ended first")
        else:
            _outcomes[name] = _run(*_commands[name])
        _finished[name].set()


def _run(argv, environment, cwd, timeout):
    try:
        process = subprocess.Popen(argv, env=environment, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
    except OSError as error:
        return error
    _running.append(process)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as error:
        process.kill()
        process.communicate()
        return error
    finally:
        _running.remove(process)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
