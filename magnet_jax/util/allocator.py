"""tcmalloc for XLA:CPU runs: the process re-executes itself once with ``libtcmalloc`` preloaded.

Why: XLA:CPU allocates the temporaries of each execution as one slab (about 730 MB for a 512-dim, 8-layer
training step at batch 2). glibc serves an allocation that large with a fresh ``mmap`` every time and
unmaps it on free, so every step touches ~180k new pages (minor page faults, the kernel zeroing each one):
on this project's 2-core CPU about 120 ms of a 1.15 s forward + backward. tcmalloc keeps freed memory
for reuse: the faults go to ~0 (``benchmarks/backward_variants.py`` reports both). glibc's own knobs
(``M_MMAP_MAX``, ``M_ARENA_MAX``) remove only part of them. PyTorch's CPU performance guide gives the same
advice (jemalloc / tcmalloc), and Cloud TPU VM images preload tcmalloc.

:func:`use_tcmalloc` is called by the trainers (``tools/train.py``, ``tools/train_codec.py``) and the benchmarks
before any work. It does nothing when tcmalloc is already loaded, when no ``libtcmalloc`` is installed
(Debian / Ubuntu: ``apt-get install libtcmalloc-minimal4``), off Linux, or with ``MAGNET_TCMALLOC=0``.
A library cannot swap its host's allocator: ``MagnetPipeline`` in a notebook keeps the system malloc.
"""
from __future__ import annotations

import os
import sys

LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so")
SEARCH_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
               "/usr/local/lib", "/opt/conda/lib")
_TRIED = "_MAGNET_TCMALLOC_TRIED"       # set for the re-executed process: never loop


def find_tcmalloc(dirs=SEARCH_DIRS) -> str | None:
    """Path of an installed tcmalloc shared library, or None."""
    for d in dirs:
        for name in LIBRARIES:
            if os.path.exists(os.path.join(d, name)):
                return os.path.join(d, name)
    return None


def tcmalloc_loaded(maps: str = "/proc/self/maps") -> bool:
    """Whether this process has tcmalloc mapped (preloaded or linked)."""
    try:
        with open(maps) as f:
            return "tcmalloc" in f.read()
    except OSError:
        return False


def reexec_command(env: dict | None = None, lib: str | None = None) -> tuple[list[str], dict] | None:
    """The ``(argv, env)`` to re-execute this process with tcmalloc preloaded, or None when there is
    nothing to do (turned off, already tried or loaded, not Linux, no library installed)."""
    env = dict(os.environ if env is None else env)
    if env.get("MAGNET_TCMALLOC", "1") == "0" or env.get(_TRIED) or not sys.platform.startswith("linux"):
        return None
    if tcmalloc_loaded():
        return None
    lib = lib or find_tcmalloc()
    if lib is None:
        return None
    env["LD_PRELOAD"] = ":".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
    env[_TRIED] = "1"
    env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40))   # no "large alloc" lines on stderr
    env.setdefault("TCMALLOC_RELEASE_RATE", "0")     # keep freed pages: releasing them brings the faults back
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    argv[0] = sys.executable
    return argv, env


def use_tcmalloc() -> None:
    """Re-execute this process (same pid, same command line) with tcmalloc preloaded, where it applies.
    Not inside pytest (a test importing a benchmark module): the re-executed test run would write into the file
    descriptors pytest was capturing at that moment, so its whole report would vanish."""
    if "_pytest" in sys.modules:
        return
    cmd = reexec_command()
    if cmd is None:
        return
    argv, env = cmd
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
