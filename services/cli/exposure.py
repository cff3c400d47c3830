"""The flags of what a serving command accepts from the network beyond credentials:
`--allowed-hosts`, `--cors-origin` and `--max-body-bytes` (docs/security.md)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobledger.services.security.exposure import ExposureSettings


def add_exposure_args(parser: argparse.ArgumentParser) -> None:
    from jobledger.services.security.exposure import (
        DEFAULT_MAX_BODY_BYTES,
        check_host,
        check_origin,
    )

    group = parser.add_argument_group("browsers and exposure")
    group.add_argument("--allowed-hosts", type=_listed(check_host), action="extend",
                       metavar="HOST[,HOST...]",
                       help="Host names the server answers; others get 400 HOST_NOT_ALLOWED "
                       "(default: the --host address and localhost, 127.0.0.1, ::1; with "
                       "--host 0.0.0.0 or ::, every name, with a warning; '*': every name)")
    group.add_argument("--cors-origin", type=_listed(check_origin), action="extend",
                       metavar="ORIGIN[,ORIGIN...]",
                       help="an origin (https://app.example.com) whose pages may call the "
                       "API from a browser; repeat or list with commas (default: none, "
                       "CORS off)")
    group.add_argument("--max-body-bytes", type=_body_bytes, default=DEFAULT_MAX_BODY_BYTES,
                       metavar="BYTES",
                       help="the largest request body; larger is refused with 413 "
                       f"PAYLOAD_TOO_LARGE before it is read (default {DEFAULT_MAX_BODY_BYTES})")


def exposure_settings(args: argparse.Namespace) -> ExposureSettings:
    from jobledger.services.security.exposure import ExposureSettings, allowed_hosts_of

    return ExposureSettings(allowed_hosts=allowed_hosts_of(args.allowed_hosts, args.host),
                            cors_origins=tuple(dict.fromkeys(args.cors_origin or ())),
                            max_body_bytes=args.max_body_bytes)


def exposure_notes(args: argparse.Namespace) -> list[str]:
    """The start-up lines about exposure: the warning of a wildcard bind that lists no
    hosts."""
    from jobledger.services.security.exposure import WILDCARD_WARNING, is_wildcard

    if is_wildcard(args.host) and not args.allowed_hosts:
        return [WILDCARD_WARNING.format(host=args.host)]
    return []


def _listed(check: Callable[[str], str]) -> Callable[[str], list[str]]:
    """An argparse type of a comma-separated list, each entry checked by `check`."""

    def entries(text: str) -> list[str]:
        try:
            return [check(part) for part in text.split(",") if part.strip()]
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return entries


def _body_bytes(text: str) -> int:
    from jobledger.services.security.exposure import MIN_BODY_BYTES

    if not text.isdigit() or int(text) < MIN_BODY_BYTES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bytes >= {MIN_BODY_BYTES}")
    return int(text)
