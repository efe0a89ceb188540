"""Command line: python -m brainclf train | evaluate | verify | predict | merge-csv | site | dedup | shortcut |
audit-labels | bench."""

# One module per command group (training, evaluation, prediction, site, datasets, bench), each with its cmd_*
# functions and an add_parsers(sub). A command imports the brainclf modules it runs inside its function:
# importing them all up front costs ~1.2 s (scikit-learn via brainclf.scoring.metrics, pydantic, PIL), which
# `--help` and a quick `predict` should not pay. The library logs (logging); the CLI prints, and shows the
# library's INFO messages on stderr (configure_logging).

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..errors import BrainclfError
from ..escaping import terminal_text
from . import bench, datasets, evaluation, prediction, site, training
from .common import say
from .evaluation import format_external, format_report, format_thresholds  # noqa: F401 - re-exported

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal


class _StderrHandler(logging.StreamHandler):
    """Writes each record to the sys.stderr of the moment (tests replace it between calls)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        return terminal_text(super().format(record))  # a file name in a message is printed as the CLI prints it


def configure_logging() -> None:
    """brainclf's INFO messages and above on stderr as plain lines (once per process)."""
    log = logging.getLogger("brainclf")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m brainclf", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for group in (training, evaluation, prediction, site, datasets, bench):
        group.add_parsers(sub)  # in this order: the order of --help
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging()
    try:
        return args.func(args)
    except BrainclfError as e:
        say(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file the command was told to read or write: say which, not a traceback
        say(f"error: {e.filename or 'file'}: {e.strerror or e}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as e:
        say(f"error: a file is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 CSV", file=sys.stderr)
        return 2
    except UnicodeError as e:  # a name the terminal's or the file system's encoding cannot hold
        say(f"error: a file name or text cannot be encoded ({e.__class__.__name__}: {getattr(e, 'reason', e)}); "
            "rename the file with plain characters", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say("interrupted", file=sys.stderr)
        return 130
