"""`python -m mlrecipes.registry ...`: the registry's command line (cli.py)."""

import sys

from mlrecipes.registry.cli import main

sys.exit(main())
