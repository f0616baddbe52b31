"""Ray job entrypoint for the styles stage: ``ray job submit -- python jobs/styles.py --data URI ...``."""

import sys

from reid.cli.main import console_main

if __name__ == "__main__":
    console_main(["styles", *sys.argv[1:]])
