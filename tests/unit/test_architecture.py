"""The import survey of issue 9, kept as a test: no module imports itself back through a
loop. (The layer rules are import-linter contracts in pyproject.toml, run by make lint.)"""

from __future__ import annotations

import grimp

PACKAGES = ("kush", "runtime", "hls", "gateway", "admin", "tokens", "origin", "billing", "loadtest")


def _cycles(adjacency: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in adjacency:
        if root in index:
            continue
        work = [(root, iter(adjacency[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(adjacency[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_cycle_finder_finds_a_loop() -> None:
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def test_no_import_loops() -> None:
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    adjacency = {
        m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)
    }
    assert _cycles(adjacency) == []
