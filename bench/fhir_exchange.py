"""FHIR exchange throughput: `ipt export fhir --all` of N courses (resources/s) and `ipt ingest
fhir` of a Bundle of N Appointment updates (session 1 of each course cancelled; events/s).
Also the import time of the `fhir.resources` R4B models the export does without."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, ipt_command, rerun


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
        t0 = time.perf_counter()
        subprocess.run([*base, "export", "fhir", "--all", "--out", str(out)], check=True)
        export_s = time.perf_counter() - t0
        bundle = json.loads(out.read_text())
        n = len(bundle["entry"])
        print(f"ipt export fhir --all, {args.courses:,} courses: {n:,} resources in {export_s:.1f} s = "
              f"{n / export_s:,.0f} resources/s ({out.stat().st_size / 2**20:.0f} MiB)")  # fmt: skip
        updates = []
        for i, entry in enumerate(bundle["entry"]):
            res = entry["resource"]
            if res["resourceType"] == "Appointment" and res["identifier"][0]["value"].endswith("/1"):
                res = {**res, "id": f"a{i}", "meta": {"versionId": "2"}, "status": "cancelled"}
                updates.append({"resource": res})
        inp = Path(tmp) / "in.json"
        inp.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": updates}))
        t0 = time.perf_counter()
        subprocess.run([*base, "ingest", "fhir", str(inp), "--now", "2026-01-01T00:00:00Z", "--json"], check=True,
                       capture_output=True)  # fmt: skip
        ingest_s = time.perf_counter() - t0
        print(f"ipt ingest fhir, a Bundle of {len(updates):,} Appointment updates: {ingest_s:.1f} s = "
              f"{len(updates) / ingest_s:,.0f} events/s (all in one transaction)")  # fmt: skip
    print(rerun("fhir_exchange.py [--courses N]"))


if __name__ == "__main__":
    main()
