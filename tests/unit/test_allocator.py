"""magnet_jax.util.allocator: the tools re-execute themselves once with tcmalloc preloaded (XLA:CPU's
per-step page faults), never in a loop, never when turned off; CI installs libtcmalloc-minimal4."""
import os
import subprocess
import sys

from magnet_jax.util import allocator as A


def test_finds_a_library_in_the_search_dirs(tmp_path):
    assert A.find_tcmalloc([str(tmp_path)]) is None
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")
    assert A.find_tcmalloc([str(tmp_path / "none"), str(tmp_path)]) == str(tmp_path / "libtcmalloc_minimal.so.4")


def test_loaded_reads_the_process_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert not A.tcmalloc_loaded(str(maps))
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4\n")
    assert A.tcmalloc_loaded(str(maps))
    assert not A.tcmalloc_loaded(str(tmp_path / "missing"))


def test_reexec_command_preloads_once_and_keeps_the_command_line(monkeypatch):
    monkeypatch.setattr(A, "tcmalloc_loaded", lambda: False)
    argv, env = A.reexec_command({"LD_PRELOAD": "/x/libother.so", "PATH": "/bin"}, lib="/l/libtcmalloc.so.4")
    assert env["LD_PRELOAD"] == "/l/libtcmalloc.so.4:/x/libother.so" and env["PATH"] == "/bin"
    assert argv[0] == sys.executable and argv[1:] == list(sys.orig_argv[1:])
    assert A.reexec_command(env, lib="/l/libtcmalloc.so.4") is None           # the re-executed process: no loop
    assert A.reexec_command({"MAGNET_TCMALLOC": "0"}, lib="/l/libtcmalloc.so.4") is None
    monkeypatch.setattr(A, "tcmalloc_loaded", lambda: True)
    assert A.reexec_command({}, lib="/l/libtcmalloc.so.4") is None


def test_a_process_ends_up_on_tcmalloc_and_keeps_its_arguments():
    assert A.find_tcmalloc(), "libtcmalloc-minimal4 is not installed (tools/install.sh --tests installs it)"
    code = ("import sys; from magnet_jax.util.allocator import use_tcmalloc, tcmalloc_loaded; use_tcmalloc(); "
            "print(tcmalloc_loaded(), sys.argv[1:])")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "_MAGNET_TCMALLOC_TRIED")}
    out = subprocess.run([sys.executable, "-c", code, "a", "--b=1"], capture_output=True, text=True, env=env,
                         check=True).stdout.strip()
    assert out == "True ['a', '--b=1']"
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "MAGNET_TCMALLOC": "0"}).stdout.strip()
    assert off == "False []"


def test_an_importing_pytest_run_is_not_re_executed():
    # re-executed mid-collection, pytest's report would go to its capture files and the run would end silently
    code = ("import sys, _pytest; from magnet_jax.util.allocator import use_tcmalloc, tcmalloc_loaded; "
            "use_tcmalloc(); print('still here', tcmalloc_loaded())")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "_MAGNET_TCMALLOC_TRIED")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.strip()
    assert out == "still here False"
