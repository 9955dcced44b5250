"""Small fake CMS servers (real HTTP, real status codes) for fault injection and for Contentful,
which cannot run locally. Each answers the way the real one was recorded answering
(its documented webhook, fetch, list and error shapes); the real-CMS end-to-end tests are separate files."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

BASES = {"posts": "post", "pages": "page"}


@dataclass
class Post:
    id: int
    title: str
    html: str
    type: str = "post"
    status: str = "publish"
    password: str = ""
    modified: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc))
    link: str = ""                       # what WordPress answers as its `link` (default: ?p=<id>)


class FakeServer:
    """Lifecycle, a clock and injected failures shared by the fakes; `_build` is the API."""

    def __init__(self) -> None:
        self.fetches: dict = {}
        self.failures: list[tuple[int, dict[str, str], object]] = []   # (status, headers, body) for the next requests
        self.clock = datetime(2026, 1, 1, tzinfo=timezone.utc)
        self.lock = threading.Lock()
        self.app = self._build()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _build(self) -> Flask:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()

    def tick(self) -> datetime:
        """Each change gets a later modified time, as a CMS gives it."""
        with self.lock:
            self.clock += timedelta(seconds=1)
            return self.clock

    def fail_next(self, n: int, status: int = 503, retry_after: str | None = None, body: object = None) -> None:
        """The next n requests answer `status` with `body`: a str is sent as HTML (a WAF's or a
        proxy's page), anything else as JSON; None sends a generic JSON error."""
        headers = {"Retry-After": retry_after} if retry_after else {}
        self.failures.extend([(status, headers, body)] * n)

    def injected(self):
        with self.lock:
            if self.failures:
                status, headers, body = self.failures.pop(0)
                if isinstance(body, str):
                    return body, status, {**headers, "Content-Type": "text/html"}
                return jsonify(body if body is not None else {"message": "injected failure"}), status, headers
        return None

    def count(self, doc_id) -> None:
        with self.lock:
            self.fetches[doc_id] = self.fetches.get(doc_id, 0) + 1


class FakeWordPress(FakeServer):
    def __init__(self) -> None:
        self.posts: dict[int, Post] = {}
        self.pretty_permalinks = True
        self.list_calls = 0           # listing requests
        self.listed_rows = 0          # entries they returned: a poll must cost O(changes)
        self.unlisted: set[int] = set()   # published, fetchable, yet missing from listings (a truncated listing)
        super().__init__()

    # -- what a test does to the CMS ----------------------------------------------------------

    def publish(self, post_id: int, title: str, html: str, type: str = "post") -> Post:
        post = Post(post_id, title, html, type=type, modified=self.tick())
        self.posts[post_id] = post
        return post

    def edit(self, post_id: int, *, title: str | None = None, html: str | None = None,
             status: str | None = None, password: str | None = None, touch: bool = True) -> Post:
        post = self.posts[post_id]
        if title is not None:
            post.title = title
        if html is not None:
            post.html = html
        if status is not None:
            post.status = status
        if password is not None:
            post.password = password
        if touch:
            post.modified = self.tick()
        return post

    def delete(self, post_id: int) -> None:
        del self.posts[post_id]

    # -- the REST API -------------------------------------------------------------------------

    def _build(self) -> Flask:
        app = Flask("fake-wordpress")

        def one(base: str, post_id: int):
            if (failure := self.injected()) is not None:
                return failure
            self.count(post_id)
            post = self.posts.get(post_id)
            if post is None or BASES.get(base) != post.type:
                return jsonify(code="rest_post_invalid_id", message="Invalid post ID.", data={"status": 404}), 404
            if post.status != "publish":
                return jsonify(code="rest_forbidden", message="Sorry, you are not allowed to do that.",
                               data={"status": 401}), 401
            return jsonify(self._render(post, base))

        def many(base: str):
            if (failure := self.injected()) is not None:
                return failure
            per_page = int(request.args.get("per_page", 10))
            page = int(request.args.get("page", 1))
            after = moment(request.args["modified_after"]) if "modified_after" in request.args else None
            with self.lock:
                posts = list(self.posts.values())
                self.list_calls += 1
            items = sorted((p for p in posts if p.type == BASES.get(base) and p.status == "publish"
                            and p.id not in self.unlisted and (after is None or p.modified > after)),
                           key=(lambda p: (p.modified, p.id)) if request.args.get("orderby") == "modified" else (lambda p: p.id))

            pages = max(1, -(-len(items) // per_page))
            if page > pages:
                return jsonify(code="rest_post_invalid_page_number", data={"status": 400}), 400
            chunk = items[(page - 1) * per_page: page * per_page]
            self.listed_rows += len(chunk)
            body = [{"id": p.id, "modified_gmt": p.modified.strftime("%Y-%m-%dT%H:%M:%S")} for p in chunk]
            return jsonify(body), 200, {"X-WP-Total": str(len(items)), "X-WP-TotalPages": str(pages)}

        @app.get("/wp-json/wp/v2/<base>/<int:post_id>")
        def pretty_one(base: str, post_id: int):
            if not self.pretty_permalinks:
                return "<html>Page not found</html>", 404
            return one(base, post_id)

        @app.get("/wp-json/wp/v2/<base>")
        def pretty_many(base: str):
            if not self.pretty_permalinks:
                return "<html>Page not found</html>", 404
            return many(base)

        @app.get("/")
        def plain():
            parts = request.args.get("rest_route", "").strip("/").split("/")
            if len(parts) == 4 and parts[3].isdigit():
                return one(parts[2], int(parts[3]))
            if len(parts) == 3:
                return many(parts[2])
            return "<html>home</html>"

        return app

    def _render(self, post: Post, base: str) -> dict:
        protected = bool(post.password)
        return {
            "id": post.id, "type": post.type, "status": post.status,
            "link": post.link or f"{self.url}/?p={post.id}",
            "modified_gmt": post.modified.strftime("%Y-%m-%dT%H:%M:%S"),
            "title": {"rendered": post.title},
            "content": {"rendered": "" if protected else post.html, "protected": protected},
        }


@dataclass
class Doc:
    """A document in one of the fakes below: `fields` holds the CMS's own body fields."""
    id: str
    title: str
    fields: dict
    kind: str = "posts"           # Ghost: posts/pages, Strapi: the collection, Contentful: content type
    published: bool = True
    modified: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc))


class FakeDocs(FakeServer):
    """A store of Docs with the changes a test makes; subclasses add one CMS's API."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}
        self.list_calls = 0
        self.listed_rows = 0          # entries listing requests matched: a poll must cost O(changes)
        super().__init__()

    def put(self, doc_id: str, title: str, kind: str = "posts", published: bool = True, **fields) -> Doc:
        doc = Doc(doc_id, title, fields, kind, published, self.tick())
        self.docs[doc_id] = doc
        return doc

    def unpublish(self, doc_id: str) -> None:
        self.docs[doc_id].published = False
        self.docs[doc_id].modified = self.tick()

    def delete(self, doc_id: str) -> None:
        del self.docs[doc_id]

    def visible(self, doc_id: str, kind: str | None = None) -> Doc | None:
        self.count(doc_id)
        doc = self.docs.get(doc_id)
        return doc if doc and doc.published and kind in (None, doc.kind) else None

    def published(self, kind: str | None = None, after: str | None = None) -> list[Doc]:
        """The listing; `after` (a time as the CMS's modified-since filter gives it): only
        what was modified after it, oldest first, as the CMS's own query answers."""
        since = moment(after) if after else None
        with self.lock:
            self.list_calls += 1
            docs = [d for d in self.docs.values() if d.published and kind in (None, d.kind)
                    and (since is None or d.modified > since)]
            self.listed_rows += len(docs)
            return sorted(docs, key=(lambda d: (d.modified, d.id)) if since else (lambda d: d.id))


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def moment(text: str) -> datetime:
    """A time as a CMS filter writes it ('2026-01-01T00:00:05Z', '2026-01-01 00:00:05', ...)."""
    value = datetime.fromisoformat(text.strip().strip("'").replace(" ", "T").replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class FakeGhost(FakeDocs):
    """Ghost's Content API: 404 for anything not published, `?key=` required, paged browse."""
    key = "ghost-content-key"

    def _build(self) -> Flask:
        app = Flask("fake-ghost")

        def render(doc: Doc) -> dict:
            return {"id": doc.id, "title": doc.title, "html": doc.fields.get("html", ""),
                    "url": f"{self.url}/{doc.id}/", "updated_at": stamp(doc.modified)}

        @app.get("/ghost/api/content/<kind>/<doc_id>/")
        def one(kind: str, doc_id: str):
            if (failure := self.injected()) is not None:
                return failure
            if request.args.get("key") != self.key:
                return jsonify(errors=[{"message": "Unknown Content API Key", "type": "UnauthorizedError"}]), 401
            doc = self.visible(doc_id, kind)
            if doc is None:
                return jsonify(errors=[{"message": "Resource not found", "type": "NotFoundError"}]), 404
            return jsonify({kind: [render(doc)]})

        @app.get("/ghost/api/content/<kind>/")
        def browse(kind: str):
            if request.args.get("key") != self.key:
                return jsonify(errors=[{"type": "UnauthorizedError"}]), 401
            limit, page = int(request.args.get("limit", 15)), int(request.args.get("page", 1))
            nql = request.args.get("filter", "")
            docs = self.published(kind, nql.removeprefix("updated_at:>") if nql.startswith("updated_at:>") else None)
            pages = max(1, -(-len(docs) // limit))
            chunk = docs[(page - 1) * limit: page * limit]
            return jsonify({kind: [{"id": d.id, "updated_at": stamp(d.modified)} for d in chunk],
                            "meta": {"pagination": {"page": page, "limit": limit, "pages": pages,
                                                    "total": len(docs), "next": page + 1 if page < pages else None}}})

        return app


class FakeStrapi(FakeDocs):
    """Strapi 5's REST API: Bearer API token, documentId addressing, 404 when not published."""
    token = "strapi-read-only-token"

    def _build(self) -> Flask:
        app = Flask("fake-strapi")

        def render(doc: Doc) -> dict:
            return {"id": 7, "documentId": doc.id, "title": doc.title, **doc.fields, "locale": "en",
                    "createdAt": stamp(doc.modified), "updatedAt": stamp(doc.modified),
                    "publishedAt": stamp(doc.modified)}

        @app.before_request
        def auth():
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return jsonify(data=None, error={"status": 403, "name": "ForbiddenError", "message": "Forbidden"}), 403
            return self.injected()

        @app.get("/api/<collection>/<doc_id>")
        def one(collection: str, doc_id: str):
            doc = self.visible(doc_id, collection)
            if doc is None or request.args.get("status", "published") != "published":
                return jsonify(data=None, error={"status": 404, "name": "NotFoundError",
                                                 "message": "Document not found"}), 404
            return jsonify(data=render(doc), meta={})

        @app.get("/api/<collection>")
        def many(collection: str):
            page = int(request.args.get("pagination[page]", 1))
            size = min(100, int(request.args.get("pagination[pageSize]", 25)))
            docs = self.published(collection, request.args.get("filters[updatedAt][$gt]"))
            count = max(1, -(-len(docs) // size))
            chunk = docs[(page - 1) * size: page * size]
            return jsonify(data=[{"id": 7, "documentId": d.id, "updatedAt": stamp(d.modified)} for d in chunk],
                           meta={"pagination": {"page": page, "pageSize": size, "pageCount": count, "total": len(docs)}})

        return app


class FakeContentful(FakeDocs):
    """Contentful's Delivery and Sync APIs for one space/environment (fields in en-US)."""
    token = "contentful-delivery-token"
    space = "space1"
    page_size = 100

    def _build(self) -> Flask:
        app = Flask("fake-contentful")
        root = f"/spaces/{self.space}/environments/master"

        def entry(doc: Doc, locale: str | None) -> dict:
            fields = {"title": doc.title, **doc.fields}
            return {"sys": {"id": doc.id, "type": "Entry", "updatedAt": stamp(doc.modified),
                            "contentType": {"sys": {"type": "Link", "linkType": "ContentType", "id": doc.kind}}},
                    "fields": fields if locale else {k: {"en-US": v} for k, v in fields.items()}}

        @app.before_request
        def auth():
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return jsonify(sys={"type": "Error", "id": "AccessTokenInvalid"}), 401
            return self.injected()

        @app.get(f"{root}/entries/<doc_id>")
        def one(doc_id: str):
            doc = self.visible(doc_id)
            if doc is None:
                return jsonify(sys={"type": "Error", "id": "NotFound"}, message="The resource could not be found.",
                               details={"type": "Entry", "id": doc_id}), 404
            return jsonify(entry(doc, request.args.get("locale")))

        @app.get(f"{root}/entries")
        def entries():
            docs = [d for d in self.published(after=request.args.get("sys.updatedAt[gt]"))
                    if request.args.get("content_type") in (None, d.kind)]
            skip, limit = int(request.args.get("skip", 0)), min(1000, int(request.args.get("limit", 100)))
            return jsonify(sys={"type": "Array"}, total=len(docs), skip=skip, limit=limit,
                           items=[{"sys": entry(d, None)["sys"]} for d in docs[skip: skip + limit]])

        @app.get(f"{root}/sync")
        def sync():
            if request.args.get("initial") == "true":
                offset = 0
                docs = [d for d in self.published() if request.args.get("content_type") in (None, d.kind)]
                self.sync_set = docs
            else:
                offset = int(request.args["sync_token"].removeprefix("tok"))
                docs = self.sync_set
                self.list_calls += 1
            items = [entry(d, None) for d in docs[offset: offset + self.page_size]]
            nxt = offset + self.page_size
            link = "nextPageUrl" if nxt < len(docs) else "nextSyncUrl"
            return jsonify(sys={"type": "Array"}, items=items,
                           **{link: f"https://cdn.contentful.com{root}/sync?sync_token=tok{nxt}"})

        return app


class FakeGeneric(FakeDocs):
    """The generic connector's documented HTTP contract (README "Connecting an in-house CMS")."""
    token = "generic-api-token"
    page_size = 100

    def _build(self) -> Flask:
        app = Flask("fake-generic")

        @app.before_request
        def auth():
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return jsonify(error="unauthorized"), 401
            return self.injected()

        @app.get("/documents/<path:doc_id>")
        def one(doc_id: str):
            doc = self.docs.get(doc_id)
            self.count(doc_id)
            if doc is None:
                return jsonify(id=doc_id, error="no such document"), 404
            if not doc.published:
                return jsonify(id=doc_id, error="not published"), 410
            return jsonify(id=doc.id, title=doc.title, url=f"{self.url}/d/{doc.id}",
                           modified=stamp(doc.modified), **doc.fields)

        @app.get("/documents")
        def many():
            docs = self.published(after=request.args.get("modified_after"))
            start = int(request.args.get("cursor", 0))
            limit = int(request.args.get("limit", self.page_size))
            nxt = start + limit
            return jsonify(documents=[{"id": d.id, "modified": stamp(d.modified)} for d in docs[start:nxt]],
                           next_cursor=str(nxt) if nxt < len(docs) else None)

        return app


class FakeEmbeddingServer:
    """An OpenAI-compatible /v1/embeddings server whose answers a test chooses (fault injection):
    `mode` "good" (unit vectors of `dim`, the same text the same vector), "endless" (a 200 body
    that never ends), "nan", "strings", "short" (too few vectors) or "down" (connection closed)."""

    def __init__(self, dim: int = 384) -> None:
        import hashlib
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import numpy as np
        fake = self
        self.mode, self.dim, self.requests = "good", dim, 0

        def vector(text: str) -> list[float]:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")
            v = np.random.default_rng(seed).standard_normal(dim)
            return (v / np.linalg.norm(v)).tolist()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                fake.requests += 1
                texts = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))["input"]
                if fake.mode == "down":
                    self.close_connection = True
                    return
                if fake.mode == "endless":
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.end_headers()
                    try:
                        self.wfile.write(b'{"data": [{"index": 0, "embedding": [')
                        while fake.mode == "endless":
                            self.wfile.write(b"0.1, " * 20000)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                vectors = [vector(t) for t in texts]
                if fake.mode == "nan":
                    vectors[0][3] = float("nan")
                elif fake.mode == "strings":
                    vectors[0] = [str(x) for x in vectors[0]]
                elif fake.mode == "short":
                    vectors = vectors[:-1]
                body = json.dumps({"object": "list", "model": "fake",
                                   "data": [{"index": i, "embedding": v} for i, v in enumerate(vectors)]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.mode = "down"
        self.server.shutdown()
