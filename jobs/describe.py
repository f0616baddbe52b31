"""Ray job entrypoint for the describe stage: ``ray job submit -- python jobs/describe.py --data URI ...``."""

import sys

from reid.cli.main import console_main

if __name__ == "__main__":
    console_main(["describe", *sys.argv[1:]])
