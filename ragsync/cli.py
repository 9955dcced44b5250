"""The `ragsync` command: click commands, one per documented feature, that print what the
operations layer returns (ragsync/operations.py: the running daemon over HTTP when there
is one, else the store opened here). Errors are one line and a non-zero exit, never a
traceback."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from ragsync import config as config_mod
from ragsync import logs
from ragsync.config import Config
from ragsync.errors import RagsyncError
from ragsync.index import describe
from ragsync.times import ago


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


def _daemon(cfg: Config, role: str, port: int | None = None) -> None:
    from ragsync.daemon import Daemon, Role
    logs.daemon_level()
    Daemon(cfg, Role(role), port=port).run()
    # Stopped: the store, the queue and the data_dir lock are closed. The interpreter's own
    # teardown (the model runtime's threads and modules) would take seconds more: skip it.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)


PORT = click.option("--port", type=click.IntRange(1, 65535), help="listen here instead of [server] port")


@cli.command()
@PORT
@_config_option
def serve(cfg: Config, port: int | None) -> None:
    """Run the daemon: webhooks, search, admin API and the workers."""
    _daemon(cfg, "serve", port)


@cli.command()
@PORT
@_config_option
def web(cfg: Config, port: int | None) -> None:
    """Server mode: only the HTTP side (webhooks, search, admin); run `ragsync worker`s beside it."""
    _daemon(cfg, "web", port)


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535),
              help="health and metrics port ([server] worker_port, 8788; 0: none): one per worker on a host")
@_config_option
def worker(cfg: Config, port: int | None) -> None:
    """Server mode: only the workers, taking passes from the shared Redis queue."""
    _daemon(cfg, "worker", port)


@cli.command()
@click.option("--source", help="only this source")
@click.option("--json", "as_json", is_flag=True, help="JSON output")
@_config_option
def check(cfg: Config, source: str | None, as_json: bool) -> None:
    """Check the config, its variables and secrets, the store, Redis, the embedding server and
    each CMS (listing and one fetch); print what to set in each CMS. Exit 0 only when all is well."""
    from ragsync import check as checks
    report = checks.run(cfg, source)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for f in report.findings:
            click.echo(f"{'ok     ' if f.ok else 'PROBLEM'}  {f.what:<16} {f.text}")
        for name, lines in report.setup.items():
            click.echo(f"\nin the CMS of source {name!r}:")
            for text in lines:
                click.echo(f"  {text}")
        click.echo("\nall is well" if report.ok else f"\n{sum(not f.ok for f in report.findings)} problem(s)")
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("query")
@click.option("--source", help="only this source")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--url-prefix", help="only pages whose URL starts with this")
@click.option("--modified-after", help="only pages modified at or after this ISO 8601 time")
@click.option("--modified-before", help="only pages modified before this ISO 8601 time")
@click.option("--group", type=click.Choice(["page"]), help="one result per page, with its best chunks")
@click.option("--mode", type=click.Choice(config_mod.MODES),
              help="keyword + meaning fused (hybrid), the embedding model only (dense), BM25 only (keyword); "
                   "default: [search] mode, hybrid")
@click.option("--json", "as_json", is_flag=True, help="JSON output")
@_config_option
def search(cfg: Config, query: str, source: str | None, limit: int, url_prefix: str | None,
           modified_after: str | None, modified_before: str | None, group: str | None, mode: str | None,
           as_json: bool) -> None:
    """Search the index (live versions of published pages only)."""
    if source:
        cfg.source(source)
    with _connect(cfg, read_only=True) as ops:
        results = ops.search(query, limit, source=source, url_prefix=url_prefix, modified_after=modified_after,
                             modified_before=modified_before, group=group, mode=mode)
    if as_json:
        click.echo(json.dumps({"query": query, **({"group": group} if group else {}), "results": results}, indent=2))
        return
    if not results:
        click.echo("no results")
    for i, r in enumerate(results, 1):
        chunks = r["chunks"] if group else [r]
        where = " > ".join(chunks[0].get("heading_path") or [])
        click.echo(f"{i:>2}. {r['score']:.3f}  {r['title']}{'  — ' + where if where else ''}\n    {r['url']}")
        for chunk in chunks:
            snippet = " ".join(chunk["text"].split())
            click.echo(f"    {snippet[:200]}{'…' if len(snippet) > 200 else ''}")


@cli.command()
@_config_option
def mcp(cfg: Config) -> None:
    """Serve the MCP tools (search, get_page, list_sources, index_status) over stdio, for a
    desktop agent: answered by the running daemon, or from the store when none runs."""
    from ragsync.mcp import stdio
    stdio(cfg)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON output")
@_config_option
def status(cfg: Config, as_json: bool) -> None:
    """Points, pages, pending work and the dead-letter queue at a glance."""
    with _connect(cfg, read_only=True) as ops:
        data = {**ops.status(), "daemon": ops.daemon}
    if as_json or not sys.stdout.isatty():
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"daemon   {data['daemon'] or 'not running'}")
    click.echo(f"points   {data['points']}    pending {data['pending']} (oldest {data['oldest_pending_s']}s)"
               f"    dead-letter {data['dead']}    embedded since start {data['chunks_embedded']}")
    click.echo(f"store    {describe(data['collection']['store'])}")
    rows = [("source", "live pages", "gone", "points", "deletions held", "last reconcile", "caught (all time)",
             "last poll / audit")]
    for name, s in data["sources"].items():
        rec = data["reconcile"].get(name, {})
        at = f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(rec['at']))}Z" if rec.get("at") else ""
        if not at:
            last = "never"
        elif rec.get("errors") and not rec.get("listed"):
            last = f"FAILED {at}: {(rec.get('error') or 'see the log')[:70]}"
        else:
            last = f"{at} listed {rec.get('listed', 0):.0f}"
            if rec.get("errors"):
                last += f" ({rec['errors']:.0f} error(s): {(rec.get('error') or 'see the log')[:60]})"
        polls = data["polling"].get(name, {})
        rows.append((name, str(s["pages_live"]), str(s["pages_gone"]), str(s["points"]), str(s["deletions_held"]),
                     last, f"{rec.get('caught_total', 0):.0f}",
                     " / ".join(_ago(polls.get(clock, {})) for clock in ("poll", "audit"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@cli.command()
@_config_option
def export(cfg: Config) -> None:
    """Every point's payload as JSON lines on stdout (no vectors)."""
    with _connect(cfg, read_only=True) as ops:
        for line in ops.export():
            click.echo(line)


