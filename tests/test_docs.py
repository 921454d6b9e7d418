"""The docs stay true to the code: the configuration reference is generated from the settings,
every scheduler name and built-in model is in docs/models.md, the import-rule table in
docs/architecture.md is the one pyproject.toml enforces, the README stays short and names the
two commands, and no relative link in README.md or docs/ leads nowhere."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from storage import settings_doc
from storage.contract.schedulers import SCHEDULERS
from storage.contract.specs import BUILTIN

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 200

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
CODE_NAME = re.compile(r"`([^`]+)`")


def prose(text: str) -> str:
    """Markdown without its fenced code blocks: what a reader sees as text, headings and links."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(prose(path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def relative_links(path: Path) -> list[str]:
    """Link and image targets that are neither URLs nor mail addresses, outside code."""
    text = CODE_SPAN.sub("", prose(path.read_text()))
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def broken_links(path: Path) -> list[str]:
    """The relative links of `path` whose file does not exist, or whose #anchor its Markdown file lacks."""
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    return broken


def documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_configuration_reference_is_generated_from_the_settings() -> None:
    written = (DOCS / "configuration.md").read_text()
    assert written == settings_doc.render(), (
        f"docs/configuration.md is not what storage/settings.py says; regenerate it: {settings_doc.COMMAND}"
    )


def test_configuration_reference_names_every_variable() -> None:
    """render() itself: one row per setting, under the name the settings read, and its command in the header."""
    rendered = settings_doc.render()
    assert settings_doc.COMMAND in rendered.splitlines()[2]
    for name, field in settings_doc.Settings.model_fields.items():
        env = settings_doc.env_names(name, field)[0]
        assert f"| `{env}`" in rendered, f"{env} has no row"
        assert field.description, f"Settings.{name} has no description"
    assert "| `PORT` (or `INPAINT_PORT`) |" in rendered
    assert "`INPAINT_SECRET_KEY` | unset |" in rendered


def test_every_scheduler_name_and_builtin_model_is_in_models_md() -> None:
    names = set(CODE_NAME.findall((DOCS / "models.md").read_text()))
    assert SCHEDULERS and BUILTIN
    missing = [f"scheduler {n!r}" for n in SCHEDULERS if n not in names]
    missing += [f"model {slug!r}" for slug in BUILTIN if slug not in names]
    assert not missing, "docs/models.md does not document: " + ", ".join(missing)


def test_readme_is_short_and_has_the_two_commands() -> None:
    text = README.read_text()
    assert "./scripts/serve" in text and "./scripts/test" in text
    lines = len(text.splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; keep it to {README_MAX_LINES}, the rest in docs/"


def test_relative_links_lead_somewhere() -> None:
    found = {path: relative_links(path) for path in documents()}
    assert found[README], "README.md links to no document: the link check would check nothing"
    broken = [f"{path.relative_to(ROOT)}: {b}" for path in found for b in broken_links(path)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_check_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# Some Heading: `code`\n\n```\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#some-heading-code) [web](https://example.com/x.md) ![img](there.md)\n"
        "[gone](missing.md) [no anchor](there.md#not-a-heading) `[in code](nowhere.md)`\n"
        "```\n[in a block](nowhere-either.md)\n```\n"
    )
    assert broken_links(page) == [
        "missing.md (no such file)",
        "there.md#not-a-heading (no heading #not-a-heading in there.md)",
    ]


def import_contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config.get("tool", {}).get("importlinter", {}).get("contracts", []))


def contract_rows() -> dict[str, list[str]]:
    """docs/architecture.md's contract table: the contract's name -> its four cells."""
    rows = {}
    for line in (DOCS / "architecture.md").read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 4 and cells[1] in ("forbidden", "layers"):
            rows[cells[0]] = cells
    return rows


def test_architecture_md_states_the_import_contracts() -> None:
    """The table of docs/architecture.md is exactly [tool.importlinter]'s contracts: names, types,
    sources, and what each forbids (or the order of the layers)."""
    contracts = import_contracts()
    assert contracts, "pyproject.toml has no [tool.importlinter] contracts, but docs/architecture.md describes them"
    rows = contract_rows()
    assert sorted(rows) == sorted(c["name"] for c in contracts), (
        "docs/architecture.md's contract table and pyproject.toml's [tool.importlinter] contracts differ"
    )
    for contract in contracts:
        name, kind = contract["name"], contract["type"]
        _, row_kind, source, forbidden = rows[name]
        assert row_kind == kind, f"{name!r}: docs/architecture.md says {row_kind}, pyproject.toml {kind}"
        if kind == "forbidden":
            assert CODE_NAME.findall(source) == contract["source_modules"], name
            assert CODE_NAME.findall(forbidden) == contract["forbidden_modules"], name
        else:
            layers = [module.strip() for layer in contract["layers"] for module in re.split(r"[|:]", layer)]
            assert CODE_NAME.findall(source) == layers, name


def test_no_file_points_at_documents_a_reader_does_not_have() -> None:
    """The hosted APIs are named ("Segmind SDXL inpaint", "ModelsLab v6 inpaint"), never as seed files."""
    pattern = "seeds" + "/0"  # spelled apart, so that this file does not match itself
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    offenders = [
        name
        for name in tracked.splitlines()
        if name.endswith((".py", ".md", ".yml", ".toml", ".js", ".html", ".sh"))
        and (ROOT / name).is_file()
        and pattern in (ROOT / name).read_text(errors="replace")
    ]
    assert offenders == []
