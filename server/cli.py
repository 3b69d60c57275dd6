"""The `confide` command: `serve` runs a node, `token` prints a signed token.

Every setting of `server.config.Settings` is a flag of `serve` (`--max-frame-bytes`) and
an environment variable (`CONFIDE_MAX_FRAME_BYTES`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import os
import socket
import sys
from collections.abc import Sequence

from server.config import ConfigError, Settings, env_name, load, make_data_folder

DESCRIPTION = "Confide: real-time rooms and live sessions for online therapy."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="confide", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a node (embedded store and broker by default)")
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        serve.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(),
                           help=f"default {f.default!s:.40} (env {env_name(f.name)})")
    token = commands.add_parser("token", help="print a token signed with the node's key")
    token.add_argument("--data", default=None, help="the node's data folder (env CONFIDE_DATA)")
    token.add_argument("--user", required=True)
    token.add_argument("--role", required=True, choices=["client", "provider", "admin"])
    token.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    try:
        if args.command == "token":
            return _token(overrides)
        return _serve(overrides)
    except ConfigError as exc:
        print(f"confide: configuration error: {exc}", file=sys.stderr)
        return 2


def _token(overrides: dict[str, object]) -> int:
    from server.auth import TokenAuthority
    from server.errors import ConfideError

    user, role, ttl = overrides.pop("user"), overrides.pop("role"), overrides.pop("ttl", None)
    settings = load(overrides)
    try:
        token = TokenAuthority(settings, create_key=False).issue(str(user), str(role),
                                               int(ttl) if ttl is not None else None)  # type: ignore[call-overload]
    except ConfideError as exc:
        print(f"confide: {exc.message}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _check_data(settings: Settings) -> None:
    """The data folder can be made and used, and a database already in it opens: checked
    before start-up, so that a wrong `--data` is a configuration error naming it."""
    from server.store.sqlite import DB_FILE, check_database

    data = settings.data
    make_data_folder(data)
    if not os.access(data, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(f"data: {data} must be readable and writable by this user")
    check_database(data / DB_FILE)


def _serve(overrides: dict[str, object]) -> int:
    import uvicorn

    from server.app import create_app, server_config

    settings = load(overrides)
    if settings.redis or settings.database:
        raise ConfigError("--redis and --database (many nodes) are not available in this "
                          "version yet; run without them for the embedded default")
    _check_data(settings)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: "
                          f"{exc.strerror}") from None
    sock.listen(4096)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    if settings.port == 0:
        settings = dataclasses.replace(settings, port=port)
    app = create_app(settings)
    config = server_config(app, loop="uvloop" if _has("uvloop") else "asyncio",
                           http="httptools" if _has("httptools") else "h11")
    server = uvicorn.Server(config)
    gc.set_threshold(50_000, 50, 100)
    print(f"confide listening on http://{settings.host}:{port} (data {settings.data})",
          flush=True)
    if _has("uvloop"):
        import uvloop

        uvloop.run(server.serve(sockets=[sock]))
    else:
        asyncio.run(server.serve(sockets=[sock]))
    return 0


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
