"""URIs: local paths, file:// and s3:// through pyarrow filesystems."""

from reid.storage.uri import (
    Location,
    StorageUnreachableError,
    adopt_s3_filesystem,
    exists,
    list_files,
    read_bytes,
    read_json,
    resolve,
    s3_filesystem,
    write_bytes,
    write_json,
)

__all__ = [
    "Location", "StorageUnreachableError", "adopt_s3_filesystem", "exists", "list_files", "read_bytes", "read_json",
    "resolve", "s3_filesystem",
    "write_bytes", "write_json",
]
