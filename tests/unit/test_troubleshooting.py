"""docs/troubleshooting.md and the error messages that point at it stay in step.

Every `see("<anchor>")` in the code must name a heading of the guide (GitHub's anchor rules), and
every section (`## ...`) must be pointed at by some message, or be marked UI-only
(`<!-- no message: UI only -->` under its heading: its symptom is a UI state, not a line).
"""

import re
from pathlib import Path

from mlrecipes.errors import GUIDE, see, store_see

REPO = Path(__file__).resolve().parents[2]
CODE = [REPO / "src", REPO / "projects", REPO / "airflow"]
UI_ONLY = "<!-- no message: UI only -->"
# Sections whose messages live in modules being reworked elsewhere (data.py, jobs.py, envs.py): the
# anchors are to be added to those messages after the merge; then remove them from this set.
PENDING: set[str] = set()  # sections whose message is still to be tagged
SEE = re.compile(r"""\bsee\(\s*["']([^"']+)["']\s*\)""")


def slug(heading: str, seen: dict[str, int]) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens, -1, -2 for repeats."""
    base = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    n = seen.get(base, 0)
    seen[base] = n + 1
    return base if n == 0 else f"{base}-{n}"


def sections() -> dict[str, tuple[int, str]]:
    """anchor -> (heading level, section text up to the next heading of any level)."""
    text = (REPO / GUIDE).read_text()
    out, seen = {}, {}
    parts = re.split(r"^(#{1,6}) (.+)$", text, flags=re.M)
    for i in range(1, len(parts), 3):
        out[slug(parts[i + 1], seen)] = (len(parts[i]), parts[i + 2])
    return out


def used_anchors() -> dict[str, list[str]]:
    used: dict[str, list[str]] = {}
    for root in CODE:
        for path in root.rglob("*.py"):
            for anchor in SEE.findall(path.read_text()):
                used.setdefault(anchor, []).append(str(path.relative_to(REPO)))
    return used


def test_slug_follows_github():
    seen = {}
    assert slug("The run's metrics", seen) == "the-runs-metrics"
    assert slug("SQLite: database is locked", seen) == "sqlite-database-is-locked"
    assert slug("pyenv or the pinned Python (3.11.7)", seen) == "pyenv-or-the-pinned-python-3117"
    assert [slug("FAQ", seen), slug("FAQ", seen)] == ["faq", "faq-1"]


def test_see_is_a_short_suffix():
    assert see("mnist-not-found") == " (see docs/troubleshooting.md#mnist-not-found)"
    assert store_see("(sqlite3.OperationalError) database is locked").endswith("#sqlite-database-is-locked)")
    assert store_see("Max retries exceeded").endswith("#the-tracking-server-is-unreachable)")


def test_every_anchor_in_the_code_is_a_heading_of_the_guide():
    anchors = sections()
    missing = {a: files for a, files in used_anchors().items() if a not in anchors}
    assert not missing, f"see() anchors with no heading in {GUIDE}: {missing}"
    assert len(used_anchors()) >= 4  # the collector finds them


def test_every_section_is_pointed_at_or_ui_only():
    used = used_anchors()
    top = {a: body for a, (level, body) in sections().items() if level == 2}
    assert len(top) >= 10
    orphans = [a for a, body in top.items() if a not in used and UI_ONLY not in body and a not in PENDING]
    assert not orphans, f"sections of {GUIDE} no message points at (and not marked UI only): {orphans}"
    stale = sorted(a for a in PENDING if a in used or a not in top)
    assert not stale, f"remove from PENDING (now pointed at, or no longer a section): {stale}"
    for anchor, body in top.items():
        assert "**Symptom.**" in body and "**Cause.**" in body and "**Fix.**" in body, anchor


def test_readme_links_the_guide():
    assert "(docs/troubleshooting.md)" in (REPO / "README.md").read_text()


def test_links_inside_the_guide_resolve():
    anchors = sections()
    links = re.findall(r"\]\(#([^)]+)\)", (REPO / GUIDE).read_text())
    assert links and not [a for a in links if a not in anchors]
