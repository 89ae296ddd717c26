"""PartitionState's fields change only inside streamer/state/ (the state owns its
transitions; the processor, flusher and worker call its methods).

A scan of the source: outside streamer/state/, no assignment (``=``, ``+=``, ``del``)
to a PartitionState field of anything but ``self``, to an item of one
(``state.cells[key] = ...``), and no mutating call on one (``state.pending.pop(...)``).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from streamer.state.partition import PartitionState

STREAMER = Path(__file__).resolve().parents[2] / "streamer"
FIELDS = frozenset(field.name for field in dataclasses.fields(PartitionState))
MUTATORS = frozenset({"append", "extend", "insert", "add", "update", "pop", "popitem",
                      "clear", "setdefault", "discard", "remove", "sort", "reverse",
                      "__setitem__", "__delitem__", "__iadd__"})


def _field_of(node: ast.expr) -> str | None:
    """The PartitionState field ``node`` is, or is an item of (not ``self``'s own)."""
    while isinstance(node, ast.Subscript):
        node = node.value
    if (isinstance(node, ast.Attribute) and node.attr in FIELDS
            and not (isinstance(node.value, ast.Name) and node.value.id == "self")):
        return node.attr
    return None


def _targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        targets = [node.target]
    elif isinstance(node, ast.Delete):
        targets = list(node.targets)
    elif isinstance(node, ast.NamedExpr):
        targets = [node.target]
    else:
        return []
    flat: list[ast.expr] = []
    while targets:
        target = targets.pop()
        if isinstance(target, ast.Tuple | ast.List):
            targets.extend(target.elts)
        elif isinstance(target, ast.Starred):
            targets.append(target.value)
        else:
            flat.append(target)
    return flat


def writes_to_fields(source: str, filename: str = "<source>") -> list[str]:
    """Each write to a PartitionState field in ``source``, as ``file:line field``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        for target in _targets(node):
            name = _field_of(target)
            if name is not None:
                found.append(f"{filename}:{target.lineno} {name}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in MUTATORS):
            name = _field_of(node.func.value)
            if name is not None:
                found.append(f"{filename}:{node.lineno} {name}.{node.func.attr}()")
    return found


@pytest.mark.parametrize("source", [
    "state.seq += 1",
    "state.cells[key] = state.cells.get(key, 0) + 1",
    "cells, state.cells = state.cells, {}",
    "state.watermark['u'] = 5",
    "self.states[p].unflushed_events = 0",
    "del state.pending[track_id]",
    "state.pending_dirty.add(track_id)",
    "state.rejections.append(rejection)",
    "state.needs_old_meta.clear()",
    "state.pending[track].pop(cell)",
])
def test_the_scan_finds_writes_to_state_fields(source: str) -> None:
    assert writes_to_fields(source), source


@pytest.mark.parametrize("source", [
    "self.cells = {}",  # a class's own attribute of the same name
    "x = state.cells.get(key)",
    "state.take_offset('u', 3)",
    "n = len(state.pending)",
])
def test_the_scan_leaves_reads_and_method_calls_alone(source: str) -> None:
    assert writes_to_fields(source) == []


def test_partition_state_fields_are_assigned_only_inside_streamer_state() -> None:
    paths = [path for path in sorted(STREAMER.rglob("*.py"))
             if STREAMER / "state" not in path.parents]
    assert any(path.name == "processor.py" for path in paths)  # the scan sees the pipeline
    writes = [write for path in paths
              for write in writes_to_fields(path.read_text(encoding="utf-8"),
                                            str(path.relative_to(STREAMER.parent)))]
    assert writes == []
