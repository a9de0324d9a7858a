"""Reference audiocraft MAGNeT LMs with random weights, saved in the released on-disk layout.

``make_checkpoint(folder, ...)`` builds a ``MagnetLMModel`` through audiocraft's own builder from
an ``xp.cfg`` with the released hyper-parameter set (small dims), randomises *every* tensor
(LayerNorms included), and writes ``folder/state_dict.bin`` exactly as audiocraft's exporter does.
``load_reference(folder)`` then loads it back through audiocraft's real loader
(``loaders.load_lm_model_magnet``), which forces the xformers attention backend like the release.

T5 is not in MAGNeT checkpoints; the conditioner's T5 is replaced by :class:`FixedHiddenT5`, which
returns caller-given hidden states, so audiocraft's real ``T5Conditioner.forward`` (output_proj,
mask multiply) runs on them.
"""
from __future__ import annotations

import copy
import types

from tests.reference import shim  # noqa: F401  (must precede audiocraft)

import torch
import yaml
import audiocraft.modules.conditioners as C
from audiocraft.models import builders, loaders
from audiocraft.modules import transformer as ac_transformer

T5_DIMS = {"t5-small": 512, "t5-base": 768, "t5-large": 1024}


class FixedHiddenT5(torch.nn.Module):
    """Stands in for the frozen T5 encoder: returns ``self.hidden`` as ``last_hidden_state``."""

    def __init__(self):
        super().__init__()
        self.hidden = None

    def forward(self, input_ids=None, attention_mask=None, **kw):
        return types.SimpleNamespace(last_hidden_state=self.hidden)


class _NoTokenizer:
    @staticmethod
    def from_pretrained(name, *a, **k):
        return None


class _FakeT5Model:
    @staticmethod
    def from_pretrained(name, *a, **k):
        return FixedHiddenT5()


def _patch_t5():
    C.T5Tokenizer = _NoTokenizer
    C.T5EncoderModel = _FakeT5Model


def magnet_xp_cfg(dim=64, num_heads=4, num_layers=2, n_q=4, card=2048, subcodes_context=5,
                  segment_duration=2, t5_name="t5-base", hidden_scale=4, positional_embedding="sin",
                  positional_scale=1.0) -> dict:
    """An ``xp.cfg`` with the keys and values of the released MAGNeT checkpoints (small dims)."""
    return {
        "device": "cpu", "dtype": "float32", "sample_rate": 32000, "channels": 1,
        "compression_model_checkpoint": "//pretrained/facebook/encodec_32khz",
        "lm_model": "transformer_lm_magnet",
        "solver": "magnet", "efficient_attention_backend": "xformers",
        "dataset": {"segment_duration": segment_duration, "batch_size": 8, "min_segment_ratio": 0.8},
        "masking": {"span_len": 3},
        "codebooks_pattern": {"modeling": "parallel", "parallel": {"empty_initial": -1}},
        "attribute_dropout": {},
        "classifier_free_guidance": {"training_dropout": 0.3, "inference_coef": 3.0},
        "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1,
                  "sum": [], "prepend": [], "cross": ["description"], "input_interpolate": []},
        "conditioners": {
            "args": {"merge_text_conditions_p": 0.25, "drop_desc_p": 0.5},
            "description": {"model": "t5", "t5": {"name": t5_name, "finetune": False, "word_dropout": 0.3,
                                                  "normalize_text": False}}},
        "transformer_lm": {
            "dim": dim, "num_heads": num_heads, "num_layers": num_layers, "hidden_scale": hidden_scale,
            "n_q": n_q, "card": card, "dropout": 0.0, "emb_lr": None, "activation": "gelu",
            "norm_first": True, "bias_ff": False, "bias_attn": False, "bias_proj": False,
            "past_context": None, "causal": False, "custom": False, "memory_efficient": True,
            "attention_as_float32": False, "layer_scale": None, "positional_embedding": positional_embedding,
            "positional_scale": positional_scale,
            "xpos": False, "checkpointing": "none", "weight_init": "gaussian", "depthwise_init": "current",
            "zero_bias_init": True, "norm": "layer_norm", "cross_attention": False, "qk_layer_norm": False,
            "qk_layer_norm_cross": False, "attention_dropout": None, "kv_repeat": 1,
            "two_step_cfg": False, "subcodes_context": subcodes_context, "span_len": 3,
            "compression_model_framerate": 50, "segment_duration": segment_duration},
    }


def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Every parameter random (LayerNorm weights around 1, everything else ~ 1/sqrt(fan_in))."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm1.weight", "norm2.weight", "norm_cross.weight", "out_norm.weight")):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif name.startswith("emb."):
                p.copy_(0.7 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


def build_reference(xp_cfg: dict, seed: int = 0):
    """audiocraft MagnetLMModel from an xp.cfg (the same calls as ``load_lm_model_magnet``), randomised."""
    from omegaconf import OmegaConf
    _patch_t5()
    ac_transformer.set_efficient_attention_backend("xformers")
    cfg = OmegaConf.create(copy.deepcopy(xp_cfg))
    for k in ("merge_text_conditions_p", "drop_desc_p"):
        cfg.conditioners.args.pop(k, None)
    torch.manual_seed(seed)
    lm = builders.get_lm_model(cfg)
    randomize_(lm, seed)
    return lm.eval()


def save_released(folder, lm, xp_cfg: dict, half: bool = False):
    """Writes ``lm`` as ``folder/state_dict.bin`` in the released audiocraft layout (MAGNeT or MusicGen)."""
    import os
    state = {k: (v.half() if half else v).clone() for k, v in lm.state_dict().items()}
    os.makedirs(folder, exist_ok=True)
    torch.save({"best_state": state, "xp.cfg": yaml.safe_dump(xp_cfg), "version": "1.3.0", "exported": True},
               os.path.join(folder, "state_dict.bin"))


def make_checkpoint(folder, xp_cfg: dict, seed: int = 0, half: bool = False):
    """Writes ``folder/state_dict.bin`` in the released layout; returns the reference model."""
    lm = build_reference(xp_cfg, seed)
    save_released(folder, lm, xp_cfg, half)
    return lm


def load_reference(folder):
    """The checkpoint loaded back through audiocraft's own MAGNeT loader (CPU, float32)."""
    _patch_t5()
    return loaders.load_lm_model_magnet(str(folder), compression_model_frame_rate=50, device="cpu").eval()


def condition_tensors(lm, text_hidden: torch.Tensor, text_mask: torch.Tensor, grad: bool = False):
    """audiocraft's real ``T5Conditioner.forward`` on given T5 hidden states -> condition_tensors
    (``grad=True``: differentiable, as in training, where the text projection is trained)."""
    cond = lm.condition_provider.conditioners["description"]
    cond.__dict__["t5"].hidden = text_hidden
    with torch.set_grad_enabled(grad):
        emb, mask = cond({"input_ids": torch.zeros(text_mask.shape, dtype=torch.long), "attention_mask": text_mask})
    return {"description": (emb, mask)}


def reference_logits(lm, codes: torch.Tensor, text_hidden: torch.Tensor, text_mask: torch.Tensor, stage: int):
    with torch.no_grad():
        return lm(codes, [], condition_tensors(lm, text_hidden, text_mask), stage=stage)
