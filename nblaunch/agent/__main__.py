"""``python -m nblaunch.agent``: the background agent that submits start."""

from __future__ import annotations

import argparse
import logging
import sys

from nblaunch.agent.loop import Agent
from nblaunch.errors import NBLaunchError
from nblaunch.home import home


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m nblaunch.agent")
    parser.add_argument("--queue", action="append")
    parser.add_argument("--idle-timeout", type=float, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        return Agent(home(), args.queue, args.idle_timeout).run()
    except NBLaunchError as exc:
        print(f"nblaunch agent: {exc}", file=sys.stderr)
        return 2


sys.exit(main(sys.argv[1:]))
