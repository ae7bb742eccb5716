"""The ``isolde`` command line (SPEC §5.1).

Exit codes: 0 success, 1 the instance failed, 2 invalid workflow, bad usage or
configuration.  Stdout carries only results (the output JSON, a variable's
bytes); logs and errors go to stderr, one line each, never a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ..errors import IsoldeError, ValidationError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--data-dir and --config, accepted by every command that touches data."""
    fn = click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config file (default: $ISOLDE_CONFIG, ./isolde.toml, [tool.isolde] in ./pyproject.toml).")(fn)
    fn = click.option("--data-dir", type=click.Path(file_okay=False), help="Data directory (default: $ISOLDE_DATA_DIR, the config's data_dir, the user data dir).")(fn)
    fn = click.option("--store", metavar="URL", expose_value=False, callback=_store_url, help="Variable store URL (postgresql://...): the config's [store] url for this command.")(fn)
    return fn


def log_format_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--log-format text|json (default: the config's [log] format, else text)."""
    return click.option("--log-format", type=click.Choice(["text", "json"]), default=None, callback=_log_format,
                        help="Lines on stderr as text (default) or one JSON object each (time, level, logger, "
                             "message, instance fields); default: [log] format.")(fn)


def _log_format(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        ctx.meta["isolde.log_format"] = value
    return value


def use_log_format(config: Any, given: str | None) -> str:
    """The log format of this command: ``--log-format``, else ``[log] format``, else text;
    remembered so that errors are written in it too."""
    fmt = given or str(config.data.get("log", {}).get("format", "text"))
    click.get_current_context().meta["isolde.log_format"] = fmt
    return fmt


def say(text: str, *, level: str = "error", message: str | None = None, **fields: Any) -> None:
    """One line on stderr: ``text``, or with --log-format json an object with ``message``
    (default: ``text`` without its ``isolde: LEVEL:`` prefix) and ``fields``."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.meta.get("isolde.log_format") != "json":
        click.echo(text, err=True)
        return
    import time

    from ..logs import json_line

    if message is None:
        message = text.removeprefix("isolde: ").removeprefix(f"{level}: ")
    click.echo(json_line(time.time(), level, "isolde.cli", message, fields), err=True)


def _store_url(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta["isolde.store_url"] = value


def _handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn isolde's own errors into one stderr line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            for d in exc.diagnostics:
                say(str(d))
            sys.exit(EXIT_USAGE)
        except FileNotFoundError as exc:
            say(f"isolde: error: {exc.filename or exc}: no such file")
            sys.exit(EXIT_USAGE)
        except BrokenPipeError:  # the reader went away (`isolde plugins | head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_FAILED)
        except (IsoldeError, OSError) as exc:
            say(f"isolde: error: {exc}")
            sys.exit(EXIT_USAGE)
        except Exception as exc:
            # The store's errors (bad key or scope, ...) are user errors too; imported
            # here, not at the top, to keep the store out of `isolde --help`'s start-up.
            from ..store import StoreError

            if not isinstance(exc, StoreError):
                raise
            say(f"isolde: error: {exc}")
            sys.exit(EXIT_USAGE)

    return wrapper


def _engine(data_dir: str | None, config_path: str | None, **kw: Any) -> Any:
    from ..config import load_config
    from ..engine import Engine

    url = click.get_current_context().meta.get("isolde.store_url")
    if url is None:
        return Engine(data_dir=data_dir, config=config_path, **kw)
    cfg = load_config(config_path)  # --store overrides [store] url
    cfg.data = {**cfg.data, "store": {**cfg.data.get("store", {}), "url": url}}
    cfg.validate()
    return Engine(data_dir=data_dir, config=cfg, **kw)


def _emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)



def config_near(config_path: str | None, near: str | None) -> str | None:
    """The config file for a command on workflow file ``near``: ``--config``, else
    ``$ISOLDE_CONFIG``, else ``isolde.toml`` next to the file or in its parent folders,
    else ``./isolde.toml`` or ``[tool.isolde]`` in ``./pyproject.toml`` (None: load_config
    finds those), else the user config directory's ``isolde.toml``."""
    if config_path or os.environ.get("ISOLDE_CONFIG"):
        return config_path
    if near is not None:
        for folder in Path(near).resolve().parents:
            if (folder / "isolde.toml").is_file():
                return str(folder / "isolde.toml")
    if Path("isolde.toml").is_file() or Path("pyproject.toml").is_file():
        return None
    import platformdirs

    user = Path(platformdirs.user_config_dir("isolde")) / "isolde.toml"
    return str(user) if user.is_file() else None
