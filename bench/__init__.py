"""Side-by-side benchmarks of t2i against plain diffusers: `python -m bench --quick` (see BENCHMARKS.md)."""
