"""Hub resolution (magnet_jax.hub) against a Hugging Face cache laid out by huggingface_hub, offline."""
from __future__ import annotations

import os

import pytest
from huggingface_hub import constants

from magnet_jax import hub
from magnet_jax.convert.t5 import resolve_t5_source
from tests.hf_cache import add_repo


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    assert constants.HF_HUB_OFFLINE, "tests run offline (tests/conftest.py)"
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_warm_cache_offline(hf_cache):
    snap = add_repo(hf_cache, "facebook/magnet-small-10secs",
                    {"state_dict.bin": b"lm", "compression_state_dict.bin": b"codec"}, missing=("config.json",))
    got = hub.resolve_file("facebook/magnet-small-10secs", "state_dict.bin")
    assert got == str(snap / "state_dict.bin") and open(got, "rb").read() == b"lm"
    # the optional probe: recorded as absent (.no_exist) -> None, no error
    assert hub.resolve_file("facebook/magnet-small-10secs", "config.json", optional=True) is None
    # absent without a marker (never asked for online): the repo is cached, so the file is not part of it
    assert hub.resolve_file("facebook/magnet-small-10secs", "README.md", optional=True) is None
    # a required file that is not cached: the unreachable-hub error, saying what to do
    with pytest.raises(hub.HubError, match="local folder"):
        hub.resolve_file("facebook/magnet-small-10secs", "README.md")
    assert hub.is_cached("facebook/magnet-small-10secs") and not hub.is_cached("facebook/magnet-medium-10secs")


def test_uncached_repo_offline_is_an_error_even_for_optional_files(hf_cache):
    """Offline with nothing cached, 'optional' must not turn into 'absent' (the repo may well have the file)."""
    with pytest.raises(hub.HubError, match="not reachable"):
        hub.resolve_file("facebook/magnet-small-10secs", "config.json", optional=True)


def test_legacy_single_name_repo_ids(hf_cache):
    add_repo(hf_cache, "t5-base", {"config.json": b"{}"})
    assert open(hub.resolve_file("t5-base", "config.json")).read() == "{}"
    # audiocraft names T5 "t5-base": the canonical repo first, the legacy id when only that one is cached
    assert resolve_t5_source("t5-base") == "t5-base"
    add_repo(hf_cache, "google-t5/t5-base", {"config.json": b"{}"})
    assert resolve_t5_source("t5-base") == "google-t5/t5-base"
    assert resolve_t5_source("t5-large") == "google-t5/t5-large"       # nothing cached: the canonical id


def test_local_paths_and_bad_ids(tmp_path, hf_cache):
    (tmp_path / "a.bin").write_bytes(b"x")
    assert hub.resolve_file(tmp_path, "a.bin") == str(tmp_path / "a.bin")
    assert hub.resolve_file(tmp_path / "a.bin", "a.bin") == str(tmp_path / "a.bin")
    assert hub.resolve_file(tmp_path, "b.bin", optional=True) is None
    with pytest.raises(hub.HubError, match="not found in local folder"):
        hub.resolve_file(tmp_path, "b.bin")
    for bad in (str(tmp_path / "no" / "such"), "a/b/c", "./x", "~/nothing-here", "/x/state_dict.bin"):
        with pytest.raises(hub.HubError, match="neither an existing local path"):
            hub.resolve_file(bad, "state_dict.bin")


def test_cache_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGNET_JAX_CACHE", str(tmp_path / "c"))
    assert hub.cache_dir("lm", "k") == tmp_path / "c" / "lm" / "k" and os.path.isdir(tmp_path / "c" / "lm" / "k")


def test_unreachable_hub_reads_the_cache_without_retrying(hf_cache, monkeypatch):
    """HF_HUB_OFFLINE unset, no network: one connection probe, then cache-only look-ups (huggingface_hub would
    otherwise retry each file for ~25 s before falling back to the same cache)."""
    import socket

    import huggingface_hub
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_REACHABLE", {})
    with socket.socket() as s:       # a port nothing listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    calls = []
    real = huggingface_hub.hf_hub_download

    def spy(*a, **k):
        calls.append(k.get("local_files_only"))
        return real(*a, **k)
    monkeypatch.setattr(hub, "hf_hub_download", spy)
    snap = add_repo(hf_cache, "facebook/magnet-small-10secs", {"state_dict.bin": b"lm"})
    assert not hub.hub_reachable()
    assert hub.resolve_file("facebook/magnet-small-10secs", "state_dict.bin") == str(snap / "state_dict.bin")
    assert hub.resolve_file("facebook/magnet-small-10secs", "config.json", optional=True) is None
    with pytest.raises(hub.HubError, match=f"no connection to http://127.0.0.1:{port}, and the file is not in"):
        hub.resolve_file("facebook/encodec_32khz", "config.json")
    assert calls == [True, True, True]
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")      # behind a proxy a direct probe says nothing
    assert hub.hub_reachable()


def test_hub_probe_is_quick(monkeypatch):
    """One probe (the generate job's offline fallback asks it too), answered within seconds when nothing listens."""
    import time
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub.hub_reachable() is False
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_REACHABLE", {})
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")        # discard port: nothing listens
    t = time.monotonic()
    assert hub.hub_reachable() is False
    assert time.monotonic() - t < 3.0
