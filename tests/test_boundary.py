"""Layering: llmfs never imports streamlit (pages -> app -> llmfs, never back)."""

from __future__ import annotations

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


def test_pages_do_not_run_loops_or_import_torch():
    """Pages render; the work lives in llmfs. A page importing torch or an optimizer is a smell we refuse."""
    for page in (ROOT / "pages").glob("*.py"):
        text = page.read_text()
        assert "import torch" not in text and "optimizer" not in text, page.name
