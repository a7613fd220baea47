"""Audit the pinned dependencies (requirements/lock.txt) for known vulnerabilities.

``pip-audit`` asks an advisory service about every pin. Where no service answers (a
machine that reaches only a package mirror), pip-audit either fails with a connection
error (OSV) or reports every package as "not found" and exits 0 (PyPI's JSON API
missing), which reads as "no known vulnerabilities" although nothing was checked. This
wrapper tells the three cases apart:

- a service answered and listed a vulnerability: exit 1, with the findings;
- a service answered and found none: exit 0;
- no service answered (a connection error, or every package skipped): exit 0 with a
  warning saying that nothing was audited.

Usage: ``python scripts/audit.py [requirements/lock.txt]`` (run by ``make test``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVICES = ("osv", "pypi")  # tried in this order; the first that answers decides
TIMEOUT_S = 300


@dataclass(frozen=True)
class Verdict:
    """What one pip-audit run says: exit status and a message; ``answered`` is False
    when the service could not be asked (try the next one)."""

    status: int
    message: str
    answered: bool


def judge(returncode: int, report: dict[str, object] | None, service: str) -> Verdict:
    """Read one pip-audit run (its exit status and JSON report, None if it wrote none)."""
    if report is None:
        return Verdict(0, f"{service}: advisory service unreachable", answered=False)
    deps = report.get("dependencies")
    deps = deps if isinstance(deps, list) else []
    vulnerable = [
        f"{d.get('name')}=={d.get('version')}: "
        + ", ".join(str(v.get("id")) for v in d.get("vulns", []))
        for d in deps
        if isinstance(d, dict) and d.get("vulns")
    ]
    if vulnerable:
        return Verdict(
            1, f"{service}: known vulnerabilities:\n  " + "\n  ".join(vulnerable), answered=True
        )
    audited = [d for d in deps if isinstance(d, dict) and "skip_reason" not in d]
    if deps and not audited:
        return Verdict(
            0, f"{service}: no package could be looked up ({len(deps)} skipped)", answered=False
        )
    if returncode != 0:
        return Verdict(0, f"{service}: pip-audit failed (exit {returncode})", answered=False)
    return Verdict(
        0, f"{service}: no known vulnerabilities in {len(audited)} packages", answered=True
    )


def run(requirements: Path, service: str) -> Verdict:
    """One pip-audit run over a fully pinned requirements file, against one service."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        try:
            done = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
                [
                    sys.executable,
                    "-m",
                    "pip_audit",
                    "--requirement",
                    str(requirements),
                    "--no-deps",  # the lock is complete: every package is pinned
                    "--disable-pip",
                    "--progress-spinner",
                    "off",
                    "--vulnerability-service",
                    service,
                    "--format",
                    "json",
                    "--output",
                    str(out),
                ],
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Verdict(0, f"{service}: advisory service timed out", answered=False)
        report = json.loads(out.read_text()) if out.is_file() and out.stat().st_size else None
        return judge(done.returncode, report, service)


def main(argv: list[str]) -> int:
    requirements = Path(argv[1] if len(argv) > 1 else "requirements/lock.txt")
    notes: list[str] = []
    for service in SERVICES:
        verdict = run(requirements, service)
        if verdict.answered:
            print(f"audit: {verdict.message}", file=sys.stderr if verdict.status else sys.stdout)
            return verdict.status
        notes.append(verdict.message)
    print(
        "audit: WARNING: dependencies NOT audited, no advisory service reachable ("
        + "; ".join(notes)
        + ")",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
