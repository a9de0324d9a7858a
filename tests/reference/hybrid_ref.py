"""Reference Hybrid-MAGNeT checkpoints in the layout the audiocraft ``hybrid_magnet`` branch (c44e943) writes.

The branch's ``MagnetLMModel`` (``lm_hybrid_magnet.py``) adds no parameters to audiocraft's: its checkpoint is
audiocraft 1.3.0's ``MagnetLMModel`` state dict built from ``hybrid_magnet_32khz.yaml``'s ``xp.cfg``
(``lm_model: transformer_lm_magnet``, ``solver: hybrid_magnet``, ``codebooks_pattern.modeling: delay``), written
by :func:`tests.reference.magnet_ref.save_released`. The branch's own file cannot be instantiated (its
``__init__`` calls ``_stage_attn_mask`` with missing arguments, ``forward`` reads an undefined
``condition_tensors``), so :func:`reference_frame_logits` is its ``compute_predictions`` on audiocraft 1.3.0:
the real ``DelayedPatternProvider`` (``get_pattern(T + K - 1)``, ``keep_only_valid_steps``), the real
transformer with the semi-AR mask as ``src_mask`` (:func:`semi_ar_mask`, written from the branch's
``_stage_attn_mask`` + solver ``compute_attn_mask`` / ``_apply_nar_masks``), ``revert_pattern_logits`` and the
``[:, :, :-K + 1]`` trim.
"""
from __future__ import annotations

import copy

from tests.reference import magnet_ref as R  # noqa: F401  (imports the shim before audiocraft)

import torch


def hybrid_xp_cfg(**kw) -> dict:
    """``xp.cfg`` of a hybrid checkpoint (small dims): MAGNeT's released keys + the branch's solver yaml."""
    xp = copy.deepcopy(R.magnet_xp_cfg(**kw))
    xp["solver"] = "hybrid_magnet"
    xp["codebooks_pattern"] = {"modeling": "delay", "delay": {"delays": list(range(xp["transformer_lm"]["n_q"])),
                                                             "flatten_first": 0, "empty_initial": 0},
                               "parallel": {"empty_initial": -1}}
    xp["transformer_lm"]["segment_duration"] = 0      # hybrid_magnet_32khz.yaml; build_model sets the dataset's
    xp["transformer_lm"]["span_len"] = -1
    return xp


def build_reference(xp_cfg: dict, seed: int = 0):
    """audiocraft MagnetLMModel from the hybrid xp.cfg, randomised (as the branch's ``build_model``)."""
    xp = copy.deepcopy(xp_cfg)
    xp["transformer_lm"]["segment_duration"] = xp["dataset"]["segment_duration"]
    xp["transformer_lm"]["span_len"] = xp["masking"]["span_len"]
    return R.build_reference(xp, seed)


def make_checkpoint(folder, xp_cfg: dict, seed: int = 0, half: bool = False):
    lm = build_reference(xp_cfg, seed)
    R.save_released(folder, lm, xp_cfg, half)
    return lm


def semi_ar_mask(frames: int, n_q: int, prompt_step: int, stage: int, subcodes_context: int) -> torch.Tensor:
    """Additive float mask [1, 1, S, S] (0 / -inf), ``S = frames + n_q``, built step by step as the branch."""
    S = frames + n_q
    inf = float("-inf")
    q = torch.arange(frames).view(-1, 1)
    k = torch.arange(frames).view(1, -1)
    if stage > 0 and subcodes_context > -1:
        sa = torch.where((q - k).abs() <= subcodes_context, torch.tensor(0.0), torch.tensor(inf))
    else:
        sa = torch.zeros(frames, frames)
    nar = torch.full((S, S), inf)
    nar[stage:stage + frames, 1 + stage:1 + stage + frames] = sa
    if stage + frames < S:
        nar[stage + frames:, :] = 0
    if stage > 0:
        nar[:stage, :] = 0
    seq = torch.arange(S)
    steps = torch.full((S,), prompt_step)
    in_prefix = seq < steps
    steps = torch.where(in_prefix, seq, steps)
    ar = torch.where(steps.view(-1, 1) - steps.view(1, -1) >= 0, torch.tensor(0.0), torch.tensor(inf))
    return torch.where(in_prefix.view(-1, 1), ar, nar)[None, None]


def reference_frame_logits(lm, codes: torch.Tensor, text_hidden, text_mask, prompt_step, stage) -> torch.Tensor:
    """Logits [B, K, T, card] of frame-coordinate ``codes`` (mask id = card where masked), per sample."""
    B, K, T = codes.shape
    ctx = lm.subcodes_context
    pattern = lm.pattern_provider.get_pattern(T + K - 1)
    seq, _, _ = pattern.build_pattern_sequence(codes, lm.special_token_id, keep_only_valid_steps=True)
    cond = R.condition_tensors(lm, text_hidden, text_mask)
    out = []
    with torch.no_grad():
        for b in range(B):
            lm.attn_mask_per_stage = [semi_ar_mask(T, K, int(prompt_step[b]), int(stage[b]), ctx)]
            cb = {name: tuple(x[b:b + 1] for x in v) for name, v in cond.items()}
            logits = lm(seq[b:b + 1], [], cb, stage=0)                       # [1, K, T + K, card]
            logits, _, _ = pattern.revert_pattern_logits(logits.permute(0, 3, 1, 2), float("nan"),
                                                         keep_only_valid_steps=True)
            out.append(logits.permute(0, 2, 3, 1)[:, :, :T])
    return torch.cat(out)
