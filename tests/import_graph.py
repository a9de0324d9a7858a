"""The import graph of ``magnet_jax/``: every ``import`` / ``from ... import`` (module level or inside functions),
resolved to the package's own modules, grouped into *rooms* (top-level files and folders).

``python -m tests.import_graph`` prints the rooms, arrows, arrows that run up the declared floors, and cycles;
``tests/unit/test_import_layers.py`` asserts there are no cycles and no upward arrows.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "magnet_jax"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file of the package (``__init__`` = the package)."""
    out = {}
    for f in sorted((root / PKG).rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` (a module or ``module.attribute``) lives in."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def file_edges(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: {modules it imports}}`` (package-internal only, self-imports dropped)."""
    known = modules(root)
    edges: dict[str, set[str]] = defaultdict(set)
    for mod, f in known.items():
        is_pkg = f.name == "__init__.py"
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [_resolve(a.name, known) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else _resolve(base, known)
                           for a in node.names]
            for t in targets:
                if t and t != mod:
                    edges[mod].add(t)
        edges.setdefault(mod, set())
    return dict(edges)


def room(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def room_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for a, targets in edges.items():
        out[room(a)]
        for b in targets:
            if room(a) != room(b):
                out[room(a)].add(room(b))
    return dict(out)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def floors(redges: dict[str, set[str]]) -> dict[str, int]:
    """Each room's floor: 0 for rooms importing no other room, else 1 + the highest floor it imports (on a DAG)."""
    memo: dict[str, int] = {}

    def f(r, seen=()):
        if r in memo:
            return memo[r]
        if r in seen:
            return 0
        memo[r] = 1 + max((f(t, seen + (r,)) for t in redges.get(r, ())), default=-1)
        return memo[r]

    for r in redges:
        f(r)
    return memo


def report(root: Path = ROOT) -> dict:
    fe = file_edges(root)
    re_ = room_edges(fe)
    fl = floors(re_)
    return dict(modules=len(fe), rooms=len(re_), floors=1 + max(fl.values()),
                file_arrows=sum(len(v) for v in fe.values()), room_arrows=sum(len(v) for v in re_.values()),
                room_cycles=cycles(re_), file_cycles=cycles(fe), room_floor=fl, room_edges=re_)


if __name__ == "__main__":
    r = report()
    for k in ("modules", "rooms", "floors", "file_arrows", "room_arrows", "room_cycles", "file_cycles"):
        print(f"{k}: {r[k]}")
    for rm in sorted(r["room_floor"], key=lambda x: (r["room_floor"][x], x)):
        print(f"  floor {r['room_floor'][rm]:2d} {rm:18s} -> {sorted(r['room_edges'][rm])}")
