"""Test setup: 8 forced host devices so every sharded path is checked on CPU."""
import os
import shutil
import tempfile

# NOTE: must run before jax is imported anywhere in the test session.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# NOTE: one compilation cache for the whole session, shared by the xdist workers and the subprocesses tests start
# (they inherit the environment). Many tests train or evaluate the same small config more than once (resume, sweeps,
# stage chaining, scripts that re-evaluate a run), and each Experiment jits new closures that XLA would otherwise
# compile again. A fresh folder per session (set by the first process, inherited by the workers it starts), removed
# at the end, so no test ever sees a previous run's entries. VLJAX_TEST_JAX_CACHE=0 turns it off.
if os.environ.get("VLJAX_TEST_JAX_CACHE", "1") != "0" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="vljax-test-jax-cache-")
    os.environ["VLJAX_TEST_JAX_CACHE_OWNER"] = str(os.getpid())
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long tests, excluded from the default suite (-m slow)")


def pytest_unconfigure(config):
    if os.environ.get("VLJAX_TEST_JAX_CACHE_OWNER") == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
