import os

from hypothesis import HealthCheck, settings

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
