"""The ``liberate`` command line. Exit codes (contract): 0 ok, 1 runtime failure, 2 bad config
or usage."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from liberate import __version__
from liberate.errors import ConfigError, LiberateError

log = logging.getLogger("liberate")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = argparse.ArgumentParser(
        prog="liberate",
        description="Liberate database rows and changes into event streams, and back.",
    )
    parser.add_argument("--version", action="version", version=f"liberate {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines for people (text, the default) or one JSON object a line (json)",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    run = verbs.add_parser("run", help="run the sources and sinks of a run file")
    run.add_argument("file", help="YAML run file")
    run.add_argument(
        "--once",
        action="store_true",
        help="snapshot or poll until caught up with the position at start, then exit 0",
    )
    run.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this source or sink (repeat for several)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="N",
        help="serve Prometheus metrics on http://0.0.0.0:N/metrics while running",
    )

    check = verbs.add_parser("check", help="check config, connectivity and prerequisites")
    check.add_argument("file")

    topics = verbs.add_parser("topics", help="list topics with partitions and sizes")
    topics.add_argument("file")

    tail = verbs.add_parser("tail", help="print records of a topic as JSON lines")
    tail.add_argument("file")
    tail.add_argument("topic")
    tail.add_argument("--from-beginning", action="store_true", help="start at the first record")
    tail.add_argument("--limit", type=int, default=None, help="stop after N records")
    tail.add_argument(
        "--no-follow",
        action="store_true",
        help="exit at the end (with --from-beginning: the end offsets of now) instead of"
        " waiting for more",
    )

    demo = verbs.add_parser(
        "demo", help="quickstart: fill a sample SQLite shop database, run FILE once, report"
    )
    demo.add_argument("file", nargs="?", default="config/quickstart.yaml")

    status = verbs.add_parser("status", help="position and lag of every connector")
    status.add_argument("file")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    verify = verbs.add_parser(
        "verify", help="reconcile every source table with its sink tables; exit 1 on a mismatch"
    )
    verify.add_argument("file")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.add_argument(
        "--max-keys", type=int, default=20, help="keys listed per kind of difference (default 20)"
    )

    offsets = verbs.add_parser(
        "offsets", help="show the stored positions; `offsets FILE reset NAME` resets one"
    )
    offsets.add_argument("file")
    offsets.add_argument("action", nargs="?", choices=["reset"], help="reset NAME's position")
    offsets.add_argument("name", nargs="?", help="the source or sink to reset")
    offsets.add_argument(
        "--json", action="store_true", help="machine-readable output (showing, not reset)"
    )
    where = offsets.add_mutually_exclusive_group()
    where.add_argument(
        "--to-beginning", action="store_true", help="forget the position: start from scratch"
    )
    where.add_argument("--to", metavar="JSON", help="the position to store, as offsets shows it")
    offsets.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    topology = verbs.add_parser("topology", help="print the sources -> topics -> sinks graph")
    topology.add_argument("file")
    topology.add_argument(
        "--format", choices=["mermaid", "dot"], default="mermaid", help="graph language"
    )

    registry = verbs.add_parser("registry", help="a Confluent-compatible schema registry")
    registry_verbs = registry.add_subparsers(dest="registry_verb", required=True, metavar="VERB")
    serve = registry_verbs.add_parser(
        "serve", help="serve the registry stored in FILE (SQLite, created if missing) over HTTP"
    )
    serve.add_argument("file", help="SQLite store of the registry, e.g. .liberate/registry.db")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8081, help="port to listen on (0: any free)")

    _add_schema_verbs(verbs)

    sink = verbs.add_parser("sink", help="tools for the sinks of a run file")
    sink_verbs = sink.add_subparsers(dest="sink_verb", required=True, metavar="VERB")
    plan = sink_verbs.add_parser(
        "plan", help="print the DDL the sinks would run for the registry's schemas; runs nothing"
    )
    plan.add_argument("file")
    plan.add_argument("--sink", help="only the sink of this name")

    dlq = verbs.add_parser("dlq", help="records the sinks dead-lettered or parked")
    dlq_verbs = dlq.add_subparsers(dest="dlq_verb", required=True, metavar="VERB")
    dlq_list = dlq_verbs.add_parser("list", help="list them per sink, oldest first")
    dlq_list.add_argument("file")
    dlq_list.add_argument("--sink", help="only the sink of this name")
    dlq_list.add_argument("--json", action="store_true", help="one JSON object a line")
    dlq_replay = dlq_verbs.add_parser(
        "replay", help="apply them to the targets in order (after fixing the cause)"
    )
    dlq_replay.add_argument("file")
    dlq_replay.add_argument("--sink", help="only the sink of this name")
    dlq_discard = dlq_verbs.add_parser(
        "discard", help="drop set-aside records without applying them (the others stay)"
    )
    dlq_discard.add_argument("file")
    dlq_discard.add_argument("origin", nargs="+", help="topic[partition]@offset, as listed")
    dlq_discard.add_argument("--sink", help="only the sink of this name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.log_format)
    try:
        return _dispatch(args)
    except LiberateError as exc:  # ConfigError among them
        _print_error(str(exc), args.log_format)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`liberate tail ... | head`): not an error of ours. Point stdout
        # at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    from liberate.commands import check, demo, inspect, run

    if args.verb == "run":
        if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
            raise ConfigError("--metrics-port must be a port number (0-65535)")
        return run.run(args.file, once=args.once, only=args.only, metrics_port=args.metrics_port)
    if args.verb == "check":
        return check.check(args.file)
    if args.verb == "topics":
        return inspect.topics(args.file)
    if args.verb == "tail":
        if args.limit is not None and args.limit < 1:
            raise ConfigError("--limit must be at least 1")
        return inspect.tail(
            args.file,
            args.topic,
            from_beginning=args.from_beginning,
            limit=args.limit,
            follow=not args.no_follow,
        )
    if args.verb == "demo":
        return demo.demo(args.file)
    if args.verb == "status":
        return inspect.status(args.file, as_json=args.json)
    if args.verb == "verify":
        from liberate.commands import verify

        if args.max_keys < 0:
            raise ConfigError("--max-keys must be 0 or more")
        return verify.verify(args.file, as_json=args.json, max_keys=args.max_keys)
    if args.verb == "offsets":
        return _offsets(args)
    if args.verb == "topology":
        from liberate.commands import topology

        return topology.topology(args.file, fmt=args.format)
    if args.verb == "registry":
        from liberate.commands import registry

        return registry.serve(args.file, host=args.host, port=args.port)
    if args.verb == "schema":
        return _dispatch_schema(args)
    if args.verb == "sink":
        from liberate.commands import sink

        return sink.plan(args.file, sink_name=args.sink)
    if args.verb == "dlq":
        from liberate.commands import dlq

        if args.dlq_verb == "list":
            return dlq.list_parked(args.file, sink_name=args.sink, as_json=args.json)
        if args.dlq_verb == "discard":
            return dlq.discard(args.file, args.origin, sink_name=args.sink)
        return dlq.replay(args.file, sink_name=args.sink)
    raise ConfigError(f"unknown verb {args.verb}")


def _add_schema_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schema = verbs.add_parser("schema", help="the registry's subjects, and the ALTER pre-flight")
    schema_verbs = schema.add_subparsers(dest="schema_verb", required=True, metavar="VERB")
    listing = schema_verbs.add_parser("list", help="subjects, their versions and levels")
    listing.add_argument("file")
    show = schema_verbs.add_parser("show", help="print one version of a subject")
    show.add_argument("file")
    show.add_argument("subject")
    show.add_argument("--version", default="latest", help="a version number, or latest")
    diff = schema_verbs.add_parser(
        "diff", help="fields changed between two versions, and whether the second is compatible"
    )
    diff.add_argument("file")
    diff.add_argument("subject")
    diff.add_argument("first", help="a version number, or latest")
    diff.add_argument("second", help="a version number, or latest")
    preflight = schema_verbs.add_parser(
        "check", help="check the tables as they are now against their subjects (exit 1: a "
        "change would break consumers)"
    )
    preflight.add_argument("file")
    preflight.add_argument("--source", help="only the source of this name")
    for parser in (listing, show, diff, preflight):
        parser.add_argument("--json", action="store_true", help="one JSON object a line")


def _dispatch_schema(args: argparse.Namespace) -> int:
    from liberate.commands import schema

    if args.schema_verb == "list":
        return schema.list_subjects(args.file, as_json=args.json)
    if args.schema_verb == "show":
        return schema.show(args.file, args.subject, version=args.version, as_json=args.json)
    if args.schema_verb == "diff":
        return schema.diff(args.file, args.subject, args.first, args.second, as_json=args.json)
    return schema.check(args.file, source_name=args.source, as_json=args.json)


def _offsets(args: argparse.Namespace) -> int:
    from liberate.commands import offsets

    if args.action is None:
        if args.name or args.to or args.to_beginning or args.yes:
            raise ConfigError("NAME, --to, --to-beginning and --yes go with `offsets FILE reset`")
        return offsets.show(args.file, as_json=args.json)
    if args.json:
        raise ConfigError("--json goes with `offsets FILE` (reset prints what it changes)")
    if not args.name:
        raise ConfigError("offsets FILE reset needs the NAME of a source or sink")
    if not (args.to or args.to_beginning):
        raise ConfigError("offsets reset needs --to-beginning or --to JSON")
    return offsets.reset(args.file, args.name, to=args.to, yes=args.yes)


def _print_error(message: str, log_format: str) -> None:
    """The error that ends the command: a plain line, or a JSON log line with ``json``."""
    if log_format == "json":
        log.error("%s", message)
    else:
        from liberate.logs import SECRETS

        print(f"liberate: {SECRETS.mask(message)}", file=sys.stderr)


def _configure_logging(verbosity: int, log_format: str = "text") -> None:
    from liberate.logs import configure_logging

    configure_logging(verbosity, "json" if log_format == "json" else "text")


if __name__ == "__main__":
    sys.exit(main())
