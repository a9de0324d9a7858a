"""Web demo: generate / continue / infill in the browser (Gradio).

  python tools/app.py [--model=config:tiny] [--port=7860] [--share] [--host=127.0.0.1] \
      [--allow_model=ID ...] [--allow_any_model] [--max_duration=60] [--time_limit=300] [--max_queue=32]

Visitors pick among --model and the --allow_model ones (default: also the released models); arbitrary
paths and hub ids only with --allow_any_model (never with --share or a public --host unless you mean it).
Requests run one at a time, each for at most --time_limit seconds; a waiting visitor sees their place in the
queue and can cancel.

In Colab: `!python tools/app.py --share` prints a public link. As a Hugging Face Space: this file is the app.
"""
from __future__ import annotations

from absl import flags

from magnet_jax.jobs.app import DEFAULT_MODEL, MAX_QUEUE, TIME_LIMIT
from magnet_jax.util.cli import run, usage_error

flags.DEFINE_string("model", DEFAULT_MODEL, "the model selected when the page opens (any other can be picked there)")
flags.DEFINE_integer("port", 7860, "port to serve on")
flags.DEFINE_string("host", "127.0.0.1", "address to bind (0.0.0.0 to serve the network)")
flags.DEFINE_boolean("share", False, "ask Gradio for a public share link (Colab)")
flags.DEFINE_boolean("preload", True, "load the default model before serving (the first request is then faster)")
flags.DEFINE_multi_string("allow_model", None, "another model visitors may pick (repeatable; default: the released "
                          "hub models)")
flags.DEFINE_boolean("allow_any_model", False, "let visitors type any hub id, local path or config:NAME")
flags.DEFINE_float("max_duration", 60.0, "seconds one request may ask for")
flags.DEFINE_float("time_limit", TIME_LIMIT, "seconds one request may run (checked between model calls; 0: none)")
flags.DEFINE_integer("max_queue", MAX_QUEUE, "requests that may wait at once (0: unbounded)")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}")
    if not 0 < FLAGS.port < 65536:
        usage_error(f"--port must be in 1..65535, got {FLAGS.port}")
    from magnet_jax.jobs.app import RELEASED_IDS, Models, UserError, build_app, check_port
    from magnet_jax.util.user_input import finite
    check_port(FLAGS.host, FLAGS.port)           # before the (slow) preload: a port in use is one line
    if FLAGS.max_queue < 0:
        usage_error(f"--max_queue={FLAGS.max_queue} must be >= 0 (0: unbounded)")
    allowed = None if FLAGS.allow_any_model else tuple(dict.fromkeys(
        [FLAGS.model, *(FLAGS.allow_model if FLAGS.allow_model is not None else RELEASED_IDS)]))
    models = Models(allowed=allowed, max_duration=finite("max_duration", FLAGS.max_duration, positive=True),
                    time_limit=finite("time_limit", FLAGS.time_limit, minimum=0) or None)
    if FLAGS.preload:
        try:
            models.get(FLAGS.model)
        except UserError as e:
            usage_error(str(e))
    try:
        build_app(models, default_model=FLAGS.model, max_queue=FLAGS.max_queue or None).launch(
            server_name=FLAGS.host, server_port=FLAGS.port, share=FLAGS.share)
    except OSError as e:          # port in use, address not available
        usage_error(f"cannot serve on {FLAGS.host}:{FLAGS.port} ({e.strerror or e}): pick another --port")


if __name__ == "__main__":
    run(main)
