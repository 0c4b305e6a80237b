"""Leaderboard: per registered model, its champion, the previous one and its latest version.

    mlrecipes leaderboard [--tracking-uri URI]

The store: store.tracking_uri; one that does not exist is an error, not a new empty store.
"""

from __future__ import annotations

import sys

from mlrecipes.errors import EXIT_USER_ERROR, exit_now

COLUMNS = ("model", "row", "framework", "variant", "metric", "value", "baseline", "train_s", "peak_mb",
           "version", "alias", "run_id", "from")
ALIAS = "champion"


def rows(client) -> tuple[list[dict], list[str]]:
    """Per model: its champion, the previous champion, and (when different) its latest version,
    each with the model's own gate metric; and one line per model on the alias's last move."""
    from mlflow.exceptions import MlflowException

    from mlrecipes import registry

    out, moves = [], []
    for model in sorted(client.search_registered_models(), key=lambda m: m.name):
        versions = registry.model_versions(client, model.name)
        if not versions:
            continue
        by_number = {str(v.version): v for v in versions}
        latest = max(versions, key=lambda v: int(v.version))
        champion = by_number.get(str(getattr(registry.holder(client, model.name, ALIAS), "version", None)))
        history = registry.history(client, model.name, ALIAS, versions)
        previous = by_number.get(registry.previous_champion(history, champion.version if champion else None))
        picks = [(label, v) for label, v in (("champion", champion), ("previous", previous)) if v is not None]
        if str(latest.version) not in {str(v.version) for _, v in picks}:
            picks.append(("latest", latest))
        # The model's own metric: the gate its champion (else its latest version) was judged by.
        metric = ((champion or latest).tags or {}).get("gate.metric", "test_accuracy")
        for label, version in picks:
            try:
                run = client.get_run(version.run_id)
                m, t = run.data.metrics, run.data.tags
            except MlflowException:  # the run was removed: show the version anyway
                m, t = {}, {}
            out.append({
                "model": model.name,
                "row": label,
                "framework": t.get("mlrecipes.framework", "?"),
                "variant": t.get("mlrecipes.variant", "?"),
                "metric": metric,
                "value": m.get(metric),
                "baseline": m.get(registry.baseline_metric(metric)),
                "train_s": m.get("train_seconds"),
                "peak_mb": m.get("peak_rss_mb"),
                "version": str(version.version),
                # search_model_versions leaves aliases out: ask for the version itself
                "alias": ",".join(client.get_model_version(model.name, version.version).aliases or []) or "-",
                "run_id": version.run_id,
                "from": origin(t),
            })
        if history:
            last = history[0]
            source = f"from version {last['from']}" if last.get("from") else "first champion"
            forced = ", forced" if last.get("forced") else ""
            moves.append(f"{model.name}: @{ALIAS} -> version {last['version']} ({source}) at {last['at']} "
                         f"by {last['by']}, {last['action']}{forced}: {last['reason']}")
    return out, moves


def origin(tags: dict) -> str:
    """Where a version's run came from: `sweep <parent run> trial <n>` for a swept model, else `-`."""
    trial, parent = tags.get("mlrecipes.sweep.trial"), tags.get("mlrecipes.sweep.parent")
    return f"sweep {parent[:8]} trial {trial}" if trial is not None and parent else "-"


def render(table: list[dict], moves: list[str] | None = None) -> str:
    def fmt(key, value):
        if value is None:
            return "-"
        if key in ("value", "baseline"):
            return f"{value:.4f}"
        if key in ("train_s", "peak_mb"):
            return f"{value:.0f}"
        return str(value)

    cells = [[fmt(k, r[k]) for k in COLUMNS] for r in table]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    if moves:
        lines += ["", f"last move of @{ALIAS} (`mlrecipes history <model>` for all):"]
        lines += [f"  {line}" for line in moves]
    return "\n".join(lines)


def show(uri: str) -> int:
    """Print the leaderboard of the store `uri` (an existing one: store.require_store); the exit status."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    try:
        table, moves = rows(client)
    except mlflow.exceptions.MlflowException as exc:
        from mlrecipes.errors import one_line, store_see

        print(f"error: cannot read the tracking store {uri}: {one_line(exc.message)}"
              + store_see(exc.message), file=sys.stderr)
        return EXIT_USER_ERROR
    if not table:
        print(f"no registered models in {uri} yet: run `make run` first")
        return 0
    print(render(table, moves))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m mlrecipes.leaderboard` is `mlrecipes leaderboard`."""
    from mlrecipes.cli import main as cli

    return cli(["leaderboard", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    exit_now(main())
