"""Every command's --help at 80 columns: paragraphs flow (no line broken mid-sentence), no word
is cut in two ("erro r") nor cut short ("postgresql://USER…"), and each command shows examples
that call it."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import click
import pytest
import typer
from typer.testing import CliRunner

from coordinator.cli import app
from coordinator.cli._examples import EXAMPLES

WIDTH = 80
BOX = "╭╮╰╯│─"
# Words typer and click write themselves.
OWN_WORDS = {
    "usage", "options", "option", "arguments", "argument", "commands", "command", "show", "this",
    "message", "and", "exit", "default", "required", "env", "var", "examples", "int", "str",
    "path", "range", "float", "text", "accord", "help", "file", "directory",
}  # fmt: skip


def leaf_commands() -> Iterator[tuple[str, click.Command]]:
    root = typer.main.get_command(app)
    context = click.Context(root, info_name="accord")

    def walk(
        command: click.Command, path: list[str], ctx: click.Context
    ) -> Iterator[tuple[str, click.Command]]:
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                yield from walk(sub, [*path, name], click.Context(sub, parent=ctx, info_name=name))
        else:
            yield " ".join(path), command

    yield from walk(root, [], context)


COMMANDS = dict(leaf_commands())


def render(path: str) -> str:
    result = CliRunner().invoke(app, [*path.split(), "--help"], env={"COLUMNS": str(WIDTH), "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def source_words(command: click.Command) -> set[str]:
    texts: list[Any] = [command.help, *command.name.split()] if command.name else [command.help]
    for param in command.params:
        texts += [
            getattr(param, "help", ""),
            param.name,
            *param.opts,
            param.metavar,
            getattr(param, "envvar", ""),
        ]
        texts += [param.default if not callable(param.default) else ""]
        kind = getattr(param, "type", None)
        texts += [*getattr(kind, "choices", ()), getattr(kind, "name", "")]
    text = " ".join(str(t) for t in texts if t)
    return {w.lower() for w in re.findall(r"[A-Za-z]{2,}", text)}


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_help_at_80_columns_flows_and_breaks_no_word(path: str) -> None:
    text = render(path)
    lines = text.splitlines()
    assert all(len(line) <= WIDTH for line in lines), text
    # No word cut in two or cut short: every word printed is one of the help's own words.
    known = source_words(COMMANDS[path]) | OWN_WORDS | set(path.split())
    printed = re.sub(f"[{BOX}]", " ", text)
    strange = sorted({w for w in re.findall(r"[A-Za-z]{2,}", printed) if w.lower() not in known})
    assert not strange, f"words cut in two at {WIDTH} columns in `accord {path} --help`: {strange}\n{text}"
    assert "…" not in printed or "…" in (COMMANDS[path].help or ""), text
    # Prose paragraphs flow: a line ends early only where a sentence or paragraph does.
    prose = lines[: next((i for i, line in enumerate(lines) if line.startswith("╭")), len(lines))]
    for line, following in itertools.pairwise(prose):
        body, next_body = line.strip(), following.strip()
        if not body or not next_body or following.startswith("   "):  # examples are indented
            continue
        assert not (len(line.rstrip()) < WIDTH * 0.6 and next_body[0].islower()), (
            f"line broken mid-sentence in `accord {path} --help`:\n{line}\n{following}\n\n{text}"
        )


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_shows_examples_of_itself(path: str) -> None:
    text = render(path)
    assert "Examples:" in text, text
    examples = [line.strip() for line in text.splitlines() if line.strip().startswith("accord ")]
    assert examples and all(e.startswith(f"accord {path}") for e in examples), text


def test_the_examples_table_names_only_commands_that_exist() -> None:
    assert set(EXAMPLES) <= set(COMMANDS)
    assert all(len(line) <= WIDTH - 6 for lines in EXAMPLES.values() for line in lines)  # never wrapped
