"""The README's Spark pattern: a fitted estimator shipped to PySpark's Python workers with `mapInPandas` labels a
DataFrame as `est.predict` does in process. Runs a local Spark (`local[2]`, two task slots, so two Python
worker processes) when PySpark and a Java runtime are installed; PySpark runs from its wheel with no download
at run time. Skips otherwise, saying which is missing."""
import os
import shutil
import sys

import numpy as np
import pytest

from lyricnn.estimators import TextClassifier
from test_dask import TINY, _texts   # the tiny DistilBERT and word-salad texts of the Dask test

pyspark = pytest.importorskip("pyspark", reason="PySpark is not installed (pip install pyspark)")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip("PySpark needs a Java runtime (java on PATH or JAVA_HOME); none found", allow_module_level=True)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)   # the workers run this interpreter
    s = (SparkSession.builder.master("local[2]").appName("lyricnn-test")
         .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
         .config("spark.local.dir", str(tmp_path_factory.mktemp("spark")))
         .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
         .getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


def test_map_in_pandas_gives_predict_s_answers(spark, tmp_path):
    import pandas as pd

    X = _texts(96, 0)
    clf = TextClassifier(model=TINY, max_length=16, epochs=6, lr=2e-3, batch_size=8, verbose=0).fit(
        X, np.where(["love" in t for t in X], "yes", "no"))
    songs = pd.DataFrame({"song_id": np.arange(120, dtype=np.int64), "lyrics": _texts(120, 1)})
    sdf = spark.createDataFrame(songs).repartition(4)   # 4 batches over 2 task slots

    def label(batches):      # the README's function: runs in the Python workers; clf travels pickled
        import lyricnn
        lyricnn.set_num_threads(1)
        for pdf in batches:
            yield pdf.assign(pred=clf.predict(pdf["lyrics"]).astype(str),
                             p_yes=clf.predict_proba(pdf["lyrics"])[:, 1])

    out_dir = str(tmp_path / "labelled")
    sdf.mapInPandas(label, schema="song_id long, lyrics string, pred string, p_yes double").write.parquet(out_dir)
    got = spark.read.parquet(out_dir).toPandas().sort_values("song_id").reset_index(drop=True)
    assert len(got) == len(songs) and got["song_id"].tolist() == songs["song_id"].tolist()
    want = clf.predict(songs["lyrics"]).astype(str)
    assert set(want) == {"yes", "no"}, "the model should predict both labels for the check to mean anything"
    np.testing.assert_array_equal(got["pred"].to_numpy(), want)
    # the same probabilities to float32 rounding: a partition's songs form other batches (other padded lengths,
    # so other GEMM shapes) than the whole frame's
    np.testing.assert_allclose(got["p_yes"].to_numpy(), clf.predict_proba(songs["lyrics"])[:, 1], rtol=1e-5)
