"""Progress bars: lively in a terminal, a line every 30 s in logs (CI, nohup), off when asked."""

import sys

from tqdm import tqdm


def bar(iterable=None, *, enabled: bool = True, **kwargs):
    tty = sys.stderr.isatty()
    return tqdm(iterable, disable=not enabled, file=sys.stderr, mininterval=0.1 if tty else 30,
                dynamic_ncols=tty, **kwargs)
