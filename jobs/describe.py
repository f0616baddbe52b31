"""Ray job entrypoint for the describe stage: ``ray job submit -- python jobs/describe.py --data URI ...``."""

import sys

from reid.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["describe", *sys.argv[1:]]))
