"""Serving on Ray Serve (T2I_BACKEND=ray): replicas that each hold an Engine (deployment.py), and the front end's
RayEngine with the local engine's generate() contract (backend.py). Ray is the optional `ray` extra."""
