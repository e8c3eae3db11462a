"""Spark reads a dataset directory as it is: types, a dotted symbol, partition pruning to one file, and counts
equal to the ground truth. Needs a Java runtime and pyspark: it runs where both are present (``.ci/run``
installs pyspark when the machine has Java) and is skipped, saying why, elsewhere."""

from __future__ import annotations

import shutil

import pytest

from dataengine import IngestionPipeline, Settings
from tests.helpers import expected

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime (apt install openjdk-17-jre-headless)")
SYMBOLS = ["AAPL", "BRK.B", "MSFT"]


def test_spark_reads_a_dataset_directory_as_it_is(alpaca) -> None:  # type: ignore[no-untyped-def]
    pyspark_sql = pytest.importorskip("pyspark.sql", reason="pip install pyspark")
    input_file_name = pyspark_sql.functions.input_file_name
    assert IngestionPipeline(max_workers=2).ingest_symbols(SYMBOLS, "2024-01-25", "2024-02-06", "minute").ok
    path = str(Settings.load().storage_dir) + "/equities_1min"
    spark = (pyspark_sql.SparkSession.builder.master("local[1]").appName("dataengine-test")
             .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC").getOrCreate())
    try:
        # the Spark snippet of docs/reading.md, exactly (tests/test_docs.py cannot run it: no Java there)
        bars = spark.read.parquet(path)
        types = dict(bars.dtypes)
        assert types["timestamp"] == "timestamp" and types["symbol"] == "string" and types["month"] == "int"
        counts = {row["symbol"]: row["count"] for row in bars.groupBy("symbol").count().collect()}
        truth = expected(alpaca, SYMBOLS, "2024-01-25", "2024-02-06")
        assert counts == dict(truth.group_by("symbol").len().iter_rows())  # BRK.B's dot is fine
        one = bars.where("symbol = 'AAPL' AND year = 2024 AND month = 2")
        assert one.count() == expected(alpaca, ["AAPL"], "2024-02-01", "2024-02-06").height
        plan = one._jdf.queryExecution().executedPlan().toString()
        pruned = plan.split("PartitionFilters: [", 1)[1].split("]", 1)[0]
        assert "AAPL" in pruned and "month" in pruned  # partition pruning: one symbol-month opens one file
        assert one.select(input_file_name()).distinct().count() == 1
    finally:
        spark.stop()
