"""`convoy serve`: flags (or CONVOY_* env vars) -> Settings -> uvicorn. Errors are one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, get_args, get_origin

from pydantic import ValidationError

from server import verify as verify_cli
from server.bench import cli as bench_cli
from server.config import Settings


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings field, so the CLI and env vars can never drift apart."""
    for name, field in Settings.model_fields.items():
        env = f"CONVOY_{name.upper()}"
        default = field.get_default(call_default_factory=True)
        help_text = f"{field.description or ''} [env {env}; default {default!r}]"
        annotation = field.annotation
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(annotation) is list or list in {get_origin(a) for a in get_args(annotation)}:
            kwargs["action"] = "append"
        elif isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("cli_repeatable"):
            kwargs["action"] = "append"  # Settings spreads the extra values (e.g. --model a --model b)
        parser.add_argument(_flag(name), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convoy", description="Convoy inference server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a model over HTTP")
    _add_settings_flags(serve)
    bench_cli.add_parser(sub)
    verify_cli.add_parser(sub)
    return parser


# Values of these settings are never echoed back in an error message.
_SECRET_SETTINGS = frozenset({"api_keys", "jwt_secret"})


def _validation_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = err["loc"][0] if err["loc"] else ""
    where = f"{_flag(str(loc))} / CONVOY_{str(loc).upper()}" if loc else "settings"
    # A whole-settings check has every value (secrets too) as its input: show none of them.
    if not loc or loc in _SECRET_SETTINGS:
        return f"invalid {where}: {err['msg']}"
    return f"invalid {where}: {err['msg']} (got {err.get('input')!r})"


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in vars(args).items() if k != "command"}
    return Settings(**overrides)


def serve(settings: Settings) -> None:
    from models.loader import ModelLoadError, check_spec
    from server.app import create_app, model_spec
    from server.multi_model import ModelsFileError, served_models
    from server.security import SecurityConfigError
    from server.serving import configure_logging, run

    configure_logging(settings)
    try:  # cheap checks first, so a typo fails in a second with one line, not a traceback
        models = served_models(settings)
        # A remote backend loads no model; on Ray the replicas load on the cluster's nodes (this
        # host may lack the GPU or the files).
        for model in models if settings.backend == "local" and not settings.ray else []:
            check_spec(model_spec(model))
        app = create_app(settings)  # checks the security settings, on Ray too
    except (ModelLoadError, ModelsFileError, SecurityConfigError) as exc:
        sys.exit(f"convoy: error: {exc}")
    if settings.ray:
        from server.ray_serve import run_on_ray

        run_on_ray(settings)
        return
    if settings.workers > 1:
        from server.workers import serve_workers

        sys.exit(serve_workers(settings))
    run(app, settings)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench":
        sys.exit(bench_cli.main(args))
    if args.command == "verify":
        sys.exit(verify_cli.main(args))
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        parser.exit(2, f"convoy: error: {_validation_message(exc)}\n")
    if args.command == "serve":
        serve(settings)


if __name__ == "__main__":
    main()
