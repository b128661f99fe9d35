"""What the CEL limits cost and save: the slowest conditions a rule file may still hold
(500 characters, comprehensions one level deep) against a nested one the loader refuses."""

from __future__ import annotations

import time

from _common import rerun
from ipt_workflow.core.cel import cel
from ipt_workflow.core.protocol import SAMPLE_FACTS, Condition


def ones(n: int, digit: str = "1") -> str:
    return "[" + ",".join([digit] * n) + "]"


ACCEPTED = {
    "a 120-item list against a 120-item list": f"{ones(120, '2')}.all(a, !(a in {ones(120)}))",
    "a 200-item list, 40 additions each": f"{ones(200)}.map(a, " + "+".join(["a"] * 40) + ") == [1]",
}
REFUSED = "{0}.all(a, {0}.all(b, {0}.all(c, {0}.all(d, a + b + c + d > 0))))".format(ones(50))


def best_ms(source: str, runs: int = 5) -> float:
    program = cel.compile(source)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        program.execute(SAMPLE_FACTS)
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def main() -> None:
    for name, source in ACCEPTED.items():
        Condition(source)  # accepted by the loader
        print(f"accepted, {name} ({len(source)} chars): {best_ms(source):.1f} ms per evaluation")
    try:
        Condition(REFUSED)
    except ValueError as exc:
        print(f"refused at load ({len(REFUSED)} chars): {str(exc).split(': ', 1)[-1][:70]}...")
    print(f"  what it would have cost (50^4 steps): {best_ms(REFUSED, 1):.0f} ms per evaluation")
    print(rerun("cel_limits.py"))


if __name__ == "__main__":
    main()
