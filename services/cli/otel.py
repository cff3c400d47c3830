"""`--otel`: OpenTelemetry traces and metrics of the serving commands (docs/observability.md)."""

from __future__ import annotations

import argparse

from jobledger.services.cli.common import UsageError
from jobledger.services.telemetry.setup import Telemetry, TelemetryError, install


def add_otel_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--otel", action="store_true",
        help="export OpenTelemetry traces and metrics over OTLP (http/protobuf, or grpc with "
        "OTEL_EXPORTER_OTLP_PROTOCOL=grpc) to OTEL_EXPORTER_OTLP_ENDPOINT (default "
        "localhost:4318); also on when that variable is set (default off)")


def telemetry_of(args: argparse.Namespace) -> Telemetry | None:
    """The process's telemetry as --otel and the OTEL_* variables ask; None when off."""
    try:
        return install(args.otel)
    except TelemetryError as error:
        raise UsageError(str(error)) from None
