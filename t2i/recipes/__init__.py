"""Recipes: the A1111 infotext and our JSON recipe written into PNGs, read back, shared as links; AI labels."""
