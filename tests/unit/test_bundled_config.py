"""The bundled model's configs: the codec is 16 kHz at 50 Hz with 4 codebooks, the LM reads it and stays small."""
import math

import jax
from flax import nnx

from configs import codec as codec_configs
from configs import magnet as magnet_configs
from magnet_jax.model import MagnetLM
from magnet_jax.training.config import TrainConfig


def test_codec_config_is_16khz_50hz_4_codebooks_gan_free():
    c = codec_configs.get_config("bundled")
    assert c.model.sample_rate / math.prod(c.model.ratios) == 50 and c.model.n_q == 4 and c.model.bins == 1024
    assert c.losses.adv == 0 and c.losses.feat == 0 and c.losses.msspec > 0


def test_lm_config_matches_the_codec_and_weights_stay_tens_of_mb():
    cfg = TrainConfig.from_config(magnet_configs.get_config("bundled"))
    codec = codec_configs.get_config("bundled").model
    m = cfg.model
    assert (m.n_q, m.card, m.frame_rate) == (codec.n_q, codec.bins, 50) and m.text_dim == 128
    assert cfg.codec.sample_rate == codec.sample_rate and m.segment_duration == 10.0
    n = sum(x.size for x in jax.tree.leaves(nnx.state(nnx.eval_shape(lambda: MagnetLM(m, rngs=nnx.Rngs(0))))))
    assert 1e6 < n and 4 * n < 40e6                                   # float32 safetensors under 40 MB
