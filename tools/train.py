"""Train MAGNeT on a tokenized dataset. Running it again on the same workdir resumes.

  python tools/train.py --config=configs/tiny.py --workdir=DIR --config.data_dir=TFDS_DIR \
      --config.total_steps=N --config.checkpoint_every=M --config.seed=S [--config.any.field=value]

Multi-host: set --config.distributed.coordinator_address=HOST:PORT --config.distributed.num_processes=N
--config.distributed.process_id=I on each host (TPU pods: jax.distributed auto-detects; leave them empty).
"""
import logging

from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "a configs/*.py file", lock_config=True)
flags.DEFINE_string("workdir", None, "checkpoints, metrics.jsonl and TensorBoard events go here")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.getLogger("magnet_jax").setLevel(logging.INFO)
    from magnet_jax.training import train
    last = train(FLAGS.config, FLAGS.workdir)
    print({k: round(v, 5) if isinstance(v, float) else v for k, v in last.items()})


if __name__ == "__main__":
    app.run(main)
