"""The house's shape, checked on the source: one-way layers, no import cycles, no giant rooms.

The import graph is read with `ast`, imports inside functions included (a lazy import is still
a dependency).  Layers, lowest first: ``schemas`` (imports nothing of ours), ``replay`` (only
schemas), then ``pipeline``'s sub-packages in data-flow order, then cli/demo and the public API
(``ptreplay/__init__.py``).  See docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("schemas", "replay", "pipeline")
MAX_FILE_LINES = 900
MAX_FUNCTION_LINES = 120
LONG_MARK = "Long:"  # a function over MAX_FUNCTION_LINES says why in its docstring, after this mark

# Layer of each module, by the longest matching prefix; a module may import only its own layer or
# lower ones.  pipeline.progress and pipeline.extras are helpers every pipeline layer may use.
LAYERS = [
    ("ptreplay.schemas", 0),
    ("ptreplay.replay", 1),
    ("ptreplay.pipeline.progress", 2), ("ptreplay.pipeline.extras", 2), ("ptreplay.pipeline", 2),
    ("ptreplay.pipeline.capture", 3),
    ("ptreplay.pipeline.formats", 4),
    ("ptreplay.pipeline.events", 5),
    ("ptreplay.pipeline.warehouse", 6),
    ("ptreplay.pipeline.presentation", 7),
    ("ptreplay.pipeline.attribution", 8),
    ("ptreplay.pipeline.fleet", 9),
    ("ptreplay.pipeline.demo", 10), ("ptreplay.pipeline.cli", 10),
    ("ptreplay.__main__", 11), ("ptreplay", 11),
]


def module_files() -> dict[str, Path]:
    files = {"ptreplay": REPO / "__init__.py", "ptreplay.__main__": REPO / "__main__.py"}
    for d in SOURCE_DIRS:
        for f in sorted((REPO / d).rglob("*.py")):
            parts = f.relative_to(REPO).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            files[".".join(("ptreplay", *parts))] = f
    return files


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports (at any depth of its code)."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from a.b import c`: c is a module (a.b.c) or a name in a.b
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                         for a in node.names]
            else:
                continue
            deps |= {n for n in names if n in files and n != mod}
        graph[mod] = deps
    return graph


def layer(mod: str) -> int:
    return max(((len(p), rank) for p, rank in LAYERS if mod == p or mod.startswith(p + ".")))[1]


def test_the_graph_is_read():  # the checks below would pass vacuously on an empty graph
    g = import_graph()
    assert "ptreplay.replay.engine" in g and "ptreplay.schemas" in g["ptreplay.replay.engine"]
    assert "ptreplay.pipeline.events.ingest" in g["ptreplay.pipeline.cli"]  # a function-level import


def test_schemas_import_nothing_of_ours_and_replay_only_schemas():
    g = import_graph()
    for mod, deps in g.items():
        if mod.startswith("ptreplay.schemas"):
            assert {d for d in deps if not d.startswith("ptreplay.schemas")} == set(), mod
        if mod.startswith("ptreplay.replay"):
            assert {d for d in deps if not d.startswith(("ptreplay.schemas", "ptreplay.replay"))} == set(), mod


def test_no_upward_edge():
    g = import_graph()
    upward = sorted(f"{m} -> {d}" for m, deps in g.items() for d in deps if layer(d) > layer(m))
    assert upward == []


def test_no_import_cycle():
    g = import_graph()
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(g[m]):
            if state.get(d) == "open":
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_no_private_name_imported_across_modules():
    files = module_files()
    private = []
    for mod, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ptreplay"):
                private += [f"{mod}: from {node.module} import {a.name}" for a in node.names
                            if a.name.startswith("_") and a.name != "__version__"]
                if node.module.rsplit(".", 1)[-1].startswith("_"):
                    private.append(f"{mod}: from {node.module} (a private module)")
    assert private == []


def test_no_giant_rooms():
    big_files, long_functions = [], []
    for mod, path in module_files().items():
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            big_files.append(f"{path.relative_to(REPO)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and LONG_MARK not in (ast.get_docstring(node) or ""):
                    long_functions.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {n} lines")
    assert big_files == [] and long_functions == []


@pytest.mark.slow
def test_the_wheel_installs_only_ptreplay(tmp_path):
    """`pip install` puts one import package at the top of site-packages (and the console script)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("ptreplay-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"ptreplay"}
    assert "ptreplay/data/seed-2m/perf.data" in names  # the demo capture ships as package data
    assert "ptreplay/schemas/sql/views.sql" in names or any(n.startswith("ptreplay/schemas/sql/") for n in names)
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert "ptreplay = ptreplay.pipeline.cli:run" in zipfile.ZipFile(wheel).read(entry[0]).decode()


def test_every_model_rule_points_at_its_section_of_model_md():
    """Each function of the rule modules names its docs/MODEL.md section, and the section exists."""
    import re
    sections = set(re.findall(r"^## (\S+)", (REPO / "docs/MODEL.md").read_text(), re.M))
    missing = []
    for mod in ("vma", "pagetables", "faults", "syscalls"):
        for node in ast.parse((REPO / "replay" / f"{mod}.py").read_text()).body:
            if isinstance(node, ast.FunctionDef):
                anchors = re.findall(r"MODEL\.md#([\w-]+)", ast.get_docstring(node) or "")
                if not anchors or not set(anchors) <= sections:
                    missing.append(f"replay/{mod}.py {node.name}: {anchors}")
    assert missing == []


def test_the_docs_name_every_module():
    """docs/ARCHITECTURE.md and the README's layout table stay in step with the tree."""
    docs = (REPO / "docs/ARCHITECTURE.md").read_text() + (REPO / "README.md").read_text()
    unnamed = [str(f.relative_to(REPO)) for d in ("replay", "pipeline") for f in sorted((REPO / d).rglob("*.py"))
               if f.stem != "__init__" and f.stem not in docs]
    assert unnamed == []
