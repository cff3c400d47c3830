"""`jobledger schedules list|add|show|pause|resume|remove|trigger`, through the REST API."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from jobledger.schemas.schedules import ScheduleView
from jobledger.services.cli.common import EXIT_CODES, client_of, flag_names, run_action
from jobledger.services.cli.output import json_text
from jobledger.services.cli.wait import add_wait_args, print_or_follow

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}

EPILOG = """examples:
  jobledger schedules add expire_servers expire_servers --cron "0 * * * *"
  jobledger schedules add reminders send_reminders --cron "0 8 * * *" --timezone Europe/Berlin
  jobledger schedules add emails send_emails --every 5m --payload '{"batch": 100}'
  jobledger schedules add launch launch --at "2026-12-24 18:00:00" --timezone America/New_York
  jobledger schedules add report build_report --manual
  jobledger schedules list
  jobledger schedules trigger report --wait

""" + EXIT_CODES


def add_parser(sub: Any, server_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the `schedules` command and its actions to the CLI's subparsers."""
    parser = sub.add_parser(
        "schedules", help="list, add, show, pause, resume, remove or trigger schedules",
        description="Recurring and one-off jobs on a running server: a schedule enqueues its "
        "task at each fire time of its trigger (cron, interval, date or manual).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    server_arg(actions.add_parser("list", help="a table of every schedule"))
    for action, text in (("show", "print one schedule as JSON"), ("pause", "stop its timed fires"),
                         ("resume", "fire again (the times passed while paused are not run)"),
                         ("remove", "remove it")):
        one = actions.add_parser(action, help=text)
        one.add_argument("schedule_id")
        server_arg(one)
    trigger = actions.add_parser("trigger", help="run its job now; prints the task id",
                                 epilog=EXIT_CODES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    trigger.add_argument("schedule_id")
    add_wait_args(trigger)
    server_arg(trigger)
    add = actions.add_parser(
        "add", help="define a schedule", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Define a schedule. Give one trigger: --cron, --every, --at or --manual.")
    _add_arguments(add)
    server_arg(add)
    # A refused field is reported as the flag the user typed, also where a flag becomes a
    # field of another name (--at 2026-12-24 is run_date, --every 5m is minutes).
    add.set_defaults(flags=flag_names(add, run_date="--at", expression="--cron",
                                      **dict.fromkeys(_UNITS.values(), "--every")))


def _add_arguments(add: argparse.ArgumentParser) -> None:
    add.add_argument("schedule_id", help="letters, digits and _ . : @ -")
    add.add_argument("task_type", help="the task type its jobs run")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR",
                      help='5 fields ("0 * * * *"), or 6 with seconds first ("0 0 9 * * *")')
    when.add_argument("--every", metavar="DURATION", help="an interval: 90s, 5m, 1h30m, 1d, 2w")
    when.add_argument("--at", metavar="TIME", help='once, at a time ("2026-12-24 18:00:00")')
    when.add_argument("--manual", action="store_true", help="only when triggered")
    add.add_argument("--name", help="a display name (default: the id)")
    add.add_argument("--timezone", help="an IANA name for the trigger (default UTC)")
    add.add_argument("--start-date", help="no fire before this time (cron, --every)")
    add.add_argument("--end-date", help="no fire after this time (cron, --every)")
    add.add_argument("--payload", default=None, help="the jobs' JSON payload (default null)")
    add.add_argument("--priority", type=int, help="0-255, higher first (default 128)")
    add.add_argument("--queue", help='queue name (default "default")')
    add.add_argument("--timeout", type=float, dest="timeout_seconds", help="seconds per attempt")
    add.add_argument("--max-retries", type=int, help="default: the handler's, else 3")
    add.add_argument("--misfire-policy", choices=("coalesce", "skip", "run_all"),
                     help="fire times missed by more than the grace time: run once "
                     "(coalesce, default), skip, or run all")
    add.add_argument("--misfire-grace-time", type=float, help="seconds (default 60)")
    add.add_argument("--max-instances", type=int,
                     help="unfinished jobs at which a fire is skipped (default 1)")
    add.add_argument("--jitter", type=float, help="run each job up to this many seconds late")


def parse_duration(text: str, flag: str = "--every") -> dict[str, float]:
    """'1h30m' -> {"hours": 1, "minutes": 30}; ValueError naming the flag and the text if
    it is not one."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{flag} {text!r} is not a duration like 90s, 5m, 1h30m, 1d, 2w")
    out: dict[str, float] = {}
    for number, unit in parts:
        out[_UNITS[unit]] = out.get(_UNITS[unit], 0) + float(number)
    return {k: (int(v) if k != "seconds" and v == int(v) else v) for k, v in out.items()}


def trigger_text(schedule: ScheduleView) -> str:
    """A trigger in a table cell: 'cron 0 * * * *', 'every 5m', 'at 2026-…', 'manual'."""
    trigger = dict(schedule.trigger)
    kind = trigger.pop("type")
    tz = f" ({schedule.timezone})" if schedule.timezone != "UTC" else ""
    if kind == "interval":
        every = "".join(f"{trigger[u]:g}{u[0]}" for u in ("weeks", "days", "hours", "minutes",
                                                          "seconds") if u in trigger)
        return f"every {every}{tz}"
    if kind == "cron":
        fields = trigger.get("expression") or " ".join(
            f"{k}={v}" for k, v in trigger.items() if k not in ("start_date", "end_date"))
        return f"cron {fields}{tz}"
    if kind == "date":
        return f"at {trigger['run_date']}{tz}"
    return "manual"


def run(args: argparse.Namespace) -> int:
    """Carry out the action; the exit code."""
    return run_action(_ACTIONS, args, getattr(args, "flags", None))


Coro = Callable[[], Coroutine[Any, Any, int | None]]


def _client_call(args: argparse.Namespace,
                 body: Callable[[Any], Coroutine[Any, Any, int | None]]) -> Coro:
    async def go() -> int | None:
        async with client_of(args) as client:
            return await body(client)

    return go


def _list(args: argparse.Namespace) -> Coro:
    async def body(client: Any) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"schedules on {args.server}")
        for column in ("id", "state", "trigger", "task type", "next run", "last run",
                       "last status", "running"):
            table.add_column(column)
        for s in await client.schedules():
            table.add_row(s.id, s.state, trigger_text(s), s.task_type, s.next_run_time or "-",
                          s.last_run_at or "-", s.last_status or "-",
                          "yes" if s.is_running else "")
        Console(width=200).print(table)

    return _client_call(args, body)


def _printing(
    call: Callable[[Any, str], Coroutine[Any, Any, Any]]
) -> Callable[[argparse.Namespace], Coro]:
    def action(args: argparse.Namespace) -> Coro:
        async def body(client: Any) -> None:
            print(json_text(await call(client, args.schedule_id)))
        return _client_call(args, body)
    return action


def _remove(args: argparse.Namespace) -> Coro:
    async def body(client: Any) -> None:
        await client.remove_schedule(args.schedule_id)
        print(f"removed {args.schedule_id}")
    return _client_call(args, body)


def _trigger(args: argparse.Namespace) -> Coro:
    async def body(client: Any) -> int | None:
        task_id = await client.trigger_schedule(args.schedule_id)
        return await print_or_follow(client, task_id, args)
    return _client_call(args, body)


def _add(args: argparse.Namespace) -> Coro:
    fields: dict[str, Any] = {}
    if args.cron:
        trigger, fields["expression"] = "cron", args.cron
    elif args.every:
        trigger = "interval"
        fields.update(parse_duration(args.every))
    elif args.at:
        trigger, fields["run_date"] = "date", args.at
    else:
        trigger = "manual"
    if args.payload is not None:
        try:
            fields["payload"] = json.loads(args.payload)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--payload is not JSON: {exc}") from None
    for name in ("name", "timezone", "start_date", "end_date", "priority", "queue",
                 "timeout_seconds", "max_retries", "misfire_policy", "misfire_grace_time",
                 "max_instances", "jitter"):
        fields[name] = getattr(args, name)

    async def body(client: Any) -> None:
        created = await client.add_schedule(args.schedule_id, args.task_type, trigger, **fields)
        print(json_text(created))

    return _client_call(args, body)


_ACTIONS: dict[str, Callable[[argparse.Namespace], Coro]] = {
    "list": _list,
    "add": _add,
    "show": _printing(lambda c, i: c.schedule(i)),
    "pause": _printing(lambda c, i: c.pause_schedule(i)),
    "resume": _printing(lambda c, i: c.resume_schedule(i)),
    "remove": _remove,
    "trigger": _trigger,
}
