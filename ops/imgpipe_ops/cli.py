"""``imgpipe``: run the local stack, upload a CSV and follow it, the demo, the benchmark, dead letters."""

import argparse
import logging
import os
import signal
import sys

from imgpipe_bus import BusSettings
from imgpipe_ops.process_logs import LogLimits
from imgpipe_ops.processes import StartCancelled, StartFailed, port_open
from imgpipe_ops.prune import add_command as add_prune_command
from imgpipe_ops.roster import SERVICES
from imgpipe_ops.settings import LocalSettings
from imgpipe_ops.stack import LocalStack, StackConfig
from imgpipe_ops.uploads import add_commands as add_upload_commands

log = logging.getLogger("imgpipe")


def _default_bootstrap() -> str:
    return os.environ.get("IMGPIPE_KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{LocalSettings().local_kafka_port}"


# The stop of `make run` is bounded: the services' drain is cut to this, whatever IMGPIPE_KAFKA_DRAIN_TIMEOUT_S says,
# so that with the margins of the stack every process has ended within 30 s.
LOCAL_DRAIN_MAX_S = 20.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def replicas(value: str) -> tuple[str, int]:
    """``SERVICE=N`` of ``imgpipe run --replicas``."""
    name, _, count = value.partition("=")
    if name not in {service.name for service in SERVICES} or not count.isdigit() or int(count) < 1:
        names = ", ".join(service.name for service in SERVICES)
        raise argparse.ArgumentTypeError(f"{value!r}: expected SERVICE=N, N ≥ 1, SERVICE one of {names}")
    return name, int(count)


def run(args: argparse.Namespace) -> int:
    """Starts the stack and supervises it until SIGINT (Ctrl-C), SIGTERM or SIGHUP; a second signal hurries the stop."""
    settings = LocalSettings()
    for port, what in (
        (settings.port, "API"),
        (settings.local_kafka_port, "broker"),
        (settings.local_mongo_port, "database"),
    ):
        if port_open(port):
            log.error("port %d for the %s is already in use: is imgpipe already running?", port, what)
            return 1
    stack = LocalStack(
        StackConfig(
            api_port=settings.port,
            kafka_port=settings.local_kafka_port,
            mongo_port=settings.local_mongo_port,
            storage=str((settings.data_dir / "db").resolve()),
            log_dir=(settings.data_dir / "logs").resolve(),
            blob_dir=(settings.data_dir / "blobs").resolve(),
            services_log_to_files=False,
            image_workers=settings.image_workers,
            replicas=dict(args.replicas),
            partitions=settings.kafka_partitions,
            drain_timeout_s=min(BusSettings().drain_timeout_s, LOCAL_DRAIN_MAX_S),
            database_ready_s=settings.local_database_ready_s,
            log_limits=LogLimits(settings.local_log_max_bytes, settings.local_log_backups),
        )
    )

    def on_signal(signum: int, _frame) -> None:
        stack.request_stop()
        what = "stopping at once" if stack.stop_requests > 1 else "stopping (again to stop at once)"
        os.write(2, f"\nimgpipe: {signal.Signals(signum).name}: {what}\n".encode())

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    try:
        log.info("starting the database and broker (logs in %s)", stack.config.log_dir)
        stack.start()
        print(
            f"\nimgpipe is up: API {stack.api_url}/api/upload/  docs {stack.api_url}/docs\n"
            f"Kafka {stack.bootstrap}  MongoDB {stack.mongo_url}\n"
            f"Webhooks are signed with IMGPIPE_WEBHOOK_SECRET={stack.webhook_secret}\n"
            "Ctrl-C stops everything (a second Ctrl-C stops it at once).\n",
            flush=True,
        )
        stack.supervise()
    except StartCancelled:
        pass
    except StartFailed as exc:
        log.error("%s", exc)
        return 1
    finally:
        log.info("stopping every process")
        stack.stop()
    return 0


def demo(args: argparse.Namespace) -> int:
    from imgpipe_ops.demo import run_demo

    return run_demo(args.api, rows=args.rows, images_per_row=args.images, api_key=os.environ.get("IMGPIPE_API_KEY"))


def samples(args: argparse.Namespace) -> int:
    from imgpipe_ops.demo import serve_samples

    return serve_samples(args.port)


def bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from imgpipe_ops.bench import BenchOptions, run_bench

    options = BenchOptions(
        images=args.count,
        distinct=args.distinct,
        size=args.size,
        mix=args.mix,
        photo_dir=Path(args.images) if args.images else None,
        idle_s=args.idle,
        scale_rows=args.scale_rows,
        big_rows=args.rows,
    )
    if args.scale_only:
        from imgpipe_ops.bench import run_scale_only

        return run_scale_only(options)
    if args.codec_only:
        from imgpipe_ops.bench import run_codec_only

        return run_codec_only(options)
    return run_bench(options)


def dead_letters(args: argparse.Namespace) -> int:
    from imgpipe_ops import dlq

    filters = dlq.Filters(topic=args.topic, request_id=args.request, error=args.error, ref=getattr(args, "ref", None))
    letters = list(dlq.read(args.bootstrap, filters))
    if args.dlq_command == "replay" and (cut := [letter for letter in letters if letter.truncated]):
        for letter in cut:
            log.warning("%s is not replayed: %s", letter.ref, letter.context("truncated"))
        letters = [letter for letter in letters if not letter.truncated]
    if args.dlq_command == "list":
        for letter in letters:
            print(dlq.summary_line(letter))
        print(f"{len(letters)} dead letter(s)")
    elif args.dlq_command == "show":
        for letter in letters:
            print(dlq.describe(letter))
    elif args.dry_run:
        for letter in letters:
            print(f"would replay {letter.ref} → {letter.origin}")
        print(f"{len(letters)} dead letter(s) would be replayed")
    else:
        try:
            count = dlq.replay(args.bootstrap, letters)
        except dlq.ReplayFailed as exc:
            log.error("%s", exc)
            return 1
        print(f"replayed {count} dead letter(s)")
    return 0


def kcat(args: list[str]) -> int:
    from imgpipe_ops.kcat import KcatMissing, exec_kcat

    try:
        exec_kcat(args)
    except KcatMissing as exc:
        log.error("%s", exc)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["kcat"]:  # every later argument is kcat's own
        return kcat(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s imgpipe %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="imgpipe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="start the whole system on the embedded broker and database")
    run_cmd.add_argument(
        "--replicas",
        type=replicas,
        action="append",
        default=[],
        metavar="SERVICE=N",
        help="run N processes of SERVICE (repeatable): ingests share the API's port, assemblers the results topic",
    )
    run_cmd.set_defaults(func=run)
    demo_cmd = commands.add_parser("demo", help="upload sample photos to a running stack and show the output")
    demo_cmd.add_argument("--api", default=f"http://127.0.0.1:{LocalSettings().port}")
    demo_cmd.add_argument("--rows", type=int, default=5)
    demo_cmd.add_argument("--images", type=int, default=3, help="images per row")
    demo_cmd.set_defaults(func=demo)
    samples_cmd = commands.add_parser("samples", help="serve the photos of examples/products.csv and receive webhooks")
    samples_cmd.add_argument("--port", type=int, default=9000, help="default 9000, as examples/products.csv expects")
    samples_cmd.set_defaults(func=samples)
    bench_cmd = commands.add_parser("bench", help="plain codec loop, compress() and the pipeline, on the same images")
    bench_cmd.add_argument("--count", type=int, default=300, help="images in each throughput run (default 300)")
    bench_cmd.add_argument("--distinct", type=int, default=12, help="distinct generated photos (default 12)")
    bench_cmd.add_argument("--size", type=int, default=1500, help="side of the generated photos, px (default 1500)")
    bench_cmd.add_argument("--mix", action="store_true", help="generate 1000² and 2000² photos instead")
    bench_cmd.add_argument("--images", metavar="DIR", help="use the photos in DIR instead of generated ones")
    bench_cmd.add_argument("--idle", type=float, default=20.0, help="seconds over which idle CPU is measured")
    bench_cmd.add_argument(
        "--scale-rows", type=int, default=10_000, help="rows × 2 small photos of (i) and (j); 0 skips (i)–(k)"
    )
    bench_cmd.add_argument("--rows", type=int, help="also (l): an upload of this many rows accepted, e.g. 1000000")
    bench_cmd.add_argument("--scale-only", action="store_true", help="only the scale figures (i)–(l)")
    bench_cmd.add_argument(
        "--codec-only",
        action="store_true",
        help="only the in-process codec figures: (a), (b) and compress() with request options; no stack started",
    )
    bench_cmd.set_defaults(func=bench)
    dlq_cmd = commands.add_parser("dlq", help="list, show and replay dead letters")
    dlq_cmd.set_defaults(func=dead_letters)
    dlq_commands = dlq_cmd.add_subparsers(dest="dlq_command", required=True)
    for name, text in (
        ("list", "one line per dead letter"),
        ("show", "headers and value"),
        ("replay", "back to the origin topic"),
    ):
        sub = dlq_commands.add_parser(name, help=text)
        sub.add_argument("--bootstrap", default=_default_bootstrap(), help="Kafka bootstrap servers")
        sub.add_argument("--topic", help="a topic or its dead-letter topic")
        sub.add_argument("--request", help="only letters of this request id")
        sub.add_argument("--error", help="only letters whose exception class contains this")
        sub.add_argument("--ref", help="one letter, as TOPIC:PARTITION:OFFSET")
        if name == "replay":
            sub.add_argument("--dry-run", action="store_true", help="show what would be replayed")
    add_upload_commands(commands)
    add_prune_command(commands)
    commands.add_parser("kcat", help="kcat with a librdkafka that speaks to the embedded broker: imgpipe kcat -b … -L")
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
