"""Building a pipeline: :func:`from_pretrained` (a checkpoint), :func:`from_config` (a random-init preset) and
:func:`load` (either, from one string). Each returns the pipeline of the model's family, chosen in one table,
:data:`PIPELINES` ({family name (:mod:`magnet_jax.model.families`): pipeline class}).

The pipeline classes sit below this module: it imports them, and none of them imports it (no cycle, not even a
function-level one). So the classes' constructors are attached here, when :mod:`magnet_jax.pipelines` imports this
module (as any import of a ``magnet_jax.pipelines.*`` module does first): ``from_pretrained``, ``from_config`` and
``load`` become classmethods of :class:`~magnet_jax.pipelines.base.TextToAudioPipeline`, inherited by every family's
class. ``MagnetPipeline.from_pretrained(id)`` is :func:`from_pretrained`, and so returns a :class:`MusicGenPipeline`
for a MusicGen checkpoint (the checkpoint says which family it is). ``from_config`` on a family's class builds that
family of the preset's architecture (the class's ``config_family``: ``MusicGenPipeline.from_config("tiny")`` is a
MusicGen of the tiny architecture); on ``MagnetPipeline``, the preset's own family (``hybrid_tiny``: a
:class:`HybridMagnetPipeline`).

The T5 and codec loaders are called through their modules (``text_loader.load_text_stack``,
``codec_loader.load_encodec``), so tests may stand in for them.
"""
from __future__ import annotations

from flax import nnx

from magnet_jax import presets
from magnet_jax.bundled.package import INFO as BUNDLED_INFO
from magnet_jax.bundled.package import example_description as bundled_example
from magnet_jax.bundled.package import generation_overrides as bundled_generation
from magnet_jax.bundled.package import resolve as resolve_bundled
from magnet_jax.codec.random_init import random_encodec
from magnet_jax.codec.stereo import StereoCodec
from magnet_jax.convert import encodec as codec_loader
from magnet_jax.convert import load_audiocraft_checkpoint
from magnet_jax.convert import t5 as text_loader
from magnet_jax.decoding.config import with_knobs
from magnet_jax.model.families import family_of
from magnet_jax.model.lora_files import apply_adapter
from magnet_jax.pipelines.base import TextToAudioPipeline
from magnet_jax.pipelines.companion import load_companion
from magnet_jax.pipelines.hybrid import HybridMagnetPipeline
from magnet_jax.pipelines.magnet import MagnetPipeline
from magnet_jax.pipelines.musicgen import MusicGenPipeline

PIPELINES: dict[str, type[TextToAudioPipeline]] = {
    "magnet": MagnetPipeline,
    "hybrid": HybridMagnetPipeline,
    "musicgen": MusicGenPipeline,
    "musicgen_melody": MusicGenPipeline,
}
RESCORED = "magnet"       # the family a companion MusicGen (rescorer=) attaches to


def _check_rescorer(rescorer, family: str, src: str) -> None:
    if rescorer is not None and family != RESCORED:
        raise ValueError(f"rescorer= applies to MAGNeT models; {src!r} is a {family} model")


