"""The Typer apps of the ``accord`` command. Commands live in one module per area and attach
themselves to these apps, so areas can grow independently."""

from __future__ import annotations

import inspect
import re
from typing import Any

import typer
import typer.core


def _conventional_help() -> None:
    """Help as command lines conventionally write it, whatever typer's version.

    Since its 0.2x releases typer's rich help shows every option's type, flags included
    ("--json <bool>", reading as if the flag took a value: only its plain, non-rich help checks
    ``is_flag``), and wraps a required argument in braces on the usage line ("run [OPTIONS]
    {workflow}", reading as a set of choices). Here a flag shows no value and an argument shows
    as WORKFLOW (required) or [NAME] (optional). Each override is installed only where the
    typer in use has the method it replaces.
    """
    option, argument = typer.core.TyperOption, typer.core.TyperArgument
    if hasattr(option, "display_type_rich") and not hasattr(option, "_accord_flag_aware"):
        typed = option.display_type_rich

        def display_type_rich(self: Any, ctx: Any) -> str | None:
            if self.is_flag or self.count:
                return None
            return typed(self, ctx)

        setattr(option, "display_type_rich", display_type_rich)  # noqa: B010
        setattr(option, "_accord_flag_aware", True)  # noqa: B010
    if hasattr(argument, "display_type_rich"):
        typed_argument = argument.display_type_rich

        def argument_type(self: Any, ctx: Any) -> str | None:
            # FILES... <Path>, not FILES... <list[Path]>: the dots already say "one or more".
            text = typed_argument(self, ctx)
            return re.sub(r"^<list\[(.*)\]>$", r"<\1>", text) if text else text

        setattr(argument, "display_type_rich", argument_type)  # noqa: B010
    if hasattr(argument, "_usage_display_name"):

        def _usage_display_name(self: Any) -> str:
            name = self.metavar or str(self.name).upper()
            if not self.required:
                name = f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        setattr(argument, "_usage_display_name", _usage_display_name)  # noqa: B010

    # typer imports its rich help (rich and rich.markdown: ~0.15 s, paid by every command and
    # the coordinator's start) only to print help; so is the paragraph fix installed.
    for command in (typer.core.TyperCommand, typer.core.TyperGroup):
        if hasattr(command, "format_help") and not hasattr(command, "_accord_paragraphs"):
            setattr(command, "format_help", _with_paragraphs(command.format_help))  # noqa: B010
            setattr(command, "_accord_paragraphs", True)  # noqa: B010


def _with_paragraphs(format_help: Any) -> Any:
    def with_paragraphs(self: Any, ctx: Any, formatter: Any) -> Any:
        import typer.rich_utils as rich_utils

        if hasattr(rich_utils, "_fix_linebreaks") and not hasattr(rich_utils, "_accord_paragraphs"):
            setattr(rich_utils, "_fix_linebreaks", _paragraphs)  # noqa: B010
            if hasattr(rich_utils, "_make_command_help"):
                setattr(  # noqa: B010
                    rich_utils, "_make_command_help", _flowing_summary(rich_utils._make_command_help)
                )
            setattr(rich_utils, "_accord_paragraphs", True)  # noqa: B010
        return format_help(self, ctx, formatter)

    return with_paragraphs


def _flowing_summary(make_command_help: Any) -> Any:
    """A command's line in its group's list of commands (the first paragraph of its help)
    flowed to the terminal's width, as the command's own help shows it: typer 0.29 kept the
    source's line breaks there in rich mode, breaking the line mid-sentence."""

    def make(*, help_text: str, markup_mode: Any) -> Any:
        first, sep, rest = inspect.cleandoc(help_text).partition("\n\n")
        if not first.startswith("\b"):
            first = " ".join(line.strip() for line in first.splitlines())
        return make_command_help(help_text=first + sep + rest, markup_mode=markup_mode)

    return make


