"""Who may import whom: the core is shared and depends on no role; kit and district never import each
other; the national tier imports the core only (and no role imports it); the technician's tools are a leaf;
nothing on the kit's run path imports the sheet generator.

Every import statement counts, inside functions too (a lazy import runs as surely as one at the top).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Folder -> import package, as pyproject.toml maps them.
FOLDERS = {"tpskit": "tpskit", "edge": "tpskit.edge", "firmware": "tpskit.firmware", "district": "tpskit.district",
           "national": "tpskit.national", "provisioning": "tpskit.provisioning", "models": "tpskit.models"}

#: The parts, by module name prefix; the first that matches wins. Whatever is left in `tpskit` is core.
PARTS = (
    ("app", ("tpskit.cli", "tpskit.demo", "tpskit.demo_kit", "tpskit.demo_trust")),
    ("devtool", ("tpskit.sheets", "tpskit.models.training")),
    ("firmware", ("tpskit.firmware",)),
    ("kit", ("tpskit.edge", "tpskit.models")),
    ("district", ("tpskit.district",)),
    ("national", ("tpskit.national",)),
    ("technician", ("tpskit.provisioning",)),
    ("core", ("tpskit",)),
)

#: part -> parts it must not import. The kit is `firmware` and `kit` (edge); firmware is its hardware layer,
#: below the kit's logic. The apps (command line, demo) may import everything.
FORBIDDEN: dict[str, frozenset[str]] = {
    "core": frozenset({"firmware", "kit", "district", "national", "technician", "devtool", "app"}),
    "firmware": frozenset({"kit", "district", "national", "technician", "devtool", "app"}),
    "kit": frozenset({"district", "national", "technician", "devtool", "app"}),
    "district": frozenset({"firmware", "kit", "national", "technician", "devtool", "app"}),
    "national": frozenset({"firmware", "kit", "district", "technician", "devtool", "app"}),
    "technician": frozenset({"firmware", "kit", "district", "national", "devtool", "app"}),
    "devtool": frozenset({"district", "national", "technician", "app"}),
    "app": frozenset(),
}

#: What a kit runs (`tpskit kit run`, its self-test and its other commands): none of it, nor anything it
#: imports, may import the sheet generator.
KIT_RUN_PATH = ("tpskit.edge.daemon", "tpskit.edge.kit_cli", "tpskit.edge.selftest")


def part_of(module: str) -> str | None:
    for part, prefixes in PARTS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return part
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = [FOLDERS[rel.parts[0]], *rel.parts[1:]]
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Every `tpskit...` module `source` imports, relative imports resolved, at any depth of the code."""
    out: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in out if m == "tpskit" or m.startswith("tpskit.")}


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = module_name(path)
            graph[name] = imports_of(path.read_text(), name, path.name == "__init__.py")
    known = set(graph)
    # `from pkg import name` named a module only when that module exists.
    return {m: {i for i in imps if i in known or i.rpartition(".")[0] not in known} for m, imps in graph.items()}


def violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Every import that crosses a forbidden direction, as `importer -> imported (part -> part)`."""
    out = []
    for module, imported in graph.items():
        src = part_of(module)
        if src is None:
            continue
        for target in sorted(set(imported)):
            dst = part_of(target)
            if dst is not None and dst != src and dst in FORBIDDEN[src]:
                out.append(f"{module} -> {target} ({src} -> {dst})")
    return out


def reachable(graph: Mapping[str, Iterable[str]], roots: Iterable[str]) -> dict[str, str]:
    """Modules reachable from `roots`, each with the module that first imported it (for the message)."""
    seen: dict[str, str] = {r: "" for r in roots}
    todo = list(seen)
    while todo:
        m = todo.pop()
        for target in graph.get(m, ()):
            # importing tpskit.a.b runs tpskit/__init__ and tpskit/a/__init__ too
            chain = target.split(".")
            for i in range(1, len(chain) + 1):
                t = ".".join(chain[:i])
                if t not in seen:
                    seen[t] = m
                    todo.append(t)
    return seen


def sheet_imports_on_run_path(graph: Mapping[str, Iterable[str]]) -> list[str]:
    seen = reachable(graph, KIT_RUN_PATH)
    return [f"{m} (imported by {seen[m]})" for m in sorted(seen) if part_of(m) == "devtool"]


# ------------------------------------------------------------------------------------------------ tests
def test_the_graph_is_read_from_every_folder_with_lazy_imports_too():
    graph = import_graph()
    assert {part_of(m) for m in graph} >= {"core", "firmware", "kit", "district", "national", "technician", "devtool",
                                           "app"}
    assert "tpskit.edge.reader.pipeline" in graph["tpskit.edge.daemon"]  # imported inside a method
    assert "tpskit.trust.identity" in graph["tpskit.trust.csr"]


def test_no_import_crosses_a_forbidden_direction():
    assert violations(import_graph()) == []


def test_nothing_on_the_kit_run_path_imports_the_sheet_generator():
    assert sheet_imports_on_run_path(import_graph()) == []


def test_the_checks_catch_a_core_module_importing_a_role_and_the_kit_importing_the_district():
    graph = {
        "tpskit.trust.identity": {"tpskit.provisioning.pki"},
        "tpskit.edge.deliver": {"tpskit.district.ingest", "tpskit.trust.identity"},
        "tpskit.district.ingest": {"tpskit.envelope.verify"},
        "tpskit.provisioning.district": {"tpskit.trust.tps"},
    }
    assert violations(graph) == [
        "tpskit.trust.identity -> tpskit.provisioning.pki (core -> technician)",
        "tpskit.edge.deliver -> tpskit.district.ingest (kit -> district)",
    ]


def test_the_checks_catch_the_sheet_generator_two_imports_away_from_the_daemon():
    graph = {"tpskit.edge.daemon": {"tpskit.firmware.camera"}, "tpskit.firmware.camera": {"tpskit.sheets.fill"},
             "tpskit.sheets.fill": set()}
    assert sheet_imports_on_run_path(graph) == ["tpskit.sheets (imported by tpskit.firmware.camera)",
                                                "tpskit.sheets.fill (imported by tpskit.firmware.camera)"]
