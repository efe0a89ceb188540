"""What the commands share: a progress bar callback, JSON for numpy values, the --tta flag."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from ..escaping import terminal_text


class CountBar:
    """A progress(done, total) callback drawing a tqdm bar on stderr, created on the first call."""

    def __init__(self, desc: str):
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit="img", file=sys.stderr, dynamic_ncols=True, leave=False)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def say(*parts, file=None, **kwargs) -> None:
    """print() for everything the command line writes: a file name, folder or message that holds what a terminal
    would act on (an escape sequence that sets the clipboard, a carriage return, a bidi override) prints as a
    visible escape instead (escaping.terminal_text)."""
    print(*(terminal_text(p) for p in parts), file=file or sys.stdout, **kwargs)


def add_tta_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="flip test-time augmentation: average with the mirrored slice (default: as the model "
                        "card says, chosen on validation)")


def pct(v) -> str:
    """A share as everything a person reads it (brainclf.presentation.wording.pct: '93.1 %', '—' when not
    measured, never rounding a share below 1 up to 100 %), imported when first used."""
    from ..presentation import pct as wording_pct

    return wording_pct(v)
