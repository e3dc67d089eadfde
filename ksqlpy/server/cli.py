"""``ksqlpy server [--config F] [--listeners URL] [--data-dir D] [--bootstrap-servers B]``."""

from __future__ import annotations

import argparse
import logging
import sys

from ksqlpy.server.config import BOOTSTRAP_SERVERS, LISTENERS, STATE_DIR, ConfigError, ServerConfig

log = logging.getLogger("ksqlpy.server")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="ksqlDB-style server properties file")
    parser.add_argument("--listeners", metavar="URL", help="e.g. http://0.0.0.0:8088 (property: listeners)")
    parser.add_argument(
        "--data-dir", metavar="DIR", help="data directory, ':memory:' for none (ksql.streams.state.dir)"
    )
    parser.add_argument(
        "--bootstrap-servers", metavar="HOSTS", help="Kafka brokers; omit for the embedded store"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = ServerConfig.load(
            path=args.config,
            overrides={
                LISTENERS: args.listeners,
                STATE_DIR: args.data_dir,
                BOOTSTRAP_SERVERS: args.bootstrap_servers,
            },
        )
        # Key material and user files are checked before anything opens.
        if any(listener.scheme == "https" for listener in config.listeners):
            from ksqlpy.server.tls import server_context

            server_context(config)
        from ksqlpy.server.acl import authorizer
        from ksqlpy.server.auth import auth_settings
        from ksqlpy.server.quotas import Quotas

        auth_settings(config)
        authorizer(config, lambda name: frozenset())
        Quotas(config)
    except ConfigError as e:
        print(f"ksqlpy server: {e}", file=sys.stderr)
        return 2
    for line in config.unsupported():
        log.warning("%s", line)
    from ksqlpy.server.main import StartupError, serve

    try:
        serve(config)
    except StartupError as e:
        print(f"ksqlpy server: {e}", file=sys.stderr)
        return 1
    return 0
