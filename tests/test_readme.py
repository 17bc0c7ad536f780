"""The README's registry section is generated from the registries and must match them."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from utilities import registry_docs


def test_readme_registry_section_matches_the_registries():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert registry_docs.readme_section(text) == registry_docs.registry_section(), (
        "README.md is stale: run python -m utilities.registry_docs --write"
    )


def test_readme_starts_with_exactly_two_setup_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set up and run", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", setup, flags=re.S)
    assert len(commands) == 2
    assert commands[0].endswith("main.py") and commands[1].endswith("-m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci, "CI must run the README's test command"
