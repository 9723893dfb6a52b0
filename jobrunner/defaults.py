"""Every default, in one place. ``Runner()`` with no arguments uses these.

=====================  =============  ==============================================
setting                value          why
=====================  =============  ==============================================
``timeout``            300 s          a stuck job frees its slot after 5 minutes
``retries``            3              4 attempts in all ride out transient faults
backoff                1 s x 2^n,     exponential with full jitter, so a failing
                       cap 300 s      dependency is not hammered in lockstep
``concurrency``        100            jobs running at once in one runner
``max_pending``        10,000         waiting jobs before ``enqueue`` pushes back
``shutdown_grace``     30 s           running jobs get this long to finish on stop
``cancel_grace``       5 s            a cancelled job gets this long to unwind
                                      before it is abandoned and logged
``result_ttl``         1 day          finished jobs (and results) kept this long
lease                  timeout + 30 s a dead worker's jobs are rescued after this;
                       (60 s + 30 s   heartbeats extend it while the job runs
                       with no
                       timeout)
``threads``            40             sync ``def`` handlers run in threads
``max_payload``        1 MiB          a job's arguments, and its result, as JSON;
                                      the queue is for references, not data
leader lease           10 s           a leader that stops renewing (a hung
                                      process) loses its duties (rescue, pruning,
                                      cron) to another runner after this; one
                                      whose process died hands them over sooner
                                      (SQLite: within the leader poll; PostgreSQL:
                                      at a follower's next try, a third of this)
leader poll (SQLite)   0.5 s          how often a follower checks the leader's
                                      lock file, so a dead leader is replaced
                                      within this
store retry backoff    1 s x 2^n,     a store call that failed (claim, settle,
                       cap 30 s       heartbeat, leader election, the leader's
                                      duties) is retried after this, so a broken
                                      store is neither hammered nor logged each
                                      second
``store_give_up``      120 s          ``serve()`` stops and raises StoreError once
                                      the store has failed for this long without
                                      a break (None: retry forever); long enough
                                      to ride out a database failover or restart
rescue interval        5 s            how often the leader looks for expired leases
loop block threshold   0.5 s          a handler that blocks the event loop longer
                                      is named in a warning while it blocks
queue depth interval   10 s           how often the leader reads queue depth for
                                      the metrics gauge (only with a meter SDK)
progress interval      0.5 s          least time between two progress writes of a
                                      runner (``current_job().progress()``): reports
                                      in between are coalesced, the latest per job
=====================  =============  ==============================================
"""

from __future__ import annotations

TIMEOUT: float = 300.0
RETRIES: int = 3
BACKOFF_BASE: float = 1.0
BACKOFF_FACTOR: float = 2.0
BACKOFF_MAX: float = 300.0
CONCURRENCY: int = 100
MAX_PENDING: int = 10_000
SHUTDOWN_GRACE: float = 30.0
CANCEL_GRACE: float = 5.0
RESULT_TTL: float = 86_400.0
LEASE_MARGIN: float = 30.0
LEASE_WITHOUT_TIMEOUT: float = 60.0
THREADS: int = 40
MAX_PAYLOAD: int = 1_048_576
CLAIM_BATCH: int = 100
PRUNE_INTERVAL: float = 60.0
RESCUE_INTERVAL: float = 5.0
LEADER_TTL: float = 10.0
LEADER_POLL: float = 0.5
STORE_RETRY_BASE: float = 1.0
STORE_RETRY_MAX: float = 30.0
STORE_GIVE_UP: float = 120.0
QUEUE: str = "default"
PRIORITY: int = 0
LOOP_BLOCK_THRESHOLD: float = 0.5
QUEUE_DEPTH_INTERVAL: float = 10.0
PROGRESS_INTERVAL: float = 0.5
