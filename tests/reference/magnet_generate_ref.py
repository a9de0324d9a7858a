"""Reference-side helpers for the decoding tests / benchmark: audiocraft's own ``generate``.

``reference_generate(lm, text_hidden, text_mask, ...)`` runs the *unmodified*
``MagnetLMModel.generate`` → ``_generate_magnet`` → ``_generate_stage`` on conditions we choose:

* ``B`` dummy ``ConditioningAttributes`` are passed, so audiocraft builds its own null batch with
  ``ClassifierFreeGuidanceDropout(p=1.0)`` and asks its ``condition_provider`` to tokenize
  ``[cond..., null...]``.
* ``condition_provider.tokenize`` is patched on the *instance* to return
  ``{'description': {'input_ids': 0, 'attention_mask': [mask; zeros]}}`` and the conditioner's
  :class:`~tests.reference.magnet_ref.FixedHiddenT5` returns ``[hidden; zeros]``, so audiocraft's
  real ``T5Conditioner.forward`` (output_proj, ``* mask``) produces the condition tensors. The
  null rows' values are irrelevant (multiplied by a zero mask) — exactly what magnet-jax builds.

``stage_schedule`` recomputes one stage's per-step table with the same torch float32 operations
as ``_generate_stage`` (linspace / cos / ``int()`` / ``max(., 1)``; CFG and temperature in Python
floats), independently of magnet-jax.
"""
from __future__ import annotations

import math

from tests.reference import magnet_ref  # noqa: F401  (shim before audiocraft)

import torch
from audiocraft.modules.conditioners import ConditioningAttributes


def _as_torch(x, dtype=None):
    import numpy as np
    t = torch.from_numpy(np.array(x))
    return t if dtype is None else t.to(dtype)


def patch_conditions(lm, text_hidden, text_mask):
    """Makes ``lm``'s condition provider yield [cond; null] tensors for ``text_hidden`` [B, S, E]."""
    h = _as_torch(text_hidden, torch.float32)
    m = _as_torch(text_mask, torch.long)
    hidden2 = torch.cat([h, torch.zeros_like(h)], 0)
    mask2 = torch.cat([m, torch.zeros_like(m)], 0)
    cond = lm.condition_provider.conditioners["description"]
    cond.__dict__["t5"].hidden = hidden2

    def tokenize(inputs):
        assert len(inputs) == hidden2.shape[0], (len(inputs), hidden2.shape)
        return {"description": {"input_ids": torch.zeros(mask2.shape, dtype=torch.long), "attention_mask": mask2}}

    lm.condition_provider.tokenize = tokenize
    return [ConditioningAttributes(text={"description": f"item {i}"}) for i in range(h.shape[0])]


def reference_generate(lm, text_hidden, text_mask, *, num_frames, prompt=None, use_sampling=False, temp=3.0,
                       top_k=0, top_p=0.9, max_cfg_coef=10.0, min_cfg_coef=1.0, decoding_steps=(20, 10, 10, 10),
                       span_arrangement="nonoverlap", span_scoring="max", anneal_temp=True, record=None):
    """audiocraft ``lm.generate`` on the given text hidden states; returns int64 numpy [B, K, T'].

    ``record``: optional list; every forward input ``[2B, K, T]`` (the model's ``sequence``) is
    appended to it as numpy, so per-step masked counts can be compared.
    """
    conditions = patch_conditions(lm, text_hidden, text_mask)
    if prompt is not None:
        prompt = _as_torch(prompt, torch.long)
    handle = None
    if record is not None:
        handle = lm.register_forward_pre_hook(lambda mod, args: record.append(args[0].numpy().copy()))
    try:
        with torch.no_grad():
            out = lm.generate(prompt=prompt, conditions=conditions, max_gen_len=num_frames,
                              use_sampling=use_sampling, temp=temp, top_k=top_k, top_p=top_p,
                              max_cfg_coef=max_cfg_coef, min_cfg_coef=min_cfg_coef,
                              decoding_steps=list(decoding_steps), anneal_temp=anneal_temp,
                              span_scoring=span_scoring, span_arrangement=span_arrangement)
    finally:
        if handle is not None:
            handle.remove()
    return out.numpy()


def stage_schedule(timesteps, n_units, *, temp=3.0, max_cfg=10.0, min_cfg=1.0, anneal_temp=True):
    """Per step ``(mask_p float32, num_masked, cfg_coef, temperature)`` as ``_generate_stage`` computes them.

    ``n_units`` is ``num_chunks_to_gen`` (nonoverlap) or ``gen_T`` (stride1). The temperature is the
    divisor actually used, ``max(t, 1e-2)``.
    """
    rows = []
    for timestep, steps_left in zip(torch.linspace(0, 1, timesteps), reversed(range(timesteps))):
        mask_p = torch.cos(timestep * math.pi * 0.5)
        num_masked = max(int((mask_p * n_units).item()), 1)
        coef = float(mask_p) * max_cfg + (1 - float(mask_p)) * min_cfg
        t = temp * (steps_left / timesteps) if anneal_temp else temp
        rows.append((float(mask_p), num_masked, coef, max(t, 1e-2)))
    return rows


def torch_cos_corrections(max_n=256) -> bytes:
    """Where torch's float32 ``cos(timestep * pi * 0.5)`` (SLEEF, ≤1 ulp) differs from the correctly
    rounded cosine, for ``linspace(0, 1, n)``, ``n = 1..max_n``: 3 bytes per entry
    ``(n - 1, i, b'+' or b'-')`` (one ulp up / down). Source of ``magnet_jax/decoding/_torch_cos_table.py``."""
    import numpy as np
    out = bytearray()
    for n in range(1, max_n + 1):
        ts = torch.linspace(0, 1, n)
        torch_cos = torch.cos(ts * math.pi * 0.5).numpy()
        arg = (ts * math.pi).numpy() * np.float32(0.5)
        exact = np.cos(arg.astype(np.float64)).astype(np.float32)
        diff = torch_cos.view(np.int32).astype(np.int64) - exact.view(np.int32)
        assert np.abs(diff).max(initial=0) <= 1
        for i in np.nonzero(diff)[0]:
            out += bytes([n - 1, int(i)]) + (b"+" if diff[i] > 0 else b"-")
    return bytes(out)


def cos_table_module_text(max_n=256) -> str:
    import base64
    import textwrap
    import zlib
    blob = base64.b64encode(zlib.compress(torch_cos_corrections(max_n), 9)).decode()
    lines = "\n".join(f'    "{l}"' for l in textwrap.wrap(blob, 100))
    return (f'"""Generated by tests/reference/magnet_generate_ref.py (torch {torch.__version__}): one-ulp corrections\n'
            f'turning the correctly rounded float32 cos(pi/2 * linspace(0, 1, n)) into torch\'s, n = 1..{max_n}.\n'
            'zlib + base64 of 3-byte entries (n - 1, i, "+" / "-")."""\n'
            f"MAX_N = {max_n}\nBLOB = (\n{lines}\n)\n")


if __name__ == "__main__":
    import sys
    sys.stdout.write(cos_table_module_text())
