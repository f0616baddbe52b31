"""``reid serve``: a Ray Serve application over a gallery index: a query-encoder deployment (the checkpoint's
text tower) and a search deployment (exact top-k, or a FAISS index for large galleries) behind an HTTP API
and a web page.

    POST /search {"text": "...", "top": 10}  -> {"query", "tokens", "truncated", "hits": [{image_id, person_id,
                                                 score, description, with_description}],
                                                 "search": "exact" | "hnsw" | "ivf"}
    GET  /image/{image_id}                   -> the thumbnail JPEG stored in the index (nothing else is reachable)
    GET  /healthz                            -> {"status": "ok", "images": N}   (open: no token, no rate limit)
    GET  /                                   -> the search page (401 and the same page, which asks for the token,
                                                 without it)

With a token (:class:`reid.serving.policy.AccessPolicy`) every route but ``/healthz`` answers 401 unless the request
carries ``Authorization: Bearer <token>``; a client over its rate gets 429, a body over 64 KB 413. A gatekeeper
deployment (one replica, on the node that started the service) holds the per-client rate buckets and is the only
writer of the audit log: one JSON line per search and image fetch, whatever its answer.
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
from reid.serving.audit import AuditLog, audit_record, default_audit_path
from reid.serving.auth import allows, check_exposure
from reid.serving.limits import BodyTooLarge, RateLimiter, read_capped
from reid.serving.policy import AccessPolicy
from reid.storage.config import StorageConfig

logger = logging.getLogger(__name__)

MAX_TOP = 1000
app = FastAPI(title="reid search")


def bad_request(reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=400)


CHALLENGE = {"WWW-Authenticate": 'Bearer realm="reid search"'}


def unauthorized() -> JSONResponse:
    return JSONResponse({"error": "a bearer token is required: send the header 'Authorization: Bearer <token>'"},
                        status_code=401, headers=CHALLENGE)


def too_many(wait: float) -> JSONResponse:
    seconds = max(1, int(wait + 0.999))
    return JSONResponse({"error": f"too many requests from this address: retry in {seconds} s"}, status_code=429,
                        headers={"Retry-After": str(seconds)})


def too_large(limit: int) -> JSONResponse:
    return JSONResponse({"error": f"the request body is over {limit // 1024} KB"}, status_code=413)


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


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


@serve.deployment(num_replicas=1, max_ongoing_requests=1000)
class Gatekeeper:
    """One per application, so every search replica shares it: the per-client rate buckets and the audit log's
    only writer (the file lives on the node this replica is pinned to: the one that started the service)."""

    def __init__(self, audit_path: str, max_bytes: int, backups: int, rate: float | None, burst: int) -> None:
        self.audit = AuditLog(audit_path, max_bytes, backups)
        self.limiter = RateLimiter(rate, burst) if rate else None

    async def admit(self, client: str) -> float:
        """0.0 when ``client`` may go ahead, else the seconds it must wait."""
        return self.limiter.admit(client) if self.limiter is not None else 0.0

    async def record(self, entry: dict[str, Any]) -> None:
        self.audit.write(entry)


@serve.deployment
@serve.ingress(app)
class SearchService:
    """Ranks the index for a query embedding; serves the page and the thumbnails, to token holders only when the
    policy has a token; every search and image fetch goes to the audit log through the gatekeeper."""

    def __init__(self, encoder: Any, gate: Any, index_uri: str, checkpoint: str, approx: str | None = None,
                 storage: StorageConfig | None = None, policy: AccessPolicy | None = None) -> None:
        from reid.evaluation.gallery_index import read_index

        self.encoder, self.gate, self.policy = encoder, gate, policy or AccessPolicy()
        self.index = read_index(index_uri, storage)
        self.index.check_checkpoint(checkpoint, storage)
        self.approx = ApproxIndex.build(self.index.embeddings, approx) if approx else None
        page = resources.files("reid.distributed").joinpath("static", "search.html").read_text()
        self.page = page.replace('data-auth="none"', 'data-auth="token"') if self.policy.token_required else page

    async def refusal(self, request: Request) -> JSONResponse | None:
        """429 for a client over its rate, 401 without the token, else None."""
        wait = await self.gate.admit.remote(client_address(request))
        if wait > 0:
            return too_many(wait)
        if not allows(self.policy.digest, request.headers.get("authorization")):
            return unauthorized()
        return None

    async def audited(self, request: Request, route: str, response: Response, **fields: Any) -> Response:
        """``response`` once its line is in the audit log; a 503 (nothing shown) when the line cannot be written."""
        entry = audit_record(client_address(request), route, response.status_code, **fields)
        try:
            await self.gate.record.remote(entry)
        except Exception:
            logger.exception("the audit log could not be written; refusing the %s request", route)
            return JSONResponse({"error": "the audit log could not be written: nothing is served without a record"},
                                status_code=503)
        return response

    @app.get("/healthz")
    def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "images": len(self.index.image_ids)}

    @app.get("/", response_class=HTMLResponse)
    async def page(self, request: Request) -> Response:
        refused = await self.refusal(request)
        if refused is not None and refused.status_code != 401:
            return refused
        # Without the token: 401, and the page itself (it holds no data), which asks for the token.
        return HTMLResponse(self.page, status_code=200 if refused is None else 401,
                            headers=None if refused is None else CHALLENGE)

    @app.get("/image/{image_id:path}")
    async def image(self, request: Request, image_id: str) -> Response:
        refused = await self.refusal(request)
        if refused is not None:
            return await self.audited(request, "image", refused, image_id=image_id, returned=[])
        data = self.index.thumbnails.get(image_id)
        if data is None:
            missing = JSONResponse({"error": f"no image '{image_id}' in the index"}, status_code=404)
            return await self.audited(request, "image", missing, image_id=image_id, returned=[])
        return await self.audited(request, "image", Response(content=data, media_type="image/jpeg"),
                                  image_id=image_id, returned=[image_id])

    @app.post("/search")
    async def search(self, request: Request) -> Response:
        refused = await self.refusal(request)
        if refused is not None:
            return await self.audited(request, "search", refused, query=None, returned=[])
        try:
            body = await read_capped(request.headers, request.stream(), self.policy.max_body)
        except BodyTooLarge:
            return await self.audited(request, "search", too_large(self.policy.max_body), query=None, returned=[])
        parsed = parse_query(body)
        if isinstance(parsed, JSONResponse):
            return await self.audited(request, "search", parsed, query=None, returned=[])
        text, top = parsed
        answer = await self.rank(text, top)
        return await self.audited(request, "search", JSONResponse(answer), query=text, top=top,
                                  returned=[hit["image_id"] for hit in answer["hits"]])

    async def rank(self, text: str, top: int) -> dict[str, Any]:
        """The answer to a valid query: the tokens read and the ``top`` hits."""
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
GATE_CPUS = 0.0  # the gatekeeper only counts and appends lines


def serving_nodes(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alive nodes (``ray.nodes()`` rows) with room for one replica of each replicated deployment."""
    return [n for n in nodes if n.get("Alive") and n.get("Resources", {}).get("CPU", 0.0) >= 2 * REPLICA_CPUS]


