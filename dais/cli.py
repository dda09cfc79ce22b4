"""The ``dais`` command line: the one composition root, allowed to import every component."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

# Each command imports what it needs: `dais model fetch` starts every replica, so the CLI must not pay for
# the web framework, the database layer and the migrations on every start.


def app_factory() -> tuple[Any, Callable[[], None]]:
    """A ``dais api --workers N`` worker's app and what starts its drain: settings come from the environment."""
    from api.main import create_app
    from core.logs import configure_logging

    settings = Settings()
    configure_logging(json_lines=settings.log_json, level=settings.log_level)
    app = create_app(settings, access_log=settings.access_log)
    return app, app.state.dais.drain


def _serve_api(args: argparse.Namespace, *, upgrade: bool) -> int:
    import uvicorn
    from sqlalchemy.exc import DBAPIError

    import migrations
    from api.bootstrap import ConfigurationError, ensure_admin
    from api.main import build_state, create_app
    from core.db.outage import describe, unavailable
    from core.logs import configure_logging
    from dais.drain import DrainingServer

    settings = Settings()
    configure_logging(json_lines=settings.log_json, level=settings.log_level)
    try:
        if upgrade:
            migrations.upgrade(settings.effective_database_url)
        elif migrations.pending(settings.effective_database_url):
            raise ConfigurationError(
                "the database schema is not current: run `dais db upgrade` (or start with --upgrade)"
            )
        state = build_state(settings)
        token = ensure_admin(state.sessions, settings, datetime.now(UTC))
    except ConfigurationError as exc:
        print(f"dais: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:
        if not unavailable(exc):
            raise
        print(
            f"dais: the database is unreachable ({describe(exc)}): start it, or check DAIS_DATABASE_URL",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()  # set when the API server returns: the embedded components stop too
    embedded: list[threading.Thread] = []
    if args.command == "serve":
        embedded = _start_embedded(settings, state.sessions, stop)
    if token is not None:
        print(
            "\n  Admin token (shown once; keep it):\n\n"
            f"    export DAIS_TOKEN={token}\n\n"
            f'  Try: curl -H "Authorization: Bearer $DAIS_TOKEN" http://{args.host}:{args.port}/api/whoami-v2\n',
            flush=True,
        )
    if args.workers > 1:
        from dais import workers

        return workers.run(
            args.host,
            args.port,
            args.workers,
            app_factory,
            drain_seconds=settings.api.drain_seconds,
            unready_seconds=settings.api.unready_seconds,
        )
    app = create_app(settings, state=state, access_log=settings.access_log)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.api.drain_seconds,
    )
    server = DrainingServer(config, drain=state.drain, unready_seconds=settings.api.unready_seconds)
    # uvicorn re-raises a second signal once it has shut down, with the handler it found installed: this one
    # lets the embedded components stop their work (and the local runtime its processes) first.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.run()
    finally:
        stop.set()  # the controller stops its replicas' processes (the local runtime) before this returns
        for thread in embedded:
            thread.join(timeout=60)
    return 0 if server.started else 1  # not started: uvicorn logged why (a taken port, most often)


def _start_embedded(
    settings: Settings, sessions: sessionmaker[Session], stop: threading.Event
) -> list[threading.Thread]:
    """``dais serve`` runs the gateway, the autoscaler and the controller in-process: its replicas run on this
    machine unless a cluster is given (``DAIS_CONTROLLER__RUNTIME`` chooses)."""
    from api.bootstrap import secret_key
    from autoscaler.app import Autoscaler
    from core.db.changes import LocalBus
    from core.db.models import Endpoint, EndpointStatus
    from core.domain.catalog import load_engine_catalog
    from gateway.app import Gateway

    wake_bus = routes_bus = None
    if settings.is_sqlite:  # no NOTIFY: changes and wakes travel in-process
        wake_bus, routes_bus = LocalBus(), LocalBus()
        routes_bus.attach(sessions, rows=(Endpoint, EndpointStatus))
    autoscaler = Autoscaler(settings, sessions=sessions, wake_bus=wake_bus)
    scaling = threading.Thread(target=autoscaler.run, args=(stop,), name="autoscaler", daemon=True)
    scaling.start()
    gateway = Gateway(
        settings.gateway,
        sessions=sessions,
        engines=load_engine_catalog(settings.engine_catalog),
        database_url=settings.effective_database_url,
        wake_bus=wake_bus,
        routes_bus=routes_bus,
    )
    failed: list[BaseException] = []

    def run_gateway() -> None:
        try:
            asyncio.run(gateway.serve())
        except Exception as exc:  # most often a taken port; the API still serves
            failed.append(exc)

    thread = threading.Thread(target=run_gateway, name="gateway", daemon=True)
    thread.start()

    def stop_gateway() -> None:
        stop.wait()
        gateway.stop()

    threading.Thread(target=stop_gateway, name="gateway-stop", daemon=True).start()
    while not gateway.ready.wait(0.05) and thread.is_alive():
        pass
    if gateway.ready.is_set():
        print(f"  Gateway: endpoints are served at {settings.endpoint_url_base}/{{namespace}}/{{name}}/", flush=True)
    else:
        why = failed[0] if failed else "it stopped"
        print(
            f"  The gateway did not start ({why}): endpoints are not served; "
            "set DAIS_GATEWAY__LISTEN and __INTERNAL_LISTEN to free ports",
            flush=True,
        )
    if settings.runtime == "none":
        print("  DAIS_CONTROLLER__RUNTIME=none: endpoints stay pending (no controller runs).", flush=True)
        return [scaling, thread]
    if settings.runtime == "local":
        print(f"  Replicas run on this machine; models are cached in {settings.home / 'models'}.", flush=True)
    from controller.app import Controller

    bus = None
    if settings.is_sqlite:
        bus = LocalBus()
        bus.attach(sessions)
    controller = Controller(settings, sessions=sessions, secret_key=secret_key(settings), bus=bus)
    running = threading.Thread(target=controller.run, args=(stop,), name="controller", daemon=True)
    running.start()
    return [running, scaling, thread]


def _cmd_controller(_: argparse.Namespace) -> int:
    from api.bootstrap import ConfigurationError, secret_key
    from controller.app import Controller
    from core.db.session import make_engine, make_sessionmaker
    from core.health import serve_health
    from core.logs import configure_logging

    settings = Settings()
    configure_logging(json_lines=settings.log_json, level=settings.log_level)
    try:
        key = secret_key(settings)
    except ConfigurationError as exc:
        print(f"dais: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(settings.effective_database_url, pool_size=settings.controller.workers + 2)
    controller = Controller(settings, sessions=make_sessionmaker(engine), secret_key=key)
    serve_health(settings.controller.listen, controller.healthy)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: controller.resync_requested.set())  # `kill -HUP`: check everything now
    return 0 if controller.run(stop) else 1


def _cmd_autoscaler(args: argparse.Namespace) -> int:
    if args.autoscaler_command == "simulate":
        return _cmd_simulate(args)
    from autoscaler.app import Autoscaler
    from core.db.session import make_engine, make_sessionmaker
    from core.health import serve_health
    from core.logs import configure_logging

    settings = Settings()
    configure_logging(json_lines=settings.log_json, level=settings.log_level)
    engine = make_engine(settings.effective_database_url, pool_size=4)
    autoscaler = Autoscaler(settings, sessions=make_sessionmaker(engine))
    serve_health(settings.autoscaler.listen, autoscaler.healthy)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return 0 if autoscaler.run(stop) else 1


def _cmd_gateway_build(_: argparse.Namespace) -> int:
    from gateway import native

    return native.main()


def _cmd_gateway(_: argparse.Namespace) -> int:
    from core.db.session import make_engine, make_sessionmaker
    from core.domain.catalog import load_engine_catalog
    from core.logs import configure_logging
    from gateway.app import Gateway

    settings = Settings()
    configure_logging(json_lines=settings.log_json, level=settings.log_level)
    if settings.is_sqlite:
        print(
            "dais: the gateway needs a shared PostgreSQL (DAIS_DATABASE_URL); on SQLite, `dais serve` runs it",
            file=sys.stderr,
        )
        return 2
    # Token checks, routing reads and activity writes run in worker threads; a few connections suffice.
    engine = make_engine(settings.effective_database_url, pool_size=8)
    gateway = Gateway(
        settings.gateway,
        sessions=make_sessionmaker(engine),
        engines=load_engine_catalog(settings.engine_catalog),
        database_url=settings.effective_database_url,
    )
    try:
        gateway.run()
    except OSError as exc:  # most often: the port is taken
        print(
            f"dais: the gateway cannot listen ({exc}): check DAIS_GATEWAY__LISTEN and __INTERNAL_LISTEN",
            file=sys.stderr,
        )
        return 2
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from autoscaler.app import policy_config
    from autoscaler.simulate import Trace, plot, scaling_for, simulate

    try:
        trace = Trace.read(Path(args.trace))
    except (OSError, ValueError) as exc:
        print(f"dais: --trace: {exc}", file=sys.stderr)
        return 2
    overrides = {
        "minReplica": args.min_replica,
        "maxReplica": args.max_replica,
        "scaleToZeroTimeout": args.scale_to_zero_timeout,
        "hardwareUsage": args.hardware_usage,
        "pendingRequests": args.pending_requests,
    }
    spec = scaling_for(trace, overrides)
    settings = Settings().autoscaler
    result = simulate(
        trace,
        spec,
        policy_config(settings),
        startup_s=args.startup_seconds,
        tick_s=settings.tick_seconds,
    )
    for change in result.changes:
        print(f"{change.t_s:>7}s  {change.previous} -> {change.replicas}  {change.reason}")
    print(json.dumps(result.summary()))
    if args.plot:
        try:
            threshold = spec.pending_requests or spec.hardware_usage or settings.hardware_usage
            plot(result, Path(args.trace).stem, threshold, Path(args.plot))
        except ImportError:
            print("dais: --plot needs matplotlib: pip install 'dais[plot]'", file=sys.stderr)
            return 2
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0


def _discover_token(explicit: str | None) -> str | None:
    """--token, then HF_TOKEN, then HF_TOKEN_PATH or the Hugging Face token cache (huggingface_hub's order)."""
    from huggingface_hub import get_token

    return explicit or get_token()


def _cmd_model_fetch(args: argparse.Namespace) -> int:
    from hub.fetch import FetchError, fetch, report_failure

    settings = Settings()
    try:
        fetch(
            repository=args.repo,
            revision=args.revision,
            dest=Path(args.dest),
            include=args.include or None,
            token=_discover_token(args.token),
            endpoint=args.endpoint or settings.hub.url,
            workers=args.workers,
        )
    except FetchError as exc:
        message = f"model fetch failed: {exc}"
        print(message, file=sys.stderr)
        report_failure(message)
        return 1
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from core.domain.catalog import load_hardware_catalog
    from hub.client import HubClient, HubError
    from hub.recommend import recommend

    settings = Settings()
    hub = settings.hub
    client = HubClient(
        endpoint=args.endpoint or hub.url, timeout=hub.timeout_seconds, deadline=hub.retry_deadline_seconds
    )
    hardware = load_hardware_catalog(
        settings.hardware_catalog,
        default_quota=settings.default_quota_accelerators,
        machine=settings.runtime == "local",
    )
    try:
        result = recommend(
            args.reference,
            client=client,
            hardware=hardware,
            token=_discover_token(args.token),
            headroom=hub.memory_headroom,
            vendor=args.vendor,
            region=args.region,
        )
    except (ValueError, HubError) as exc:
        print(f"dais: {exc}", file=sys.stderr)
        return 2
    if args.json:
        _print(result)
        return 0
    gib = 1024**3
    print(
        f"{result['repository']}@{result['revision'][:12]}: {result['weightBytes'] / gib:.1f} GiB of weights "
        f"({result['weightSource']}), needs {result['neededBytes'] / gib:.1f} GiB "
        f"with {result['headroom']:.0%} headroom"
    )
    if not result["items"]:
        print("no hardware row is large enough")
        return 1
    for row in result["items"]:
        print(
            f"  ${row['pricePerHour']:>7.3f}/h  {row['vendor']}/{row['region']}  {row['accelerator']}/"
            f"{row['instanceType']}/{row['instanceSize']}  ({row['memoryBytes'] / gib:.0f} GiB)"
        )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    return _serve_api(args, upgrade=True)


def _cmd_api(args: argparse.Namespace) -> int:
    return _serve_api(args, upgrade=args.upgrade)


def _cmd_db(args: argparse.Namespace) -> int:
    import migrations

    url = Settings().effective_database_url
    if args.db_command == "upgrade":
        migrations.upgrade(url, args.revision)
    else:
        migrations.downgrade(url, args.revision)
    return 0


def _cmd_engine(args: argparse.Namespace) -> int:
    from core.logs import configure_logging
    from engine.main import EngineOptions, serve

    settings = Settings()
    configure_logging(json_lines=settings.log_json, level=settings.log_level)
    options = EngineOptions(
        model=Path(args.model),
        model_id=args.model_id,
        task=args.task,
        host=args.host,
        port=args.port,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        threads=args.threads,
        context_tokens=args.context,
        device=args.device,
    )
    return serve(options)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _cmd_secret_key(_: argparse.Namespace) -> int:
    from core.db.crypto import new_key

    print(new_key())
    return 0


class ApiClient:
    """A thin client of our own API for the CLI; errors print the server's message."""

    def __init__(self, url: str, token: str | None) -> None:
        if not token:
            raise SystemExit(
                "dais: no token: pass --token or set DAIS_TOKEN (the admin token is printed at first start)"
            )
        import httpx

        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        import httpx

        try:
            response = self.http.request(method, path, json=body, params={k: v for k, v in params.items() if v})
        except httpx.HTTPError as exc:
            raise SystemExit(f"dais: cannot reach {self.http.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise SystemExit(f"dais: {response.status_code}: {message}")
        return response.json()

    def stream(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """The events of a server-sent stream, until it ends (or Ctrl-C)."""
        import httpx

        query = {k: v for k, v in params.items() if v}
        try:
            with self.http.stream("GET", path, params=query, timeout=httpx.Timeout(30, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise SystemExit(f"dais: {response.status_code}: {response.json().get('error', response.text)}")
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        yield json.loads(line.removeprefix("data: "))
        except httpx.HTTPError as exc:
            raise SystemExit(f"dais: cannot reach {self.http.base_url}: {exc}") from None


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(args.url, args.token)


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _cmd_endpoints_logs(args: argparse.Namespace) -> int:
    namespace, name = _endpoint_path(args.endpoint)
    client = _client(args)
    path = f"/v2/endpoint/{namespace}/{name}/logs"
    query = {"replica": args.replica, "since": args.since, "search": args.search, "tail": args.tail}
    if args.follow:
        try:
            for line in client.stream(path, follow="true", **query):
                print(f"{line['time']} {line['replica']} {line['stream']}: {line['line']}", flush=True)
        except KeyboardInterrupt:
            pass
        return 0
    found = client.call("GET", path, **query)
    if found["source"].startswith(("none", "kubernetes, live")):
        print(f"dais: {found['source']}", file=sys.stderr)
    for line in found["lines"]:
        print(f"{line['time']} {line['replica']} {line['stream']}: {line['line']}")
    return 0


def _endpoint_path(endpoint: str) -> tuple[str, str]:
    namespace, _, name = endpoint.partition("/")
    if not name:
        raise SystemExit("dais: name the endpoint as NAMESPACE/NAME, as in admin/my-endpoint")
    return namespace, name


def _cmd_endpoints_create(args: argparse.Namespace) -> int:
    """POST /v2/endpoint/{namespace} with a create body as JSON (the console's form and its equivalent request)."""
    text = sys.stdin.read() if args.body == "-" else Path(args.body).read_text()
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise SystemExit(
            f"dais: --body is not JSON ({exc}): pass a create body, as the README's curl example"
        ) from None
    created = _client(args).call("POST", f"/v2/endpoint/{args.namespace}", body)
    print(f"{args.namespace}/{created['name']}: {created['status']['state']} ({created['status']['message']})")
    return 0


def _cmd_endpoints_replicas(args: argparse.Namespace) -> int:
    namespace, name = _endpoint_path(args.endpoint)
    found = _client(args).call("GET", f"/v2/endpoint/{namespace}/{name}/replica")["items"]
    print(f"{'REPLICA':<40} {'STATE':<10} {'HOST':<24} {'STARTED':<24} {'STOPPED':<24} RESTARTS  LAST EXIT")
    for r in found:
        print(
            f"{r['id']:<40} {r['state']:<10} {r['host'] or '-':<24} {r['startedAt'] or '-':<24} "
            f"{r['stoppedAt'] or '-':<24} {r['restarts']:<9} {r['lastTermination'] or '-'}"
        )
    return 0


def _cmd_endpoints_usage(args: argparse.Namespace) -> int:
    report = _client(args).call("GET", f"/v2/usage/{args.namespace}", **{"from": args.since, "to": args.until})
    print(f"{'DAY':<12} {'ENDPOINT':<34} {'HARDWARE':<40} {'REPLICA-HOURS':>14} {'COST':>10}")
    for row in report["items"]:
        print(
            f"{row['day']:<12} {row['endpoint']:<34} {row['hardware']:<40} "
            f"{row['replicaHours']:>14.3f} {row['cost']:>10.2f}"
        )
    print(f"{'total':<88} {report['replicaHours']:>14.3f} {report['cost']:>10.2f}")
    return 0


def _cmd_endpoints_watch(args: argparse.Namespace) -> int:
    try:
        for event in _client(args).stream(f"/v2/endpoint/{args.namespace}", watch="true"):
            detail = event.get("message") if event["type"] == "status" else event.get("reason", "")
            what = event.get("state") or event.get("replicas", "")
            print(f"{event['time']} {event['type']:<9} {event['name']:<32} {what} {detail or ''}".rstrip(), flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    query = {"endpoint": args.endpoint, "actor": args.actor, "action": args.action, "since": args.since}
    found = _client(args).call("GET", f"/v2/audit-logs/{args.namespace}", limit=args.limit, **query)
    for event in found["items"]:
        changes = ", ".join(f"{d['path']}: {d.get('old')!r} → {d.get('new')!r}" for d in event["diff"])
        endpoint = event["endpoint"] or "-"
        print(f"{event['time']} {event['actor']:<16} {event['action']:<20} {endpoint:<32} {changes}")
    return 0


METRICS_SHOWN = "requests_2xx,requests_4xx,requests_5xx,latency_p50_ms,latency_p99_ms,pending,replicas_ready,tokens_out"


def _cmd_endpoints_metrics(args: argparse.Namespace) -> int:
    namespace, _, name = args.endpoint.partition("/")
    if not name:
        raise SystemExit("dais: name the endpoint as NAMESPACE/NAME, as in admin/my-endpoint")
    series = None if args.series == "all" else args.series
    query = {"from": args.since, "to": args.until, "step": args.step, "series": series, "source": args.source}
    found = _client(args).call("GET", f"/v2/endpoint/{namespace}/{name}/metrics", **query)
    if args.json:
        _print(found)
        return 0
    print(f"dais: {found['source']}, a point every {found['step']} s", file=sys.stderr)
    names = list(found["series"])
    rows = [["time", *names]]
    for i, moment in enumerate(found["timestamps"]):
        rows.append([moment.replace(".000Z", "Z"), *(_figure(n, found["series"][n][i]) for n in names)])
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for time, *cells in rows:
        print("  ".join([time.ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells, widths[1:], strict=True))]))
    return 0


def _figure(series: str, value: float | None) -> str:
    if value is None:
        return "-"
    if series.endswith("_bytes"):
        for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
            if value >= size:
                return f"{value / size:.1f}{unit}"
    return f"{value:.4g}"


def _cmd_users(args: argparse.Namespace) -> int:
    _print(_client(args).call("POST", "/api/users", {"name": args.name, "admin": args.admin}))
    return 0


def _cmd_orgs(args: argparse.Namespace) -> int:
    _print(_client(args).call("POST", "/api/orgs", {"name": args.name, "members": args.member}))
    return 0


def _cmd_tokens(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.tokens_command == "create":
        body = {
            "name": args.name,
            "user": args.user,
            "expiresInDays": args.expires_in_days,
            "endpoint": args.endpoint,
        }
        created = client.call("POST", "/api/tokens", {k: v for k, v in body.items() if v is not None})
        _print(created)
        print(f"\nThe token is shown only now: {created['token']}", file=sys.stderr)
    elif args.tokens_command == "list":
        for item in client.call("GET", "/api/tokens", user=args.user)["items"]:
            state = (
                "revoked" if item["revokedAt"] else ("expires " + item["expiresAt"] if item["expiresAt"] else "active")
            )
            print(f"{item['id']}  {item['user']:<16} {item['name']:<20} {item['prefix']}…  {state}")
    else:
        _print(client.call("DELETE", f"/api/tokens/{args.id}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dais", description="Self-hosted Inference Endpoints.")
    commands = parser.add_subparsers(dest="command", required=True)

    def server(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8000)
        sub.add_argument("--workers", type=int, default=1, help="API worker processes")
        return sub

    server("serve", "run Dais in one process (upgrades the database first)").set_defaults(func=_cmd_serve)
    api = server("api", "run the API server")
    api.add_argument("--upgrade", action="store_true", help="upgrade the database schema first")
    api.set_defaults(func=_cmd_api)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade").add_argument("revision", nargs="?", default="head")
    db_commands.add_parser("downgrade").add_argument("revision")
    db.set_defaults(func=_cmd_db)

    engine = commands.add_parser("engine", help="serve one model directory (Dais's own engine)")
    engine.add_argument("--model", required=True, help="the model directory (or one .gguf file)")
    engine.add_argument("--model-id", help="the name the model is served as (default: the directory's name)")
    engine.add_argument("--task", default=os.environ.get("TASK", "text-generation"), help="e.g. sentence-embeddings")
    engine.add_argument("--host", default="127.0.0.1")
    engine.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    engine.add_argument(
        "--max-concurrency",
        type=_positive,
        default=_positive(os.environ.get("MAX_CONCURRENCY", "1")),
        help="requests generated at once (env MAX_CONCURRENCY; default 1)",
    )
    engine.add_argument("--max-queue", type=int, default=32, help="requests waiting past those (then 503)")
    engine.add_argument("--threads", type=_positive, help="CPU threads (default: cores - 1)")
    engine.add_argument("--context", type=_positive, default=4096, help="context tokens per request slot")
    engine.add_argument("--device", choices=["cuda", "metal", "cpu"], help="default: CUDA, then Metal, then CPU")
    engine.set_defaults(func=_cmd_engine)
    commands.add_parser("secret-key", help="print a new DAIS_SECRET_KEY").set_defaults(func=_cmd_secret_key)
    commands.add_parser(
        "controller", help="reconcile endpoints into Kubernetes (leader-elected; /metrics and /healthz)"
    ).set_defaults(func=_cmd_controller)

    commands.add_parser(
        "gateway", help="serve endpoints' traffic: route, authorize, wake and hold on cold starts (/metrics inside)"
    ).set_defaults(func=_cmd_gateway)
    commands.add_parser(
        "gateway-build", help="compile the gateway's request path with mypyc, once per source (make does it)"
    ).set_defaults(func=_cmd_gateway_build)

    autoscaler = commands.add_parser(
        "autoscaler", help="decide replica counts (leader-elected; /metrics and /healthz); `simulate` replays a trace"
    )
    autoscaler.set_defaults(func=_cmd_autoscaler, autoscaler_command=None)
    simulate = autoscaler.add_subparsers(dest="autoscaler_command").add_parser(
        "simulate", help="replay a load trace through the policy on a virtual clock"
    )
    simulate.add_argument("--trace", required=True, help="CSV: t_s,load[,requests] (see benchmarks/traces)")
    simulate.add_argument("--plot", help="draw replicas against load into this PNG")
    simulate.add_argument("--startup-seconds", type=float, default=90.0, help="a new replica's time to Ready")
    simulate.add_argument("--min-replica", type=int)
    simulate.add_argument("--max-replica", type=int)
    simulate.add_argument("--scale-to-zero-timeout", type=int, help="minutes")
    simulate.add_argument("--hardware-usage", type=float, help="threshold, percent")
    simulate.add_argument("--pending-requests", type=float, help="threshold per replica")

    model = commands.add_parser("model", help="models on the Hub").add_subparsers(dest="model_command", required=True)
    fetch = model.add_parser("fetch", help="download one pinned revision into a directory (the init container)")
    fetch.add_argument("--repo", required=True, help="org/model")
    fetch.add_argument("--revision", required=True, help="a commit sha (or branch or tag)")
    fetch.add_argument("--dest", required=True, help="the directory to fill")
    fetch.add_argument("--include", action="append", default=[], help="only files matching this glob (repeatable)")
    fetch.add_argument("--token", help="Hub token; default: HF_TOKEN, then the Hugging Face token cache")
    fetch.add_argument("--endpoint", help="Hub URL; default: DAIS_HUB__URL, then HF_ENDPOINT")
    fetch.add_argument("--workers", type=int, default=8, help="files downloaded at once")
    fetch.set_defaults(func=_cmd_model_fetch)

    rec = commands.add_parser("recommend", help="hardware rows that hold a model, cheapest first")
    rec.add_argument("reference", help="org/model or org/model@revision")
    rec.add_argument("--vendor")
    rec.add_argument("--region")
    rec.add_argument("--token", help="Hub token; default: HF_TOKEN, then the Hugging Face token cache")
    rec.add_argument("--endpoint", help="Hub URL; default: DAIS_HUB__URL, then HF_ENDPOINT")
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=_cmd_recommend)

    def remote(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--url", default=os.environ.get("DAIS_URL", "http://127.0.0.1:8000"))
        sub.add_argument("--token", default=os.environ.get("DAIS_TOKEN"))
        return sub

    endpoints = commands.add_parser("endpoints", help="endpoints").add_subparsers(
        dest="endpoints_command", required=True
    )
    logs = remote(endpoints.add_parser("logs", help="an endpoint's replica logs, gone replicas' too"))
    logs.add_argument("endpoint", help="NAMESPACE/NAME")
    logs.add_argument("--replica", help="one replica's lines (gone ones too)")
    logs.add_argument("--since", help="lines from this time on (ISO 8601 with a zone)")
    logs.add_argument("--search", help="only lines containing this text")
    logs.add_argument("--tail", type=_positive, default=100, help="the last this many lines (default 100)")
    logs.add_argument("-f", "--follow", action="store_true", help="then each new line, until Ctrl-C")
    logs.set_defaults(func=_cmd_endpoints_logs)
    history = remote(endpoints.add_parser("metrics", help="an endpoint's metric history, a row per point"))
    history.add_argument("endpoint", help="NAMESPACE/NAME")
    history.add_argument("--from", dest="since", help="start (ISO 8601 with a zone; default: an hour ago)")
    history.add_argument("--to", dest="until", help="end (ISO 8601 with a zone; default: now)")
    history.add_argument("--step", help="seconds between points, or 30s, 5m, 1h (default: about 300 points)")
    history.add_argument("--series", default=METRICS_SHOWN, help=f"comma-separated, or all (default: {METRICS_SHOWN})")
    history.add_argument("--source", choices=["prometheus", "embedded"], help="default: Prometheus when configured")
    history.add_argument("--json", action="store_true", help="the answer as it came")
    history.set_defaults(func=_cmd_endpoints_metrics)
    create = remote(endpoints.add_parser("create", help="create an endpoint from a create body (JSON)"))
    create.add_argument("namespace")
    create.add_argument("--body", default="-", help="a file holding the create body as JSON; - (default): stdin")
    create.set_defaults(func=_cmd_endpoints_create)
    replicas = remote(endpoints.add_parser("replicas", help="an endpoint's replicas, running and recently gone"))
    replicas.add_argument("endpoint", help="NAMESPACE/NAME")
    replicas.set_defaults(func=_cmd_endpoints_replicas)
    usage = remote(endpoints.add_parser("usage", help="replica-hours and cost per endpoint, hardware and day"))
    usage.add_argument("namespace")
    usage.add_argument("--from", dest="since", help="start (ISO 8601 with a zone; default: 30 days ago)")
    usage.add_argument("--to", dest="until", help="end (ISO 8601 with a zone; default: now)")
    usage.set_defaults(func=_cmd_endpoints_usage)
    watch = remote(endpoints.add_parser("watch", help="status changes and scaling decisions as they happen"))
    watch.add_argument("namespace")
    watch.set_defaults(func=_cmd_endpoints_watch)

    audit = remote(commands.add_parser("audit", help="who changed what in a namespace, newest first"))
    audit.add_argument("namespace")
    audit.add_argument("--endpoint", help="one endpoint's events, by name")
    audit.add_argument("--actor", help="a user, or controller / autoscaler")
    audit.add_argument("--action", help="as in endpoint.update, failed, scaleToZero")
    audit.add_argument("--since", help="events from this time on (ISO 8601 with a zone)")
    audit.add_argument("--limit", type=_positive, default=50, help="at most this many (default 50)")
    audit.set_defaults(func=_cmd_audit)

    users = commands.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    create_user = remote(users.add_parser("create", help="create a user (admin)"))
    create_user.add_argument("name")
    create_user.add_argument("--admin", action="store_true")
    create_user.set_defaults(func=_cmd_users)

    orgs = commands.add_parser("orgs", help="manage orgs").add_subparsers(dest="orgs_command", required=True)
    create_org = remote(orgs.add_parser("create", help="create an org (admin)"))
    create_org.add_argument("name")
    create_org.add_argument("--member", action="append", default=[], help="a member's user name (repeatable)")
    create_org.set_defaults(func=_cmd_orgs)

    tokens = commands.add_parser("tokens", help="manage API tokens").add_subparsers(
        dest="tokens_command", required=True
    )
    create_token = remote(tokens.add_parser("create", help="create a token (shown once)"))
    create_token.add_argument("--name", required=True)
    create_token.add_argument("--user", help="for another user (admin)")
    create_token.add_argument("--expires-in-days", type=int)
    create_token.add_argument("--endpoint", help="namespace/name: a data-plane token for one endpoint")
    list_tokens = remote(tokens.add_parser("list", help="list tokens"))
    list_tokens.add_argument("--user")
    revoke = remote(tokens.add_parser("revoke", help="revoke a token"))
    revoke.add_argument("id")
    for sub in (create_token, list_tokens, revoke):
        sub.set_defaults(func=_cmd_tokens)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
