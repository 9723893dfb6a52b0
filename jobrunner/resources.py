"""Resources: process-scoped (shared by all jobs) and job-scoped (one per attempt).

A resource is an async generator function registered with ``@runner.resource``:
the code before ``yield`` creates it, the code after disposes of it. Handlers and
other resources ask for one as a parameter default, ``client = Depends(http)``,
without knowing its scope.

* process scope: created on first use, disposed when the runner stops;
* job scope: created on first use within an attempt, disposed when the attempt
  ends, whatever way it ends, in reverse order of creation.

Resources are closed normally (the job's exception is not thrown into them),
so a resource cannot swallow a job's failure.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import Context
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from jobrunner._incontext import InContext
from jobrunner.errors import ResourceError

__all__ = ["Depends", "JobScope", "ProcessScope", "Resource", "ResourceRegistry", "Scope"]

_T = TypeVar("_T")
Scope = Literal["process", "job"]
Factory = Callable[..., AsyncIterator[Any]]


class _Depends:
    __slots__ = ("target",)

    def __init__(self, target: Factory) -> None:
        self.target = target

    def __repr__(self) -> str:
        return f"Depends({getattr(self.target, '__qualname__', self.target)!r})"


def Depends(resource: Callable[..., AsyncIterator[_T]]) -> _T:  # noqa: N802 - reads like a type
    """Mark a parameter as injected: ``client: Client = Depends(http_client)``.

    The parameter is filled by the runner for each attempt and is not part of the
    job's enqueued arguments.
    """
    if not callable(resource):
        raise TypeError(f"Depends({resource!r}): pass a resource function")
    return cast(_T, _Depends(resource))


def injected_parameters(fn: Callable[..., Any]) -> tuple[tuple[str, Factory], ...]:
    """The ``(parameter, resource function)`` pairs of ``fn`` that use ``Depends``."""
    return tuple(
        (param.name, param.default.target)
        for param in inspect.signature(fn).parameters.values()
        if isinstance(param.default, _Depends)
    )


@dataclass(frozen=True, slots=True, eq=False)
class Resource:
    """A registered resource function and its scope."""

    factory: Factory
    scope: Scope
    name: str
    needs: tuple[tuple[str, Factory], ...]


class ResourceRegistry:
    """The resources one runner knows, by function."""

    def __init__(self) -> None:
        self._by_factory: dict[Factory, Resource] = {}

    def add(self, factory: Factory, scope: Scope) -> Resource:
        """Register an async generator function; ValueError for anything else."""
        if scope not in ("process", "job"):
            raise ValueError(f"resource scope={scope!r}: use 'process' or 'job'")
        if not inspect.isasyncgenfunction(factory):
            raise ValueError(
                f"@runner.resource needs an async generator function (async def with "
                f"yield); {getattr(factory, '__qualname__', factory)!r} is not one"
            )
        name = f"{factory.__module__}.{factory.__qualname__}"
        resource = Resource(factory, scope, name, injected_parameters(factory))
        self._by_factory[factory] = resource
        return resource

    def get(self, factory: Factory, wanted_by: str) -> Resource:
        """The resource for ``factory``; ResourceError naming who asked if unregistered."""
        resource = self._by_factory.get(factory)
        if resource is None:
            name = getattr(factory, "__qualname__", repr(factory))
            raise ResourceError(
                f"{wanted_by} depends on {name!r}, which is not a registered resource; "
                f"decorate it with @runner.resource or @runner.resource(scope='job')"
            )
        return resource

    def validate(self, needs: tuple[tuple[str, Factory], ...], wanted_by: str) -> None:
        """Check that every dependency (and theirs) is registered and scopes fit."""
        for _, factory in needs:
            resource = self.get(factory, wanted_by)
            for _, sub in resource.needs:
                inner = self.get(sub, f"resource {resource.name!r}")
                if resource.scope == "process" and inner.scope == "job":
                    raise ResourceError(
                        f"process-scoped resource {resource.name!r} depends on job-scoped "
                        f"{inner.name!r}; a shared resource cannot hold a per-job one"
                    )
            self.validate(resource.needs, f"resource {resource.name!r}")


async def _create(resource: Resource, stack: AsyncExitStack, kwargs: dict[str, Any]) -> Any:
    try:
        return await stack.enter_async_context(asynccontextmanager(resource.factory)(**kwargs))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise ResourceError(f"resource {resource.name!r} failed to start: {exc!r}") from exc


class ProcessScope:
    """Process-scoped resources: created once, on first use; disposed by ``aclose``.

    They are created in the runner's own context, not the context of the job that
    first asked, so background tasks they start never see that job.
    """

    def __init__(self, registry: ResourceRegistry, base_context: Context) -> None:
        self._registry = registry
        self._base = base_context
        self._stack = AsyncExitStack()
        self._values: dict[Resource, Any] = {}
        self._locks: dict[Resource, asyncio.Lock] = {}

    async def get(self, resource: Resource) -> Any:
        """The resource's value, creating it (and what it needs) on first use."""
        if resource in self._values:
            return self._values[resource]
        lock = self._locks.setdefault(resource, asyncio.Lock())
        async with lock:
            if resource not in self._values:
                kwargs = {
                    param: await self.get(self._registry.get(f, f"resource {resource.name!r}"))
                    for param, f in resource.needs
                }
                coro = _create(resource, self._stack, kwargs)
                self._values[resource] = await InContext(coro, self._base.copy())
        return self._values[resource]

    async def aclose(self) -> None:
        """Dispose of every process resource, newest first."""
        self._values.clear()
        await self._stack.aclose()


class JobScope:
    """Job-scoped resources of one attempt."""

    __slots__ = ("_process", "_registry", "_stack", "_values")

    def __init__(self, registry: ResourceRegistry, process: ProcessScope) -> None:
        self._registry = registry
        self._process = process
        self._stack = AsyncExitStack()
        self._values: dict[Resource, Any] = {}

    async def resolve(self, needs: tuple[tuple[str, Factory], ...], wanted_by: str) -> dict[str, Any]:
        """Values for the given parameters."""
        return {param: await self._get(self._registry.get(f, wanted_by)) for param, f in needs}

    async def _get(self, resource: Resource) -> Any:
        if resource.scope == "process":
            return await self._process.get(resource)
        if resource not in self._values:
            kwargs = await self.resolve(resource.needs, f"resource {resource.name!r}")
            self._values[resource] = await _create(resource, self._stack, kwargs)
        return self._values[resource]

    async def aclose(self) -> None:
        """Dispose of this attempt's resources, newest first."""
        self._values.clear()
        await self._stack.aclose()
