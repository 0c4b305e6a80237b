"""Leaderboard: per registered model, its champion and its latest version, side by side.

    python -m mlrecipes.leaderboard [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import sys

COLUMNS = ("model", "row", "framework", "variant", "accuracy", "macro_f1", "train_s", "peak_mb",
           "version", "alias", "run_id")


def rows(client) -> list[dict]:
    from mlflow.exceptions import MlflowException

    out = []
    for model in sorted(client.search_registered_models(), key=lambda m: m.name):
        versions = client.search_model_versions(f"name='{model.name}'")
        if not versions:
            continue
        latest = max(versions, key=lambda v: int(v.version))
        try:
            champion = client.get_model_version_by_alias(model.name, "champion")
        except MlflowException:
            champion = None
        picks = [("champion", champion)] if champion else []
        if champion is None or champion.version != latest.version:
            picks.append(("latest", latest))
        for label, version in picks:
            run = client.get_run(version.run_id)
            m, t = run.data.metrics, run.data.tags
            out.append({
                "model": model.name,
                "row": label,
                "framework": t.get("mlrecipes.framework", "?"),
                "variant": t.get("mlrecipes.variant", "?"),
                "accuracy": m.get("test_accuracy"),
                "macro_f1": m.get("test_macro_f1"),
                "train_s": m.get("train_seconds"),
                "peak_mb": m.get("peak_rss_mb"),
                "version": version.version,
                "alias": ",".join(a for a in (version.aliases or [])) or "-",
                "run_id": version.run_id,
            })
    return out


def render(table: list[dict]) -> str:
    def fmt(key, value):
        if value is None:
            return "-"
        if key in ("accuracy", "macro_f1"):
            return f"{value:.4f}"
        if key in ("train_s", "peak_mb"):
            return f"{value:.0f}"
        return str(value)

    cells = [[fmt(k, r[k]) for k in COLUMNS] for r in table]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    args = parser.parse_args(argv)
    import mlflow

    client = mlflow.MlflowClient(args.tracking_uri)
    try:
        table = rows(client)
    except mlflow.exceptions.MlflowException as exc:
        print(f"error: cannot read the tracking store {client.tracking_uri}: {exc}", file=sys.stderr)
        return 2
    if not table:
        print(f"no registered models in {client.tracking_uri} yet: run `make run` first")
        return 0
    print(render(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
