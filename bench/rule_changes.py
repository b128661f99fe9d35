"""Rule changes on a big SQLite database (SPEC §11): ``ipt replan`` of every stored course
after a lead change (goal: 100,000 courses in <= 30 s), and ``ipt rules migrate --dry-run``
of every course onto another protocol version. The courses are made by ``ipt import`` (the
CSV of bench/import_courses.py: 2,000 therapists, no clashes)."""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from import_courses import write_csv

from _common import ROOT, ipt_command, rerun
from ipt_workflow.rulebook.locate import builtin_rules_dir

CPU: list[float] = []  # CPU seconds (user + system, workers included) of each timed run


def timed(args: list[str]) -> tuple[float, str]:
    """Wall seconds of one ``ipt`` run and its last line; its CPU seconds go to ``CPU``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([*ipt_command(), *args], check=True, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall, done.stdout.splitlines()[-1] if done.stdout else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--courses", type=int, default=100_000)
    args = parser.parse_args()
    n = args.courses
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rules = folder / "rules"
        shutil.copytree(builtin_rules_dir(), rules)
        csv_path, db = folder / "courses.csv", str(folder / "bench.sqlite")
        write_csv(csv_path, n)
        t_import, _ = timed(["--rules", str(rules), "--db", db, "import", str(csv_path), "--now", "2026-01-01T00:00"])
        clinic = rules / "clinic.yaml"
        clinic.write_text(clinic.read_text().replace("reminder_leads: [72h, 24h]", "reminder_leads: [24h]"))
        now = ["--now", "2026-01-01T00:00"]
        t_dry, dry_line = timed(["--rules", str(rules), "--db", db, "replan", "--dry-run", *now])
        t_replan, replan_line = timed(["--rules", str(rules), "--db", db, "replan", *now])
        t_again, again_line = timed(["--rules", str(rules), "--db", db, "replan", *now])
        newer = (rules / "ipt-16.yaml").read_text().replace('version: "1.0.0"', 'version: "1.1.0"')
        (rules / "ipt-16-next.yaml").write_text(newer.replace("planned: 12", "planned: 14", 1))
        migrate = ["rules", "migrate", "--protocol", "ipt-16", "--to", "1.1.0", "--dry-run", *now]
        t_migrate, migrate_line = timed(["--rules", str(rules), "--db", db, *migrate])
    cpu = dict(zip(("import", "dry", "replan", "again", "migrate"), CPU, strict=True))
    print(f"courses: {n:,} ipt-16 on SQLite (ipt import: {t_import:.1f} s); load average before: {load}")
    print("leads [72h, 24h] -> [24h]; every course loses 12 reminders; CPU s = user + system, workers included")
    print(f"ipt replan --dry-run: {t_dry:.1f} s ({n / t_dry:,.0f} courses/s; CPU {cpu['dry']:.1f} s) - {dry_line}")
    print(f"ipt replan:           {t_replan:.1f} s ({n / t_replan:,.0f} courses/s; CPU {cpu['replan']:.1f} s; "
          f"goal 100,000 in <= 30 s) - {replan_line}")  # fmt: skip
    print(f"ipt replan again:     {t_again:.1f} s (nothing to replan: one fingerprint compare a course) - {again_line}")
    print(f"ipt rules migrate --dry-run (1.0.0 -> 1.1.0): {t_migrate:.1f} s ({n / t_migrate:,.0f} courses/s; "
          f"CPU {cpu['migrate']:.1f} s) - {migrate_line}")  # fmt: skip
    print(rerun(f"rule_changes.py --courses {n}"))


if __name__ == "__main__":
    main()
