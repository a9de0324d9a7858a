"""configs/magnet.py:NAME and the typed TrainConfig: one source per default, strict fields, refused values."""
import dataclasses
import math

import pytest

from magnet_jax import configs
from magnet_jax.decoding import GenerationConfig
from magnet_jax.model import MagnetConfig
from magnet_jax.text.presets import WIDTHS
from magnet_jax.training import ConfigError, TrainConfig


def _load(arg):
    import importlib.util

    from tests.helpers import ROOT
    spec = importlib.util.spec_from_file_location("magnet_cfg", ROOT / "configs" / "magnet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg) if arg is not None else mod.get_config()


@pytest.mark.parametrize("name", sorted(configs.RELEASED) + ["tiny", "tiny_audio"])
def test_every_config_builds_a_train_config(name):
    c = _load(name)
    t = TrainConfig.from_config(c)
    assert t.model == configs.model_config(c) and c.name == name
    GenerationConfig.from_dict(c.generation.to_dict())                  # the generation section is valid too


def test_default_arg_is_tiny():
    assert _load(None).to_dict() == configs.get_config("tiny").to_dict()


@pytest.mark.parametrize("name", sorted(configs.RELEASED))
def test_released_defaults_come_from_their_single_source(name):
    r, c = configs.RELEASED[name], configs.get_config(name)
    kind, seg = r["kind"], float(r["segment"])
    want_model = dict(MagnetConfig().to_dict(), **r["size"], segment_duration=seg, text_dim=WIDTHS[c.text.name],
                      remat=True)                     # the pod default (configs.py _POD): remat + FSDP
    assert c.model.to_dict() == want_model
    assert dict(c.mesh) == dict(data=1, fsdp=-1, tensor=1)
    assert GenerationConfig.from_dict(c.generation.to_dict()) == GenerationConfig.for_model(kind, seg)
    assert c.text.name == ("t5-base" if kind == "music" else "t5-large") and c.checkpoint == r["hub"]
    assert c.generation.decoding_steps[0] == (60 if seg == 30 else 20)
    t = TrainConfig.from_config(c)
    want_lr, want_sched = (1e-4, "cosine") if kind == "music" else (5e-4, "inverse_sqrt")
    assert (t.optim.learning_rate, t.optim.schedule) == (want_lr, want_sched)


def test_unknown_fields_fail_by_name():
    c = configs.get_config("tiny").to_dict()
    with pytest.raises(ConfigError, match="learning_rat"):
        TrainConfig.from_config(dict(c, learning_rat=1.0))
    with pytest.raises(ConfigError, match="dimm"):
        TrainConfig.from_config(dict(c, model=dict(c["model"], dimm=3)))
    with pytest.raises(ConfigError, match="sizee"):
        TrainConfig.from_config(dict(c, mesh=dict(c["mesh"], sizee=3)))


@pytest.mark.parametrize("field,value,match", [
    ("learning_rate", math.nan, "learning_rate=nan is not a finite"),
    ("learning_rate", math.inf, "not a finite"),
    ("ema_decay", math.nan, "ema_decay=nan"),
    ("checkpoint_every", 0, "checkpoint_every=0 must be at least 1"),
    ("log_every", 0, "log_every=0"),
    ("total_steps", -1, "total_steps"),
    ("learning_rate", -1.0, "must not be negative"),
    ("ema_decay", 1.0, r"ema_decay=1.0 must be in \[0, 1\)"),
    ("schedule", "linear", "cosine, inverse_sqrt or constant"),
    ("grad_accum_steps", 3, "not divisible by config.grad_accum_steps=3"),
    ("seed", -1, r"config.seed=-1 must be in \[0, 2\*\*32\)"),                # issue 32
    ("seed", 2**32, r"config.seed=4294967296"),
    ("text.max_length", 0, "config.text.max_length=0 must be at least 1"),
    ("stage_weights", (1.0, 1.0), r"stage_weights=\(1.0, 1.0\): give 4 non-negative weights"),
    ("stage_weights", (0, 0, 0, 0), "not all 0"),
    ("stage_weights", (1, -1, 1, 1), "non-negative"),
])
def test_impossible_values_are_refused(field, value, match):
    c = configs.get_config("tiny")
    *path, last = field.split(".")
    node = c
    for k in path:
        node = node[k]
    node[last] = value
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_config(c)


def test_stage_weights_become_a_hashable_tuple_and_need_the_magnet_objective():
    c = configs.get_config("tiny")
    c.stage_weights = (0.7, 0.1, 0.1, 0.1)
    d = c.to_dict()
    d["stage_weights"] = [7, 1, 1, 1]                   # as config.json gives it back
    step = TrainConfig.from_config(d).step
    assert step.stage_weights == (7.0, 1.0, 1.0, 1.0) and hash(step)
    c = configs.get_config("hybrid_tiny")
    c.stage_weights = (1, 1, 1, 1)
    with pytest.raises(ConfigError, match="applies to the magnet objective"):
        TrainConfig.from_config(c)


def test_fp16_training_is_refused():
    c = configs.get_config("tiny")
    c.model.dtype = "float16"
    with pytest.raises(ConfigError, match="float16 is not supported for training.*bfloat16"):
        TrainConfig.from_config(c)
    c.model.dtype = "bfloat16"
    assert TrainConfig.from_config(c).model.dtype == "bfloat16"


def test_each_group_holds_only_its_fields():
    t = TrainConfig.from_config(configs.get_config("tiny"))
    assert dataclasses.asdict(t.optim).keys() >= {"learning_rate", "total_steps", "schedule"}
    assert "learning_rate" not in dataclasses.asdict(t.step)
    help_fields = TrainConfig.field_names()
    flat = configs.get_config("tiny").to_dict()
    assert set(help_fields[""]) == {k for k, v in flat.items() if not isinstance(v, dict)} - {"name", "checkpoint"}


def test_objectives_and_model_configs_come_from_the_family_table():
    from magnet_jax.model import families
    from magnet_jax.objectives import OBJECTIVES
    from magnet_jax.objectives.table import objective
    from magnet_jax.training.config import model_config_class
    assert list(OBJECTIVES) == list(families.OBJECTIVES) == ["magnet", "hybrid", "musicgen"]
    for name, o in OBJECTIVES.items():
        assert o.name == name and objective(name) is o
        assert {"inputs", "targets", "weights", "text_mask"} <= set(o.PER_SAMPLE_KEYS)
        assert model_config_class(name) is families.family_for_objective(name).config_class
    assert model_config_class("magnet") is MagnetConfig
    with pytest.raises(ValueError, match="unknown objective 'nope'"):
        objective("nope")
    c = configs.get_config("tiny")
    c.objective = "nope"
    with pytest.raises(ConfigError, match="config.objective='nope': use magnet, hybrid, musicgen"):
        TrainConfig.from_config(c)
    assert "delays" in TrainConfig.field_names()["model"]          # hybrid / musicgen models have delays
