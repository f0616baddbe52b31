"""Fixtures of the describe tests: tiny prepared datasets, the local chat endpoint, one shared local Ray."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from reid.data.records import IDENTITY_SCHEMA
from reid.describe.config import DescribeConfig
from reid.describe.local_endpoint import EndpointScript, LocalChatEndpoint, image_key

API_KEY_ENV = "REID_TEST_DESCRIBE_KEY"
API_KEY = "sk-test-7f3a9c1e5b2d4f6a8c0e"

CAPTIONS = (
    "A young woman with long black hair is wearing a white t-shirt and a blue skirt. She carries a brown handbag.",
    "The slim man has short brown hair, wearing a red jacket with black pants and white shoes.",
    "A tall elderly man with grey hair in a green coat and a black cap.",
)


def jpeg(index: int) -> bytes:
    """A small JPEG that differs for every ``index`` (so the endpoint can tell images apart)."""
    image = Image.new("RGB", (24, 48), ((index * 37) % 256, (index * 91) % 256, 120))
    ImageDraw.Draw(image).rectangle([2, 2 + index % 20, 12, 30], fill=(255, (index * 13) % 256, 0))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


class TinyDataset:
    """A prepared dataset on disk: ``identities`` people x ``per_identity`` images per split."""

    def __init__(self, root: Path, identities: int, per_identity: int, splits: tuple[str, ...]) -> None:
        self.uri = str(root)
        self.images: dict[str, bytes] = {}
        counter = 0
        for split in splits:
            rows = []
            for person in range(identities):
                ids = [f"{split}/p{person:03d}/{k}.jpg" for k in range(per_identity)]
                images = [jpeg(counter + k) for k in range(per_identity)]
                counter += per_identity
                self.images.update(zip(ids, images, strict=True))
                rows.append({
                    "person_id": person, "source_id": str(person), "split": split, "image_ids": ids,
                    "images": images, "captions": [[CAPTIONS[(person + k) % len(CAPTIONS)]] for k in range(len(ids))],
                    "clothes_ids": [-1] * len(ids), "attributes": [""] * len(ids),
                })
            (root / "identities" / split).mkdir(parents=True)
            pq.write_table(pa.Table.from_pylist(rows, schema=IDENTITY_SCHEMA),
                           root / "identities" / split / "part-00000.parquet")

    def key(self, image_id: str) -> str:
        """The endpoint's name for an image."""
        return image_key(self.images[image_id])


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., TinyDataset]:
    def make(identities: int = 3, per_identity: int = 2, splits: tuple[str, ...] = ("train",)) -> TinyDataset:
        return TinyDataset(tmp_path / "dataset", identities, per_identity, splits)

    return make


@pytest.fixture
def endpoint() -> Iterator[LocalChatEndpoint]:
    """A running local endpoint that requires :data:`API_KEY`."""
    with LocalChatEndpoint(EndpointScript(api_key=API_KEY, retry_after_s=0.3, slow_s=1.5)) as ep:
        yield ep


class KeyEnv(NamedTuple):
    name: str
    value: str


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> KeyEnv:
    """The endpoint's key, set in the environment variable ``name``."""
    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    return KeyEnv(API_KEY_ENV, API_KEY)


@pytest.fixture
def mllm_config(endpoint: LocalChatEndpoint) -> Callable[..., DescribeConfig]:
    """``mllm_config(**overrides)``: a describe config pointed at the local endpoint, fast backoff."""
    def make(**overrides: object) -> DescribeConfig:
        base = {"backend": "mllm", "base_url": endpoint.base_url, "api_key_env": API_KEY_ENV, "concurrency": 3,
                "batch_size": 4, "splits": ("train",), "backoff_base_s": 0.01, "backoff_max_s": 0.05,
                "timeout_s": 5.0, "max_retries": 3, "max_validation_retries": 2, "temperature": 0.7,
                "max_tokens": 222}
        return DescribeConfig(**(base | overrides))

    return make


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    """One local Ray for every test here that needs it (2 CPUs, no dashboard), stopped at the end."""
    import ray

    from reid.distributed.runtime import ensure_ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    started = not ray.is_initialized()
    ensure_ray(num_cpus=2)
    yield
    if started:
        ray.shutdown()
