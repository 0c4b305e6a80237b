"""`python -m mlrecipes.scoring ...`: what every project's `predict` entry point runs."""

from mlrecipes.scoring.run import main

main()
