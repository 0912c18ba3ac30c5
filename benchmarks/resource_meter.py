"""Wall time, CPU time and peak memory of a block of code, for benchmark tables.

Peak memory, two ways (Linux ``/proc``):

* ``process_peak_gb``: the process's own high-water mark (``VmHWM``), reset when the block starts (``clear_refs``
  5), so it is the peak *during* the block, exact however short the spike;
* ``tree_peak_gb``: the largest sum of proportional set sizes (``Pss`` of ``smaps_rollup``) of the process and all
  its descendants (DataLoader workers, process pools), polled every ``interval`` seconds while the process has
  children (without children it is ``process_peak_gb``). PSS shares pages that forked workers have in common among
  them, so the sum is not inflated by copy-on-write sharing; a spike shorter than the interval can be missed.
  Reading ``smaps_rollup`` costs the kernel time proportional to the mapped memory, so the polling is kept sparse
  (every 0.25 s it slowed a CPU-bound mixture fit on 2 cores by half).

``start_gb`` is the process's resident size when the block started: ``process_peak_gb - start_gb`` is what the
block itself added. ``tree_cpu_s`` adds to this process's CPU seconds those of its descendants, read at each poll
(``utime + stime`` of ``/proc/PID/stat``): a worker's last second before it exits can be missed. Descendants are
found below this process, so the workers of a process pool started through a fork server (a child that outlives
the pool, whose exited workers ``os.times`` never sees) are counted too.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_KB = 1024


def _status_kb(pid: int | str, key: str) -> int:
    """A ``kB`` field of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``); 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    """Proportional set size of a process in kB (its RSS where ``smaps_rollup`` is unavailable)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return _status_kb(pid, "VmRSS")
    return 0


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: fields 14 and 15 of stat


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (via ``/proc/PID/task/*/children``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


def _reset_high_water_mark() -> bool:
    """Set ``VmHWM`` to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class ResourceMeter:
    """Context manager measuring the block it wraps (see the module docstring).

    Attributes (set on exit)
    ------------------------
    wall_s, cpu_s, tree_cpu_s
        Wall-clock seconds, CPU seconds of this process (all its threads) and of it with its descendants.
    start_gb, process_peak_gb, tree_peak_gb
        Resident GB at the start, this process's peak, and the polled peak of the process tree (GB, 1e9 bytes).

    Examples
    --------
    >>> with ResourceMeter() as meter:
    ...     work()
    >>> meter.wall_s, meter.process_peak_gb
    """

    interval: float = 1.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    tree_cpu_s: float = 0.0
    start_gb: float = 0.0
    process_peak_gb: float = 0.0
    tree_peak_gb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _tree_peak_kb: int = field(default=0, repr=False)
    _children_cpu: dict[int, float] = field(default_factory=dict, repr=False)

    def _poll(self) -> None:
        pid = os.getpid()
        while not self._stop.wait(self.interval):
            self._poll_children(pid)

    def _poll_children(self, pid: int) -> None:
        tree = _descendants(pid)
        if len(tree) > 1:
            self._tree_peak_kb = max(self._tree_peak_kb, sum(_pss_kb(p) for p in tree))
            for child in tree[1:]:
                self._children_cpu[child] = _cpu_s(child) - self._children_start.get(child, 0.0)

    def __enter__(self) -> ResourceMeter:
        if not _reset_high_water_mark():
            raise OSError("cannot reset the peak RSS (/proc/self/clear_refs): ResourceMeter needs Linux >= 4.0.")
        self.start_gb = _status_kb("self", "VmRSS") * _KB / 1e9
        self._stop.clear()
        self._tree_peak_kb = 0
        self._children_cpu = {}
        self._children_start = {child: _cpu_s(child) for child in _descendants(os.getpid())[1:]}
        self._thread = threading.Thread(target=self._poll, name="resource-meter", daemon=True)
        self._thread.start()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = time.process_time() - self._cpu
        self._stop.set()
        self._thread.join()
        self._poll_children(os.getpid())
        self.tree_cpu_s = self.cpu_s + sum(self._children_cpu.values())
        self.process_peak_gb = _status_kb("self", "VmHWM") * _KB / 1e9
        self.tree_peak_gb = max(self._tree_peak_kb * _KB / 1e9, self.process_peak_gb)

    def as_dict(self) -> dict[str, float]:
        """The measured values, for JSON."""
        return {"wall_s": self.wall_s, "cpu_s": self.cpu_s, "tree_cpu_s": self.tree_cpu_s, "start_gb": self.start_gb,
                "process_peak_gb": self.process_peak_gb, "tree_peak_gb": self.tree_peak_gb}