def replica_spread(replicas: int, nodes: int) -> tuple[dict[str, Any], str]:
    """The deployments' placement options for ``replicas`` replicas on a cluster of ``nodes`` serving nodes, and
    the line that says it: one replica of each deployment per node when there are enough nodes (Serve's
    ``max_replicas_per_node=1``: a lost node takes one replica of each), else wherever they fit."""
    if replicas < 2:
        return {}, f"{replicas} replica of each deployment"
    if nodes >= replicas:
        return {"max_replicas_per_node": 1}, f"{replicas} replicas of each deployment, one per node ({nodes} nodes)"
    return {}, (f"{replicas} replicas of each deployment wherever they fit: the cluster has {nodes} node"
                f"{'s' if nodes != 1 else ''} with room for one, fewer than {replicas}, so a lost node may take "
                "several")


def proxy_location(addresses: list[str]) -> str:
    """Where Serve runs its HTTP proxies: on every node when each node has an address of its own, else on the head
    alone (nodes sharing one machine's address would all bind the same port)."""
    return "EveryNode" if len(set(addresses)) == len(addresses) else "HeadOnly"


def build_app(index_uri: str, checkpoint: str, replicas: int = 1, approx: str | None = None,
              storage: StorageConfig | None = None, policy: AccessPolicy | None = None,
              audit_path: str | None = None, audit_node: str | None = None,
              spread: dict[str, Any] | None = None) -> Any:
    """The bound application: ``replicas`` query encoders feeding ``replicas`` search replicas (placed by
    ``spread``, :func:`replica_spread`'s options), which share one gatekeeper (on the node whose id
    ``audit_node`` is, when given)."""
    policy = policy or AccessPolicy()
    options = {"num_replicas": replicas, "ray_actor_options": {"num_cpus": REPLICA_CPUS}, **(spread or {})}
    gate_actor: dict[str, Any] = {"num_cpus": GATE_CPUS}
    if audit_node:
        from ray._raylet import RAY_NODE_ID_KEY

        gate_actor["label_selector"] = {RAY_NODE_ID_KEY: audit_node}
    gate = Gatekeeper.options(ray_actor_options=gate_actor).bind(
        audit_path or str(default_audit_path(index_uri)), policy.audit_max_bytes, policy.audit_backups, policy.rate,
        policy.burst)
    encoder = QueryEncoder.options(**options).bind(checkpoint, storage)
    return SearchService.options(**options).bind(encoder, gate, index_uri, checkpoint, approx, storage, policy)


