"""Models: loading and caching pipelines, which models a server may load, file header checks, file hashes."""
