#!/usr/bin/env python3
"""`python build.py [options]` is `cxr build [options]`; `python build.py COMMAND ...` is `cxr COMMAND ...`.

Kept so that a fresh clone works before the project is installed; the README uses `cxr`.
"""

import sys

from cxr.cli import COMMANDS, main

if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(main(argv if argv and argv[0] in COMMANDS else ["build", *argv]))
