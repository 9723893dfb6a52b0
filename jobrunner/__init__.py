"""jobrunner: an asyncio-native job runner.

from jobrunner import Runner

runner = Runner("sqlite:///jobs.db")

@runner.job(retries=3)
async def send_email(to: str) -> None: ...

await send_email.enqueue("ada@example.com")
asyncio.run(runner.serve())
"""

from __future__ import annotations

from jobrunner.clock import Clock, SystemClock
from jobrunner.context import JobContext, current_job
from jobrunner.cron import Schedule, ScheduleInfo
from jobrunner.errors import (
    Abort,
    InvalidJobState,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobrunnerError,
    JobTimeout,
    ParentFailed,
    QueueFull,
    ResourceError,
    Retry,
    StoreError,
    UnknownJob,
)
from jobrunner.flow import EXPIRED_ERROR, RateLimit
from jobrunner.handle import Group, JobHandle
from jobrunner.hooks import JobHooks, Middleware
from jobrunner.models import (
    ErrorInfo,
    HistoryEntry,
    JobRecord,
    JobStatus,
    ParentFailure,
    ParentOutcome,
    Progress,
    Trigger,
)
from jobrunner.observability import Instrumentation, JobContextFilter
from jobrunner.registry import BoundJob, Call, Job
from jobrunner.resources import Resource, WithResources, uses
from jobrunner.retry import Backoff, ExponentialBackoff, FixedBackoff
from jobrunner.runner import Runner
from jobrunner.stats import Health, RunnerStats
from jobrunner.stores.base import Store
from jobrunner.stores.memory import MemoryStore
from jobrunner.stores.sqlite import SQLiteStore

__all__ = [
    "EXPIRED_ERROR",
    "Abort",
    "Backoff",
    "BoundJob",
    "Call",
    "Clock",
    "ErrorInfo",
    "ExponentialBackoff",
    "FixedBackoff",
    "Group",
    "Health",
    "HistoryEntry",
    "Instrumentation",
    "InvalidJobState",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobContextFilter",
    "JobFailed",
    "JobHandle",
    "JobHooks",
    "JobNotFound",
    "JobRecord",
    "JobStatus",
    "JobTimeout",
    "JobrunnerError",
    "MemoryStore",
    "Middleware",
    "ParentFailed",
    "ParentFailure",
    "ParentOutcome",
    "Progress",
    "QueueFull",
    "RateLimit",
    "Resource",
    "ResourceError",
    "Retry",
    "Runner",
    "RunnerStats",
    "SQLiteStore",
    "Schedule",
    "ScheduleInfo",
    "Store",
    "StoreError",
    "SystemClock",
    "Trigger",
    "UnknownJob",
    "WithResources",
    "current_job",
    "uses",
]

__version__ = "0.1.0"
