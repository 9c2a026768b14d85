"""``python -m batchml``: the same command line as ``batchml``."""

from batchml.cli.main import main

if __name__ == "__main__":
    main()
