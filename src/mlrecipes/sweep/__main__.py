"""`python -m mlrecipes.sweep <project>/train.py --sweep NAME ...`: see mlrecipes.sweep.run."""

from mlrecipes.sweep.run import main

if __name__ == "__main__":
    main()
