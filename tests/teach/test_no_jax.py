"""hepjax.teach is numpy-only: no module under it imports jax (checked on the source with ast),
and it imports and runs in a fresh interpreter."""
import ast
import pathlib
import subprocess
import sys

import hepjax.teach

TEACH_DIR = pathlib.Path(hepjax.teach.__file__).parent
FORBIDDEN = ("jax", "jaxlib", "optax", "flax")


def imported_roots(source):
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_checker_detects_jax_imports():
    assert "jax" in imported_roots("import jax.numpy as jnp")
    assert "jax" in imported_roots("def f():\n    from jax import grad")
    assert "jax" not in imported_roots("import numpy as np\nfrom . import engine")


def test_no_module_in_teach_imports_jax():
    files = sorted(TEACH_DIR.glob("**/*.py"))
    assert {f.name for f in files} >= {"__init__.py", "engine.py", "nn.py", "optim.py", "tutorial.py"}
    for f in files:
        bad = imported_roots(f.read_text()) & set(FORBIDDEN)
        assert not bad, f"{f.name} imports {bad}"


def test_subprocess_ast_check_and_import():
    """Fresh interpreter: parse every module with ast, then import the package and use it."""
    code = f"""
import ast, pathlib, sys
root = pathlib.Path({str(TEACH_DIR)!r})
for f in root.glob('**/*.py'):
    for node in ast.walk(ast.parse(f.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
        for n in names:
            assert n.split('.')[0] not in {FORBIDDEN!r}, (f.name, n)
import numpy as np
from hepjax.teach import Tensor, optim
x = Tensor(np.array([1.0, 2.0]))
(x * x).sum().backward()
assert list(x.grad) == [2.0, 4.0]
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
