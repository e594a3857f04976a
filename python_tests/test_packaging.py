"""The sdist carries every extension source, and the package metadata builds without warnings."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import setuptools

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The sdist built from a copy of this checkout (setuptools' PEP 517 hook, no network;
    a copy, so no earlier build's egg-info decides what ships) and the build's output."""
    out = tmp_path_factory.mktemp("sdist")
    tree = tmp_path_factory.mktemp("tree") / "src"
    skip = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "*.so")
    shutil.copytree(ROOT, tree, ignore=skip)
    code = (
        "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    )
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", code, str(out)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    name = result.stdout.strip().splitlines()[-1]
    return out / name, result.stdout + result.stderr


def test_the_sdist_ships_every_extension_source(sdist):
    path, _ = sdist
    with tarfile.open(path) as archive:
        top = archive.getnames()[0].split("/")[0]
        shipped = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    on_disk = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "csrc").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert on_disk, "no csrc/ files found"
    assert on_disk <= shipped, f"missing from {top}: {sorted(on_disk - shipped)}"
    assert {"setup.py", "pyproject.toml", "CMakeLists.txt", "README.md"} <= shipped
    assert not [n for n in shipped if n.endswith((".so", ".o", ".pyc"))]


def test_the_build_raises_no_setuptools_deprecation_warning(sdist):
    _, output = sdist
    assert "SetuptoolsDeprecationWarning" not in output, output[-4000:]


def test_the_license_is_in_the_metadata(sdist):
    """setup.py sets it (pyproject.toml lists it as dynamic): as an SPDX expression where
    setuptools >= 77 takes one, else as the older free-text field."""
    path, _ = sdist
    with tarfile.open(path) as archive:
        [info] = [m for m in archive.getmembers() if m.name.endswith("/PKG-INFO")][:1]
        metadata = archive.extractfile(info).read().decode()
    field = "License-Expression" if int(setuptools.__version__.split(".")[0]) >= 77 else "License"
    assert f"\n{field}: Apache-2.0\n" in metadata, metadata[:2000]
