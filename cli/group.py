"""The `duo-ai` command group: rules that hold for every command, and the one way a command ends.

- An option that takes one value may be given once: `-n 2 --episodes 3` or `--split a --split b`
  is refused in one line (click would silently keep the last one).
- A path the operating system refuses as a name (a component over 255 bytes, a path through a
  file, a file system that cannot hold it) ends the command with one line naming the path, never a
  traceback: every command meets its paths first in the checks it makes before any work.
- A `DuoAIError` (a problem the user can fix) ends it with one line `error: ...` and the error's
  exit code (2 unless it says otherwise); Ctrl-C with `interrupted` (130) and SIGTERM, where a
  command turns it into `Terminated`, with `terminated` (143); any other exception is a bug: its
  traceback, then one line naming it and the log that holds it (`CRASH_LOG` in the context's
  `meta`), exit code 1. The codes are those of docs/errors.md.
"""

from __future__ import annotations

import errno
import traceback
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup, TyperOption
from typer.exceptions import TyperException

from duo_ai.core.errors import DuoAIError

err = Console(stderr=True)
# The context's `meta` key under which a command names the log a crash of it is also written to.
CRASH_LOG = "duo_ai.crash_log"

# OSErrors that say a given path cannot be used, whatever the command (a bug raises others).
PATH_ERRORS = {
    errno.ENAMETOOLONG: "a name in it is too long (file systems allow 255 bytes per name); choose a shorter one",
    errno.ENOTDIR: "a part of it is a file, not a folder; choose another path",
    errno.ELOOP: "it goes through a loop of symbolic links; choose another path",
    errno.EACCES: "permission denied; choose a path you may write to",
    errno.EPERM: "the operating system does not allow it; choose another path",
    errno.EROFS: "it is on a read-only file system; choose another path",
}


def fail(message: str, code: int = 2) -> None:
    """Print `error: message` on one line (the message taken literally, not as markup) and exit."""
    message = " ".join(str(message).split())
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def crashed(error: Exception, log: Path | None) -> None:
    """An unexpected exception (a bug): its traceback, then a one-line summary; exit code 1. An
    unusable path the user gave is not a bug: one line, exit code 2."""
    message = path_error(error) if isinstance(error, OSError) else None
    if message is not None:
        fail(message)
    traceback.print_exc()
    where = f"; the reason is also in {log}" if log is not None and log.is_file() else ""
    first = (str(error).strip().splitlines() or [""])[0]
    fail(f"crashed with {type(error).__name__}: {first} (a bug: the traceback is above{where})", code=1)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (a run saves last.ckpt) but ending with exit code 143 (128 + 15)."""


def sigterm_as_interrupt(signum: int, frame: object) -> None:
    """A SIGTERM handler (`signal.signal(signal.SIGTERM, sigterm_as_interrupt)`) for commands that stop cleanly."""
    raise Terminated


def path_error(error: OSError) -> str | None:
    """One line for an OSError about a path the user gave, or None when it is not one."""
    reason = PATH_ERRORS.get(error.errno)
    if reason is None or error.filename is None:
        return None
    name = str(error.filename)
    shown = name if len(name) <= 120 else f"{name[:60]}...{name[-40:]} ({len(name.encode())} bytes)"
    return f"cannot use the path {shown}: {reason}"


def repeated_option(command: Any, args: list[str]) -> str | None:
    """The first single-value option given twice in `args` (the command's own arguments), as a message."""
    options = {name: p for p in command.params if isinstance(p, TyperOption) for name in p.opts + p.secondary_opts}
    seen: dict[str, str] = {}
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            break
        if not token.startswith("-") or token == "-" or _is_number(token):
            continue
        name = token.split("=", 1)[0] if token.startswith("--") else token[:2]
        option = options.get(name)
        if option is None:
            continue
        given = token
        if not option.is_flag and not option.count and token == name:
            given = f"{token} {next(tokens, '')}"  # its value, which may itself start with "-"
        if option.multiple or option.count:
            continue
        if option.name in seen and not (option.is_flag and seen[option.name] == given):
            return f"{' / '.join(option.opts)} is given twice ({seen[option.name]} and {given}); give it once"
        seen[option.name] = given
    return None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


class DuoGroup(TyperGroup):
    """Typer's group with the rules of the module's docstring."""

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[Any, ...]:
        name, command, rest = super().resolve_command(ctx, args)
        problem = None if command is None else repeated_option(command, rest)
        if problem is not None:
            fail(problem)
        return name, command, rest

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DuoAIError as error:
            fail(str(error), getattr(error, "exit_code", 2))
        except KeyboardInterrupt as stop:
            terminated = isinstance(stop, Terminated)
            err.print("terminated" if terminated else "interrupted")
            raise typer.Exit(143 if terminated else 130) from None
        except (typer.Exit, typer.Abort, TyperException):  # the command line's own ends (usage, --help)
            raise
        except Exception as error:
            crashed(error, ctx.meta.get(CRASH_LOG))
