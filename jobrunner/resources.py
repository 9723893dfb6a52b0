"""Resources: process-scoped (shared by all jobs) and job-scoped (one per attempt).

A resource is an async generator function registered with ``@runner.resource``,
which returns a typed handle, ``Resource[T]``, ``T`` being what the generator
yields: the code before ``yield`` creates the value, the code after disposes of
it. A job, or another resource, receives resources as its *leading* parameters,
named with ``@uses``::

    @runner.resource
    async def http_client() -> AsyncIterator[httpx.AsyncClient]: ...

    @runner.job
    @uses(http_client)
    async def fetch(client: httpx.AsyncClient, url: str) -> int: ...

    await fetch.enqueue("https://example.com")  # typed (url: str): no client

Leading parameters, because ``typing.Concatenate`` can drop those (and only
those) from a ``ParamSpec``: that is what keeps resources out of the typed
``enqueue``. A parameter default (the ``Depends(...)`` of earlier 0.1
snapshots) cannot be dropped, so it put resources into ``enqueue``'s signature.

* process scope: created on first use, in the runner's own context, not the
  asking job's; disposed when the runner stops, newest first;
* job scope: created on first use within an attempt, disposed when the attempt
  ends, whatever way it ends, newest first.

Everything about the wiring is checked at registration (``@uses``,
``@runner.resource``, ``@runner.job``), because the handles make it known
then: a resource that is not registered, one registered with another runner,
a process-scoped resource using a job-scoped one.

Resources are closed normally (the job's exception is not thrown into them),
so a resource cannot swallow a job's failure.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import Context
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

from jobrunner._incontext import InContext
from jobrunner.errors import ResourceError

__all__ = [
    "JobScope",
    "ProcessScope",
    "Resource",
    "ResourceRegistry",
    "Scope",
    "WithResources",
    "substitute",
    "uses",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")
T6 = TypeVar("T6")
Scope = Literal["process", "job"]
_MISSING: Any = object()


def _describe(obj: object) -> str:
    return repr(getattr(obj, "__qualname__", obj))


class Resource(Generic[T]):
    """A registered resource: what ``@runner.resource`` returns; pass it to ``@uses``.

    ``T`` is what the resource's generator yields, so a job's parameter for it
    is checked against it. The handle belongs to the runner that registered it.
    """

    __slots__ = ("_registry", "factory", "name", "needs", "scope")

    def __init__(
        self,
        factory: Callable[..., AsyncIterator[T]],
        scope: Scope,
        needs: tuple[Resource[Any], ...],
        registry: ResourceRegistry,
    ) -> None:
        self.factory = factory
        self.scope: Scope = scope
        self.needs = needs
        """The resources the generator takes as its leading parameters, in order."""
        self.name = f"{factory.__module__}.{factory.__qualname__}"
        self._registry = registry

    def __repr__(self) -> str:
        return f"<Resource {self.name} scope={self.scope}>"


class WithResources(Generic[P, R]):
    """A function whose leading parameters receive resources: what ``@uses(...)`` returns.

    Not callable itself: give it to ``@runner.job`` (the job is typed by ``P``,
    the parameters after the resources) or to ``@runner.resource``.
    """

    def __init__(self, fn: Callable[..., R], resources: tuple[Resource[Any], ...]) -> None:
        self.fn = fn
        self.resources = resources
        # Read like the function: its __name__ is the job's default name.
        self.__name__: str = getattr(fn, "__name__", "")
        self.__qualname__: str = getattr(fn, "__qualname__", self.__name__)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        names = ", ".join(r.name for r in self.resources)
        return f"<WithResources {_describe(self.fn)} uses {names}>"


@overload
def uses(r1: Resource[T1], /) -> Callable[[Callable[Concatenate[T1, P], R]], WithResources[P, R]]: ...


@overload
def uses(
    r1: Resource[T1], r2: Resource[T2], /
) -> Callable[[Callable[Concatenate[T1, T2, P], R]], WithResources[P, R]]: ...


@overload
def uses(
    r1: Resource[T1], r2: Resource[T2], r3: Resource[T3], /
) -> Callable[[Callable[Concatenate[T1, T2, T3, P], R]], WithResources[P, R]]: ...


@overload
def uses(
    r1: Resource[T1], r2: Resource[T2], r3: Resource[T3], r4: Resource[T4], /
) -> Callable[[Callable[Concatenate[T1, T2, T3, T4, P], R]], WithResources[P, R]]: ...


@overload
def uses(
    r1: Resource[T1], r2: Resource[T2], r3: Resource[T3], r4: Resource[T4], r5: Resource[T5], /
) -> Callable[[Callable[Concatenate[T1, T2, T3, T4, T5, P], R]], WithResources[P, R]]: ...


@overload
def uses(
    r1: Resource[T1],
    r2: Resource[T2],
    r3: Resource[T3],
    r4: Resource[T4],
    r5: Resource[T5],
    r6: Resource[T6],
    /,
) -> Callable[[Callable[Concatenate[T1, T2, T3, T4, T5, T6, P], R]], WithResources[P, R]]: ...


def uses(*resources: Resource[Any]) -> Callable[[Callable[..., Any]], WithResources[Any, Any]]:
    """Give a job (or a resource) resources as its first parameters, in this order.

    ``@runner.job`` goes above it. The job's typed ``enqueue``, ``call`` and
    ``options(...).enqueue`` take only the parameters after the resources, and
    mypy checks each resource's value type against its parameter. Up to six
    resources are typed; a job needing more can group them in one resource.

    Raises ResourceError, naming the function, for anything that is not a
    registered resource, and ValueError if the function lacks the parameters.
    """
    if not resources:
        raise ValueError("uses() needs at least one resource: @uses(http_client, ...)")

    def decorate(fn: Callable[..., Any]) -> WithResources[Any, Any]:
        who = _describe(fn)
        for resource in resources:
            if not isinstance(resource, Resource):
                raise ResourceError(
                    f"{who} uses {_describe(resource)}, which is not a registered resource; "
                    f"decorate it with @runner.resource or @runner.resource(scope='job')"
                )
        if isinstance(fn, WithResources):
            raise ValueError(f"{who} has two @uses(...); list all its resources in one")
        if callable(getattr(fn, "enqueue", None)):  # a Job: registered without them already
            raise ValueError(f"{who} is already a job; put @uses(...) below @runner.job, on the function")
        _check_leading_parameters(fn, len(resources), who)
        return WithResources(fn, resources)

    return decorate


def _check_leading_parameters(fn: Callable[..., Any], n: int, who: str) -> None:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return  # no signature to read (some builtins): the call itself will tell
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    leading = 0
    for param in params[:n]:
        if param.kind not in positional:
            break
        leading += 1
    if leading < n:
        raise ValueError(
            f"{who} uses {n} resource(s), which it receives as its first {n} positional "
            f"parameter(s), but it has {leading}; add them first, in @uses order "
            f"(and put @uses directly on the function, below @runner.job)"
        )


class ResourceRegistry:
    """The resources one runner registered, and the values tests put in their place."""

    def __init__(self) -> None:
        self.overrides: dict[Resource[Any], Any] = {}
        """Substitute values by resource (``jobrunner.testing.override``)."""
        self.running = False
        """True while a ``ProcessScope`` of this registry is open (the runner runs)."""

    def add(self, fn: Callable[..., Any] | WithResources[Any, Any], scope: Scope) -> Resource[Any]:
        """Register an async generator function as a resource.

        ValueError for anything else or an unknown scope; ResourceError if what it
        uses is another runner's, or job-scoped while it is process-scoped.
        """
        if scope not in ("process", "job"):
            raise ValueError(f"resource scope={scope!r}: use 'process' or 'job'")
        needs: tuple[Resource[Any], ...] = ()
        if isinstance(fn, WithResources):
            needs = fn.resources
            fn = fn.fn
        if not inspect.isasyncgenfunction(fn):
            raise ValueError(
                f"@runner.resource needs an async generator function (async def with "
                f"yield); {_describe(fn)} is not one"
            )
        resource: Resource[Any] = Resource(fn, scope, needs, self)
        try:
            inspect.signature(fn).bind(*needs)
        except TypeError as exc:
            raise ValueError(
                f"resource {resource.name!r} cannot be called with just the {len(needs)} "
                f"resource(s) it uses ({exc}); a resource's parameters are the resources "
                f"named in its @uses(...), in order, or parameters with defaults"
            ) from None
        self.check(needs, f"resource {resource.name!r}", shared=scope == "process")
        return resource

    def check(self, needs: tuple[Resource[Any], ...], wanted_by: str, *, shared: bool) -> None:
        """ResourceError unless every resource ``wanted_by`` uses is this runner's and
        (``shared``: for a process-scoped resource) none is job-scoped."""
        for resource in needs:
            if resource._registry is not self:
                raise ResourceError(
                    f"{wanted_by} uses resource {resource.name!r}, which another runner "
                    f"registered; register it with @runner.resource on the runner that "
                    f"registers {wanted_by}"
                )
            if shared and resource.scope == "job":
                raise ResourceError(
                    f"process-scoped {wanted_by} uses job-scoped resource {resource.name!r}: "
                    f"a shared resource cannot hold a per-job one; make it "
                    f"@runner.resource(scope='job'), or make {resource.name!r} process-scoped"
                )

    def override(self, resource: Resource[T], value: T) -> Callable[[], None]:
        """Make ``resource`` be ``value``; returns the function that undoes it.

        ResourceError while the runner runs: a process-scoped resource may exist
        already, and a job would see the real one or the fake depending on timing.
        """
        if self.running:
            raise ResourceError(
                f"cannot override resource {resource.name!r} while its runner is running; "
                f"override it before the runner starts (around `async with runner`, "
                f"drain() or run_until_idle())"
            )
        previous = self.overrides.get(resource, _MISSING)
        self.overrides[resource] = value

        def lift() -> None:
            if previous is _MISSING:
                self.overrides.pop(resource, None)
            else:
                self.overrides[resource] = previous

        return lift


def substitute(resource: Resource[T], value: T) -> Callable[[], None]:
    """Make ``resource`` be ``value`` in its runner; returns the undo (see ``ResourceRegistry.override``)."""
    return resource._registry.override(resource, value)


async def _create(resource: Resource[Any], stack: AsyncExitStack, args: list[Any]) -> Any:
    try:
        return await stack.enter_async_context(asynccontextmanager(resource.factory)(*args))
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
        self._overrides = registry.overrides
        self._base = base_context
        self._stack = AsyncExitStack()
        self._values: dict[Resource[Any], Any] = {}
        self._locks: dict[Resource[Any], asyncio.Lock] = {}
        registry.running = True

    async def get(self, resource: Resource[Any]) -> Any:
        """The resource's value, creating it (and what it uses) on first use."""
        if resource in self._values:
            return self._values[resource]
        if resource in self._overrides:
            return self._overrides[resource]
        lock = self._locks.setdefault(resource, asyncio.Lock())
        async with lock:
            if resource not in self._values:
                args = [await self.get(need) for need in resource.needs]
                coro = _create(resource, self._stack, args)
                self._values[resource] = await InContext(coro, self._base.copy())
        return self._values[resource]

    async def aclose(self) -> None:
        """Dispose of every process resource, newest first."""
        self._values.clear()
        try:
            await self._stack.aclose()
        finally:
            self._registry.running = False


class JobScope:
    """Job-scoped resources of one attempt."""

    __slots__ = ("_overrides", "_process", "_stack", "_values")

    def __init__(self, registry: ResourceRegistry, process: ProcessScope) -> None:
        self._overrides = registry.overrides
        self._process = process
        self._stack = AsyncExitStack()
        self._values: dict[Resource[Any], Any] = {}

    async def resolve(self, needs: tuple[Resource[Any], ...]) -> list[Any]:
        """The values of ``needs``, in order, creating job-scoped ones on first use."""
        return [await self._get(resource) for resource in needs]

    async def _get(self, resource: Resource[Any]) -> Any:
        if resource.scope == "process":
            return await self._process.get(resource)
        if resource in self._values:
            return self._values[resource]
        if resource in self._overrides:
            return self._overrides[resource]
        args = await self.resolve(resource.needs)
        value = self._values[resource] = await _create(resource, self._stack, args)
        return value

    async def aclose(self) -> None:
        """Dispose of this attempt's resources, newest first."""
        self._values.clear()
        await self._stack.aclose()
