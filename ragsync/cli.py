"""The `ragsync` command. Each command talks to the running daemon over its HTTP API when
one answers on the configured port, and opens the store itself when none does (the
embedded store admits one process at a time, and the nightly cron runs beside the daemon).
Errors are one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import click
import httpx

from ragsync import config as config_mod
from ragsync import logs
from ragsync.config import Config
from ragsync.datalock import DataLock
from ragsync.errors import RagsyncError

DAEMON_WAIT_S = 60                         # for a daemon that holds the data_dir to answer
_HELD: list[DataLock] = []                 # the data_dir lock of a standalone command, until exit


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"ragsync: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except RagsyncError as exc:
        click.echo(f"ragsync: error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:             # a bug: still one line unless asked for more
        if os.environ.get("RAGSYNC_DEBUG"):
            raise
        click.echo(f"ragsync: error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)


def _config_option(fn: Callable) -> Callable:
    """Every command takes --config (also accepted before the command name)."""
    @click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file (or RAGSYNC_CONFIG)")
    @click.pass_context
    @functools.wraps(fn)
    def wrapper(ctx: click.Context, config_file: str | None, **kwargs: Any) -> Any:
        cfg = config_mod.load(config_mod.config_path(config_file or (ctx.obj or {}).get("config_file")))
        return fn(cfg, **kwargs)
    return wrapper


@click.group()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file (or RAGSYNC_CONFIG)")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Keep a Qdrant index equal to what your CMS has published."""
    ctx.obj = {"config_file": config_file}
    logs.setup(logging.WARNING)


@cli.command()
@_config_option
def serve(cfg: Config) -> None:
    """Run the daemon: webhooks, search, admin API and the workers."""
    from ragsync.daemon import serve as run
    logs.daemon_level()
    if _healthz(cfg.base_url) is not None:
        raise RagsyncError(f"something already answers on {cfg.base_url}; is ragsync running?")
    run(cfg)


@cli.command()
@_config_option
def web(cfg: Config) -> None:
    """Server mode: only the HTTP side (webhooks, search, admin); run `ragsync worker`s beside it."""
    from ragsync.daemon import serve as run
    logs.daemon_level()
    run(cfg, role="web")


@cli.command()
@_config_option
def worker(cfg: Config) -> None:
    """Server mode: only the workers, taking passes from the shared Redis queue."""
    from ragsync.daemon import serve as run
    logs.daemon_level()
    run(cfg, role="worker")


@cli.command()
@click.argument("query")
@click.option("--source", help="only this source")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--url-prefix", help="only pages whose URL starts with this")
@click.option("--modified-after", help="only pages modified at or after this ISO 8601 time")
@click.option("--modified-before", help="only pages modified before this ISO 8601 time")
@click.option("--json", "as_json", is_flag=True, help="JSON output")
@_config_option
def search(cfg: Config, query: str, source: str | None, limit: int, url_prefix: str | None,
           modified_after: str | None, modified_before: str | None, as_json: bool) -> None:
    """Search the index (live versions of published pages only)."""
    from connectors.base import iso_utc
    from ragsync.engine import SearchFilter
    if source:
        cfg.source(source)
    try:
        times = {k: iso_utc(v) for k, v in (("modified_after", modified_after), ("modified_before", modified_before)) if v}
    except ValueError:
        raise click.BadParameter("times must be ISO 8601, e.g. 2026-01-31T00:00:00Z") from None
    where = SearchFilter(source=source, url_prefix=url_prefix, **times)
    if (url := _daemon_url(cfg)) is not None:
        params = {"q": query, "limit": limit, **{k: v for k, v in vars(where).items() if v}}
        token = cfg.search_token()
        resp = httpx.get(f"{url}/search", params=params, timeout=30,
                         headers={"authorization": f"Bearer {token}"} if token else None)
        _check(resp)
        results = resp.json()["results"]
    else:
        with _local(cfg) as engine:
            results = [r.as_dict() for r in engine.search(query, limit, where)]
    if as_json:
        click.echo(json.dumps({"query": query, "results": results}, indent=2))
        return
    if not results:
        click.echo("no results")
    for i, r in enumerate(results, 1):
        where = " > ".join(r.get("heading_path") or [])
        click.echo(f"{i:>2}. {r['score']:.3f}  {r['title']}{'  — ' + where if where else ''}\n    {r['url']}")
        snippet = " ".join(r["text"].split())
        click.echo(f"    {snippet[:200]}{'…' if len(snippet) > 200 else ''}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON output")
