"""The CLI reference (docs/cli.md) and the README stay true to the command."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from nnr.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
CLI_DOC = REPO / "docs" / "cli.md"
README = REPO / "README.md"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_option_is_documented():
    doc = CLI_DOC.read_text()
    subs = _subparsers(build_parser())
    assert sorted(subs) == ["decode", "encode", "info", "reduce", "verify"]
    commands = [(name, sub) for name, sub in subs.items()]
    commands += [(f"reduce {tool}", p) for tool, p in _subparsers(subs["reduce"]).items()]
    for name, sub in commands:
        assert f"## nnr {name.split()[0]}" in doc, name
        if " " in name:
            assert f"nnr {name} " in doc, f"nnr {name} is not in docs/cli.md"
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert option in doc, f"nnr {name} {option} is not in docs/cli.md"


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, flags=re.S)


def test_readme_opens_with_the_two_commands():
    blocks = _shell_blocks(README.read_text())
    assert len(blocks) >= 2
    first, second = blocks[0].strip(), blocks[1].strip()
    assert first.startswith("pip install .") and "nnr encode examples/" in first
    assert "pip install '.[test" in second and "pytest" in second
    example = re.search(r"nnr encode (examples/\S+)", first).group(1)
    path = REPO / example
    assert path.exists() and path.stat().st_size < 1_000_000


def test_readme_api_example_runs(tmp_path, monkeypatch):
    code = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    if not code:
        pytest.fail("README has no python example")
    monkeypatch.chdir(REPO)
    namespace: dict = {"__name__": "readme"}
    exec(compile(code[0].replace("/tmp/", f"{tmp_path}/"), "README.md", "exec"), namespace)
