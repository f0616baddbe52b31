"""Resolve a dataset or checkpoint URI (local path, ``file://`` or ``s3://``) to a pyarrow filesystem."""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from reid.storage.config import StorageConfig


@dataclass(frozen=True)
class Location:
    """A URI split into a pyarrow filesystem and the path inside it (no scheme)."""

    uri: str
    filesystem: pafs.FileSystem
    path: str

    @property
    def is_remote(self) -> bool:
        return self.uri.startswith("s3://")

    def join(self, *parts: str) -> Location:
        """The location of ``parts`` under this one (URI and path both extended)."""
        path = posixpath.join(self.path, *parts)
        uri = posixpath.join(self.uri, *parts)
        return Location(uri=uri, filesystem=self.filesystem, path=path)


_adopted_s3: pafs.S3FileSystem | None = None


def adopt_s3_filesystem(filesystem: pafs.S3FileSystem | None) -> None:
    """Use ``filesystem`` for every ``s3://`` URI this process resolves from now on (None: back to the
    environment). A Ray worker adopts the driver's filesystem, credentials included, as Ray Train does for its
    checkpoint storage: a worker's environment is its node's (a local Ray's is the driver's at the time Ray
    started), which need not hold the keys the driver was given. Pickled through Ray's object store, never
    logged."""
    global _adopted_s3
    _adopted_s3 = filesystem


def s3_filesystem(storage: StorageConfig | None = None) -> pafs.S3FileSystem:
    """An explicit ``S3FileSystem`` (``from_uri`` would look up the region against real AWS).

    Endpoint and region come from ``storage`` or ``AWS_ENDPOINT_URL`` / ``AWS_REGION``; keys only from
    the standard AWS environment variables. A filesystem set by :func:`adopt_s3_filesystem` wins.
    """
    if _adopted_s3 is not None:
        return _adopted_s3
    storage = storage or StorageConfig()
    env = os.environ
    endpoint = storage.endpoint_url or env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3")
    region = storage.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    kwargs: dict[str, Any] = {"region": region}
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        kwargs["access_key"] = os.environ["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        if os.environ.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs["endpoint_override"] = host or scheme
        kwargs["scheme"] = scheme if host else "https"
    return pafs.S3FileSystem(**kwargs)


class StorageUnreachableError(ConnectionError):
    """An object store could not be reached (no such host, connection refused); the message says which setting
    decided the endpoint."""


_NETWORK_MARKERS = ("NETWORK_CONNECTION", "Could not resolve", "Could not connect", "curlCode")


@contextlib.contextmanager
def _reachable(loc: Location) -> Iterator[None]:
    """Turn pyarrow's network errors on an ``s3://`` location into :class:`StorageUnreachableError`."""
    try:
        yield
    except OSError as exc:
        text = str(exc)
        if not loc.is_remote or not any(marker in text for marker in _NETWORK_MARKERS):
            raise
        raise StorageUnreachableError(f"cannot reach the object store for {loc.uri}: {_reason(text)}; "
                                      f"{_endpoint_origin(text)}") from exc


def _reason(text: str) -> str:
    details = text.split("Details:", 1)[-1].strip()
    return details.split(":", 1)[0].strip() if "Details:" in text else text.split(";", 1)[0]


def _endpoint_origin(text: str) -> str:
    if "amazonaws.com" in text:
        return ("no S3 endpoint is configured (storage.endpoint_url or AWS_ENDPOINT_URL), so the request went to "
                "AWS; set one for a local or other S3-compatible store")
    return "check the S3 endpoint (storage.endpoint_url or AWS_ENDPOINT_URL) and that its server is up"


def resolve(uri: str, storage: StorageConfig | None = None) -> Location:
    """Split ``uri`` into a filesystem and a path. Local paths are made absolute."""
    if uri.startswith("s3://"):
        path = uri[len("s3://"):].rstrip("/")
        if not path:
            raise ValueError(f"'{uri}' names no bucket")
        return Location(uri=uri.rstrip("/"), filesystem=s3_filesystem(storage), path=path)
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    if "://" in uri:
        raise ValueError(f"unsupported URI scheme in '{uri}' (use a local path, file:// or s3://)")
    path = os.path.abspath(uri)
    return Location(uri=path, filesystem=pafs.LocalFileSystem(), path=path)


def exists(loc: Location) -> bool:
    """True when a file or directory exists at ``loc``."""
    with _reachable(loc):
        return loc.filesystem.get_file_info(loc.path).type != pafs.FileType.NotFound


def read_bytes(loc: Location) -> bytes:
    """The whole content of the file at ``loc``."""
    with _reachable(loc), loc.filesystem.open_input_stream(loc.path) as stream:
        return stream.read()


def write_bytes(loc: Location, data: bytes) -> None:
    """Write ``data`` to ``loc``, creating parent directories on local storage."""
    parent = posixpath.dirname(loc.path)
    with _reachable(loc):
        if parent:
            loc.filesystem.create_dir(parent, recursive=True)
        with loc.filesystem.open_output_stream(loc.path) as stream:
            stream.write(data)


def read_json(loc: Location) -> Any:
    """Parse the JSON file at ``loc``."""
    return json.loads(read_bytes(loc).decode("utf-8"))


def write_json(loc: Location, value: Any) -> None:
    """Write ``value`` as indented JSON to ``loc``."""
    write_bytes(loc, json.dumps(value, indent=2, sort_keys=True).encode("utf-8"))


def list_files(loc: Location, suffix: str = "") -> list[str]:
    """Sorted paths (inside the filesystem) of files under ``loc`` ending with ``suffix``."""
    if not exists(loc):
        return []
    selector = pafs.FileSelector(loc.path, recursive=True)
    with _reachable(loc):
        infos = loc.filesystem.get_file_info(selector)
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(suffix))
