"""docs/configuration.md, generated from the settings' own field descriptions.

    .venv/bin/python -m storage.settings_doc > docs/configuration.md

One row per field of `storage.settings.Settings`, in the order the class declares them:
the environment variable, the default as you would write it in that variable, and the
field's description with its allowed values and bounds. tests/test_docs.py fails when
the file differs from a fresh `render()`.
"""

from __future__ import annotations

import re
import sys
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from storage.settings import Settings, is_secret

COMMAND = ".venv/bin/python -m storage.settings_doc > docs/configuration.md"

INTRO = """\
Every setting is an environment variable, read once per process at start-up. Its name is
`{prefix}` and the field's name in upper case; the few exceptions are listed with both
names. With no variable set you get the embedded default: SQLite for jobs, a local image
directory and a SQLite-backed Celery broker, all under `{prefix}DATA_DIR`. The defaults
below are written as you would write them in the variable; lists are comma-separated.
Secrets are marked as such, and this page shows none of their values.

Each secret may instead be read from a file: `{prefix}<NAME>_FILE` holds the file's path
(the Docker and Kubernetes secrets convention, e.g. `{prefix}SECRET_KEY_FILE=/run/secrets/secret_key`),
and the file's content, one trailing newline stripped, is the value. Setting both
`{prefix}<NAME>` and `{prefix}<NAME>_FILE`, or naming a file that cannot be read, stops the
process at start-up with an error that names the variables (and the path), never the value.

`{prefix}ENVIRONMENT=production` refuses to start with a missing or placeholder
`{prefix}SECRET_KEY` or with `{prefix}ALLOW_LOOPBACK_URLS` on. `docker-compose.yml`
sets the production values; [operations.md](operations.md) covers running the service.
"""

ENV_NAME = re.compile(r"(?<![`\w])(INPAINT_[A-Z0-9_]+(?:/[\w.-]*\w)*)")
DOC_LINK = re.compile(r"(?<![`\w/])docs/([\w-]+\.md)")


def env_names(name: str, field: FieldInfo) -> list[str]:
    """The variables that set the field, the usual one first."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"{Settings.model_config.get('env_prefix', '')}{name}".upper()]


def written(value: Any) -> str:
    """A value as it is written in an environment variable."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"  # a WIDTHxHEIGHT size
    if isinstance(value, list | tuple):
        return ",".join(written(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def default_text(field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    if default is None:
        return "unset"
    if is_secret(field):
        return "set (hidden)"
    text = written(default)
    return f"`{text}`" if text else "empty"


def allowed_text(field: FieldInfo) -> str:
    """The choices of a Literal and the numeric bounds, as a sentence; empty when there are none."""
    annotation = field.annotation
    if typing.get_origin(annotation) is Literal:
        return "One of " + ", ".join(f"`{choice}`" for choice in typing.get_args(annotation)) + "."
    bounds = [
        f"{word} {written(getattr(item, attr))}"
        for item in field.metadata
        for attr, word in (("ge", "at least"), ("gt", "more than"), ("le", "at most"), ("lt", "less than"))
        if getattr(item, attr, None) is not None
    ]
    return (", ".join(bounds) + ".").capitalize() if bounds else ""


def cell(text: str) -> str:
    """Markdown for one table cell: variable names in code, docs/*.md as links, pipes escaped, one line."""
    text = ENV_NAME.sub(r"`\1`", " ".join(text.split()))
    return DOC_LINK.sub(r"[\1](\1)", text).replace("|", "\\|")


def row(name: str, field: FieldInfo) -> str:
    names = env_names(name, field)
    variable = f"`{names[0]}`" + (" (or " + ", ".join(f"`{n}`" for n in names[1:]) + ")" if names[1:] else "")
    if field.description is None:
        raise ValueError(f"Settings.{name} has no description; add one (docs/configuration.md shows it)")
    description = " ".join(
        part for part in (field.description, allowed_text(field), "Secret." if is_secret(field) else "") if part
    )
    return f"| {variable} | {default_text(field)} | {cell(description)} |"


def render() -> str:
    """The whole of docs/configuration.md."""
    prefix = str(Settings.model_config.get("env_prefix", "")).upper()
    lines = [
        "# Configuration",
        "",
        f"Generated from the field descriptions in `storage/settings.py` by `{COMMAND}`.",
        "Edit those descriptions, not this file, and run the command again.",
        "",
        INTRO.format(prefix=prefix).rstrip("\n"),
        "",
        "| variable | default | description |",
        "|---|---|---|",
        *(row(name, field) for name, field in Settings.model_fields.items()),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
