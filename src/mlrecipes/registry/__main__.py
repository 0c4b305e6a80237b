"""`python -m mlrecipes.registry VERB ...` is `mlrecipes VERB ...` (promote, rollback, history)."""

import sys

from mlrecipes.cli import main

sys.exit(main(sys.argv[1:]))
