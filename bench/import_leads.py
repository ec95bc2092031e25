"""Time `crm-graphql import` on a generated 100,000-row CSV (a benchmark, not a test).

    .venv/bin/python bench/import_leads.py [--rows 100000] [--database-url URL]

The database named in the URL is dropped and created afresh. The file has every column filled,
1% invalid rows and 1% duplicates of earlier rows' emails. The import runs twice: the second run
shows the cost of an idempotent rerun that creates nothing.
"""

import argparse
import asyncio
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.database import recreate_database

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/crm_bench_import"


def write_rows(path: Path, rows: int) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["contact_name", "company_name", "email", "phone", "website", "source"])
        for n in range(rows):
            email = f"person{n}@company{n}.example.com"
            if n % 100 == 50:
                email = f"person{n - 1}@company{n - 1}.example.com"  # a duplicate
            if n % 100 == 99:
                email = "not-an-email"  # invalid
            writer.writerow(
                [
                    f"Person {n}",
                    f"Company {n} GmbH",
                    email,
                    f"+49 30 {1_000_000 + n}",
                    f"www.company{n}.example.com",
                    "PARTNER" if n % 3 == 0 else "",
                ]
            )


def timed_import(path: Path, url: str) -> tuple[float, str]:
    env = {**os.environ, "CRM_DATABASE_URL": url, "CRM_LOG_LEVEL": "warning"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "crm_graphql", "import", str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"import failed:\n{result.stderr}")
    return time.perf_counter() - started, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()

    asyncio.run(recreate_database(args.database_url))
    env = {**os.environ, "CRM_DATABASE_URL": args.database_url, "CRM_LOG_LEVEL": "warning"}
    subprocess.run([sys.executable, "-m", "crm_graphql", "migrate"], env=env, check=True)
    with tempfile.TemporaryDirectory(prefix="crm-bench-import-") as folder:
        path = Path(folder) / "leads.csv"
        write_rows(path, args.rows)
        for label in ("first import", "rerun"):
            seconds, summary = timed_import(path, args.database_url)
            print(f"== {label}: {seconds:.1f} s wall clock ({args.rows / seconds:,.0f} rows/s)")
            print(summary)


if __name__ == "__main__":
    main()
