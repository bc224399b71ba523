"""``python -m sim.board``: the ``build`` and ``board`` commands on their own."""

import sys

from .cli import main


sys.exit(main())
