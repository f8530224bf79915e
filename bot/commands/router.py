"""The ``/patch`` subcommand router: one listener, many subcommands, one usage text."""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.blocks.common import escape
from bot.deps import Deps
from bot.errors import UsageError


@dataclass(frozen=True)
class CommandContext:
    """What a subcommand handler gets: who, where, the parsed arguments, and how to answer."""

    deps: Deps
    user: str
    channel: str
    args: tuple[str, ...]
    rest: str  # the raw text after the subcommand, for free-text arguments (reasons)
    trigger_id: str
    respond: Callable[..., Awaitable[Any]]


Handler = Callable[[CommandContext], Awaitable[None]]


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str
    summary: str
    handler: Handler


@dataclass
class Router:
    subcommands: dict[str, Subcommand] = field(default_factory=dict)

    def add(self, name: str, *, usage: str, summary: str) -> Callable[[Handler], Handler]:
        """Decorator registering a handler for ``/patch <name> ...``."""

        def deco(handler: Handler) -> Handler:
            self.subcommands[name] = Subcommand(name, usage, summary, handler)
            return handler

        return deco

    def usage(self) -> str:
        """All subcommands, one line each."""
        lines = [f"`{s.usage}` — {s.summary}" for s in self.subcommands.values()]
        return "*Usage*\n" + "\n".join(lines)

    def resolve(self, text: str) -> tuple[Subcommand, tuple[str, ...], str]:
        """Split ``text`` into subcommand, arguments and the raw rest; UsageError for anything unknown."""
        stripped = text.strip()
        if not stripped:
            return self.subcommands["help"], (), ""
        name, _, rest = stripped.partition(" ")
        sub = self.subcommands.get(name.lower())
        if sub is None:
            raise UsageError(
                f"unknown subcommand {name!r}",
                user_message=f"`{name[:40]}` is not a /patch command.\n{self.usage()}",
            )
        try:
            args = tuple(shlex.split(rest))
        except ValueError:
            args = tuple(rest.split())
        return sub, args, rest.strip()


def usage_error(sub: Subcommand, problem: str) -> UsageError:
    """A UsageError for ``sub`` whose message says what was wrong and shows its usage."""
    return UsageError(problem, user_message=f"{problem}\nUsage: `{sub.usage}`")


def known_systems(ctx: CommandContext, sub: Subcommand, *, args: tuple[str, ...] | None = None) -> list[str]:
    """The optional ``[SYSTEM]`` argument of ``sub`` (``args``, default all arguments): a configured system, or
    a UsageError listing the known ones."""
    args = ctx.args if args is None else args
    systems = ctx.deps.config.systems
    if len(args) > 1 or any(arg not in systems for arg in args):
        known = ", ".join(f"`{s}`" for s in sorted(systems))
        problem = f"`{escape(' '.join(args)[:60])}` is not a known system. Known systems: {known}."
        raise usage_error(sub, problem)
    return list(args)


def out_of_date(value: object) -> UsageError:
    """The error for a button or form value that does not parse: an old message, or a forged click."""
    return UsageError(f"bad button value {str(value)[:80]!r}", user_message="This button is out of date.")


def button_id(value: object) -> int:
    """A button value that is one id (ids only, never state)."""
    try:
        return int(str(value))
    except ValueError as exc:
        raise out_of_date(value) from exc
