"""A bounded load on a running `reid serve`: a fixed, shuffled mix of good searches and image fetches, malformed
searches, requests without or with a wrong token, a body over the 64 KB cap and the open health check, sent by a
few threads; prints, per kind, the status it must get, the requests sent and each status returned (none may be
lost), and exits 1 when any request went unanswered or got another status.

    REID_SERVE_TOKEN=... python jobs/load_serve.py --url http://127.0.0.1:8000 [--per-kind 20] [--concurrency 8]
        [--sources 8] [--json runs/load.json]

--sources N sends thread i's requests from 127.0.0.(10 + i mod N) (loopback only): each address is one client to
the service's rate limit, so keep every address's share (11 * per-kind * concurrency / N / concurrency) under the
service's --burst, or the figures will show 429s for good requests.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from reid.serving.auth import TOKEN_ENV, read_token
from reid.serving.load import bounded_load, format_figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service's address")
    parser.add_argument("--token-file", default=None, help=f"file holding the token (default: ${TOKEN_ENV})")
    parser.add_argument("--per-kind", type=int, default=20, help="requests of each of the 11 kinds")
    parser.add_argument("--concurrency", type=int, default=8, help="threads sending at once")
    parser.add_argument("--sources", type=int, default=0, help="loopback source addresses to spread over (0: one)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    token = read_token(args.token_file)
    if token is None:
        parser.error(f"the load needs the service's token: set {TOKEN_ENV} or pass --token-file")
    sources = [f"127.0.0.{10 + i}" for i in range(args.sources)] or None
    figures = bounded_load(args.url, token, args.per_kind, args.concurrency, sources)
    print(format_figures(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0 if figures["lost"] == 0 and figures["unexpected"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
