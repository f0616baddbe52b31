"""Ray job entrypoint for a search: ``ray job submit --working-dir . -- python jobs/tune.py --space ...``."""

import sys

from reid.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
