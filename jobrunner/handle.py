"""``JobHandle``: what ``enqueue`` returns, to follow one job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from jobrunner.models import JobRecord, JobStatus

__all__ = ["Group", "JobHandle"]

_R = TypeVar("_R")


class HandleHost(Protocol):
    """What a handle needs of its runner."""

    async def result(self, job_id: str, timeout: float | None = None) -> Any: ...

    async def status(self, job_id: str) -> JobStatus: ...

    async def cancel(self, job_id: str) -> JobStatus: ...

    async def get_job(self, job_id: str) -> JobRecord: ...


class JobHandle(Generic[_R]):
    """A reference to an enqueued job. ``created`` is False when ``key`` matched an active job."""

    __slots__ = ("_host", "created", "id", "name")

    def __init__(self, host: HandleHost, job_id: str, name: str, created: bool = True) -> None:
        self._host = host
        self.id = job_id
        self.name = name
        self.created = created

    async def result(self, timeout: float | None = None) -> _R:
        """Wait for the job to end and return its value.

        Raises JobFailed if it ended dead, JobCancelled if cancelled, TimeoutError
        if ``timeout`` seconds pass first.
        """
        value: _R = await self._host.result(self.id, timeout)
        return value

    async def status(self) -> JobStatus:
        """The job's current status."""
        return await self._host.status(self.id)

    async def cancel(self) -> JobStatus:
        """Cancel the job: a waiting one never runs, a running one is cancelled."""
        return await self._host.cancel(self.id)

    async def record(self) -> JobRecord:
        """The job's full record: attempts, errors, history."""
        return await self._host.get_job(self.id)

    def __repr__(self) -> str:
        return f"<JobHandle {self.name} id={self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


@dataclass(frozen=True, slots=True)
class Group:
    """What ``runner.group`` returns: the members, and the callback that runs once
    every member ended."""

    members: tuple[JobHandle[Any], ...]
    callback: JobHandle[Any]
