"""How a command ends: its exit codes, and the exceptions that stand for them.

The codes and the text ``--help`` shows about them live side by side, so that
they cannot drift apart.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_PIPE = 0, 1, 2, 130, 141

EXIT_CODES = """\
exit codes:
  0    done; a worker stopped by SIGINT/SIGTERM once its jobs drained
  1    failed: the store failed (a worker whose store keeps failing stops), or
       the job of enqueue --wait ended dead, was cancelled or outlived --timeout
  2    usage error (an option value, import path, JSON or job name); nothing done
  130  interrupted by Ctrl-C (stats --watch, enqueue --wait, a worker starting up)
  141  stdout closed early (e.g. piped into head), as when killed by SIGPIPE"""


class UsageError(Exception):
    """A mistake in what the user typed: printed without a traceback, exit 2."""


class StdoutClosed(Exception):
    """Whoever read stdout went away (``jobrunner jobs list | head -1``)."""
