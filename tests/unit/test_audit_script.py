"""scripts/audit.py: a vulnerable pin fails the build, an unreachable service does not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit.py"


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kush_audit_script", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


VULNERABLE = {
    "dependencies": [
        {"name": "orjson", "version": "3.11.0", "vulns": []},
        {
            "name": "aiohttp",
            "version": "3.9.0",
            "vulns": [{"id": "GHSA-7gpw-8wmc-pm8g", "fix_versions": ["3.9.2"]}],
        },
    ],
    "fixes": [],
}


def test_a_vulnerable_pin_fails(audit: ModuleType) -> None:
    verdict = audit.judge(1, VULNERABLE, "osv")
    assert verdict.status == 1
    assert verdict.answered
    assert "aiohttp==3.9.0: GHSA-7gpw-8wmc-pm8g" in verdict.message


def test_a_clean_answer_passes(audit: ModuleType) -> None:
    clean = {"dependencies": [{"name": "orjson", "version": "3.11.0", "vulns": []}]}
    verdict = audit.judge(0, clean, "pypi")
    assert (verdict.status, verdict.answered) == (0, True)


@pytest.mark.parametrize(
    ("returncode", "report"),
    [
        (1, None),  # connection error: no report written
        (0, {"dependencies": [{"name": "aiohttp", "skip_reason": "not found on PyPI"}]}),
    ],
)
def test_no_answer_is_not_a_pass_nor_a_failure(
    audit: ModuleType, returncode: int, report: dict[str, object] | None
) -> None:
    verdict = audit.judge(returncode, report, "pypi")
    assert (verdict.status, verdict.answered) == (0, False)


def test_main_warns_when_nothing_was_audited(
    audit: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(audit, "run", lambda _req, svc: audit.Verdict(0, f"{svc}: down", False))
    assert audit.main(["audit.py", "lock.txt"]) == 0
    assert "NOT audited" in capsys.readouterr().err


def test_main_fails_on_the_first_service_that_answers_with_findings(
    audit: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {
        "osv": audit.Verdict(0, "osv: down", False),
        "pypi": audit.judge(1, VULNERABLE, "pypi"),
    }
    monkeypatch.setattr(audit, "run", lambda _req, svc: answers[svc])
    assert audit.main(["audit.py", "lock.txt"]) == 1