@_config_option
def status(cfg: Config, as_json: bool) -> None:
    """Points, pages, pending work and the dead-letter queue at a glance."""
    if (url := _daemon_url(cfg)) is not None:
        data = _http(cfg, "GET", f"{url}/admin/status")
        data["daemon"] = url
    else:
        with _local(cfg) as engine:
            data = engine.status()
        data["daemon"] = None
    if as_json or not sys.stdout.isatty():
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"daemon   {data['daemon'] or 'not running'}")
    click.echo(f"points   {data['points']}    pending {data['pending']} (oldest {data['oldest_pending_s']}s)"
               f"    dead-letter {data['dead']}    embedded since start {data['chunks_embedded']}")
    rows = [("source", "live pages", "gone", "points", "deletions held", "last reconcile", "caught (all time)")]
    for name, s in data["sources"].items():
        rec = data["reconcile"].get(name, {})
        last = (f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(rec['at']))}Z listed {rec.get('listed', 0):.0f}"
                if rec.get("at") else "never")
        if rec.get("errors"):
            last += f" ({rec['errors']:.0f} error(s): see --json or the log)"
        rows.append((name, str(s["pages_live"]), str(s["pages_gone"]), str(s["points"]), str(s["deletions_held"]),
                     last, f"{rec.get('caught_total', 0):.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@cli.command()
@_config_option
def export(cfg: Config) -> None:
    """Every point's payload as JSON lines on stdout (no vectors)."""
    if (url := _daemon_url(cfg)) is not None:
        with httpx.Client(timeout=None) as client, client.stream(
                "GET", f"{url}/admin/export", headers=_auth(cfg)) as resp:
            _check(resp)
            for line in resp.iter_lines():
                click.echo(line)
        return
    with _local(cfg) as engine:
        for pid, payload in engine.store.iter_chunks():
            click.echo(json.dumps({"id": pid, **payload}))


@cli.command("reconcile")
@click.option("--source", help="only this source")
@click.option("--dry-run", is_flag=True, help="print what would change, change nothing")
@click.option("--force", is_flag=True, help="apply deletions even past the mass-deletion guard")
@click.option("--json", "as_json", is_flag=True, help="JSON report")
@_config_option
def reconcile_cmd(cfg: Config, source: str | None, dry_run: bool, force: bool, as_json: bool) -> None:
    """Bring the index exactly to each CMS's published state."""
    from ragsync import reconcile
    sources = [cfg.source(source).name] if source else list(cfg.sources)
    if (url := _daemon_url(cfg)) is not None:
        body = {"source": source, "dry_run": dry_run, "force": force}
        reports = _http(cfg, "POST", f"{url}/admin/reconcile", json=body, timeout=None)["reports"]
    else:
        with _local(cfg) as engine:
            reports = [r.as_dict() for r in reconcile.run(engine, sources, dry_run=dry_run, force=force,
                                                          standalone=True)]
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "reports": reports}, indent=2))
    else:
        for r in reports:
            rep = reconcile.SourceReport(**r)
            click.echo(("(dry run) " if dry_run else "") + rep.summary())
            if dry_run:
                for kind, verb in (("added", "add"), ("updated", "update"), ("repaired", "repair"),
                                   ("tombstoned", "tombstone")):
                    for doc_id in r[kind]:
                        click.echo(f"  would {verb}: {r['source']}/{doc_id}")
    if any(r["errors"] for r in reports):
        sys.exit(1)


@cli.command("reindex")
@click.option("--source", help="rebuild only this source (settings unchanged); the others are copied")
@click.option("--drop-old", is_flag=True, help="delete the previous collection after the switch")
@click.option("--json", "as_json", is_flag=True, help="JSON report")
@_config_option
def reindex_cmd(cfg: Config, source: str | None, drop_old: bool, as_json: bool) -> None:
    """Rebuild the index with the config file's settings beside the live one, then switch."""
    from ragsync import reindex
    if source:
        cfg.source(source)
    if (url := _daemon_url(cfg)) is not None:
        report = _http(cfg, "POST", f"{url}/admin/reindex", json={"source": source, "drop_old": drop_old}, timeout=None)
    else:
        with _local(cfg) as engine:
            report = reindex.run(engine, source=source, drop_old=drop_old).as_dict()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(reindex.Report(**report).summary())