def from_pretrained(name_or_path: str, *, t5: str | None = None, codec: str | None = None, dtype: str = "float32",
                    rescorer: str | None = None, adapter: str | None = None) -> TextToAudioPipeline:
    """The pipeline of a checkpoint: a hub repo id (the six released MAGNeT ones, MusicGen / AudioGen ones, or any
    repo in their layout), a local folder, a ``state_dict.bin`` path, or ``"bundled"`` (the offline model shipped
    in the package). The family (``xp.cfg`` ``lm_model``), the T5, music vs audio and the codec come from the
    checkpoint; ``t5`` / ``codec`` override where those come from (hub id or local folder). ``rescorer``: a MusicGen
    (hub id, folder or ``config:NAME``) sharing the codec and T5, attached to a MAGNeT model for rescoring and
    hybrid prefixes (:mod:`magnet_jax.pipelines.companion`). ``adapter``: a LoRA adapter saved alone (the folder
    or file a LoRA training run writes to ``WORKDIR/export``), merged into the LM's weights at load
    (:func:`magnet_jax.model.lora_files.apply_adapter`: another architecture is refused, another recorded base
    warned about). A bundled-layout model's ``example_description`` is the one its ``bundled.json`` records (a
    description in its training corpus' wording), every other model's the released models' default; its decoding
    defaults are its kind's with the knobs its ``bundled.json`` records (``generation``) on top."""
    src = str(name_or_path)
    bundled = resolve_bundled(src)   # "bundled" or a folder with lm/ codec/ t5/ (magnet_jax/bundled/package)
    if bundled is not None:
        t5, codec = t5 or str(bundled / "t5"), codec or str(bundled / "codec")
    ck = load_audiocraft_checkpoint(str(bundled / "lm") if bundled is not None else src, dtype=dtype)
    lm, family = ck.lm, family_of(ck.lm.config).name
    if adapter is not None:
        apply_adapter(lm, adapter, base=src)
    _check_rescorer(rescorer, family, src)
    t5_name = t5 or ck.t5_name
    if t5_name is None:
        raise ValueError(f"{src!r} does not record which T5 it was trained with: pass t5=NAME_OR_FOLDER")
    tokenizer, t5_fn = text_loader.load_text_stack(t5_name, lm.config.text_dim)
    codec_src = codec or ck.codec_source
    codec_model = codec_loader.load_encodec(codec_src, num_codebooks=lm.config.n_q // ck.channels)
    if ck.channels == 2:   # stereo MusicGen: the mono codec per channel, codebooks interleaved
        codec_model = StereoCodec(codec_model)
    if codec_model.num_codebooks != lm.config.n_q or codec_model.cardinality != lm.config.card:
        raise ValueError(f"codec {codec_src!r} has {codec_model.num_codebooks} x {codec_model.cardinality} "
                         f"codes, the LM expects {lm.config.n_q} x {lm.config.card}")
    extra = {} if rescorer is None else {"rescorer": load_companion(
        str(rescorer), magnet_lm=lm, magnet_codec=codec_model, magnet_codec_source=codec_src, magnet_t5=t5_name,
        t5_override=t5, codec_override=codec, dtype=dtype)}
    cls = PIPELINES[family]
    generation = cls.default_generation(ck.kind, ck.segment_duration)
    if bundled is not None:
        extra["example_description"] = bundled_example(bundled)
        generation = with_knobs(generation, bundled_generation(bundled),
                                f"{bundled / BUNDLED_INFO} (fix or remove its \"generation\")")
    return cls(lm, codec_model, tokenizer, t5_fn, generation, name=src, **extra)


def from_config(name: str = "tiny", seed: int = 0, rescorer: str | None = None, *,
                family: str | None = None) -> TextToAudioPipeline:
    """A random-init pipeline of preset ``name`` (:mod:`magnet_jax.presets`: ``tiny``, ``bundled``, ``hybrid_NAME``,
    or a released architecture: large!), of the preset's family, or of ``family`` (``musicgen``: a MusicGen of that
    architecture). The text encoder is the packaged tiny tokenizer + a random T5 of the LM's text width, the codec
    a random EnCodec of the preset's rates. ``rescorer``: as :func:`from_pretrained` (``config:NAME`` for a
    random-init MusicGen)."""
    p = presets.get(name)
    own = family is None or family == p.family.name
    model = p.model if own else presets.AS_FAMILY[family](p.model)
    fam = family_of(model)
    _check_rescorer(rescorer, fam.name, f"config:{name}")
    cls = PIPELINES[fam.name]
    lm = fam.lm_class(model, rngs=nnx.Rngs(seed))
    tokenizer, t5_fn = text_loader.load_text_stack("tiny", model.text_dim)
    codec_model = random_encodec(sample_rate=p.sample_rate, frame_rate=model.frame_rate, num_codebooks=model.n_q,
                                 bins=model.card, channels=p.channels, seed=seed)
    generation = p.generation if own else cls.default_generation(p.kind, model.segment_duration)
    extra = {} if rescorer is None else {"rescorer": load_companion(
        str(rescorer), magnet_lm=lm, magnet_codec=codec_model, magnet_codec_source=None, magnet_t5="tiny")}
    label = f"config:{name}" if own else f"{family}-config:{name}"
    return cls(lm, codec_model, tokenizer, t5_fn, generation, name=label, **extra)


def load(model: str, *, family: str | None = None, **kw) -> TextToAudioPipeline:
    """``config:NAME`` -> :func:`from_config` (``seed``, ``rescorer`` and ``family`` apply), anything else ->
    :func:`from_pretrained` (``kw``: its options)."""
    if model.startswith("config:"):
        return from_config(model.split(":", 1)[1], seed=kw.pop("seed", 0), rescorer=kw.pop("rescorer", None),
                           family=family)
    return from_pretrained(model, **kw)


# ---------------------------------------------------------------------- the classes' constructors (see the doc)
def _from_pretrained(cls, name_or_path: str, **kw) -> TextToAudioPipeline:
    """The pipeline of a checkpoint, of the family it says (:func:`magnet_jax.pipelines.load.from_pretrained`)."""
    return from_pretrained(name_or_path, **kw)


def _from_config(cls, name: str = "tiny", seed: int = 0, rescorer: str | None = None) -> TextToAudioPipeline:
    """A random-init pipeline of preset ``name``, of this class's family (``MagnetPipeline``: the preset's)
    (:func:`magnet_jax.pipelines.load.from_config`)."""
    return from_config(name, seed, rescorer, family=cls.config_family)


def _load(cls, model: str, **kw) -> TextToAudioPipeline:
    """``config:NAME`` -> :meth:`from_config`, anything else -> :meth:`from_pretrained`
    (:func:`magnet_jax.pipelines.load.load`)."""
    return load(model, family=cls.config_family, **kw)


TextToAudioPipeline.from_pretrained = classmethod(_from_pretrained)
TextToAudioPipeline.from_config = classmethod(_from_config)
TextToAudioPipeline.load = classmethod(_load)
