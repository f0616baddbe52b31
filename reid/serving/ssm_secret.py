"""Write one AWS SSM SecureString parameter to stdout, for the cluster launcher's node commands (Ray's token,
MLflow's password and CSRF key come from Parameter Store through the node's instance role, never from a file).

    RAY_AUTH_TOKEN="$(python -m reid.serving.ssm_secret /reid/ray-auth-token --region us-east-1)"
"""

from __future__ import annotations

import argparse
import sys


def read_parameter(name: str, region: str | None = None) -> str:
    """The decrypted value of the SSM parameter ``name`` (the endpoint and credentials are boto3's usual ones)."""
    import boto3

    client = boto3.client("ssm", region_name=region) if region else boto3.client("ssm")
    return client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reid.serving.ssm_secret", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the parameter's name, e.g. /reid/ray-auth-token")
    parser.add_argument("--region", default=None, help="AWS region (default: boto3's, from AWS_REGION)")
    args = parser.parse_args(argv)
    try:
        value = read_parameter(args.name, args.region)
    except Exception as exc:  # one line, without the value, whatever botocore raised
        sys.stderr.write(f"ssm_secret: cannot read {args.name}: {type(exc).__name__}: {exc}\n")
        return 1
    sys.stdout.write(value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
