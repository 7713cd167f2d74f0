"""`convoy serve`: flags (or CONVOY_* env vars) -> Settings -> uvicorn. Errors are one line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any, get_args, get_origin

from pydantic import ValidationError

from server.config import Settings


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings field, so the CLI and env vars can never drift apart."""
    for name, field in Settings.model_fields.items():
        env = f"CONVOY_{name.upper()}"
        help_text = f"{field.description or ''} [env {env}; default {field.default!r}]"
        annotation = field.annotation
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(annotation) is list or list in {get_origin(a) for a in get_args(annotation)}:
            kwargs["action"] = "append"
        parser.add_argument(_flag(name), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convoy", description="Convoy inference server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a model over HTTP")
    _add_settings_flags(serve)
    return parser


def _validation_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = err["loc"][0] if err["loc"] else ""
    where = f"{_flag(str(loc))} / CONVOY_{str(loc).upper()}" if loc else "settings"
    return f"invalid {where}: {err['msg']} (got {err.get('input')!r})"


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in vars(args).items() if k != "command"}
    return Settings(**overrides)


def serve(settings: Settings) -> None:
    from models.loader import ModelLoadError, ModelSpec, check_spec
    from server.app import create_app
    from server.serving import run

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:  # cheap checks first, so a typo fails in a second with one line, not a traceback
        if settings.backend == "local":  # a remote backend loads no model
            check_spec(
                ModelSpec(
                    source=settings.model,
                    task=settings.task,
                    device=settings.device,
                    dtype=settings.dtype,
                )
            )
    except ModelLoadError as exc:
        sys.exit(f"convoy: error: {exc}")
    run(create_app(settings), settings)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        parser.exit(2, f"convoy: error: {_validation_message(exc)}\n")
    if args.command == "serve":
        serve(settings)


if __name__ == "__main__":
    main()
