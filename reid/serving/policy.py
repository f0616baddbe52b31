"""What the search service demands of a request: the token's digest (or none), the body cap, the per-client rate,
and where and how the audit log is kept."""

from __future__ import annotations

from dataclasses import dataclass

from reid.serving.audit import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES
from reid.serving.auth import token_digest
from reid.serving.limits import MAX_BODY_BYTES


@dataclass(frozen=True)
class AccessPolicy:
    """``digest``: SHA-256 of the bearer token (None: no token asked, loopback only); ``rate``: requests per second
    per client address (None: unlimited) with ``burst`` at once; ``audit_log``: the audit file (None: the
    default for the index, see :func:`reid.serving.audit.default_audit_path`)."""

    digest: bytes | None = None
    rate: float | None = None
    burst: int = 60
    max_body: int = MAX_BODY_BYTES
    audit_log: str | None = None
    audit_max_bytes: int = DEFAULT_MAX_BYTES
    audit_backups: int = DEFAULT_BACKUPS

    def __post_init__(self) -> None:
        if self.rate is not None and (self.rate <= 0 or self.burst < 1):
            raise ValueError(f"the rate limit needs a rate > 0 and a burst >= 1, got {self.rate} and {self.burst}")

    @classmethod
    def with_token(cls, token: str | None, **settings: object) -> AccessPolicy:
        """A policy keeping only the digest of ``token`` (None: no token)."""
        return cls(digest=None if token is None else token_digest(token), **settings)

    @property
    def token_required(self) -> bool:
        return self.digest is not None

    def __repr__(self) -> str:  # the digest stays out of reprs and logs
        return (f"AccessPolicy(token_required={self.token_required}, rate={self.rate}, burst={self.burst}, "
                f"max_body={self.max_body}, audit_log={self.audit_log!r})")
