"""A process's peak resident memory while a block runs (benches and the bounds tests watch the API with it)."""

from __future__ import annotations

import os
import threading

import psutil

MiB = 1024**2


class PeakRss:
    """Samples a process's RSS every 20 ms in a thread; ``growth`` is the peak minus the value at the start."""

    def __init__(self, pid: int | None = None) -> None:
        self.proc = psutil.Process(pid or os.getpid())
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base

    @property
    def growth_mib(self) -> float:
        return self.growth / MiB

    @property
    def peak_mib(self) -> float:
        return self.peak / MiB
