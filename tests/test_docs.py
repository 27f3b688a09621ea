"""The front door and the pages behind it: every link resolves, and every `python run.py ...` they show composes."""

import re
from pathlib import Path

import pytest

from tests.conftest import REPO, compose_config

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
INLINE = re.compile(r"`((?:\.venv/bin/)?python run\.py [^`]*)`")
# Words that stand for something the reader supplies: such a command is an example of a shape, not a config.
PLACEHOLDER = re.compile(r"\.\.\.|DATE|JOB_DIR|/path|\$|<|OVERRIDES|KEY=|GROUP=")


def _anchors(page: Path) -> set[str]:
    """A page's anchors: its headings as GitHub names them, and explicit `<a id=...>` targets."""
    text = FENCE.sub("", page.read_text())
    headings = re.findall(r"^#+ (.+)$", text, re.M)
    slugs = {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
    return slugs | set(re.findall(r'<a id="([^"]+)">', text))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_resolves(page):
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
            broken.append(target)
    assert broken == []


def _commands(page: Path) -> list[str]:
    """The `python run.py` lines a page shows (backslash continuations joined, comments dropped)."""
    text = page.read_text()
    lines = [line for block in FENCE.findall(text) for line in block.replace("\\\n", " ").splitlines()]
    lines += INLINE.findall(text)
    commands = [line.split(" #")[0].strip() for line in lines]
    shown = re.compile(r"(\S+=\S+ )*(\.venv/bin/)?python run\.py\b")
    return [command for command in commands if shown.match(command) and not PLACEHOLDER.search(command)]


def _first_values(arguments: list[str]) -> list[str]:
    """Overrides of one cell of a grid: each swept key's first value (a list in brackets stays whole)."""
    chosen = []
    for argument in arguments:
        if argument.startswith("-") or argument in ("job", "hydra", "all"):
            continue
        key, _, value = argument.partition("=")
        if not value.startswith("[") and "," in value:
            value = value.split(",")[0]
        chosen.append(f"{key}={value}".strip("'\""))
    return chosen


COMMANDS = [(page, command) for page in PAGES for command in _commands(page)]


def test_the_pages_show_commands_to_compose():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize(("page", "command"), COMMANDS, ids=[f"{p.name}:{c[:60]}" for p, c in COMMANDS])
def test_every_run_command_shown_composes(page, command):
    arguments = command.split("run.py", 1)[1].split()
    overrides = [o for o in _first_values(arguments) if not o.startswith(("hydra.", "hydra/"))]
    assert compose_config(*overrides) is not None
