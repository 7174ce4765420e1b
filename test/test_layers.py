"""The package's layers point down (import-linter, the contract in setup.cfg), and a module imports inside a
function only what is heavy and optional: a runtime (torch, ONNX Runtime, TensorRT, LiteRT, diffusers, …) or a
module of ours that imports one. Everything else is imported at the top, where a reader and the linter see it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "depth_node"
# Imported only where used: seconds and hundreds of MB to import, or absent where a model family is not installed.
HEAVY = {"torch", "torchvision", "diffusers", "transformers", "tensorrt", "onnxruntime", "onnx", "ai_edge_litert",
         "safetensors", "huggingface_hub", "scipy", "ray"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, module: str) -> list[tuple[ast.AST, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            found.append((node, base))
    return found


def _function_local(tree: ast.AST) -> set[int]:
    """ids of import nodes inside a function body."""
    local = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local |= {id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return local


def _sources() -> dict[str, ast.AST]:
    return {_module_name(p): ast.parse(p.read_text()) for p in PACKAGE.rglob("*.py")}


def heavy_modules(sources: dict[str, ast.AST]) -> set[str]:
    """Our modules that import a heavy package at their top level, directly or through another of ours."""
    top: dict[str, set[str]] = {}
    for name, tree in sources.items():
        local = _function_local(tree)
        top[name] = {target for node, target in _imports(tree, name) if id(node) not in local}
    heavy = {name for name, targets in top.items() if any(t.split(".")[0] in HEAVY for t in targets)}
    while True:
        more = {name for name, targets in top.items() if name not in heavy and any(t in heavy for t in targets)}
        if not more:
            return heavy
        heavy |= more


def test_function_local_imports_are_only_heavy_optional_ones() -> None:
    sources = _sources()
    heavy = heavy_modules(sources)
    offenders = []
    for name, tree in sources.items():
        local = _function_local(tree)
        for node, target in _imports(tree, name):
            if id(node) in local and target.split(".")[0] not in HEAVY and target not in heavy:
                offenders.append(f"{name}:{node.lineno} imports {target} inside a function")
    assert not offenders, "import these at the top of the module:\n" + "\n".join(offenders)


def test_the_rule_sees_a_local_import(tmp_path: Path) -> None:
    tree = ast.parse("def f():\n    import yaml\n    from depth_node.core import camera\n")
    local = _function_local(tree)
    assert [t for n, t in _imports(tree, "x") if id(n) in local] == ["yaml", "depth_node.core"]


LINT = Path(sys.executable).parent / "lint-imports"


@pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -r requirements.txt)")
def test_layers_point_down() -> None:
    lint = LINT
    result = subprocess.run([str(lint), "--config", str(REPO / "setup.cfg")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout
