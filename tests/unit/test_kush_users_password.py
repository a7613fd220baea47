"""Where ``kush users create`` takes the new password from."""

from __future__ import annotations

import io

import pytest

from kush.users import UserCommandError, obtain_password


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _never(_prompt: str) -> str:
    raise AssertionError("prompted")


def test_password_from_stdin_drops_one_trailing_newline() -> None:
    stdin = io.StringIO("  spaced out secret  \n")
    assert obtain_password(from_stdin=True, stdin=stdin, ask=_never) == (
        "  spaced out secret  ",
        False,
    )
    assert obtain_password(from_stdin=True, stdin=io.StringIO("pw\r\n"), ask=_never)[0] == "pw"


def test_terminal_asks_twice() -> None:
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return "correct horse battery staple"

    assert obtain_password(from_stdin=False, stdin=Terminal(), ask=ask) == (
        "correct horse battery staple",
        False,
    )
    assert prompts == ["Password: ", "Repeat password: "]


def test_terminal_refuses_two_different_passwords() -> None:
    answers = iter(["first password here", "second password here"])
    with pytest.raises(UserCommandError, match="differ"):
        obtain_password(from_stdin=False, stdin=Terminal(), ask=lambda _p: next(answers))


def test_no_terminal_generates_a_strong_password() -> None:
    first, generated = obtain_password(from_stdin=False, stdin=io.StringIO(""), ask=_never)
    second, _ = obtain_password(from_stdin=False, stdin=io.StringIO(""), ask=_never)
    assert generated
    assert len(first) >= 24
    assert first != second
