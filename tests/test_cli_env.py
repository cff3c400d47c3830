"""Every flag of every command reads its JOBLEDGER_* variable (services/cli/env.py), checked
from the parser itself: each command's each flag, its variable set alone, parses to what
the flag gives on the command line. A new flag is covered without a line here."""

from __future__ import annotations

import argparse
import os

import pytest

from jobledger.services.cli.env import RULE, EnvParser, leaf_parsers, long_name, variable_of
from jobledger.services.cli.main import build_parser, main

# Values for flags whose type accepts only some strings; every other flag gets a sample of
# its type (int, float, Path, str) or of its choices.
SAMPLES = {"--broker": "kafka://k1:9092", "--projection-host": "faust", "--wait-timeout": "2.5",
           "--schedule-at": "2026-12-24T18:00:00+00:00", "--since": "2026-12-24T18:00:00+00:00",
           "--max-payload-depth": "7", "--min-schedule-interval": "2.5",
           "--ws-max-message-bytes": "4096", "--max-body-bytes": "4096",
           "--allowed-hosts": "jobs.example.com,10.0.0.5",
           "--cors-origin": "https://app.example.com,http://localhost:3000",
           "--from": "2026-12-24T18:00:00+00:00", "--to": "2026-12-24T19:00:00+00:00",
           "--retain-finished": "30d", "--log-retention": "90d"}


@pytest.fixture(autouse=True)
def _no_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("JOBLEDGER_"):
            monkeypatch.delenv(name)


