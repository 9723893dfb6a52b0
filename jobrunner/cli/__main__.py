"""``python -m jobrunner.cli``: the same as ``python -m jobrunner``."""

import sys

from jobrunner.cli import main

sys.exit(main())
