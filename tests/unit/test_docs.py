"""The documentation site: its generated reference covers the code and config, and the pages keep
the links and blocks other files rely on. (`make docs-build` checks every link with mkdocs --strict.)"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def gen_reference():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pages(tmp_path) -> dict[str, str]:
    return {p.name: p.read_text() for p in gen_reference().generate(tmp_path)}


def test_the_cli_reference_has_every_verb(tmp_path):
    import argparse

    from mlrecipes.cli import parser

    text = pages(tmp_path)["cli.md"]
    verbs = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert len(verbs) >= 10
    for verb in verbs:
        assert f"## `mlrecipes {verb}`" in text, verb
        assert f"usage: mlrecipes {verb}" in text, verb
    assert "| `make run` |" in text and "| `make docs` |" in text


def test_the_config_reference_has_every_file_and_key(tmp_path):
    text = pages(tmp_path)["config.md"]
    files = [*sorted((REPO / "conf").rglob("*.yaml")), *sorted((REPO / "projects").glob("*/conf/**/*.yaml"))]
    for path in files:
        assert f"## {path.relative_to(REPO).as_posix()}" in text, path
    gate = yaml.safe_load((REPO / "conf" / "gate" / "default.yaml").read_text())
    for key in gate:
        assert f"| `{key}` |" in text, key
    # the comment beside a key travels with it
    assert re.search(r"\| `direction` \| `maximize` \| maximize \\\| minimize", text)


def test_the_yaml_comment_reader():
    header, comments = gen_reference().yaml_comments(
        "# the file\n# second line\n\na: 1   # one\n  # more of one\nb:\n  # above c\n  c: x  # # not a comment? yes\n"
        "defaults:\n  - data: mnist  # the data\n")
    assert header == "the file\nsecond line"
    assert comments["a"] == "one more of one"
    assert comments["b.c"] == "above c # not a comment? yes"
    assert comments["defaults"] == "data: the data"


def test_the_projects_reference_has_every_entry_point_and_parameter(tmp_path):
    text = pages(tmp_path)["projects.md"]
    for mlproject in sorted((REPO / "projects").glob("*/MLproject")):
        project = mlproject.parent.name
        for entry, spec in yaml.safe_load(mlproject.read_text())["entry_points"].items():
            assert f"### {project} · {entry}" in text
            for name in spec.get("parameters") or {}:
                assert f"| `{name}` |" in text, (project, entry, name)
    shared = REPO / "conf" / "params.yaml"
    if shared.is_file():
        for name in yaml.safe_load(shared.read_text()):
            assert f"| `{name}` |" in text, name


def test_the_logged_names_come_from_the_code(tmp_path):
    text = pages(tmp_path)["logged.md"]
    for name in ("train_seconds", "peak_rss_mb", "rows_scored", "gate.decision", "evaluation/confusion_matrix.png",
                 "config.yaml", "sweep/trials.csv"):
        assert f"`{name}`" in text, name


def test_the_site_lists_every_page_it_has():
    nav = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)["nav"]
    listed = set(re.findall(r"'([\w/.-]+\.md)'", str(nav)))
    generated = set(f"reference/{name}" for name in gen_reference().PAGES)
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")} | generated
    assert listed == on_disk, (listed ^ on_disk)


def test_the_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", text):
        assert (REPO / target).exists(), target
    assert "## Schedule with Airflow" in text  # airflow/README.md links its anchor


def test_the_benchmark_blocks_live_in_the_benchmarks_page():
    text = (DOCS / "benchmarks.md").read_text()
    for name in ("results", "fixed-cost", "tables"):
        assert f"<!-- {name}:start -->" in text and f"<!-- {name}:end -->" in text, name
