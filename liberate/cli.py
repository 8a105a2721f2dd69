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
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    run = verbs.add_parser("run", help="run the sources and sinks of a run file")
    run.add_argument("file", help="YAML run file")
    run.add_argument(
        "--once",
        action="store_true",
        help="snapshot or poll until caught up with the position at start, then exit 0",
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
        "--no-follow", action="store_true", help="exit at the end instead of waiting for more"
    )

    demo = verbs.add_parser(
        "demo", help="quickstart: fill a sample SQLite shop database, run FILE once, report"
    )
    demo.add_argument("file", nargs="?", default="config/quickstart.yaml")

    status = verbs.add_parser("status", help="position and lag of every connector")
    status.add_argument("file")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    registry = verbs.add_parser("registry", help="a Confluent-compatible schema registry")
    registry_verbs = registry.add_subparsers(dest="registry_verb", required=True, metavar="VERB")
    serve = registry_verbs.add_parser(
        "serve", help="serve the registry stored in FILE (SQLite, created if missing) over HTTP"
    )
    serve.add_argument("file", help="SQLite store of the registry, e.g. .liberate/registry.db")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8081, help="port to listen on (0: any free)")

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
    _configure_logging(args.verbose)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"liberate: {exc}", file=sys.stderr)
        return exc.exit_code
    except LiberateError as exc:
        print(f"liberate: {exc}", file=sys.stderr)
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
        return run.run(args.file, once=args.once)
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
    if args.verb == "registry":
        from liberate.commands import registry

        return registry.serve(args.file, host=args.host, port=args.port)
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


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


if __name__ == "__main__":
    sys.exit(main())
