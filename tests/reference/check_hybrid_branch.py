"""Manual check (not collected by pytest: it needs the fetched audiocraft snapshot, absent on CI): our
semi-AR mask and training inputs against the ``hybrid_magnet`` branch's *own* functions (c44e943).

    python -O -m tests.reference.check_hybrid_branch [GIT_DIR]   # default: the fetched audiocraft mirror

The branch's files are read with ``git show`` into modules of the installed audiocraft 1.3.0 package. Its bugs are
worked around, not fixed: ``_stage_attn_mask`` is called with every argument (its ``__init__`` omits
``num_heads``), with one head and ``frames % 8 == 0`` and an explicit ``mem_eff_seq_len`` (its per-head
``repeat`` / align-8 padding do not fit the 2-D block otherwise; the top-left ``[T + K, T + K]`` is compared);
the solver's missing ``get_mask`` is its ``calc_spans_mask``; the stage / prompt-step draws are forced; ``-O`` drops
the asserts (for stage 0 its ``assert ... % MEMORY_EFFICIENT_ATTN_ALIGN_FACTOR`` reads an unbound local).
"""
from __future__ import annotations

import subprocess
import sys
import types
from unittest import mock

from tests.reference import shim  # noqa: F401  (before audiocraft)

import importlib.util

import numpy as np
import torch

COMMIT = "c44e943b9d12d666a9624516220c944a42c0f913"


def _load(git_dir, path, name):
    src = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{COMMIT}:{path}"], check=True,
                         capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(name, loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = name.rsplit(".", 1)[0]
    exec(compile(src, path, "exec"), mod.__dict__)
    return mod


def main(git_dir="/work/.mirror/facebookresearch+audiocraft/repo"):
    import jax.numpy as jnp

    from magnet_jax.model.hybrid import semi_autoregressive_mask
    from magnet_jax.objectives import hybrid as H
    lmmod = _load(git_dir, "audiocraft/models/lm_hybrid_magnet.py", "audiocraft.models.lm_hybrid_magnet")
    solmod = _load(git_dir, "audiocraft/solvers/hybrid_magnet.py", "audiocraft.solvers.hybrid_magnet")
    T, K, ctx, B = 16, 4, 2, 1
    stub = types.SimpleNamespace(subcodes_context=ctx, n_q=K)
    stub.restricted_context_attn_mask = types.MethodType(lmmod.MagnetLMModel.restricted_context_attn_mask, stub)
    masks = torch.stack([lmmod.MagnetLMModel._stage_attn_mask(stub, s, T, 1, "cpu", torch.float32,
                                                              mem_eff_seq_len=T + 8)[:T + K, :T + K]
                         for s in range(K)])
    S = solmod.HybridMagnetSolver
    sol = types.SimpleNamespace(device="cpu", cfg=types.SimpleNamespace(masking=types.SimpleNamespace(span_len=3)))
    sol.model = types.SimpleNamespace(attn_mask_per_stage=masks, num_heads=1, special_token_id=2048)
    sol.mean_maskrate_to_k = torch.cat([torch.tensor(S._calc_mean_maskrate_to_u_LUT(sol, L)).unsqueeze(0)
                                        for L in range(1, T + 1)])
    sol.calc_spans_mask = types.MethodType(S.calc_spans_mask, sol)
    sol.get_mask = lambda b, p, t, probs, dev: sol.calc_spans_mask(probs, b, p, t, dev)
    sol.compute_attn_mask = types.MethodType(S.compute_attn_mask, sol)
    n = 0
    for P in (0, 2, 7, 15):
        for stage in range(K):
            codes = torch.randint(0, 2048, (B, K, T))
            with mock.patch.object(torch, "multinomial", lambda *a, **k: torch.tensor([stage])), \
                    mock.patch.object(torch, "randint", lambda *a, **k: torch.tensor([[P]])):
                inp, loss_mask, sar = S._apply_nar_masks(sol, codes)
            ours = np.asarray(semi_autoregressive_mask(T, K, [P], [stage], ctx))[0, 0]
            np.testing.assert_array_equal(ours, np.isfinite(sar[0, 0].numpy()), err_msg=f"mask P={P} s={stage}")
            spans = (inp[0, stage] == 2048).numpy() & (np.arange(T) >= P - stage)
            rate = float(spans.mean())
            b = H.prepare_batch(jnp.asarray(codes.numpy()), jnp.ones((B, T), bool), jnp.ones((B, 1)),
                                __import__("jax").random.key(0), num_codebooks=K, mask_id=2048, span_len=3,
                                stage=stage, prompt_step=P, mask_rate=rate)
            ours_in = np.asarray(b["inputs"]).copy()
            ours_in[0, stage] = np.where(np.arange(T) >= P - stage, np.where(spans, 2048, codes[0, stage].numpy()),
                                         ours_in[0, stage])          # the branch's own span draw
            np.testing.assert_array_equal(ours_in, inp.numpy(), err_msg=f"inputs P={P} s={stage}")
            w = np.asarray(b["ar_weights"])[0] | ((np.arange(K)[:, None] == stage) & spans[None])
            np.testing.assert_array_equal(w, loss_mask[0].numpy(), err_msg=f"loss mask P={P} s={stage}")
            n += 1
    print(f"hybrid_magnet branch @ {COMMIT[:7]}: semi-AR mask, inputs and loss mask equal for {n} (P, stage) "
          f"cases (T={T}, K={K}, subcodes_context={ctx})")


if __name__ == "__main__":
    main(*sys.argv[1:])
