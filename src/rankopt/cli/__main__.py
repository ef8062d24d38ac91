"""``python -m rankopt.cli``: the ``rankopt`` command."""

import sys

from rankopt.cli import main

sys.exit(main())
