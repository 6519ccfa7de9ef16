"""Layering: llmfs never imports streamlit (pages -> app -> llmfs, never back)."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import llmfs

ROOT = Path(__file__).resolve().parents[1]


def all_llmfs_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(llmfs.__path__, prefix="llmfs.") if m.name != "llmfs.__main__")


def test_every_llmfs_module_imports_without_streamlit():
    modules = all_llmfs_modules()
    assert "llmfs.jobs" in modules and "llmfs.model" in modules
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.'))\n"
            "print('STREAMLIT:' + ','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("STREAMLIT:"), out.stdout


def test_no_streamlit_in_llmfs_sources():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "llmfs").rglob("*.py")
                 if "import streamlit" in p.read_text() or "from streamlit" in p.read_text()]
    assert offenders == []


def test_pages_hold_no_training_code():
    """Pages render; the work lives in llmfs. No page imports torch or transformers or calls backward / step."""
    banned_modules = {"torch", "transformers", "peft", "bitsandbytes"}
    banned_calls = {"backward", "zero_grad", "step"}
    for page in sorted((ROOT / "pages").glob("*.py")):
        tree = ast.parse(page.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                names = set()
            assert not names & banned_modules, f"{page.name} imports {names & banned_modules}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in banned_calls, f"{page.name} calls .{node.func.attr}()"


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(lint), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_import_contracts_hold_and_catch_a_new_circle(tmp_path):
    """The layers and no-circles contracts in .importlinter hold on this tree; a copy of the tree with one import
    that closes a circle (hidden inside a function, as circles used to be) breaks them."""
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "BROKEN" not in out.stdout and "4 kept, 0 broken" in out.stdout
    import shutil
    copy = tmp_path / "tree"
    for name in ("llmfs", "app", ".importlinter"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, copy / name)
    config = copy / "llmfs" / "config.py"   # the bottom layer reaching up to the recipes, inside a function
    config.write_text(config.read_text() + "\n\ndef _late():\n    from .recipes import submit_train\n"
                      "    return submit_train\n")
    broken = _lint_imports(copy)
    assert broken.returncode != 0 and "BROKEN" in broken.stdout, broken.stdout[-3000:]
