"""Ray job entrypoint for training: ``ray job submit --working-dir . -- python jobs/train.py --config ...``."""

import sys

from reid.cli.main import console_main

if __name__ == "__main__":
    console_main(["train", *sys.argv[1:]])
