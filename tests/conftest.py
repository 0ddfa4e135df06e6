import os

from hypothesis import HealthCheck, settings

import background

# Numba compiles on first use; no per-example deadline. CI=true runs the same profile.
settings.register_profile(
    "default", deadline=None, max_examples=int(os.environ.get("FASTLSTM_EXAMPLES", "40")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("default")

# tests/cuda runs in its own process, with FASTLSTM_CUDA_TESTS=1 (tests/test_cuda_suite.py
# starts it under the simulator, which must be switched on before numba.cuda is imported).
collect_ignore = [] if os.environ.get("FASTLSTM_CUDA_TESTS") == "1" else ["cuda"]


def pytest_configure(config):
    config.addinivalue_line("markers", "background(name): the test reads the outcome of tests/background.py's "
                                       "command `name`, started beside the suite once collection is done")


def pytest_collection_modifyitems(items):
    """Tests that wait for a background process run last, by when it has had the whole suite's time."""
    items.sort(key=lambda item: item.get_closest_marker("background") is not None)


def pytest_collection_finish(session):
    background.start([marker.args[0] for item in session.items for marker in item.iter_markers("background")])


def pytest_sessionfinish(session):
    background.stop()
