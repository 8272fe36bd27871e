"""Input tables: reading CSV and Parquet files and building designs from formulas
(formulaic, pyarrow: the ``cli`` extra). Imported on use."""