@cli.command("reconcile")
@click.option("--source", help="only this source")
@click.option("--dry-run", is_flag=True, help="print what would change, change nothing")
@click.option("--force", is_flag=True, help="apply deletions even past the mass-deletion guard")
@click.option("--json", "as_json", is_flag=True, help="JSON report")
@_config_option
def reconcile_cmd(cfg: Config, source: str | None, dry_run: bool, force: bool, as_json: bool) -> None:
    """Bring the index exactly to each CMS's published state."""
    from ragsync.reconcile import SourceReport
    if source:
        cfg.source(source)
    with _connect(cfg) as ops:
        reports = ops.reconcile(source, dry_run=dry_run, force=force)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "reports": reports}, indent=2))
    else:
        for r in reports:
            click.echo(("(dry run) " if dry_run else "") + SourceReport(**r).summary())
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
    from ragsync.reindex import Report
    if source:
        cfg.source(source)
    with _connect(cfg) as ops:
        report = ops.reindex(source, drop_old=drop_old)
    click.echo(json.dumps(report, indent=2) if as_json else Report(**report).summary())


@cli.group()
def dlq() -> None:
    """The dead-letter queue: keys that failed every retry."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True)
@_config_option
def dlq_list(cfg: Config, as_json: bool) -> None:
    """List parked keys with their last error."""
    with _connect(cfg, read_only=True) as ops:
        parked = ops.dlq()
    if as_json:
        click.echo(json.dumps(parked, indent=2))
        return
    for p in parked:
        click.echo(f"{p['source']}/{p['doc_id']}  attempts={p['attempts']}  {p['error']}")
    if not parked:
        click.echo("dead-letter queue is empty")


def _dlq_action(action: str) -> Callable:
    @click.argument("keys", nargs=-1)
    @click.option("--all", "every", is_flag=True, help="every parked key")
    @_config_option
    def command(cfg: Config, keys: tuple[str, ...], every: bool) -> None:
        if keys and every:
            raise click.UsageError(f"name the keys to {action} or pass --all, not both")
        if action == "drop" and not keys and not every:    # dropping is forever: say so
            raise click.UsageError("name the keys to drop (SOURCE/DOC_ID ...) or pass --all")
        chosen = [_key(k) for k in keys] or None
        with _connect(cfg) as ops:
            done = getattr(ops, action)(chosen)
        click.echo(f"{action}: {len(done)} key(s)" + "".join(f"\n  {s}/{d}" for s, d in done))
    command.__doc__ = {"replay": "Queue parked keys again: SOURCE/DOC_ID ..., or all (--all or none named).",
                       "drop": "Forget parked keys: SOURCE/DOC_ID ..., or --all."}[action]
    return command


dlq.command("replay")(_dlq_action("replay"))
dlq.command("drop")(_dlq_action("drop"))


def _ago(note: dict[str, Any]) -> str:
    """A clock's last run for the status table: its age, or that it failed."""
    if note.get("error") and note.get("at", 0) > note.get("ok_at", 0):
        return "failed"
    return ago(note.get("ok_at"))


def _key(text: str) -> tuple[str, str]:
    source, sep, doc_id = text.partition("/")
    if not sep or not source or not doc_id:
        raise click.BadParameter(f"{text!r}: expected SOURCE/DOC_ID")
    return source, doc_id


def _connect(cfg: Config, read_only: bool = False) -> Any:
    from ragsync.operations import connect        # imported here: `ragsync --help` stays quick
    return connect(cfg, read_only)
