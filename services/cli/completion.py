"""`jobledger completion bash|zsh|fish`: a shell's completion script, made from the CLI's
own parser, so it names every command, flag and choice there is.

The scripts are static: a TAB costs the shell nothing, and jobledger never runs to complete
a word. bash and zsh scripts come from shtab; shtab has no fish, so fish's is written here
from the same parser. (argcomplete, the other maintained option, covers fish too, but runs
`jobledger` on every TAB: half a second of imports on the benchmark machine.) The price of
static scripts: write them again after upgrading jobledger (docs/api.md, "Shell
completion").
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

SHELLS = ("bash", "zsh", "fish")


def add_parsers(sub: Any) -> None:
    completion = sub.add_parser(
        "completion", help="print the shell completion script of bash, zsh or fish",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print the completion script of a shell for every jobledger command and "
        "flag. Install it once (again after upgrading jobledger):\n\n"
        "  jobledger completion bash > ~/.local/share/bash-completion/completions/jobledger\n"
        "  jobledger completion zsh > ~/.zfunc/_jobledger     # with fpath+=(~/.zfunc) in "
        "~/.zshrc, before compinit\n"
        "  jobledger completion fish > ~/.config/fish/completions/jobledger.fish")
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(run=completion_command)


def completion_command(args: argparse.Namespace) -> int:
    from jobledger.services.cli.main import build_parser

    print(script(build_parser(), args.shell))
    return 0


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    if shell == "fish":
        return "\n".join(fish_lines(parser))
    import shtab

    return shtab.complete(parser, shell=shell)


def fish_lines(parser: argparse.ArgumentParser) -> Iterator[str]:
    """`complete` commands of fish for every command, subcommand and flag."""
    prog = parser.prog
    yield f"# fish completion for {prog}: written by `{prog} completion fish`"
    yield f"complete -c {prog} -f"  # no file names unless a flag takes a path
    yield from _fish_level(prog, parser, [])


def _fish_level(prog: str, parser: argparse.ArgumentParser, path: list[str]) -> Iterator[str]:
    commands = _subcommands(parser)
    here = _condition(path, list(commands))
    for name, (child, text) in commands.items():
        yield f"complete -c {prog} -n {_quote(here)} -a {name} -d {_quote(text)}"
        yield from _fish_level(prog, child, [*path, name])
    if commands:
        return
    for action in parser._actions:
        if action.option_strings:
            yield f"complete -c {prog} -n {_quote(here)} {_fish_option(action)}"
        elif action.choices:
            words = " ".join(map(str, action.choices))
            yield f"complete -c {prog} -n {_quote(here)} -a {_quote(words)}"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser,
                                                                     str]]:
    helps: dict[str, str] = {}
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
            helps.update({a.dest: a.help or "" for a in action._choices_actions})
    return {name: (child, helps.get(name, "")) for name, child in found.items()}


def _condition(path: list[str], commands: list[str]) -> str:
    """Where a word applies: after the words of `path`, before any of `commands`."""
    seen = [f"__fish_seen_subcommand_from {word}" for word in path] or ["__fish_use_subcommand"]
    if path and commands:
        seen.append(f"not __fish_seen_subcommand_from {' '.join(commands)}")
    return "; and ".join(seen)


def _fish_option(action: argparse.Action) -> str:
    parts = []
    for option in action.option_strings:
        parts.append(f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}")
    if action.help and action.help != argparse.SUPPRESS:
        parts.append(f"-d {_quote(action.help)}")
    if action.nargs != 0:  # a value follows: -x offers none but the choices, -r -F files
        if action.choices:
            parts.append(f"-x -a {_quote(' '.join(map(str, action.choices)))}")
        else:
            parts.append("-r -F" if _takes_a_path(action) else "-x")
    return " ".join(parts)


def _takes_a_path(action: argparse.Action) -> bool:
    words = f"{action.dest} {action.metavar or ''}".lower()
    return any(w in words for w in ("file", "db", "out", "live", "views", "path"))


def _quote(text: str) -> str:
    """A fish word in single quotes (where only \\ and ' are special)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
