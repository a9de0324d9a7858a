"""The tools' shared command-line edge: a user error is one line on stderr and exit 2 (absl's ``UsageError``
prints the whole usage and exits 1), ``--help`` exits 0, and a bad flag or ``--config.*`` override is one line."""
from __future__ import annotations

import os
import re
import sys
from typing import Callable, NoReturn

from magnet_jax.util.user_input import UserError, one_line

_HELP = ("--help", "-h", "--helpshort", "-?")


def usage_error(message: str) -> NoReturn:
    sys.stderr.write(f"{os.path.basename(sys.argv[0] or 'magnet_jax')}: error: {message}\n")
    sys.exit(2)


def flags_parser(*, default_config: str | None = None, help_extra: Callable[[], str] | None = None,
                 fields_hint: str = "see --help"):
    """A ``flags_parser`` for ``absl.app.run``. ``default_config``: the ``--config`` used when none is given
    (config_flags would load a flag default at definition time, before overrides can be checked)."""
    from absl import flags

    def parse(argv):
        FLAGS = flags.FLAGS
        if any(a in _HELP for a in argv[1:]):
            extra = f"\n{help_extra()}\n" if help_extra else ""
            print((sys.modules["__main__"].__doc__ or "") + extra + "\n" + FLAGS.main_module_help())
            sys.exit(0)
        if default_config and not any(a == "--config" or a.startswith("--config=") for a in argv[1:]):
            argv = [argv[0], f"--config={default_config}", *argv[1:]]
        try:
            argv = FLAGS(argv)
            # ml_collections keeps a --config file that failed to load as a placeholder raising on first use
            error = getattr(FLAGS["config"].value, "_error", None) if "config" in FLAGS else None
            if isinstance(error, OSError):
                raise error
            return argv
        except OSError as e:    # a --config file that cannot be loaded (a --config.* override raises it too)
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            usage_error(f"--config cannot be loaded: {lines[-1] if lines else e}")
        except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
            # ml_collections reports an unknown field as AttributeError("'name'\nDid you mean ...") and a failing
            # get_config as the whole traceback text: keep its last line.
            if isinstance(e, (AttributeError, KeyError)):
                name = re.search(r"\w+", str(e))
                hint = re.search(r'Did you mean "(\w+)"', str(e))
                usage_error(f"unknown config field {name.group(0) if name else str(e)!r}"
                            + (f" (did you mean {hint.group(1)!r}?)" if hint else "") + f"; {fields_hint}")
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            text = lines[-1] if "Traceback" in str(e) else " ".join(lines)
            if not isinstance(e, flags.Error):
                text = "bad flag: " + text.replace("\\'", "'").strip("\"'")
            usage_error(f"{text or type(e).__name__} ({fields_hint})")
    return parse


def run(main: Callable, *, tcmalloc: bool = False, **parser_options) -> None:
    """``absl.app.run(main)`` with :func:`flags_parser`; a :class:`UserError` out of ``main`` (or its own
    :func:`usage_error` call) is one line on stderr and exit 2.
    ``tcmalloc``: first re-execute the process with tcmalloc where it is installed (the trainers: see
    :mod:`magnet_jax.util.allocator`, XLA:CPU's per-step page faults)."""
    from absl import app

    if tcmalloc:
        from magnet_jax.util.allocator import use_tcmalloc
        use_tcmalloc()
    def guarded(argv):      # every user error, wherever raised (magnet_jax.util.user_input), is one line
        try:
            return main(argv)
        except UserError as e:
            usage_error(one_line(e))
    app.run(guarded, flags_parser=flags_parser(**parser_options))
