"""Wall time of `ipt --help` (goal < 150 ms: heavy libraries are imported lazily)."""

from __future__ import annotations

from _common import ipt_command, rerun, summary, wall_times


def main() -> None:
    print(f"ipt --help: {summary(wall_times([*ipt_command(), '--help'], 20))}")
    print(f"ipt protocols list: {summary(wall_times([*ipt_command(), 'protocols', 'list'], 10))}")
    print(rerun("cli_help.py"))


if __name__ == "__main__":
    main()
