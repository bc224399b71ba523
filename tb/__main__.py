"""``python -m tb``: the ``ipiv`` command."""

import sys

from .cli import main

sys.exit(main())
