"""Data sources over files, read in chunks at constant memory, and what streams from them.

``nb.data.Parquet(path, x=[...], y=...)`` and ``nb.data.CSV(...)`` are sources the engine's
``Trainer`` consumes; ``streamed_gaussian_linear_posterior`` is the exact conjugate answer
from one pass. pyarrow (``pip install 'noisybayes[cli]'``) is imported when a file is opened.
"""

from noisybayes.data.conjugate import streamed_gaussian_linear_posterior
from noisybayes.data.files import FileSource
from noisybayes.data.formats import CSV, Parquet

__all__ = ["CSV", "FileSource", "Parquet", "streamed_gaussian_linear_posterior"]
