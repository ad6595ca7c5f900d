"""The package's layering, read from its source: which stage each module is, what it imports.

Stages run downstream: model → music → synth | outputs → pipeline → live | interlude → cli.
A module may import its own stage and the stages before it, never a later one or a peer
(synth and outputs are peers, as are live and interlude). Where a stage may see only part
of an earlier one, ``NARROW`` says which modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sonify"

RANK = {
    "errors": 0,
    "version": 0,
    "heap": 0,  # handing freed memory back to the system: any stage may
    "model": 1,
    "music": 2,
    "synth": 3,
    "outputs": 3,
    "pipeline": 4,
    "live": 5,
    "interlude": 5,
    "cli": 6,
    "__init__": 7,
    "__main__": 7,
}

# (stage, earlier stage) → the only modules of the earlier stage it may import.
NARROW = {
    ("music", "model"): {"sonify.model.frame"},
    ("synth", "music"): {"sonify.music.score", "sonify.music.preset"},
    ("outputs", "music"): {"sonify.music.score", "sonify.music.signals", "sonify.music.units"},
    ("outputs", "model"): {"sonify.model.frame"},
}
NOTHING_OF = {("synth", "model")}


def module_sources(root: Path = PACKAGE) -> dict[str, str]:
    """Every module of the package by dotted name, with its source."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path.read_text(encoding="utf-8")
    return out


def _is_package(name: str, sources: dict[str, str]) -> bool:
    return any(other.startswith(name + ".") for other in sources)


def imports(name: str, source: str, sources: dict[str, str]) -> set[str]:
    """The package modules ``name`` imports anywhere in its source (functions included)."""
    package = name if _is_package(name, sources) else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from x import y` names the module x.y when y is a module, else x.
            targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in sources else stem for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in sources and t != name)
    return found


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layering_violations(sources: dict[str, str]) -> list[str]:
    """One line per import that goes upstream, sideways, or further into a stage than allowed."""
    out = []
    for name, source in sources.items():
        own = stage(name)
        for target in sorted(imports(name, source, sources)):
            other = stage(target)
            if other == own:
                continue
            if RANK[other] >= RANK[own]:
                out.append(f"{name} imports {target}: {other} is not upstream of {own}")
            elif (own, other) in NOTHING_OF:
                out.append(f"{name} imports {target}: {own} must not touch {other}")
            elif (own, other) in NARROW and target not in NARROW[own, other]:
                allowed = ", ".join(sorted(NARROW[own, other]))
                out.append(f"{name} imports {target}: {own} may import only {allowed} of {other}")
    return out


def cycles(sources: dict[str, str]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (Tarjan's SCC)."""
    graph = {name: imports(name, src, sources) for name, src in sources.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def public_functions(sources: dict[str, str]) -> Iterable[tuple[str, str, int]]:
    """(module, function, parameter count) of every public function and method; ``self``
    and ``cls`` do not count, ``*args`` and ``**kwargs`` do."""
    for name, source in sources.items():
        if any(part.startswith("_") and part not in ("__init__", "__main__") for part in name.split(".")):
            continue
        tree = ast.parse(source)
        for node in tree.body:
            members = [node] if isinstance(node, ast.FunctionDef) else []
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                members = [m for m in node.body if isinstance(m, ast.FunctionDef)]
            for fn in members:
                if fn.name.startswith("_") and fn.name != "__init__":
                    continue
                a = fn.args
                params = [x.arg for x in a.posonlyargs + a.args] + [x.arg for x in a.kwonlyargs]
                if params and params[0] in ("self", "cls"):
                    params = params[1:]
                yield name, fn.name, len(params) + bool(a.vararg) + bool(a.kwarg)
