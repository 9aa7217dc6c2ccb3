"""Dataset generation: rows of prompts and seeds in, Parquet parts of labelled PNGs with captions and recipes out.

`generate_rows` (generate.py) is the one function every runner calls: the local loop and the Ray Data actors of
`python -m t2i batch`, or a Spark `mapInPandas` function (see the README).
"""
