"""`python -m evcam`: the same as the `evcam` console script."""

from evcam.cli import main

if __name__ == "__main__":
    main()
