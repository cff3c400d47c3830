"""Every flag of every command reads an environment variable: JOBLEDGER_ and the flag's long
name in capitals, with - as _ (--lease-seconds: JOBLEDGER_LEASE_SECONDS). The command line
wins over the variable, the variable over the built-in default.

`EnvParser` does it for every option of every (sub)parser made from it (argparse makes
subparsers of their parent's class), so a new flag gets its variable with nothing to
declare. A variable is read, converted and checked as the flag's value would be (type,
choices), when its command is parsed and not before: a bad JOBLEDGER_PORT stops the
commands that have --port, with a line naming the variable, and no other. An empty variable
counts as unset. A flag without a value (--demo) takes a truth value: 1, true, yes, on or
0, false, no, off. Of flags that exclude each other (`schedules add --cron/--every/...`),
one given on the command line wins over the variables of the others, and the variables
of two of them are an error.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

PREFIX = "JOBLEDGER_"
RULE = (
    "Every flag can also be set by an environment variable: JOBLEDGER_ and the flag's name "
    "in capitals, - as _ (--lease-seconds 10: JOBLEDGER_LEASE_SECONDS=10; --demo: "
    "JOBLEDGER_DEMO=1). A flag on the command line wins over its variable."
)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def long_name(action: argparse.Action) -> str | None:
    """An option's first --name; None for positionals and for --help."""
    if isinstance(action, argparse._HelpAction | argparse._VersionAction):
        return None
    return next((o for o in action.option_strings if o.startswith("--")), None)


def variable_of(action: argparse.Action) -> str | None:
    """The option's variable: --lease-seconds -> JOBLEDGER_LEASE_SECONDS."""
    flag = long_name(action)
    return PREFIX + flag[2:].upper().replace("-", "_") if flag else None


def leaf_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parsers of the commands that run something (`serve`, `schedules add`, ...)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield parser
    for sub in subs:
        for child in dict.fromkeys(sub.choices.values()):  # aliases repeat a parser
            yield from leaf_parsers(child)


def truth(text: str) -> bool:
    """1, true, yes, on -> True; 0, false, no, off -> False (any case); ValueError else."""
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ValueError(f"give one of {', '.join(_TRUE)} or {', '.join(_FALSE)}, got {text!r}")


class _Unset:
    """Stands in for a default while parsing: still there afterwards, the flag was not given."""


class EnvParser(argparse.ArgumentParser):
    """An ArgumentParser whose options default to their JOBLEDGER_* variables."""

    def parse_known_args(  # type: ignore[override]  # one of its two overloads
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        from_env = self._variables()
        markers = {action: _Unset() for action in self._stand_ins(from_env)}
        with self._standing_in(markers):
            parsed, rest = super().parse_known_args(args, namespace)
        given = {a for a, marker in markers.items() if getattr(parsed, a.dest) is not marker}
        for action, marker in markers.items():
            if getattr(parsed, action.dest) is not marker:
                continue
            value = self._value(action, from_env, given)
            if value is argparse.SUPPRESS:  # as argparse does: no attribute at all
                delattr(parsed, action.dest)
            else:
                setattr(parsed, action.dest, value)
        return parsed, rest

    def _variables(self) -> dict[argparse.Action, Any]:
        """This command's options whose variable is set, with the value it gives."""
        found = {}
        for action in self._actions:
            name = variable_of(action)
            text = os.environ.get(name) if name else None
            if name and text:
                found[action] = self._convert(action, name, text)
        return found

    def _convert(self, action: argparse.Action, name: str, text: str) -> Any:
        where = f"{name} (the variable of {long_name(action)})"
        try:
            if isinstance(action, argparse.BooleanOptionalAction):
                return truth(text)
            if action.nargs == 0:  # store_true, store_false, store_const
                return action.const if truth(text) else action.default
            parts = [text] if action.nargs in (None, "?") else shlex.split(text)
            return self._get_values(action, parts)
        except argparse.ArgumentError as error:
            self.error(f"{where}: {error.message}")
        except ValueError as error:
            self.error(f"{where}: {error}")

    def _stand_ins(self, from_env: dict[argparse.Action, Any]) -> list[argparse.Action]:
        """The options whose default a marker stands in for: those with a variable and, so
        that a given one can be told apart, every option of their exclusive groups."""
        actions = list(from_env)
        for group in self._mutually_exclusive_groups:
            if any(a in from_env for a in group._group_actions):
                actions += [a for a in group._group_actions if a not in from_env]
        return actions

    @contextmanager
    def _standing_in(self, markers: dict[argparse.Action, _Unset]) -> Iterator[None]:
        """Markers for defaults, and nothing required that a variable gives, while parsing."""
        saved = [(a, a.default, a.required) for a in markers]
        groups = [(g, g.required) for g in self._mutually_exclusive_groups
                  if any(a in markers for a in g._group_actions)]  # fmt: skip
        try:
            for action, marker in markers.items():
                action.default, action.required = marker, False
            for group, _ in groups:
                group.required = False
            yield
        finally:
            for action, default, required in saved:
                action.default, action.required = default, required
            for group, required in groups:
                group.required = required

    def _value(self, action: argparse.Action, from_env: dict[argparse.Action, Any],
               given: set[argparse.Action]) -> Any:  # fmt: skip
        """A flag not given: its variable's value, unless an exclusive flag was given."""
        mates = [g._group_actions for g in self._mutually_exclusive_groups
                 if action in g._group_actions]  # fmt: skip
        group = mates[0] if mates else [action]
        if action not in from_env or any(a in given for a in group):
            default = action.default  # converted by its type when a string, as argparse does
            if isinstance(default, str) and default != argparse.SUPPRESS:
                return self._get_value(action, default)
            return default
        named = [variable_of(a) for a in group if a in from_env]
        if len(named) > 1:
            self.error(f"{' and '.join(map(str, named))} exclude each other: set one of them")
        return from_env[action]
