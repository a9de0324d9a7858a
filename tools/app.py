"""Web demo: generate / continue / infill in the browser (Gradio).

  python tools/app.py [--model=config:tiny] [--port=7860] [--share] [--host=127.0.0.1]

In Colab: `!python tools/app.py --share` prints a public link. As a Hugging Face Space: this file is the app.
"""
from __future__ import annotations

from absl import flags

from magnet_jax.app import DEFAULT_MODEL
from magnet_jax.util.cli import run, usage_error

flags.DEFINE_string("model", DEFAULT_MODEL, "the model selected when the page opens (any other can be picked there)")
flags.DEFINE_integer("port", 7860, "port to serve on")
flags.DEFINE_string("host", "127.0.0.1", "address to bind (0.0.0.0 to serve the network)")
flags.DEFINE_boolean("share", False, "ask Gradio for a public share link (Colab)")
flags.DEFINE_boolean("preload", True, "load the default model before serving (the first request is then faster)")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}")
    if not 0 < FLAGS.port < 65536:
        usage_error(f"--port must be in 1..65535, got {FLAGS.port}")
    from magnet_jax.app import Models, UserError, build_app
    models = Models()
    if FLAGS.preload:
        try:
            models.get(FLAGS.model)
        except UserError as e:
            usage_error(str(e))
    build_app(models, default_model=FLAGS.model).launch(server_name=FLAGS.host, server_port=FLAGS.port,
                                                        share=FLAGS.share)


if __name__ == "__main__":
    run(main)
