"""Runs before any test module imports jax: 8 fake CPU devices for the sharding tests, and no hub."""
import gc
import os
import sys
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# CPU only: with jax[tpu]'s libtpu installed (tests/integration/test_tpu_compile.py compiles for a TPU topology) JAX
# would also try to start a TPU runtime in every process; the TPU compiler is loaded on demand, by any number of
# processes (libtpu's lock file guards a real TPU)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
# one persistent XLA cache for the run, shared by the pytest workers and the CLIs the e2e tests start (a resumed
# training run compiles what the first run compiled): only programs that took over a second to compile
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "magnet_jax_tests_xla_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


# ---- layers: tests/unit (no torch, seconds), tests/integration (no torch, compiles real models),
# tests/parity (vs audiocraft / transformers / encodec),
# tests/e2e (CLIs, subprocesses, notebook). Each test is marked by its folder: `pytest -m unit`.
import pytest  # noqa: E402

_LAYERS = ("unit", "integration", "parity", "e2e")


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = item.path.relative_to(ROOT).parts
        if len(parts) > 1 and parts[0] == "tests" and parts[1] in _LAYERS:
            item.add_marker(getattr(pytest.mark, parts[1]))


# ---- shared fixtures: random-init tiny pipelines (built once per session; tests must not mutate them)
@pytest.fixture(scope="session")
def tiny_magnet_pipeline():
    from magnet_jax.pipelines.magnet import MagnetPipeline
    return MagnetPipeline.from_config("tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_musicgen_pipeline():
    from magnet_jax.pipelines.musicgen import MusicGenPipeline
    return MusicGenPipeline.from_config("tiny", seed=0)


# ---- each module's compiled XLA programs are dropped when it ends: one pytest process compiles hundreds of
# programs, and keeping them all resident grew the process until XLA's compiler crashed (SIGSEGV) mid-suite.
@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_programs():
    yield
    if "jax" in sys.modules:
        sys.modules["jax"].clear_caches()
    gc.collect()
