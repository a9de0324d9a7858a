"""The MusicGen training objective vs audiocraft 1.3.0 ``MusicGenSolver``'s loss: ``compute_predictions`` on the
pattern-built sequence, ``mask = padding_mask & output.mask``, ``_compute_cross_entropy`` (per-codebook means,
averaged) -- same random weights (released layout), random codes, text states and padding."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from magnet_jax.convert import load_audiocraft_checkpoint
from magnet_jax.objectives.musicgen import musicgen_loss
from tests.reference import magnet_ref as M
from tests.reference import musicgen_ref as R

TOL = 1e-4


@pytest.mark.parametrize("kw", [dict(dim=32, num_heads=2, num_layers=2, card=64),
                                dict(dim=48, num_heads=3, num_layers=1, card=32, delays=[0, 2, 3, 5])])
def test_loss_equals_musicgen_solver(tmp_path, kw):
    from audiocraft.solvers.musicgen import MusicGenSolver
    xp = R.musicgen_xp_cfg(**kw)
    R.make_checkpoint(tmp_path, xp, seed=2)
    ref, lm = R.load_reference(tmp_path), load_audiocraft_checkpoint(tmp_path, cache=False).lm
    B, K, T, card = 3, 4, 14, kw["card"]
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, card, (B, K, T), generator=g)
    hidden, mask = torch.randn(B, 6, 768, generator=g), torch.ones(B, 6, dtype=torch.long)
    mask[1, 2:] = 0
    valid = torch.tensor([T, 9, 5])
    padding = torch.arange(T)[None] < valid[:, None]                          # [B, T]
    with R.torch_backend(), torch.no_grad():
        out = ref.compute_predictions(codes, [], M.condition_tensors(ref, hidden, mask))
        want, want_k = MusicGenSolver._compute_cross_entropy(None, out.logits, codes,
                                                             padding[:, None].expand_as(codes) & out.mask)
    got, aux = musicgen_loss(lm, jnp.asarray(codes.numpy()), jnp.asarray(hidden.numpy()), jnp.asarray(mask.numpy()),
                             padding_mask=jnp.asarray(padding.numpy()))
    assert abs(float(got) - float(want)) <= TOL
    np.testing.assert_allclose(np.asarray(aux["ce_per_codebook"]), torch.stack(want_k).numpy(), atol=TOL)
