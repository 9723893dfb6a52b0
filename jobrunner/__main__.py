"""``python -m jobrunner``: the same as the ``jobrunner`` command."""

import sys

from jobrunner.cli import main

sys.exit(main())
