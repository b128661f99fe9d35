"""FHIR exchange throughput: `ipt export fhir --all` of N courses (resources/s, peak RSS) and
`ipt ingest fhir` of a Bundle of N Appointment updates (session 1 of each course cancelled;
events/s, peak RSS), each a process of its own timed on the wall and in CPU seconds (the
machine may be shared). Also the import time of the `fhir.resources` R4B models the export
does without."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, ipt_command, rerun

#: Runs a command and prints its wall and CPU seconds and peak RSS (KiB). A small process of its
#: own starts it: a child's peak RSS counts the memory of the process it was forked from.
MEASURE = """
import os, subprocess, sys, time
t0 = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MiB) of ``cmd`` run to its end (exit 0)."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True).stdout
    wall, cpu, rss, code = out.split()
    if int(code):
        raise SystemExit(f"{' '.join(cmd)}: exit {code}")
    return float(wall), float(cpu), int(rss) / 1024


def in_process(db: str, bundle: Path) -> tuple[float, float]:
    """(wall, CPU seconds) of ``Workflow.ingest_fhir`` of ``bundle`` on ``db``, JSON parsed first."""
    from datetime import UTC, datetime

    from ipt_workflow import Workflow

    document = json.loads(bundle.read_text())
    with Workflow(db, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC)) as wf:
        t0, c0 = time.perf_counter(), time.process_time()
        wf.ingest_fhir(document)
        return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--courses", type=int, default=10_000)
    args = parser.parse_args()
    models = ("bundle", "appointment", "careplan", "observation", "plandefinition", "communicationrequest",
              "questionnaireresponse")  # fmt: skip
    code = "import time; t = time.perf_counter(); " + "; ".join(f"import fhir.resources.R4B.{m}" for m in models)
    code += "; print(time.perf_counter() - t)"
    imports = sorted(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                          check=True).stdout) for _ in range(5))  # fmt: skip
    print(f"import of 7 fhir.resources R4B model modules: median {imports[2] * 1000:.0f} ms (not done by the export)")
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "ipt.sqlite")
        subprocess.run([sys.executable, str(ROOT / "bench" / "import_courses.py"), "--courses", str(args.courses),
                        "--naive-courses", "1", "--keep", db], check=True, capture_output=True)  # fmt: skip
        base = [*ipt_command(), "--db", db]
        out = Path(tmp) / "bundle.json"
        export_s, export_cpu, export_rss = timed([*base, "export", "fhir", "--all", "--out", str(out)])
        bundle = json.loads(out.read_text())
        n, size = len(bundle["entry"]), out.stat().st_size / 2**20
        print(f"ipt export fhir --all, {args.courses:,} courses: {n:,} resources ({size:.0f} MiB) in {export_s:.1f} s "
              f"= {n / export_s:,.0f} resources/s; {export_cpu:.1f} CPU s = "
              f"{n / export_cpu:,.0f} resources/CPU s; peak RSS {export_rss:,.0f} MiB")  # fmt: skip
        updates = []
        for i, entry in enumerate(bundle["entry"]):
            res = entry["resource"]
            if res["resourceType"] == "Appointment" and res["identifier"][0]["value"].endswith("/1"):
                res = {**res, "id": f"a{i}", "meta": {"versionId": "2"}, "status": "cancelled"}
                updates.append({"resource": res})
        inp = Path(tmp) / "in.json"
        inp.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": updates}))
        del bundle
        shutil.copy(db, Path(tmp) / "copy.sqlite")
        ingest = [*base, "ingest", "fhir", str(inp), "--now", "2026-01-01T00:00:00Z", "--json"]
        ingest_s, ingest_cpu, ingest_rss = timed(ingest)
        print(f"ipt ingest fhir, a Bundle of {len(updates):,} Appointment updates (one transaction): {ingest_s:.1f} s "
              f"= {len(updates) / ingest_s:,.0f} events/s; {ingest_cpu:.1f} CPU s = "
              f"{len(updates) / ingest_cpu:,.0f} events/CPU s; peak RSS {ingest_rss:,.0f} MiB")  # fmt: skip
        wall, cpu = in_process(str(Path(tmp) / "copy.sqlite"), inp)
        print(
            f"Workflow.ingest_fhir of the same Bundle in process (parsed JSON in, report out): {wall:.1f} s = "
            f"{len(updates) / wall:,.0f} events/s; {cpu:.1f} CPU s = {len(updates) / cpu:,.0f} events/CPU s"
        )
    print(rerun("fhir_exchange.py [--courses N]"))


if __name__ == "__main__":
    main()
