"""Reference audiocraft MusicGen LMs (``LMModel``, ``lm_model: transformer_lm``) with random weights,
saved in the released on-disk layout (``state_dict.bin`` = ``{'best_state', 'xp.cfg', ...}``).

Built by audiocraft's own ``builders.get_lm_model`` from an ``xp.cfg`` with the released MusicGen
hyper-parameters (small dims), every tensor randomised (LayerNorms included), loaded back through
audiocraft's ``loaders.load_lm_model``. Attention runs on audiocraft's default ``'torch'`` backend (what
MusicGen inference uses; :func:`torch_backend` sets and restores it, since the MAGNeT helpers select
xformers globally). The T5 is replaced as in :mod:`tests.reference.magnet_ref`.
"""
from __future__ import annotations

import contextlib
import copy
import os

from tests.reference import shim

shim.install()   # before audiocraft (a statement here also keeps import sorters from moving it below)

import torch  # noqa: E402
from audiocraft.models import builders, loaders  # noqa: E402
from audiocraft.modules import transformer as ac_transformer  # noqa: E402

from tests.reference import magnet_ref as M  # noqa: E402
from tests.reference.magnet_generate_ref import _as_torch, patch_conditions  # noqa: E402


@contextlib.contextmanager
def torch_backend():
    prev = ac_transformer._efficient_attention_backend
    ac_transformer.set_efficient_attention_backend("torch")
    try:
        yield
    finally:
        ac_transformer.set_efficient_attention_backend(prev)


def musicgen_xp_cfg(dim=64, num_heads=4, num_layers=2, n_q=4, card=2048, delays=None, segment_duration=2,
                    t5_name="t5-base", hidden_scale=4, stereo=False) -> dict:
    """An ``xp.cfg`` with the keys and values of the released MusicGen checkpoints (small dims)."""
    xp = M.magnet_xp_cfg(dim=dim, num_heads=num_heads, num_layers=num_layers, n_q=n_q, card=card,
                         segment_duration=segment_duration, t5_name=t5_name, hidden_scale=hidden_scale)
    xp["lm_model"] = "transformer_lm"
    xp["solver"] = "musicgen"
    xp.pop("masking")
    xp["codebooks_pattern"] = {"modeling": "delay", "delay": {
        "delays": list(delays if delays is not None else range(n_q)), "flatten_first": 0, "empty_initial": 0}}
    tl = xp["transformer_lm"]
    for k in ("subcodes_context", "span_len", "compression_model_framerate", "segment_duration"):
        tl.pop(k)
    tl["causal"] = True
    if stereo:
        xp["channels"] = 2
        xp["interleave_stereo_codebooks"] = {"use": True, "per_timestep": False}
    return xp


def build_reference(xp_cfg: dict, seed: int = 0):
    from omegaconf import OmegaConf
    M._patch_t5()
    cfg = OmegaConf.create(copy.deepcopy(xp_cfg))
    for k in ("merge_text_conditions_p", "drop_desc_p"):
        cfg.conditioners.args.pop(k, None)
    torch.manual_seed(seed)
    lm = builders.get_lm_model(cfg)
    M.randomize_(lm, seed)
    return lm.eval()


def make_checkpoint(folder, xp_cfg: dict, seed: int = 0, half: bool = False):
    """Writes ``folder/state_dict.bin`` in the released layout; returns the reference model."""
    lm = build_reference(xp_cfg, seed)
    M.save_released(folder, lm, xp_cfg, half)
    return lm


def load_reference(folder):
    """The checkpoint loaded back through audiocraft's own loader (``load_lm_model``, CPU, float32)."""
    M._patch_t5()
    with torch_backend():
        return loaders.load_lm_model(os.path.join(str(folder), "state_dict.bin"), device="cpu").eval()


def reference_logits(lm, sequence, text_hidden, text_mask):
    """audiocraft ``LMModel.forward`` on a (delayed) sequence [B, K, S] -> [B, K, S, card]."""
    with torch_backend(), torch.no_grad():
        return lm(sequence, [], M.condition_tensors(lm, text_hidden, text_mask))


def reference_predictions(lm, codes, text_hidden, text_mask):
    """audiocraft ``compute_predictions`` (delay pattern applied and reverted): logits [B, K, T, card], mask."""
    with torch_backend(), torch.no_grad():
        out = lm.compute_predictions(codes, [], M.condition_tensors(lm, text_hidden, text_mask))
    return out.logits, out.mask


def reference_generate(lm, text_hidden, text_mask, *, num_frames, prompt=None, use_sampling=False, temp=1.0,
                       top_k=250, top_p=0.0, cfg_coef=3.0, two_step_cfg=False):
    """audiocraft ``LMModel.generate`` (unmodified) on the given text hidden states -> int64 numpy [B, K, T]."""
    conditions = patch_conditions(lm, text_hidden, text_mask)
    if prompt is not None:
        prompt = _as_torch(prompt, torch.long)
    with torch_backend(), torch.no_grad():
        out = lm.generate(prompt=prompt, conditions=conditions, max_gen_len=num_frames, use_sampling=use_sampling,
                          temp=temp, top_k=top_k, top_p=top_p, cfg_coef=cfg_coef, two_step_cfg=two_step_cfg)
    return out.numpy()
