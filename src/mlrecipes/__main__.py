"""`python -m mlrecipes ...` is the `mlrecipes` command (for a venv whose scripts are not on the PATH)."""

from mlrecipes.cli import entry

entry()
