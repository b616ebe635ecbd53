"""The dependency graph of the platform module, as Terraform builds it: a block depends on every resource, data
source, ephemeral resource and module it references (through locals and variables, which are transparent) and on
everything in its depends_on. Resource-level, instance keys ignored: a reference to one instance of a for_each
resource is a dependency on all of them, which can only add edges (a cycle found here may be conservative; a
missing dependency is never hidden). A module call is one node (it waits for everything its inputs and
depends_on name, and whoever reads one of its outputs waits for it): again conservative.

Used by tests/terraform/test_first_apply.py to check creation order against what the services need at start."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from tests.terraform.hcl import PLATFORM_DIR, interpolations, module

# A reference: local.x, var.x, module.x, data.T.N, ephemeral.T.N or T.N with T a resource type (has "_"). Not
# preceded by a dot or word character: each.value.foo_bar.baz is an attribute path, not a reference.
_REFERENCE = re.compile(
    r"(?<![\w.])(local\.\w+|var\.\w+|module\.\w+|data\.\w+\.\w+|ephemeral\.\w+\.\w+|[a-z][a-z0-9]*_[a-z0-9_]+\.\w+)"
)


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def expressions(value: Any) -> Iterator[str]:
    """Every ${...} expression in a parsed HCL value (nested interpolations included)."""
    for text in strings(value):
        for _, _, expr in interpolations(text):
            yield expr
            yield from expressions(expr)


def raw_references(value: Any) -> set[str]:
    return {m.group(1) for expr in expressions(value) for m in _REFERENCE.finditer(expr)}


@dataclass
class Graph:
    """Nodes are addresses (google_sql_user.iam, data.google_project.this, module.lb, ...); ``deps`` the direct
    dependencies of each node; ``bodies`` the parsed block of each node."""

    deps: dict[str, set[str]] = field(default_factory=dict)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals_: dict[str, Any] = field(default_factory=dict)

    def resolve(self, value: Any, through: frozenset[str] = frozenset()) -> set[str]:
        """The nodes ``value`` references, locals followed to what they reference."""
        found: set[str] = set()
        for ref in raw_references(value):
            if ref.startswith("local."):
                name = ref.split(".", 1)[1]
                if name in self.locals_ and name not in through:
                    found |= self.resolve(self.locals_[name], through | {name})
            elif ref.startswith("var."):
                continue  # module inputs: known before anything is created
            elif ref in self.bodies:
                found.add(ref)
        return found

    def locals_referenced(self, value: Any, through: frozenset[str] = frozenset()) -> set[str]:
        """Every local ``value`` reads, directly or through other locals."""
        found: set[str] = set()
        for ref in raw_references(value):
            if ref.startswith("local."):
                name = ref.split(".", 1)[1]
                if name in self.locals_ and name not in through:
                    found.add(name)
                    found |= self.locals_referenced(self.locals_[name], through | {name})
        return found

    def ancestors(self, node: str) -> set[str]:
        """Everything ``node`` waits for (transitively)."""
        seen: set[str] = set()
        todo = list(self.deps[node])
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            todo.extend(self.deps.get(current, ()))
        return seen

    def path(self, start: str, goal: str) -> list[str] | None:
        """A dependency chain start -> ... -> goal (start waits for goal), or None."""
        parents: dict[str, str | None] = {start: None}
        todo = [start]
        while todo:
            current = todo.pop(0)
            if current == goal:
                chain = [current]
                while parents[chain[-1]] is not None:
                    chain.append(parents[chain[-1]])  # type: ignore[arg-type]
                return chain[::-1]
            for dep in sorted(self.deps.get(current, ())):
                if dep not in parents:
                    parents[dep] = current
                    todo.append(dep)
        return None

    def cycles(self) -> list[list[str]]:
        found = []
        for node in self.deps:
            for dep in self.deps[node]:
                back = self.path(dep, node)
                if back is not None:
                    found.append([node, *back])
        return found

    def of_type(self, rtype: str) -> list[str]:
        return sorted(n for n in self.bodies if n.startswith(rtype + "."))


@cache
def platform_graph() -> Graph:
    blocks = module(PLATFORM_DIR)
    graph = Graph(locals_=blocks["locals"])
    for rtype, named in blocks["resource"].items():
        for name, body in named.items():
            graph.bodies[f"{rtype}.{name}"] = body
    for kind in ("data", "ephemeral"):
        for rtype, named in blocks[kind].items():
            for name, body in named.items():
                graph.bodies[f"{kind}.{rtype}.{name}"] = body
    for name, body in blocks["module"].items():
        graph.bodies[f"module.{name}"] = body
    for node, body in graph.bodies.items():
        deps = graph.resolve({k: v for k, v in body.items() if k != "depends_on"})
        for entry in body.get("depends_on", []):
            deps |= graph.resolve(entry)
        deps.discard(node)  # self.* in provisioners
        graph.deps[node] = deps
    return graph
