"""The import graph flows one way: core modules never import a concrete store,
stores never import the runtime, and every module stays within its layer."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jobrunner"

# module -> layer; a module may import its own layer or lower ones.
LAYERS = {
    "errors": 0,
    "clock": 0,
    "models": 0,
    "defaults": 0,
    "_ids": 0,
    "_incontext": 0,
    "_threads": 0,
    "payload": 0,
    "logs": 0,
    "transitions": 0,
    "flow": 0,
    "retry": 1,
    "registry": 1,
    "resources": 1,
    "handle": 1,
    "stats": 1,
    "cron": 1,
    "stores.base": 1,
    "stores._sql": 1,
    "context": 2,
    "hooks": 2,
    "observability": 2,
    "progress": 2,
    "execute": 3,
    "pool": 3,
    "maintenance": 3,
    "scheduler": 3,
    "runner": 4,
    # The Service API and dashboard (``jobrunner[web]``): above the runner, and
    # nothing in the library imports it, so ``import jobrunner`` never loads Starlette.
    "web": 5,
    "web._app": 5,
    "web._api": 5,
    "web._auth": 5,
    "web._json": 5,
    "web._pages": 5,
    "web._source": 5,
    "web._sse": 5,
}
ADAPTERS = {
    "stores.memory",
    "stores.sqlite",
    "stores._sqlite_thread",
    "stores.postgres",
    "stores._postgres_sql",
}
EDGE = {"__init__", "__main__", "cli", "testing", "stores"}
CONCRETE = {f"jobrunner.{name}" for name in ADAPTERS}
CLI = "cli"
"""The ``jobrunner`` command's package: every module in it is edge too."""


def is_edge(name: str) -> bool:
    return name in EDGE or name.startswith(f"{CLI}.")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def jobrunner_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("jobrunner")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jobrunner"):
            found.add(node.module)
            # ``from jobrunner import x`` may name a module
            if node.module == "jobrunner":
                found |= {f"jobrunner.{alias.name}" for alias in node.names}
    return {name for name in found if name != "jobrunner"}


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_place_in_the_layering() -> None:
    unplaced = {name for name in all_modules() if not is_edge(name)} - set(LAYERS) - ADAPTERS
    assert unplaced == set(), f"add these modules to LAYERS, ADAPTERS or EDGE: {unplaced}"


def test_the_cli_is_a_package_of_edge_modules() -> None:
    # Guards is_edge(): if the package were renamed, "cli." would match nothing.
    cli = {name for name in all_modules() if name.startswith(f"{CLI}.")}
    assert CLI in all_modules() and len(cli) > 1, cli


def test_nothing_in_the_library_imports_the_cli() -> None:
    # The command is the shell around the library: only ``python -m jobrunner`` starts it.
    in_cli = {name for name in all_modules() if name == CLI or name.startswith(f"{CLI}.")}
    problems = []
    for name, path in all_modules().items():
        if name in in_cli or name == "__main__":
            continue
        for imported in jobrunner_imports(path):
            target = imported.removeprefix("jobrunner.")
            if target == CLI or target.startswith(f"{CLI}."):
                problems.append(f"{name} imports {imported}")
    assert problems == []


def test_modules_import_only_their_own_layer_or_lower() -> None:
    problems = []
    for name, path in all_modules().items():
        if name not in LAYERS:
            continue
        for imported in jobrunner_imports(path):
            target = imported.removeprefix("jobrunner.")
            if target in LAYERS and LAYERS[target] > LAYERS[name]:
                problems.append(f"{name} (layer {LAYERS[name]}) imports {target} (layer {LAYERS[target]})")
    assert problems == []


def test_the_core_never_imports_a_concrete_store() -> None:
    for name, path in all_modules().items():
        if name in LAYERS and name != "runner":
            assert not (jobrunner_imports(path) & CONCRETE), f"{name} imports a concrete store"


def test_stores_import_only_models_errors_and_the_protocol() -> None:
    allowed = {"jobrunner.models", "jobrunner.errors", "jobrunner.stores.base", "jobrunner.stores._sql"}
    allowed |= {f"jobrunner.{name}" for name, layer in LAYERS.items() if layer == 0}
    # A store's own private parts (its SQL, its connection thread).
    allowed |= {f"jobrunner.{name}" for name in ADAPTERS if name.rpartition(".")[2].startswith("_")}
    for name in ADAPTERS:
        path = all_modules().get(name)
        if path is not None:
            extra = jobrunner_imports(path) - allowed
            assert extra == set(), f"{name} imports {extra}"


def test_nothing_but_the_cli_imports_the_web_package() -> None:
    importers = {
        name
        for name, path in all_modules().items()
        if not name.startswith(("web", f"{CLI}."))
        and any(imported.startswith("jobrunner.web") for imported in jobrunner_imports(path))
    }
    assert importers == set()
