"""The benchmarks page's generated blocks (docs/benchmarks.md): what a benchmark writes between
`<!-- NAME:start -->` and `<!-- NAME:end -->`."""

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"  # the site's benchmarks page


def write_block(name: str, block: str) -> None:
    """Replace the text between the markers of `name` (the README must have them)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = README.read_text()
    head, rest = text.split(start, 1)
    README.write_text(f"{head}{start}\n{block}\n{end}{rest.split(end, 1)[1]}")
