"""``python -m stn``: the command-line interface (see :mod:`stn.cli`)."""

import sys

from stn.cli import main

sys.exit(main())
