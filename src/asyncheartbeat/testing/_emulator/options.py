"""The emulator's options, written once: `LocalDataPipeline`'s arguments (and
`EmulatorProcess`'s, a test holds their signatures to this), the argv `EmulatorProcess`
gives its child, and the options of ``asyncheartbeat emulator`` with their defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from asyncheartbeat._arguments import port, positive_seconds
from asyncheartbeat.testing._limits import (
    DOCUMENTED_BURST,
    RateLimit,
    RateLimits,
    check_operations,
    documented_rate_limits,
    resolve_rate_limits,
)
from asyncheartbeat.testing._service import Timeouts


def _rate_limit(text: str) -> tuple[str, RateLimit]:
    """``OPERATION=RATE[/BURST]`` as ``(operation, RateLimit(rate, burst))``."""
    operation, equals, limit = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"{text!r} is not OPERATION=RATE[/BURST]")
    try:
        check_operations([operation])
    except ValueError as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None
    rate_text, slash, burst_text = limit.partition("/")
    try:
        rate = float(rate_text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{rate_text!r} is not a number of calls per second in {text!r}"
        ) from None
    try:
        burst = int(burst_text) if slash else DOCUMENTED_BURST
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{burst_text!r} is not a whole number of calls (the burst) in {text!r}"
        ) from None
    try:
        rate_limit = RateLimit(rate, burst)
    except ValueError as problem:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}") from None
    return operation, rate_limit


def _option(default: Any, help: str, parse: Any = None, metavar: str | None = None) -> Any:
    """A field of `Options`: its default, and how the command line reads it."""
    return dataclasses.field(
        default=default, metadata={"help": help, "parse": parse, "metavar": metavar}
    )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """The local Data Pipeline's options; each is described on `LocalDataPipeline`.

    Raises:
        ValueError: A duration that is not finite and above 0, or a rate limit for an
            unknown operation.
        TypeError: A duration that is not a number, or ``rate_limits`` is none of its forms.
    """

    host: str = _option("127.0.0.1", "address to listen on", str)
    port: int = _option(0, "port (default: a free one)", port)
    ack_timeout: float = _option(
        Timeouts.ack,
        "hand a task out again if not acknowledged within this",
        positive_seconds,
        "SECONDS",
    )
    report_timeout: float = _option(
        Timeouts.report, "make a new attempt of a task not reported on for this long",
        positive_seconds, "SECONDS",
    )  # fmt: skip
    poll_timeout: float = _option(
        Timeouts.poll, "longest PollForTask wait", positive_seconds, "SECONDS"
    )
    seed: int | None = _option(None, "seed for faults injected by probability", int)
    record_calls: bool = _option(True, "do not keep every call in memory (for long load runs)")
    rate_limits: RateLimits = _option(  # noqa: RUF009 - a field, its default None
        None, "answer ThrottlingException beyond the service's documented call limits"
    )
    log_requests: bool = _option(
        False, "log one line per request to standard error: operation, status, latency, task id"
    )

    def __post_init__(self) -> None:
        self.timeouts()
        resolve_rate_limits(self.rate_limits)

    def timeouts(self) -> Timeouts:
        """The service's durations."""
        return Timeouts(self.ack_timeout, self.report_timeout, self.poll_timeout)

    def keywords(self) -> dict[str, Any]:
        """The options as keyword arguments of `LocalDataPipeline`."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def argv(self) -> list[str]:
        """The options of ``asyncheartbeat emulator`` that say the same."""
        argv: list[str] = []
        for field in dataclasses.fields(self):
            value, flag = getattr(self, field.name), _flag(field.name)
            if field.name == "rate_limits":
                argv += _rate_limits_argv(value)
            elif isinstance(value, bool):
                if value != field.default:
                    argv.append(flag if value else f"--no-{flag[2:]}")
            elif value is not None:
                # repr() of a float reads back as the same float.
                argv += [flag, repr(value) if isinstance(value, float) else str(value)]
        return argv

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add an option for each field to the ``emulator`` command's parser."""
        for field in dataclasses.fields(Options):
            help_text, default = field.metadata["help"], field.default
            if field.name == "rate_limits":
                parser.add_argument("--rate-limits", action="store_true", help=help_text)
                parser.add_argument(
                    "--rate-limit", type=_rate_limit, action="append", default=[],
                    metavar="OPERATION=RATE[/BURST]",
                    help="limit OPERATION to RATE calls a second after a burst of BURST "
                    f"(default: {DOCUMENTED_BURST}); with --rate-limits, instead of its "
                    "documented limit (repeatable)",
                )  # fmt: skip
            elif isinstance(default, bool):
                flag = _flag(field.name) if not default else f"--no-{_flag(field.name)[2:]}"
                parser.add_argument(
                    flag, dest=field.name, action="store_false" if default else "store_true",
                    help=help_text,
                )  # fmt: skip
            else:
                if isinstance(default, int | float) and not isinstance(default, bool) and default:
                    help_text += f" (default: {default:g})"
                parser.add_argument(
                    _flag(field.name), type=field.metadata["parse"], default=default,
                    metavar=field.metadata["metavar"], help=help_text,
                )  # fmt: skip

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        """The options a parsed ``emulator`` command line gives."""
        names = [field.name for field in dataclasses.fields(cls) if field.name != "rate_limits"]
        return cls(**{name: getattr(args, name) for name in names}, rate_limits=rate_limits(args))


def rate_limits(args: argparse.Namespace) -> bool | dict[str, RateLimit]:
    """``rate_limits`` for the emulator: the documented limits (``--rate-limits``) and
    those given one by one (``--rate-limit``), which take precedence."""
    if not args.rate_limit:
        return bool(args.rate_limits)
    limits = documented_rate_limits() if args.rate_limits else {}
    return limits | dict(args.rate_limit)


def _rate_limits_argv(rate_limits: RateLimits) -> list[str]:
    if rate_limits is True:
        return ["--rate-limits"]
    argv: list[str] = []
    for operation, limit in resolve_rate_limits(rate_limits).items():
        argv += ["--rate-limit", f"{operation}={limit.rate!r}/{limit.burst}"]
    return argv


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


_DEFAULT = Options()


class Configured:
    """The constructor of `LocalDataPipeline` and `EmulatorProcess`: `Options`' fields as
    keyword arguments (a test holds the two to each other), for readers and type checkers.
    Each is described on `LocalDataPipeline`."""

    def __init__(
        self,
        *,
        host: str = _DEFAULT.host,
        port: int = _DEFAULT.port,
        ack_timeout: float = _DEFAULT.ack_timeout,
        report_timeout: float = _DEFAULT.report_timeout,
        poll_timeout: float = _DEFAULT.poll_timeout,
        seed: int | None = _DEFAULT.seed,
        record_calls: bool = _DEFAULT.record_calls,
        rate_limits: RateLimits = _DEFAULT.rate_limits,
        log_requests: bool = _DEFAULT.log_requests,
    ) -> None:
        self._configure(
            Options(
                host=host, port=port, ack_timeout=ack_timeout, report_timeout=report_timeout,
                poll_timeout=poll_timeout, seed=seed, record_calls=record_calls,
                rate_limits=rate_limits, log_requests=log_requests,
            )
        )  # fmt: skip

    def _configure(self, options: Options) -> None:
        raise NotImplementedError
