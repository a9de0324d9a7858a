"""The bundled model's LM config (``--config=configs/magnet.py:bundled``) and where its weights live.

A small MAGNeT over the bundled codec's tokens (16 kHz, 50 Hz, 4 x 1024 codes): dim 256, 4 layers, 4 heads, a
10 s window; ~5 M parameters, ~20 MB of float32 safetensors. The text encoder is the bundled frozen T5
(:mod:`magnet_jax.bundled.text`, 128-dim). Everything not set here is the released music models' recipe.
"""
from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"      # lm/ codec/ t5/ (magnet_jax.bundled.package)
NAME = "bundled"


def lm_config():
    """``configs/magnet.py:bundled``: the config ``tools/train.py`` trains the bundled LM with."""
    from magnet_jax.configs import _base

    c = _base("music", 10.0, dict(dim=256, num_heads=4, num_layers=4))
    c.name = NAME
    c.model.update(dict(card=1024, n_q=4, frame_rate=50, text_dim=128))
    # the codec is checked by shape (rate, frame rate, codebooks); its folder is named on the command line
    c.codec.update(dict(name="", sample_rate=16000, channels=1))
    # default: the packaged encoder; make_bundled.sh passes --config.text.name=WORKDIR/t5
    c.text.update(dict(name=str(WEIGHTS_DIR / "t5"), max_length=48))
    c.merge_text_p = 0.0          # the corpus descriptions already name instrument, tempo, key and style
    c.update(dict(batch_size=16, learning_rate=1e-3, warmup_steps=500, total_steps=20_000, log_every=50,
                  eval_every=1000, eval_batches=4, checkpoint_every=500))
    return c