@cli.group()
def dlq() -> None:
    """The dead-letter queue: keys that failed every retry."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True)
@_config_option
def dlq_list(cfg: Config, as_json: bool) -> None:
    """List parked keys with their last error."""
    if (url := _daemon_url(cfg)) is not None:
        parked = _http(cfg, "GET", f"{url}/admin/dlq")["parked"]
    else:
        with _local(cfg) as engine:
            parked = [p.__dict__ for p in engine.queue.dead()]
    if as_json:
        click.echo(json.dumps(parked, indent=2))
        return
    for p in parked:
        click.echo(f"{p['source']}/{p['doc_id']}  attempts={p['attempts']}  {p['error']}")
    if not parked:
        click.echo("dead-letter queue is empty")


def _dlq_action(action: str) -> Callable:
    @click.argument("keys", nargs=-1)
    @_config_option
    def command(cfg: Config, keys: tuple[str, ...]) -> None:
        chosen = [_key(k) for k in keys] or None
        if (url := _daemon_url(cfg)) is not None:
            done = next(iter(_http(cfg, "POST", f"{url}/admin/dlq/{action}", json={"keys": chosen}).values()))
        else:
            with _local(cfg) as engine:
                done = getattr(engine.queue, action)(chosen)
        click.echo(f"{action}: {len(done)} key(s)" + "".join(f"\n  {s}/{d}" for s, d in done))
    command.__doc__ = f"{action.capitalize()} parked keys (SOURCE/DOC_ID ...; all when none are named)."
    return command


dlq.command("replay")(_dlq_action("replay"))
dlq.command("drop")(_dlq_action("drop"))


# -- helpers ------------------------------------------------------------------------------------

def _key(text: str) -> tuple[str, str]:
    source, sep, doc_id = text.partition("/")
    if not sep or not source or not doc_id:
        raise click.BadParameter(f"{text!r}: expected SOURCE/DOC_ID")
    return source, doc_id


def _daemon_url(cfg: Config) -> str | None:
    """The URL of the daemon that owns this data_dir, or None: then no daemon does, and this
    command holds the data_dir's lock (until it exits) and opens the store itself, so a daemon
    that starts meanwhile waits for it instead of failing. Embedded, the token goes only to the
    daemon whose /healthz repeats the instance id it wrote into data_dir."""
    if cfg.qdrant_url:                        # server mode: any number of processes share the store
        return cfg.base_url if _healthz(cfg.base_url) is not None else None
    lock = DataLock(cfg.data_dir)
    if lock.try_acquire():
        _HELD.append(lock)
        return None
    deadline = time.monotonic() + DAEMON_WAIT_S
    while time.monotonic() < deadline:        # it may still be starting: loading the model, say
        info = lock.announced() or {}
        answer = _healthz(info["url"]) if info.get("url") else None
        if answer is not None and answer.get("instance") == info.get("instance"):
            return info["url"]
        time.sleep(0.2)
    raise RagsyncError(f"another ragsync process holds {cfg.data_dir} but no daemon of it answers "
                       f"within {DAEMON_WAIT_S}s (a CLI command still working? try again)")


def _healthz(url: str) -> dict[str, Any] | None:
    try:
        resp = httpx.get(f"{url}/healthz", timeout=0.5)
        body = resp.json()
        return body if resp.status_code == 200 and body.get("service") == "ragsync" else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None


def _auth(cfg: Config) -> dict[str, str]:
    token = cfg.admin_token()
    if token is None:
        raise RagsyncError(f"the daemon at {cfg.base_url} is running; set {cfg.admin_token_env} to talk to it")
    return {"authorization": f"Bearer {token}"}


def _http(cfg: Config, method: str, url: str, *, timeout: float | None = 30.0, **kwargs: Any) -> Any:
    resp = httpx.request(method, url, headers=_auth(cfg), timeout=timeout, **kwargs)
    _check(resp)
    return resp.json()


def _check(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        resp.read()
        try:
            message = resp.json().get("error", resp.text)
        except ValueError:
            message = resp.text[:200]
        raise RagsyncError(f"daemon answered {resp.status_code}: {message}")


@contextlib.contextmanager
def _local(cfg: Config) -> Iterator[Any]:
    """Open the engine in this process for one command, and close it (the store lock) after."""
    from ragsync.engine import Engine
    engine = Engine(cfg)
    try:
        yield engine
    finally:
        engine.close()
