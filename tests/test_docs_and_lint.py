"""The documentation site builds in strict mode (a broken link, reference or API path fails), its
generated pages hold what the code declares, and the code is ruff-clean."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.fail(f"{name} is not installed: pip install -e '.[test]' installs it")
        return found
    return str(path)


def test_docs_build_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [_tool("mkdocs"), "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    config = (tmp_path / "site" / "config" / "index.html").read_text()
    from rankopt.config import get_task, settings_of

    for task in ("images", "recsys"):  # every setting of every task has its row, with its help text
        for s in settings_of(get_task(task).config):
            assert f"<code>{s.key}</code>" in config, s.key
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    for command in (
        "rankopt train",
        "rankopt recsys train",
        "rankopt ood detect",
        "rankopt ood score",
        "rankopt embed",
    ):
        assert command in cli, command
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "RunFolder" in api and "selected_checkpoint" in api


def test_ruff_lint_and_format():
    lint = subprocess.run(
        [_tool("ruff"), "check", "src", "tests", "benchmarks", "tools"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert lint.returncode == 0, lint.stdout[-4000:]
    fmt = subprocess.run(
        [_tool("ruff"), "format", "--check", "src", "tests", "benchmarks", "tools"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fmt.returncode == 0, fmt.stdout[-4000:]


def test_every_benchmark_script_has_its_section_in_the_benchmarks_page():
    # docs/benchmarks.md is the index of every table: a script that prints one and is missing there is
    # found only by reading the folder
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    scripts = [p for p in sorted((ROOT / "benchmarks").glob("*.py")) if '__name__ == "__main__"' in p.read_text()]
    assert len(scripts) > 10
    missing = [p.name for p in scripts if f"## `benchmarks/{p.name}`" not in page]
    assert not missing, f"no section in docs/benchmarks.md for {missing}"