def prepare_audit_log(index_uri: str, policy: AccessPolicy) -> str:
    """The audit file's path (the policy's, else the index's default), created now so that a path the service
    cannot write is refused before anything starts."""
    path = policy.audit_log or str(default_audit_path(index_uri))
    try:
        AuditLog(path, policy.audit_max_bytes, policy.audit_backups).close()
    except OSError as exc:
        raise ValueError(f"cannot write the audit log at {path}: {exc.strerror or exc}; name another file with "
                         "--audit-log") from None
    return path


def serve_index(index_uri: str, checkpoint: str | None = None, host: str = "127.0.0.1", port: int = 8000,
                replicas: int = 1, approx: str | None = None, storage: StorageConfig | None = None,
                blocking: bool = True, policy: AccessPolicy | None = None) -> str:
    """Start the application on ``host:port`` (the index's own checkpoint unless ``checkpoint``); returns its URL.

    Refused before anything starts: an address beyond loopback without a token in ``policy``
    (:class:`reid.serving.auth.TokenError`), an index built with another checkpoint than ``checkpoint``, an audit
    log that cannot be written.
    """
    from reid.distributed.runtime import ensure_ray
    from reid.evaluation.gallery_index import read_index

    policy = policy or AccessPolicy()
    check_exposure(host, policy.token_required)
    index = read_index(index_uri, storage)
    checkpoint = checkpoint or index.manifest["checkpoint"]
    index.check_checkpoint(checkpoint, storage)
    audit_path = prepare_audit_log(index_uri, policy)
    ensure_ray()
    import ray

    nodes = ray.nodes()
    # The gatekeeper writes the file on this process's node (several nodes may share one machine's address).
    audit_node: str | None = ray.get_runtime_context().get_node_id()
    if not any(n["NodeID"] == audit_node and n.get("Alive") for n in nodes):  # a driver outside the cluster
        logger.warning("this machine is not a Ray node: the audit log %s is written on the gatekeeper's node",
                       audit_path)
        audit_node = None
    spread, placement = replica_spread(replicas, len(serving_nodes(nodes)))
    proxies = proxy_location([n["NodeManagerAddress"] for n in nodes if n.get("Alive")])
    logger.info("%s; HTTP proxies: %s", placement, proxies)
    if replicas > 1 and not spread:
        logger.warning("%s", placement)
    serve.start(http_options={"host": host, "port": port}, proxy_location=proxies)
    serve.run(build_app(index_uri, checkpoint, replicas, approx, storage, policy, audit_path, audit_node, spread),
              name="reid-search", route_prefix="/", blocking=False)
    url = f"http://{host}:{port}"
    logger.info("serving %d images of %s at %s (%s; audit log %s)", len(index.image_ids), index_uri, url,
                "bearer token required" if policy.token_required else "no token", audit_path)
    if blocking:
        import time

        while True:
            time.sleep(3600)
    return url
