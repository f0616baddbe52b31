"""Ray job entrypoint for the styles stage: ``ray job submit -- python jobs/styles.py --data URI ...``."""

import sys

from reid.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["styles", *sys.argv[1:]]))
