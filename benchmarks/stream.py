"""Streamed fits from Parquet files: wall time, rows/s, peak memory and error against exact.

For each size (10M and 100M rows by default, or ``--rows``) a Parquet file of 20 float32
features and ``y`` is written in chunks to a temporary folder (never the whole table in
memory; the size is scaled down, with a note, when the disk has too little room), then a
linear regression (known noise 1, prior N(0, 10^2), features with pairwise correlation 0.5)
is fitted from it by the streamed exact posterior (one pass accumulating X^T X and X^T y in
float64) and by ``nb.fit(model, nb.data.Parquet(...))``, each in a fresh process so that its
peak resident memory is its own (torch's import included). The errors are the largest
``|mean - exact mean| / exact sd`` and ``|sd / exact sd - 1|`` over the coefficients. The
files are deleted at the end.

    python benchmarks/stream.py                      # 10M and 100M rows
    python benchmarks/stream.py --rows 1000000       # one smaller size
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from linreg import status_bytes

FEATURES = 20
CHUNK_ROWS = 1_000_000  # rows generated and written at a time
BYTES_PER_ROW = (FEATURES + 1) * 4  # float32 columns, incompressible random values
DISK_MARGIN = 2 * 2**30
NOISE, PRIOR_SCALE = 1.0, 10.0


def columns() -> list[str]:
    return [f"x{j}" for j in range(FEATURES)]


def write_parquet(path: Path, n_rows: int) -> None:
    """``n_rows`` rows of ``y = X beta + e`` written ``CHUNK_ROWS`` at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    beta = rng.normal(size=FEATURES)
    cov = 0.5 * np.ones((FEATURES, FEATURES)) + 0.5 * np.eye(FEATURES)
    root = np.linalg.cholesky(cov).T
    schema = pa.schema([(name, pa.float32()) for name in [*columns(), "y"]])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n_rows, CHUNK_ROWS):
            rows = min(CHUNK_ROWS, n_rows - start)
            x = rng.standard_normal((rows, FEATURES)) @ root
            y = x @ beta + NOISE * rng.standard_normal(rows)
            arrays = [pa.array(x[:, j].astype(np.float32)) for j in range(FEATURES)]
            arrays.append(pa.array(y.astype(np.float32)))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema),
                               row_group_size=CHUNK_ROWS // 4)


def fitting_rows(n_rows: int, folder: Path) -> int:
    """``n_rows``, halved until the file fits on the disk with a margin."""
    free = shutil.disk_usage(folder).free
    rows = n_rows
    while rows * BYTES_PER_ROW + DISK_MARGIN > free and rows > CHUNK_ROWS:
        rows //= 2
    if rows != n_rows:
        print(f"note: {n_rows:,} rows need about {n_rows * BYTES_PER_ROW / 2**30:.1f} GiB and "
              f"{free / 2**30:.1f} GiB are free; writing {rows:,} rows instead")
    return rows


def child(method: str, path: str) -> None:
    """One fit in this process; prints its time, peak memory and posterior as JSON."""
    import torch
    from torch.distributions import Normal

    import noisybayes as nb

    class KnownNoiseLinear(nb.Model):
        def __init__(self) -> None:
            super().__init__()
            self.beta = nb.param(Normal(0.0, PRIOR_SCALE), shape=(FEATURES,))

        def forward(self, x: torch.Tensor) -> Normal:
            return Normal(x @ self.beta, NOISE)

    source = nb.data.Parquet(path, x=columns(), y="y")
    started = time.perf_counter()
    if method == "exact":
        exact = nb.data.streamed_gaussian_linear_posterior(source, NOISE, 0.0,
                                                           PRIOR_SCALE**-2)
        loc, scale, note = exact.loc, exact.scale, "one pass"
    else:
        post = nb.fit(KnownNoiseLinear(), source, seed=0, progress=False)
        loc, scale = post.mean["beta"].double(), post.sd["beta"].double()
        note = (f"{post.info.n_steps} Adam steps ({post.info.n_epochs:.2f} passes), k-hat "
                f"{post.info.khat:.2f} from {post.info.khat_draws} draws")
    seconds = time.perf_counter() - started
    peak = status_bytes("VmHWM")  # this process's own: ru_maxrss keeps the parent's over exec
    print(json.dumps({"seconds": seconds, "peak_rss": peak, "loc": loc.tolist(),
                      "scale": scale.tolist(), "note": note}))


def run(method: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 100_000_000])
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print(f"{platform.processor() or platform.machine()}, {platform.python_version()}, "
          f"{FEATURES} float32 features")
    print(f"{'rows':>12} {'method':>6} {'seconds':>8} {'rows/s':>11} {'peak RSS MiB':>12} "
          f"{'mean error (sd)':>15} {'sd error':>8}  note")
    with tempfile.TemporaryDirectory(prefix="nb-stream-") as folder:
        for requested in args.rows:
            n_rows = fitting_rows(requested, Path(folder))
            path = Path(folder) / f"rows_{n_rows}.parquet"
            write_parquet(path, n_rows)
            exact = run("exact", path)
            loc, scale = np.array(exact["loc"]), np.array(exact["scale"])
            for method, result in (("exact", exact), ("nb.fit", run("fit", path))):
                error = np.max(np.abs(np.array(result["loc"]) - loc) / scale)
                sd_error = np.max(np.abs(np.array(result["scale"]) / scale - 1))
                print(f"{n_rows:>12,} {method:>6} {result['seconds']:>8.1f} "
                      f"{n_rows / result['seconds']:>11,.0f} "
                      f"{result['peak_rss'] / 2**20:>12,.0f} {error:>15.4f} {sd_error:>8.2%}  "
                      f"{result['note']}")
            path.unlink()


if __name__ == "__main__":
    main()