def _commands(root: argparse.ArgumentParser) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Each runnable command by its words: ("serve",), ("schedules", "add"), ..."""
    return {tuple(p.prog.split()[1:]): p for p in leaf_parsers(root)}


def _sample(action: argparse.Action) -> str:
    flag = long_name(action)
    if flag in SAMPLES:
        return SAMPLES[flag]
    if action.choices:
        return next(str(c) for c in action.choices if c != action.default)
    if action.type is int:
        return "7"
    if action.type is float:
        return "2.5"
    return f"/tmp/sample{flag}"  # str, Path: any text


def _minimal(parser: argparse.ArgumentParser, tested: argparse.Action) -> list[str]:
    """The fewest arguments that parse: positionals, required flags, one flag of each
    required exclusive group (of those, none that excludes the flag tested)."""
    argv = [str(next(iter(a.choices))) if a.choices else f"sample-{a.dest}"
            for a in parser._actions if not a.option_strings]
    for action in parser._actions:
        if action.required and action.option_strings and action is not tested:
            argv += [long_name(action) or "", _sample(action)]
    for group in parser._mutually_exclusive_groups:
        if group.required and tested not in group._group_actions:
            first = group._group_actions[0]
            argv += [long_name(first) or ""] + ([] if first.nargs == 0 else [_sample(first)])
    return argv


def _required(parser: argparse.ArgumentParser, action: argparse.Action) -> bool:
    return action.required or any(
        g.required and action in g._group_actions for g in parser._mutually_exclusive_groups)


def _cases() -> list[tuple[tuple[str, ...], str, str, list[str]]]:
    """(command, flag, variable's value, the same given as arguments) for every flag."""
    cases = []
    for words, parser in _commands(build_parser()).items():
        for action in parser._actions:
            flag = long_name(action)
            if flag is None:
                continue
            if isinstance(action, argparse.BooleanOptionalAction):  # the way off its default
                on = not action.default
                given = [flag] if on else [f"--no-{flag[2:]}"]
                cases.append((words, flag, "1" if on else "0", given))
            elif action.nargs == 0:
                cases.append((words, flag, "1", [flag]))
            else:
                cases.append((words, flag, _sample(action), [flag, _sample(action)]))
    return cases


CASES = _cases()


def test_the_walk_covers_every_command_and_the_flags_the_readme_names() -> None:
    commands = {" ".join(words) for words, *_ in CASES}
    assert {"serve", "submit", "status", "replay", "schema", "worker", "api",
            "schedules add", "schedules trigger"} <= commands  # fmt: skip
    assert (("serve",), "--demo", "1", ["--demo"]) in CASES  # ignored before (issue 15)
    assert len(CASES) > 100


@pytest.mark.parametrize(("words", "flag", "text", "given"), CASES,
                         ids=[f"{' '.join(c[0])} {c[1]}={c[2]}" for c in CASES])
def test_every_flag_of_every_command_reads_its_variable(
    words: tuple[str, ...], flag: str, text: str, given: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = build_parser()  # one parser for every parse: a variable leaves no trace in it
    parser = _commands(root)[words]
    action = next(a for a in parser._actions if long_name(a) == flag)
    base = [*words, *_minimal(parser, action)]
    expected = getattr(root.parse_args([*base, *given]), action.dest)
    if not _required(parser, action):  # else nothing parses without the flag or its variable
        default = getattr(root.parse_args(base), action.dest)
        assert expected != default, f"the sample for {flag} is its default: add one to SAMPLES"
    monkeypatch.setenv(variable_of(action) or "", text)
    assert getattr(root.parse_args(base), action.dest) == expected
    monkeypatch.delenv(variable_of(action) or "")
    if not _required(parser, action):
        assert getattr(root.parse_args(base), action.dest) == default


def test_the_variable_is_named_by_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {variable_of(a) for p in _commands(build_parser()).values() for a in p._actions}
    assert {"JOBLEDGER_LEASE_SECONDS", "JOBLEDGER_MAX_PROJECTION_LAG_MS", "JOBLEDGER_DEMO",
            "JOBLEDGER_IDEMPOTENCE", "JOBLEDGER_SERVER", "JOBLEDGER_DEBUG"} <= names
    monkeypatch.setenv("JOBLEDGER_DELAY", "5")  # --delay keeps its value in delay_seconds
    assert build_parser().parse_args(["submit", "echo"]).delay_seconds == 5.0


def test_the_command_line_wins_and_an_empty_variable_is_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBLEDGER_PORT", "9000")
    monkeypatch.setenv("JOBLEDGER_DEMO", "1")
    args = build_parser().parse_args(["serve", "--port", "8080"])
    assert (args.port, args.demo) == (8080, True)
    monkeypatch.setenv("JOBLEDGER_PORT", "")
    assert build_parser().parse_args(["serve"]).port == 8080
    monkeypatch.setenv("JOBLEDGER_BROKER", "kafka://k1:9092")  # --broker is required
    assert build_parser().parse_args(["worker"]).broker == "kafka://k1:9092"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("JOBLEDGER_PORT", "eighty", "JOBLEDGER_PORT (the variable of --port): invalid int value: "
     "'eighty'"),
    ("JOBLEDGER_DEMO", "maybe", "JOBLEDGER_DEMO (the variable of --demo): give one of 1, true"),
    ("JOBLEDGER_LOG_LEVEL", "loud", "JOBLEDGER_LOG_LEVEL (the variable of --log-level): "
     "invalid choice: 'loud'"),
])  # fmt: skip
def test_a_bad_value_is_one_line_naming_the_variable(
    name: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        main(["serve"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err.splitlines()[-1] and "Traceback" not in err
    assert main(["schema"]) == 0  # a command without --port does not read it


def test_exclusive_flags_a_given_one_wins_two_variables_are_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    add = ["schedules", "add", "s1", "echo"]
    monkeypatch.setenv("JOBLEDGER_CRON", "0 * * * *")
    args = build_parser().parse_args(add)  # the variable satisfies the required group
    assert (args.cron, args.every) == ("0 * * * *", None)
    args = build_parser().parse_args([*add, "--every", "5m"])
    assert (args.cron, args.every) == (None, "5m")
    monkeypatch.setenv("JOBLEDGER_EVERY", "5m")
    with pytest.raises(SystemExit):
        build_parser().parse_args(add)
    assert "JOBLEDGER_CRON and JOBLEDGER_EVERY exclude each other" in capsys.readouterr().err


def test_help_says_the_rule_once_and_no_flag_repeats_it(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["serve", "--help"], ["worker", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = " ".join(capsys.readouterr().out.split())
        assert " ".join(RULE.split()) in out
        assert out.count("JOBLEDGER_") == RULE.count("JOBLEDGER_"), argv


def test_exclusive_flags_keep_argparse_s_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """A default a marker stood in for comes back as argparse gives it: a string through the
    flag's type, SUPPRESS as no attribute."""
    parser = EnvParser(prog="jobledger")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--every", type=int, default="5")
    group.add_argument("--cron", default=argparse.SUPPRESS)
    monkeypatch.setenv("JOBLEDGER_EVERY", "7")
    assert vars(parser.parse_args([])) == {"every": 7}
    assert vars(parser.parse_args(["--cron", "x"])) == {"every": 5, "cron": "x"}
