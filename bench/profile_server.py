"""Profile Dagma's server process with py-spy while one bench scenario runs.

    /work/main/.venv/bin/pip install py-spy      # once (py-spy is on PyPI)
    DAGMA_NO_BOOTSTRAP=1 .venv/bin/python bench/profile_server.py sustained20 bench/results/profile-sustained20
    DAGMA_NO_BOOTSTRAP=1 .venv/bin/python bench/profile_server.py send_one_room bench/results/profile-send

Writes ``<prefix>.svg`` (flame graph, open in a browser), ``<prefix>.txt`` (the
collapsed stacks py-spy sampled) and ``<prefix>.top.txt`` (the functions with the most
samples, inclusive and self: diff it before/after), and prints the
scenario's numbers. Sampling costs the server some CPU: compare profiles with profiles, and
take the numbers from ``client_api_bench.py``.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.client_api_bench import MEASURE_HOOKS, PRODUCTION_LIKE, SCENARIOS, production_python, run_all  # noqa: E402 - after the path set-up
from bench.procstat import ServerProcesses  # noqa: E402
from tests.support.live import LiveServer  # noqa: E402


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in SCENARIOS:
        raise SystemExit(f"usage: profile_server.py <{'|'.join(SCENARIOS)}> <output prefix>")
    scenario, prefix = sys.argv[1], Path(sys.argv[2])
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    server = LiveServer(
        Path(tempfile.mkdtemp(prefix="dagma-profile-")), config=PRODUCTION_LIKE, python=production_python()
    )
    server.start()
    assert server.proc is not None
    pid = server.proc.pid
    procs = ServerProcesses(pid, server.db_name)
    try:
        # Two samplers (py-spy writes one format per run): the flame graph and the folded stacks,
        # over the scenario's measured phase only (its set-up, registrations and joins left out).
        spies: list[subprocess.Popen[bytes]] = []

        def sample(on: bool) -> None:
            if on and not spies:
                for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
                    command = [py_spy, "record", "--pid", str(pid), "--rate", "250", "--function",
                               "--nonblocking", "--format", fmt, "--output", f"{prefix}.{ext}"]  # fmt: skip
                    spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
            elif not on:
                for spy in spies:
                    spy.send_signal(signal.SIGINT)
                for spy in spies:
                    spy.wait(timeout=60)

        MEASURE_HOOKS.append(sample)
        results = asyncio.run(run_all(server.base_url, procs, (scenario,)))
        print({k: round(v, 1) for k, v in results.items()})
    finally:
        procs.close()
        server.destroy()
    subprocess.run(
        [sys.executable, "-c", FLAMEGRAPH, f"{prefix}.txt", f"{prefix}.top.txt"],
        check=True,
    )


#: A short text summary of the folded stacks: the functions with the most samples
#: (inclusive and self), first over every sample, then over the samples that were on the
#: CPU — py-spy also samples threads waiting for PostgreSQL (``Connection.wait``), for
#: work (``_worker``, ``Condition.wait``) or for the network (``select``), which is wall
#: time, not CPU.
FLAMEGRAPH = r"""
import collections, sys
WAITING = ("Connection.wait", "Condition.wait", "_worker", "Event.wait", "Queue.get", "EpollSelector.select",
           "select", "wait_c", "socket.recv", "SocketIO.readinto")
def summary(out, title, keep):
    total = collections.Counter(); own = collections.Counter(); n = 0
    for line in open(sys.argv[1]):
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        frames = [f.split(" (")[0] for f in stack.split(";")]
        if not keep(frames):
            continue
        c = int(count); n += c
        own[frames[-1]] += c
        for f in set(frames):
            total[f] += c
    out.write(f"== {title}: {n} samples\n\n-- inclusive --\n")
    for f, c in total.most_common(70):
        out.write(f"{100 * c / max(n, 1):5.1f}%  {f}\n")
    out.write("\n-- self --\n")
    for f, c in own.most_common(40):
        out.write(f"{100 * c / max(n, 1):5.1f}%  {f}\n")
    out.write("\n")
with open(sys.argv[2], "w") as out:
    summary(out, "on CPU (waits left out)", lambda fr: fr[-1] not in WAITING and "Connection.wait" not in fr)
    summary(out, "every sample", lambda fr: True)
"""

if __name__ == "__main__":
    main()