def _paragraphs(paragraphs: list[str], markup_mode: Any = None) -> str:
    """A docstring's paragraphs as help prints them: each one flowed to the terminal's width
    (typer 0.29 kept the source's line breaks, which broke lines mid-sentence at 80 columns),
    except a block whose every line is indented (examples), kept line for line."""
    out = []
    for paragraph in paragraphs:
        lines = paragraph.splitlines()
        if paragraph.startswith("\b") or all(line.startswith((" ", "\t")) for line in lines if line.strip()):
            out.append(paragraph.removeprefix("\b").strip("\n"))
        else:
            out.append(" ".join(line.strip() for line in lines))
    # typer dedents this text as a docstring (the first line aside): a blank first line keeps an
    # examples block that follows "Examples:" indented.
    return "\n" + "\n\n".join(out)


_conventional_help()


def command_name(info: Any) -> str:
    """The name a Typer command is called by (its own, or its function's, as Typer derives it)."""
    return str(info.name or info.callback.__name__.replace("_", "-"))


def add_examples(root: typer.Typer, examples: dict[str, list[str]], prefix: str = "") -> None:
    """Append an "Examples:" paragraph to the help of each command of ``root`` (and of its
    groups) that ``examples`` names and whose help has none yet."""
    import inspect

    for info in root.registered_commands:
        path = f"{prefix}{command_name(info)}"
        lines = examples.get(path)
        text = info.help or inspect.getdoc(info.callback) or ""
        if not lines or "Examples:" in text:
            continue
        info.help = text.rstrip() + "\n\nExamples:\n\n" + "\n".join(f"  {line}" for line in lines)
    for group in root.registered_groups:
        if group.typer_instance is not None and group.name:
            add_examples(group.typer_instance, examples, f"{prefix}{group.name} ")


app = typer.Typer(
    name="accord",
    help="Accord: cross-team workflows composed from versioned contracts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
contract_app = typer.Typer(
    help="Contracts: lint, diff, register, list, show, deprecate, consumers, retire.", no_args_is_help=True
)
workflow_app = typer.Typer(
    help="Workflows: check, validate, register, list, show, disable, enable, delete, rollback.",
    no_args_is_help=True,
)
team_app = typer.Typer(
    help="Teams and their tokens: create (admin); list (any team); rotate-token and token"
    " create|list|revoke (the team itself or the admin).",
    no_args_is_help=True,
)
token_app = typer.Typer(
    help="A team's named tokens: create, list, revoke. A team's token acts on its own team; the"
    " admin names one with --team.",
    no_args_is_help=True,
)
admin_app = typer.Typer(help="The platform's own token: rotate-token.", no_args_is_help=True)
runs_app = typer.Typer(
    help="Inspect and control runs: list, show, cancel, trace, approve, reject, signal, retry, rerun.",
    no_args_is_help=True,
)
schedule_app = typer.Typer(help="Workflow schedules: list, pause, resume, trigger.", no_args_is_help=True)
coordinator_app = typer.Typer(help="Run the coordinator.", no_args_is_help=True)
agent_app = typer.Typer(help="Run a team agent beside your engine.", no_args_is_help=True)
event_app = typer.Typer(help="Events: publish (starts triggered workflows), list.", no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"accord {version('accord')}")
        except PackageNotFoundError:  # running from a source tree that was never installed
            typer.echo("accord (not installed: run `make install`)")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version (accord X.Y.Z) and exit.",
    ),
) -> None:
    """Accord: cross-team workflows composed from versioned contracts."""


app.add_typer(contract_app, name="contract")
app.add_typer(workflow_app, name="workflow")
app.add_typer(team_app, name="team")
team_app.add_typer(token_app, name="token")
app.add_typer(admin_app, name="admin")
app.add_typer(runs_app, name="runs")
app.add_typer(schedule_app, name="schedule")
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(agent_app, name="agent")
app.add_typer(event_app, name="event")
