"""``python -m rankopt``: the ``rankopt`` command (what ``torchrun -m rankopt`` launches)."""

import sys

from rankopt.cli import main

sys.exit(main())
