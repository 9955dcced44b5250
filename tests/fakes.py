"""A small fake WordPress REST server (real HTTP, real status codes) for fault injection.
The real-WordPress end-to-end test is its own file; this one answers like WordPress 6.x
does for anonymous clients (see shared/research/real-cms.md)."""

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


class FakeWordPress:
    def __init__(self) -> None:
        self.posts: dict[int, Post] = {}
        self.fetches: dict[int, int] = {}
        self.failures: list[tuple[int, dict[str, str]]] = []     # (status, headers) for the next requests
        self.pretty_permalinks = True
        self.clock = datetime(2026, 1, 1, tzinfo=timezone.utc)
        self.lock = threading.Lock()
        self.app = self._build()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()

    # -- what a test does to the CMS ----------------------------------------------------------

    def tick(self) -> datetime:
        """Each change gets a later modified time, as WordPress gives it."""
        with self.lock:
            self.clock += timedelta(seconds=1)
            return self.clock

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

    def fail_next(self, n: int, status: int = 503, retry_after: str | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after else {}
        self.failures.extend([(status, headers)] * n)

    # -- the REST API -------------------------------------------------------------------------

    def _build(self) -> Flask:
        app = Flask("fake-wordpress")

        def injected():
            with self.lock:
                if self.failures:
                    status, headers = self.failures.pop(0)
                    return jsonify(code="injected", message="injected failure"), status, headers
            return None

        def one(base: str, post_id: int):
            if (failure := injected()) is not None:
                return failure
            self.fetches[post_id] = self.fetches.get(post_id, 0) + 1
            post = self.posts.get(post_id)
            if post is None or BASES.get(base) != post.type:
                return jsonify(code="rest_post_invalid_id", message="Invalid post ID.", data={"status": 404}), 404
            if post.status != "publish":
                return jsonify(code="rest_forbidden", message="Sorry, you are not allowed to do that.",
                               data={"status": 401}), 401
            return jsonify(self._render(post, base))

        def many(base: str):
            if (failure := injected()) is not None:
                return failure
            per_page = int(request.args.get("per_page", 10))
            page = int(request.args.get("page", 1))
            with self.lock:
                posts = list(self.posts.values())
            items = sorted((p for p in posts if p.type == BASES.get(base) and p.status == "publish"),
                           key=lambda p: p.id)
            pages = max(1, -(-len(items) // per_page))
            if page > pages:
                return jsonify(code="rest_post_invalid_page_number", data={"status": 400}), 400
            chunk = items[(page - 1) * per_page: page * per_page]
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
            "link": f"{self.url}/?p={post.id}",
            "modified_gmt": post.modified.strftime("%Y-%m-%dT%H:%M:%S"),
            "title": {"rendered": post.title},
            "content": {"rendered": "" if protected else post.html, "protected": protected},
        }
