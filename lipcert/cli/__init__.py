"""The ``lipcert`` command line: ``main`` (also ``python -m lipcert.cli``, e.g. under torchrun)."""

from __future__ import annotations

import sys

from ..core.distributed import group_exists, init_from_env, leave
from ..core.errors import LipcertError, SolverError
from .arguments import build_parser

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the ``lipcert`` command; a user error prints ``lipcert: error: ...`` and returns 2 (no traceback)."""
    args = build_parser().parse_args(argv)
    done, caller_group = False, group_exists()  # a group the caller made is the caller's to close
    try:
        init_from_env()  # under torchrun: join the process group; each command shards its images
        status = args.func(args)
        done = True
        return status
    except (LipcertError, SolverError, OSError) as exc:
        print(f"lipcert: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lipcert: interrupted", file=sys.stderr)
        return 130
    finally:
        if not caller_group:
            leave(wait=done)  # the group joined above, if any
