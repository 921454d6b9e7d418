"""`inpaint-admin`: migrations, API keys and the model registry, from the command line.

inpaint-admin migrate
inpaint-admin keys create --name NAME [--admin] [--models a,b] [--credits N] [--rate N] [--burst N]
inpaint-admin keys update ID [--models a,b|all] [--credits N|unlimited] [--rate N|default]
                             [--burst N|default]
inpaint-admin keys first-run          # creates an admin key if there is none; prints it
inpaint-admin keys list | revoke ID | rotate-webhook-secret ID
inpaint-admin models list
inpaint-admin models register SLUG SOURCE --family sd15 [--sizes 512,768] [--steps 20:100:25]
                             [--guidance-scale 1:25:7.5] [--sha256 HEX] [--config DIR_OR_HUB_ID]
inpaint-admin assets list
inpaint-admin assets register KIND NAME SOURCE [--family sdxl] [--option score_offset=0.1]
                             [--sha256 HEX] [--config DIR_OR_HUB_ID]
inpaint-admin assets delete KIND NAME
inpaint-admin storage init           # S3 backend: the bucket and its 1-day expiration rule (idempotent)

SOURCE is a Hugging Face hub id, a local directory, or a single-file checkpoint: a local
.safetensors file or an http(s) URL that the workers download (models and base_model).
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from storage.contract.assets import ASSET_KINDS, AssetSpec
from storage.contract.content import NSFW_ACTIONS
from storage.contract.specs import FAMILIES, ModelSpec, Range
from storage.database.assets import delete_asset, list_assets, register_asset
from storage.database.engine import make_engine, make_session_factory, write_scope
from storage.database.jobs import utcnow
from storage.database.keys import KeyLimits, create_key, list_keys, revoke_key, update_key
from storage.database.migrate import upgrade
from storage.database.models import ApiKey
from storage.database.registry import list_models, register_model
from storage.database.webhooks import rotate_secret
from storage.egress.checkpoints import check_weights_source
from storage.errors import InpaintError, InvalidInput
from storage.settings import Settings, load_settings


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _models(text: str) -> list[str] | None:
    """ "a,b" -> ["a", "b"]; "all" -> None (every model)."""
    return None if text == "all" else [slug.strip() for slug in text.split(",") if slug.strip()]


def _count_or(word: str, minimum: int = 0):  # type: ignore[no-untyped-def]
    """A parser for a count >= minimum, or `word` meaning None (no limit, or the configured default)."""

    def parse(text: str) -> int | None:
        if text == word:
            return None
        value = int(text)
        if value < minimum:
            raise ValueError(text)
        return value

    parse.__name__ = f"count or {word!r}"
    return parse


def add_limit_options(parser: argparse.ArgumentParser, *, update: bool) -> None:
    """The per-key limits; on update an option left out keeps its value."""
    keep = argparse.SUPPRESS if update else None
    parser.add_argument(
        "--models",
        type=_models,
        default=keep,
        help="model slugs this key may use, comma-separated, or 'all' (default: all)",
    )
    parser.add_argument(
        "--credits",
        type=_count_or("unlimited"),
        default=keep,
        help="images this key may make (one credit each), or 'unlimited' (default)",
    )
    parser.add_argument(
        "--rate",
        type=_count_or("default"),
        default=keep,
        help="submits per minute; 0: no limit; 'default': INPAINT_RATE_LIMIT_PER_MINUTE",
    )
    parser.add_argument(
        "--burst",
        type=_count_or("default", minimum=1),
        default=keep,
        help="submits at once (bucket size); 'default': INPAINT_RATE_LIMIT_BURST",
    )
    parser.add_argument(
        "--nsfw-action",
        type=_nsfw_action,
        default=keep,
        help="what an image the safety checker flags does: 'block' (the job fails, content_blocked), "
        "'replace' (replaced, reported in nsfw) or 'route' (default: the route's API decides)",
    )


def limits_of(args: argparse.Namespace) -> dict[str, Any]:
    names = {
        "models": "allowed_models",
        "credits": "credits",
        "rate": "rate_limit_per_minute",
        "burst": "rate_limit_burst",
        "nsfw_action": "nsfw_action",
    }
    return {field: getattr(args, option) for option, field in names.items() if hasattr(args, option)}


def _nsfw_action(text: str) -> str | None:
    if text == "route":
        return None
    if text not in NSFW_ACTIONS:
        raise ValueError(text)
    return text


_nsfw_action.__name__ = "'block', 'replace' or 'route'"


def _range(text: str) -> Range:
    low, high, default = (float(x) for x in text.split(":"))
    return Range(min=low, max=high, default=default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inpaint-admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the database migrations")
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--admin", action="store_true")
    add_limit_options(create, update=False)
    change = keys.add_parser("update", help="change a key's models, credits, rate limit or content blocks")
    change.add_argument("id", type=int)
    add_limit_options(change, update=True)
    keys.add_parser("first-run", help="create an admin key if none exists, and print it")
    keys.add_parser("list")
    revoke = keys.add_parser("revoke")
    revoke.add_argument("id", type=int)
    rotate = keys.add_parser("rotate-webhook-secret", help="new webhook secret; the old one signs too for a while")
    rotate.add_argument("id", type=int)
    models = sub.add_parser("models", help="the model registry").add_subparsers(dest="action", required=True)
    models.add_parser("list")
    register = models.add_parser("register", help="register (or replace) a model slug")
    register.add_argument("slug")
    register.add_argument("source", help="hub id, local directory, local .safetensors file or http(s) URL")
    register.add_argument("--family", required=True, choices=FAMILIES)
    register.add_argument("--sizes", help="allowed widths/heights, comma-separated (default: multiples of 8)")
    register.add_argument("--max-side", type=int, default=1024)
    register.add_argument("--default-size", type=int, default=512)
    register.add_argument("--steps", type=_range, help="MIN:MAX:DEFAULT")
    register.add_argument("--guidance-scale", type=_range, help="MIN:MAX:DEFAULT (default 0.1:25:7.5)")
    register.add_argument("--strength", type=_range, help="MIN:MAX:DEFAULT (default 0.1:1:1)")
    register.add_argument("--scheduler", default="DDIM", help="default scheduler")
    register.add_argument("--base-model", help="sdxl families: the default base_model name")
    add_checkpoint_options(register)
    add_asset_commands(sub)
    storage = sub.add_parser("storage", help="the object store").add_subparsers(dest="action", required=True)
    storage.add_parser("init", help="S3 backend: create the bucket if missing and set its 1-day expiration rule")
    return parser


def add_checkpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sha256", help="single-file checkpoints: their SHA-256, checked before use")
    parser.add_argument(
        "--config",
        help="single-file checkpoints: a hub id or local diffusers directory (model_index.json, component "
        "configs, tokenizers) describing them; default: diffusers infers one, from the Hugging Face hub",
    )


def add_asset_commands(sub: Any) -> None:
    assets = sub.add_parser("assets", help="named base models, ControlNets, LoRAs, VAEs, embeddings, ...")
    actions = assets.add_subparsers(dest="action", required=True)
    actions.add_parser("list")
    register = actions.add_parser("register", help="register (or re-point) a named asset")
    register.add_argument("kind", choices=ASSET_KINDS)
    register.add_argument("name", help="the name requests use, e.g. 'SDXL' or 'Canny'")
    register.add_argument("source", help="Hugging Face hub id, local directory or local file (base_model: or URL)")
    register.add_argument("--family", choices=["sd15", "sdxl"], help="which models may use it")
    register.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="kind-specific option, e.g. score_offset=0.5 (numbers are parsed)",
    )
    add_checkpoint_options(register)
    delete = actions.add_parser("delete")
    delete.add_argument("kind", choices=ASSET_KINDS)
    delete.add_argument("name")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    if args.command == "migrate":
        upgrade(settings.resolved_database_url)
        _out("database is at the latest migration")
        return
    if args.command == "storage":
        init_storage_command(settings)
        return
    run_command(settings, args)


def init_storage_command(settings: Settings) -> None:
    """`storage init`: exits 0 when the bucket is there, even if the server has no lifecycle API."""
    # boto3 and botocore take a few hundred milliseconds to import: only this command needs them.
    from storage.blobs.bucket import init_storage

    try:
        report = init_storage(settings)
    except InpaintError as exc:
        raise SystemExit(f"inpaint-admin: {exc.message}") from None
    if report is None:
        _out("storage backend is 'local': there is no bucket to create, nothing to do")
        return
    for line in report.lines():
        _out(line)
    warning = report.warning()
    if warning:
        sys.stderr.write(warning + "\n")


def run_command(settings: Settings, args: argparse.Namespace) -> None:
    engine = make_engine(settings.resolved_database_url)
    try:
        with write_scope(make_session_factory(engine)) as session:
            args.settings = settings
            HANDLERS[(args.command, args.action)](session, args)
    except InvalidInput as exc:
        raise SystemExit(f"inpaint-admin: {exc.message}") from None
    finally:
        engine.dispose()


def _keys_create(session: Any, args: argparse.Namespace) -> None:
    limits = KeyLimits(**limits_of(args))
    new = create_key(session, name=args.name, is_admin=args.admin, now=utcnow(), limits=limits)
    _out(f"created key #{new.record.id} ({'admin' if args.admin else 'user'}): {new.secret}")
    _out(f"webhook signing secret: {new.webhook_secret}")
    _out("the key is shown this once; only its hash is stored")


def _keys_update(session: Any, args: argparse.Namespace) -> None:
    changes = limits_of(args)
    if not changes:
        raise SystemExit("nothing to change: give --models, --credits, --rate, --burst or --nsfw-action")
    _out(f"updated key #{args.id}" if update_key(session, args.id, **changes) else f"no key #{args.id}")


def describe_limits(key: ApiKey) -> str:
    models = ",".join(key.allowed_models) if key.allowed_models is not None else "all models"
    credits = "unlimited credits" if key.credits is None else f"{key.credits} credits"
    rate = (
        "default rate"
        if key.rate_limit_per_minute is None
        else ("no rate limit" if key.rate_limit_per_minute == 0 else f"{key.rate_limit_per_minute}/min")
    )
    burst = "" if key.rate_limit_burst is None else f" burst {key.rate_limit_burst}"
    nsfw = "" if key.nsfw_action is None else f"\tnsfw: {key.nsfw_action}"
    return f"{models}\t{credits}\t{rate}{burst}{nsfw}"


def _keys_first_run(session: Any, args: argparse.Namespace) -> None:
    if session.execute(select(ApiKey.id).where(ApiKey.revoked_at.is_(None))).first():
        _out(
            "API key: one already exists (it was printed when it was created); "
            "make another with: .venv/bin/inpaint-admin keys create --name NAME"
        )
        return
    new = create_key(session, name="first-run", is_admin=True, now=utcnow())
    _out(f"API key (admin, shown once, only its hash is stored): {new.secret}")
    _out(f"Webhook signing secret of that key: {new.webhook_secret}")


def _keys_list(session: Any, args: argparse.Namespace) -> None:
    for key in list_keys(session):
        state = "revoked" if key.revoked_at else "active"
        role = "admin" if key.is_admin else "user"
        _out(f"#{key.id}\t{key.prefix}...\t{key.name}\t{role}\t{state}\t{describe_limits(key)}")


def _keys_revoke(session: Any, args: argparse.Namespace) -> None:
    _out("revoked" if revoke_key(session, args.id, now=utcnow()) else f"no active key #{args.id}")


def _keys_rotate(session: Any, args: argparse.Namespace) -> None:
    key = session.get(ApiKey, args.id)
    if key is None:
        _out(f"no key #{args.id}")
        return
    overlap = timedelta(seconds=args.settings.webhook_secret_overlap_seconds)
    secret = rotate_secret(session, key, now=utcnow(), overlap=overlap)
    _out(f"new webhook signing secret of key #{key.id}: {secret}")
    until = key.webhook_secret_previous_until
    _out(f"deliveries carry the old secret's signature too until {until:%Y-%m-%d %H:%M} UTC")


def _models_list(session: Any, args: argparse.Namespace) -> None:
    for spec in list_models(session):
        _out(f"{spec.slug}\t{spec.family}\t{spec.source or '-'}\t{spec.size_rule()}")


def _models_register(session: Any, args: argparse.Namespace) -> None:
    options: dict[str, Any] = {
        "max_side": args.max_side,
        "default_size": args.default_size,
        "default_scheduler": args.scheduler,
    }
    if args.sizes:
        options["sizes"] = tuple(int(s) for s in args.sizes.split(","))
    for name in ("steps", "guidance_scale", "strength", "base_model", "sha256", "config"):
        if getattr(args, name):
            options[name] = getattr(args, name)
    check_weights_source(args.source, field="SOURCE", kind=args.family, settings=args.settings)
    try:
        spec = ModelSpec(slug=args.slug, family=args.family, source=args.source, **options)
    except ValueError as exc:
        raise InvalidInput("SLUG", f"is not a valid model: {exc}", value=args.slug) from None
    register_model(session, spec, now=utcnow())
    _out(f"registered {spec.slug!r} ({spec.family}) from {spec.source}")


def _option(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        return key, float(value)
    except ValueError:
        return key, value


def _assets_list(session: Any, args: argparse.Namespace) -> None:
    for asset in list_assets(session):
        _out(f"{asset.kind}\t{asset.name}\t{asset.source}\t{asset.family or '-'}\t{asset.options or ''}")


def _assets_register(session: Any, args: argparse.Namespace) -> None:
    check_weights_source(args.source, field="SOURCE", kind=args.kind, settings=args.settings)
    try:
        asset = AssetSpec(
            kind=args.kind,
            name=args.name,
            source=args.source,
            family=args.family,
            options=dict(_option(o) for o in args.option),
            sha256=args.sha256,
            config=args.config,
        )
    except ValueError as exc:
        raise InvalidInput("NAME", f"is not a valid asset: {exc}", value=args.name) from None
    register_asset(session, asset, now=utcnow())
    _out(f"registered {asset.kind} {asset.name!r} from {asset.source}")


def _assets_delete(session: Any, args: argparse.Namespace) -> None:
    deleted = delete_asset(session, args.kind, args.name) is not None
    _out("deleted" if deleted else f"no registered {args.kind} {args.name!r}")


HANDLERS = {
    ("keys", "create"): _keys_create,
    ("keys", "update"): _keys_update,
    ("keys", "first-run"): _keys_first_run,
    ("keys", "list"): _keys_list,
    ("keys", "revoke"): _keys_revoke,
    ("keys", "rotate-webhook-secret"): _keys_rotate,
    ("models", "list"): _models_list,
    ("models", "register"): _models_register,
    ("assets", "list"): _assets_list,
    ("assets", "register"): _assets_register,
    ("assets", "delete"): _assets_delete,
}
