"""X/Y/Z plots: axes (A1111 syntax), running the cells through the engine, drawing the labelled grid."""
