"""Ray job entrypoint for a search: ``ray job submit --working-dir . -- python jobs/tune.py --space ...``."""

import sys

from reid.cli.main import console_main

if __name__ == "__main__":
    console_main(["tune", *sys.argv[1:]])
