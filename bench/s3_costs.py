"""What a run costs on S3, in requests (what S3 bills), against the test S3 server: the README's table.

``python -m bench.s3_costs [--symbols 500]`` starts moto's S3 server and the fake Alpaca server on 127.0.0.1,
then runs, through the library, the scenarios of README "Storing on S3" and prints each run's
``storage_requests`` (every HTTP request to S3, retries included, up to the ledger record; the lock's release is
one DELETE more). Counts, not times: moto in this process says nothing about S3's latency.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _row(name: str, counts: dict[str, int]) -> str:
    other = sum(n for kind, n in counts.items() if kind not in ("LIST", "GET", "PUT"))
    return f"| {name} | {counts.get('LIST', 0):,} | {counts.get('GET', 0):,} | {counts.get('PUT', 0):,} | {other:,} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    args = parser.parse_args(argv)

    import boto3
    from moto.server import ThreadedMotoServer

    from tests.alpaca_server import FakeAlpaca

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name in [n for n in os.environ if n.startswith(("AWS_", "APCA_", "DATAENGINE_"))]:
        del os.environ[name]
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://{host}:{port}")
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/bars"
    rows: list[str] = []
    try:
        with FakeAlpaca() as alpaca:
            os.environ.update(APCA_API_KEY_ID="test-key", APCA_API_SECRET_KEY="test-secret",
                              APCA_API_DATA_URL=alpaca.url, DATAENGINE_REQUESTS_PER_MINUTE="60000",
                              DATAENGINE_DEFAULT_START="2024-01-02")
            from dataengine import IngestionPipeline
            from dataengine.loaders.symbol_loader import SymbolLoader

            symbols = SymbolLoader.from_file(REPO / "dataengine" / "lists" / "sp500-2025.csv")[: args.symbols]
            pipeline = IngestionPipeline(max_workers=8, storage_dir=url)

            def run(name: str, chosen: list[str], end: str) -> dict[str, Any]:
                result = pipeline.ingest_symbols(chosen, None, end, "day")
                assert result.ok, result.failed
                rows.append(_row(name, result.storage_requests))
                return result.storage_requests

            run(f"first run, {len(symbols)} symbols × Jan–Mar 2024 ({len(symbols) * 3:,} partitions)", symbols, "2024-03-28")
            run(f"nightly update of those {len(symbols)} symbols, one new day", symbols, "2024-04-01")
            run("the same again, nothing new", symbols, "2024-04-01")
            run(f"nightly update of 3 of {len(symbols)} stored symbols", symbols[:3], "2024-04-02")
    finally:
        server.stop()
    print("| run (daily bars) | LIST | GET | PUT | other |\n|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
