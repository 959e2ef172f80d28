"""`python -m cxr ...` is `cxr ...` (torchrun uses it: `torchrun ... -m cxr train ...`)."""

import sys

from .cli import main

sys.exit(main())
