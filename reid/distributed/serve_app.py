"""``reid serve``: a Ray Serve application over a gallery index: a query-encoder deployment (the checkpoint's
text tower) and a search deployment (exact top-k, or a FAISS index for large galleries) behind an HTTP API
and a web page.

    POST /search {"text": "...", "top": 10}  -> {"query", "tokens", "truncated", "hits": [{image_id, person_id,
                                                 score, description, with_description}],
                                                 "search": "exact" | "hnsw" | "ivf"}
    GET  /image/{image_id}                   -> the thumbnail JPEG stored in the index (nothing else is reachable)
    GET  /healthz                            -> {"status": "ok", "images": N}
    GET  /                                   -> the search page
"""
# No ``from __future__ import annotations`` here: Serve's ingress rebuilds the routes in its own module,
# where FastAPI could not resolve the string annotation ``Request`` and took it for a query parameter.

import json
import logging
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve

from reid.evaluation.topk import ApproxIndex, exact_topk
from reid.storage.config import StorageConfig

logger = logging.getLogger(__name__)

MAX_TOP = 1000
app = FastAPI(title="reid search")


def bad_request(reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=400)


def parse_query(body: bytes) -> tuple[str, int] | JSONResponse:
    """``(text, top)`` of a ``/search`` body, or the 400 response that says what is wrong with it."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return bad_request('the body must be JSON like {"text": "a woman in a red coat", "top": 10}')
    if not isinstance(payload, dict):
        return bad_request('the body must be a JSON object like {"text": "...", "top": 10}')
    text, top = payload.get("text"), payload.get("top", 10)
    if not isinstance(text, str) or not text.strip():
        return bad_request("'text' must be a non-empty string")
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP:
        return bad_request(f"'top' must be an integer from 1 to {MAX_TOP}")
    return text, top


@serve.deployment
class QueryEncoder:
    """The checkpoint's text side: a query's embedding and the tokens that were kept. Concurrent queries are
    encoded together (Serve's dynamic batching: up to 16, waiting at most 2 ms for company)."""

    def __init__(self, checkpoint: str, storage: StorageConfig | None = None) -> None:
        from reid.evaluation.loading import load_encoder

        self.encoder, config = load_encoder(checkpoint, "auto", 64, storage)
        self.max_tokens = config.data.max_text_length - 2  # [CLS] and [SEP]

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def encode(self, texts: list[str]) -> list[dict[str, Any]]:
        embeddings = self.encoder.encode_text(list(texts)).tolist()
        out = []
        for text, embedding in zip(texts, embeddings, strict=True):
            tokens = self.encoder.tokenizer.tokenize(text)
            out.append({"embedding": embedding, "tokens": tokens[: self.max_tokens],
                        "truncated": len(tokens) > self.max_tokens})
        return out


@serve.deployment
@serve.ingress(app)
class SearchService:
    """Ranks the index for a query embedding; serves the page and the thumbnails."""

    def __init__(self, encoder: Any, index_uri: str, checkpoint: str, approx: str | None = None,
                 storage: StorageConfig | None = None) -> None:
        from reid.evaluation.gallery_index import read_index

        self.encoder = encoder
        self.index = read_index(index_uri, storage)
        self.index.check_checkpoint(checkpoint, storage)
        self.approx = ApproxIndex.build(self.index.embeddings, approx) if approx else None
        self.page = resources.files("reid.distributed").joinpath("static", "search.html").read_text()

    @app.get("/healthz")
    def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "images": len(self.index.image_ids)}

    @app.get("/", response_class=HTMLResponse)
    def page(self) -> str:
        return self.page

    @app.get("/image/{image_id:path}")
    def image(self, image_id: str) -> Response:
        data = self.index.thumbnails.get(image_id)
        if data is None:
            return JSONResponse({"error": f"no image '{image_id}' in the index"}, status_code=404)
        return Response(content=data, media_type="image/jpeg")

    @app.post("/search")
    async def search(self, request: Request) -> Any:
        parsed = parse_query(await request.body())
        if isinstance(parsed, JSONResponse):
            return parsed
        text, top = parsed
        query = await self.encoder.encode.remote(text)
        vector = np.asarray([query["embedding"]], dtype=np.float32)
        if self.approx is not None:
            scores, order = self.approx.search(vector, top)
        else:
            scores, order = exact_topk(vector, self.index.embeddings, top)
        hits = [{"image_id": self.index.image_ids[i], "person_id": int(self.index.person_ids[i]),
                 "score": float(s), "description": self.index.descriptions[i],
                 "with_description": self.index.descriptions[i] is not None}
                for s, i in zip(scores[0].tolist(), order[0].tolist(), strict=True) if i >= 0]
        return {"query": text, "tokens": query["tokens"], "truncated": query["truncated"], "hits": hits,
                "search": self.approx.kind if self.approx is not None else "exact"}


REPLICA_CPUS = 0.5  # a replica's reservation: queries are small; the machine's cores are shared with Ray's own


def build_app(index_uri: str, checkpoint: str, replicas: int = 1, approx: str | None = None,
              storage: StorageConfig | None = None) -> Any:
    """The bound application: ``replicas`` query encoders feeding ``replicas`` search replicas."""
    options = {"num_replicas": replicas, "ray_actor_options": {"num_cpus": REPLICA_CPUS}}
    encoder = QueryEncoder.options(**options).bind(checkpoint, storage)
    return SearchService.options(**options).bind(encoder, index_uri, checkpoint, approx, storage)


def serve_index(index_uri: str, checkpoint: str | None = None, host: str = "127.0.0.1", port: int = 8000,
                replicas: int = 1, approx: str | None = None, storage: StorageConfig | None = None,
                blocking: bool = True) -> str:
    """Start the application on ``host:port`` (the index's own checkpoint unless ``checkpoint``); returns its URL.

    An index built with another checkpoint than ``checkpoint`` is refused before anything starts.
    """
    from reid.distributed.runtime import ensure_ray
    from reid.evaluation.gallery_index import read_index

    index = read_index(index_uri, storage)
    checkpoint = checkpoint or index.manifest["checkpoint"]
    index.check_checkpoint(checkpoint, storage)
    ensure_ray()
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(index_uri, checkpoint, replicas, approx, storage), name="reid-search", route_prefix="/",
              blocking=False)
    url = f"http://{host}:{port}"
    logger.info("serving %d images of %s at %s", len(index.image_ids), index_uri, url)
    if blocking:
        import time

        while True:
            time.sleep(3600)
    return url
