"""End to end: LoRA fine-tuning with the train CLI (``--config.lora_rank``, ``--config.init_from``): the checkpoints
hold only the adapters (and their optimizer state / EMA), the export holds the merged weights and the adapter alone,
``from_pretrained(base, adapter=WORKDIR/export)`` equals the merged export, and a second run resumes."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from magnet_jax.configs import get_config
from magnet_jax.convert import save_lm_safetensors
from magnet_jax.model import MagnetLM
from magnet_jax.model.config import MagnetConfig
from magnet_jax.model.lora_files import ADAPTER_CONFIG, ADAPTER_NAME
from magnet_jax.pipelines.magnet import MagnetPipeline
from tests.e2e.test_train_cli import _train_args, dataset  # noqa: F401  (the module's tokenized corpus fixture)
from tests.helpers import read_metrics, run_tool

LORA = ["--config.lora_rank=4", "--config.lora_alpha=8.0", "--config.learning_rate=0.01", "--config.ema_every=1"]
EVAL = ["--config.eval_split=train", "--config.eval_every=4"]


def _saved_arrays(step_dir) -> set[str]:
    """The array paths of a checkpoint's train state, from orbax's metadata."""
    md = ocp.StandardCheckpointer().metadata(step_dir / "state")
    tree = getattr(md, "item_metadata", md)
    leaves = jax.tree_util.tree_flatten_with_path(dict(tree), is_leaf=lambda x: hasattr(x, "shape"))[0]
    return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in p) for p, _ in leaves}


def _logits(lm):
    """Stage-1 logits of ``lm`` on fixed random codes and text."""
    mcfg = lm.config
    k = jax.random.split(jax.random.PRNGKey(2), 2)
    codes = jax.random.randint(k[0], (2, mcfg.n_q, 40), 0, mcfg.card)
    return np.asarray(lm(codes, jax.random.normal(k[1], (2, 5, mcfg.text_dim)), jnp.ones((2, 5), jnp.int32),
                         stage=1))


def _tiny_base(path):
    """A random tiny MAGNeT saved as an export folder at ``path``: the base the LoRA runs start from."""
    model = MagnetConfig.from_dict(get_config("tiny").model.to_dict())
    save_lm_safetensors(MagnetLM(model, rngs=nnx.Rngs(5)), path, extra={"t5": "tiny"})
    return path


def test_lora_fine_tuning_cli(dataset, tmp_path):  # noqa: F811
    data_dir, codec = dataset
    base = _tiny_base(tmp_path / "base")
    work = tmp_path / "lora"
    run_tool(_train_args(data_dir, codec, work, 4, 2, [*LORA, *EVAL, f"--config.init_from={base}"]))
    rows = read_metrics(work)
    assert sorted(rows) == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in rows.values())
    evals = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines() if "eval_loss" in line]
    assert [e["step"] for e in evals] == [4]

    # the checkpoint: adapters, their AdamW moments and EMA, counters; no base parameter
    names = _saved_arrays(work / "checkpoints" / "4")
    params = {n.split("/", 1)[1] for n in names if n.startswith("params/")}
    assert params == {f"{m}/{t}/{ab}" for m, ts in (("self_attn", "q k v out"), ("cross_attn", "q k v out"),
                                                     ("ffn", "w1 w2")) for t in ts.split() for ab in "ab"}
    assert not any(k in n for n in names for k in ("emb", "heads", "norm", "qkv", "text_kernel"))
    # a full-training checkpoint holds the weights 4x (params, 2 AdamW moments, EMA); the adapters' ~1 MB varies
    # with orbax's OCDBT files (1.0-1.35 MB seen for the same run), so half the base's size is the bound
    ck_bytes = sum(f.stat().st_size for f in (work / "checkpoints" / "4").rglob("*") if f.is_file())
    assert ck_bytes < (base / "magnet_jax_lm.safetensors").stat().st_size / 2

    # the export: merged EMA weights + the adapter alone, which applied to the base gives the merged model
    export = work / "export"
    meta = json.loads((export / ADAPTER_CONFIG).read_text())
    assert (export / ADAPTER_NAME).is_file() and meta["base"] == str(base) and meta["step"] == 4
    assert meta["rank"] == 4 and meta["alpha"] == 8.0 and json.loads(
        (export / "magnet_jax_config.json").read_text())["weights"] == "ema"
    kw = {"t5": "tiny", "codec": str(codec)}
    merged = MagnetPipeline.from_pretrained(str(export), **kw)
    adapted = MagnetPipeline.from_pretrained(str(base), adapter=str(export), **kw)
    plain = MagnetPipeline.from_pretrained(str(base), **kw)
    np.testing.assert_allclose(_logits(adapted.lm), _logits(merged.lm), atol=1e-5, rtol=0)
    assert np.abs(_logits(merged.lm) - _logits(plain.lm)).max() > 1e-4               # the adapters were trained

    # the same command, further: resumes from step 4 (adapters, moments and data position restored)
    run_tool(_train_args(data_dir, codec, work, 6, 2, [*LORA, *EVAL, f"--config.init_from={base}"]))
    rows = read_metrics(work)
    assert sorted(rows) == list(range(1, 7)) and json.loads((export / ADAPTER_CONFIG).read_text())["step"] == 6
