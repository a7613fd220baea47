"""Progress: a tqdm bar with ETA and speed on a terminal, plain lines otherwise."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from kush import seed
from kush.progress import ProgressReporter
from runtime.settings import Settings


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    with ProgressReporter("transcoding", media_seconds=60, stream=out) as progress:
        for step in range(101):
            progress(step / 100)
        progress(1.0)
    lines = out.getvalue().splitlines()
    assert lines == [f"transcoding {p}%" for p in range(0, 101, 10)]
    assert "\r" not in out.getvalue()


def test_plain_lines_skip_small_steps_and_clamp() -> None:
    out = io.StringIO()
    progress = ProgressReporter("transcoding", stream=out)
    for fraction in (0.03, 0.05, 0.12, 0.13, 0.5, 1.7):
        progress(fraction)
    assert out.getvalue().splitlines() == [
        "transcoding 3%",
        "transcoding 13%",  # 5 % and 12 % were within a step of 3 %
        "transcoding 50%",
        "transcoding 100%",
    ]


def test_nothing_shown_before_the_first_report() -> None:
    out = Terminal()
    with ProgressReporter("demo film", stream=out):
        pass
    assert out.getvalue() == ""


def test_bar_with_eta_and_speed_on_a_terminal() -> None:
    out = Terminal()
    with ProgressReporter("transcoding", media_seconds=120, stream=out) as progress:
        for step in range(1, 11):
            progress(step / 10)
    text = out.getvalue()
    assert "\r" in text  # redrawn in place
    final = text.rsplit("\r", 1)[-1]
    assert final.startswith("transcoding 100%|")
    assert "<" in final  # elapsed<remaining
    assert "x realtime" in final
    assert text.endswith("\n")


async def test_seed_passes_a_progress_bar_to_the_demo_film(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: dict[str, Any] = {}

    async def film(_conn: object, _origin: object, **kwargs: Any) -> str:
        calls.update(kwargs)
        return "film"

    async def ads(_conn: object, _origin: object, **_kwargs: Any) -> str:
        return "ad"

    monkeypatch.setattr(seed, "seed_demo_film", film)
    monkeypatch.setattr(seed, "seed_demo_ads", ads)
    await seed.seed_demo_media(Settings(data_dir=tmp_path, demo_film_seconds=30), conn=None)  # type: ignore[arg-type]
    assert isinstance(calls["on_progress"], ProgressReporter)
    assert calls["on_progress"].media_seconds == 30
    assert calls["duration_s"] == 30
