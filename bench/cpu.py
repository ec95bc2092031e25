"""CPU seconds spent by the server's processes, by PostgreSQL and by the load generator itself
while a benchmark measures.

Throughput on a shared machine drifts with the neighbours; CPU time per flow or request does
much less, so the load generator reports both."""

import os
import time
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> tuple[str, list[str]] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # the process ended between listing and reading
        return None
    name_end = text.rindex(")")
    return text[text.index("(") + 1 : name_end], text[name_end + 2 :].split()


def _cpu_seconds(fields: list[str]) -> float:
    # utime, stime, cutime, cstime: fields 14 to 17 of /proc/PID/stat, counted from 1 with the
    # name as 2. The children's part keeps the CPU of a backend that has exited (PostgreSQL's
    # postmaster reaps it) in the sum.
    return sum(int(value) for value in fields[11:15]) / TICKS_PER_SECOND


def _serves_database(pid: int, database: str) -> bool:
    """Whether a PostgreSQL process is a backend connected to `database`: a backend's title
    (its command line) reads `postgres: [CLUSTER:] USER DATABASE HOST(PORT) STATE`."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    words = title.replace(b"\0", b" ").split()
    if words[:1] != [b"postgres:"]:
        return False
    words = words[2:] if len(words) > 1 and words[1].endswith(b":") else words[1:]
    return len(words) > 1 and words[1] == database.encode()


def cpu_seconds(server_pid: int, database: str | None = None) -> dict[str, float]:
    """Total CPU of the server process and its children (workers), of every process named
    postgres on this machine, and of this process (the load generator shares the machine).
    With `database`, also `postgres_backends`: the backends connected to that database only,
    which other work on a shared PostgreSQL does not move (while they live: the pool keeps
    them for the whole measurement)."""
    server = postgres = backends = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat_fields(int(entry))
        if stat is None:
            continue
        name, fields = stat
        if int(entry) == server_pid or int(fields[1]) == server_pid:  # fields[1]: parent pid
            server += _cpu_seconds(fields)
        elif name == "postgres":
            postgres += _cpu_seconds(fields)
            if database is not None and _serves_database(int(entry), database):
                backends += _cpu_seconds(fields)
    seconds = {"server": server, "postgres": postgres, "client": time.process_time()}
    if database is not None:
        seconds["postgres_backends"] = backends
    return seconds


def rss_bytes(server_pid: int) -> int:
    """Resident memory of the server process and its children (workers)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat_fields(int(entry))
        if stat is None or (int(entry) != server_pid and int(stat[1][1]) != server_pid):
            continue
        # Field 24, resident pages.
        total += int(stat[1][21]) * os.sysconf("SC_PAGE_SIZE")
    return total
