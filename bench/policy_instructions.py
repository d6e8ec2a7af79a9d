"""Instructions per request the policy servers spend handling requests, counted by valgrind.

On a virtual machine the time a request takes moves with the host (steal, cache), by ±30 %
between rounds of the same run, which hides a change of a few µs. The number of instructions
executed does not move. This feeds each server's connection objects the bench's request mix
in-process, through a transport that discards what is written (no sockets, no kernel), and counts
user-space instructions under ``valgrind --tool=callgrind``: once with one pass over the requests
and once with three, so start-up cancels out and the difference is two passes of pure handling.
The nulls of ``bench_policy.py`` (same framing, same HTTP stack, no logic) are counted the same
way. Kernel work (the sends, which dominate the nulls' time) is not in these figures; the
saturated runs of ``bench_policy.py`` are where the two meet.

    .venv-compiled/bin/python bench/policy_instructions.py [--only postfix|dovecot] [--json out]

Needs valgrind (Debian package ``valgrind``); about 3 minutes per mailward server, 1 per null.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_policy as bp  # noqa: E402

KINDS = ("postfix", "postfix-null", "dovecot", "dovecot-null")


class _Discard(asyncio.Transport):
    """A transport that takes what is written and drops it."""

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def close(self) -> None:
        pass


async def _feed(kind: str, passes: int, count: int) -> None:
    """Child: build the server's connections and feed them ``passes`` times ``count`` requests."""
    from mailward.config.model import DovecotPolicySettings, PostfixPolicySettings
    from mailward.policy.httpserver import HttpServer, Limits, _Connection
    from mailward.policy.postfix import PostfixPolicyServer, _PolicyConnection

    logging.disable(logging.WARNING)
    loop = asyncio.get_running_loop()
    flush: Any
    drain: Any = None
    conns: list[Any]
    if kind.startswith("postfix"):
        reqs = bp.postfix_requests(count)
        if kind == "postfix":
            server = PostfixPolicyServer(
                PostfixPolicySettings(listen=["inet:127.0.0.1:0"], socket_group=None),
                backend=bp.make_backend("real"),
            )
            await server.start()
            conns = [_PolicyConnection(server) for _ in range(16)]
            for c in conns:
                c.connection_made(_Discard())
            flush = server.replies.flush
        else:
            conns = [bp._NullPostfix() for _ in range(16)]
            for c in conns:
                c.connection_made(_Discard())
            flush = bp._NullPostfix.replies.flush
    else:
        reqs = bp.dovecot_requests(count)
        if kind == "dovecot":
            from mailward.policy.dovecot import DovecotPolicyServer

            dovecot = DovecotPolicyServer(
                DovecotPolicySettings.model_validate(
                    {"port": 0, "host": "127.0.0.1", "api_key": "bench"}
                ),
                backend=bp.make_backend("real"),
            )
            await dovecot.start()
            http = dovecot.http
            drain = dovecot._drain  # reports are processed as the loop would, between passes
        else:
            http = HttpServer("dovecot-null", bp._NullDovecot(), Limits())
            await http.start("127.0.0.1", 0)
        conns = [_Connection(http) for _ in range(16)]
        for c in conns:
            c.connection_made(_Discard())
        flush = http.replies.flush
    gc.collect()
    gc.freeze()
    views = [memoryview(r) for r in reqs]
    started = time.process_time()
    for _ in range(passes):
        for i, view in enumerate(views):
            conns[i & 15].data_received(view)
            if i & 7 == 7:  # as under load: about eight replies per pass of the loop
                flush()
                if drain is not None:
                    drain()
        loop._ready.clear()  # type: ignore[attr-defined]  # the flushes' callbacks, run above
    spent = time.process_time() - started
    print(json.dumps({"kind": kind, "cpu_us": spent / passes / len(views) * 1e6}))


def count_instructions(kind: str, passes: int, count: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/cg.out",
                sys.executable,
                __file__,
                "--child",
                kind,
                str(passes),
                "--requests",
                str(count),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind: {out.stderr[-500:]}")
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("postfix", "dovecot"))
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=2, metavar=("KIND", "PASSES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        asyncio.run(_feed(args.child[0], int(args.child[1]), args.requests))
        return
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": sys.version.split()[0],
        "requests": args.requests,
        "per_request": {},
    }
    for kind in KINDS:
        if args.only and not kind.startswith(args.only):
            continue
        print(f"counting {kind} …", file=sys.stderr, flush=True)
        one = count_instructions(kind, 1, args.requests)
        three = count_instructions(kind, 3, args.requests)
        results["per_request"][kind] = round((three - one) / (2 * args.requests))
    for kind, n in results["per_request"].items():
        print(f"{kind:14} {n:8,} instructions/request")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")  # the same dict layouts in every child
    main()
