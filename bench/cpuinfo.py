"""The CPU a benchmark ran on (see :mod:`kosearch.encoding.cpu`): every speed figure this
project reports names its model and flags."""

from __future__ import annotations

from kosearch.encoding.cpu import FLAGS, cpu_info, cpu_line

__all__ = ["FLAGS", "cpu_info", "cpu_line"]

if __name__ == "__main__":
    print(cpu_line())
