"""The prompt-fidelity benchmark: held-out prompts at fixed seeds, judged by the analyzer.

Prompts use wordings training never saw (EVAL_TEMPLATES) and (shape, colour, position)
combinations held out of training. Prints a table, then one JSON object on the last line.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass

from t2i.embedded.captions import caption, is_held_out
from t2i.embedded.world import BACKGROUND_ONLY_COLOURS, COLOURS, POSITIONS, SHAPES, SIZES, Scene, ShapeObject, random_scene

from t2i.eval.analyzer import analyze, named_colour_share, relation_holds

TARGETS = {"colour": 0.90, "background": 0.95, "shape": 0.85, "position": 0.85, "size": 0.80,
           "pair_both_right": 0.60, "clean_pixels": 0.90}
SPEED_TARGET_S = 0.5


@dataclass(frozen=True)
class EvalCase:
    prompt: str
    scene: Scene
    seed: int


def single_object_cases(n: int, seed: int = 1234) -> list[EvalCase]:
    """`n` one-object prompts over the held-out (shape, colour, position) combinations."""
    rng = random.Random(seed)
    combos = [(s, c, p) for s in SHAPES for c in COLOURS for p in POSITIONS if is_held_out(ShapeObject(s, c, "medium", p))]
    rng.shuffle(combos)
    cases = []
    for i in range(n):
        shape, colour, position = combos[i % len(combos)]
        obj = ShapeObject(shape, colour, rng.choice(tuple(SIZES)), position)
        background = rng.choice([b for b in (*COLOURS, *BACKGROUND_ONLY_COLOURS) if b != colour])
        scene = Scene((obj,), background)
        cases.append(EvalCase(caption(scene, rng, eval_wording=True), scene, 10_000 + i))
    return cases


def pair_cases(n: int, seed: int = 4321) -> list[EvalCase]:
    """`n` two-object prompts, each with at least one held-out object."""
    rng = random.Random(seed)
    cases = []
    while len(cases) < n:
        scene = random_scene(rng, two_objects=True)
        if any(is_held_out(o) for o in scene.objects):
            cases.append(EvalCase(caption(scene, rng, eval_wording=True), scene, 20_000 + len(cases)))
    return cases


def score_single(case: EvalCase, image) -> dict:
    """Per-attribute correctness (1.0/0.0) of one single-object image, plus its clean-pixel share."""
    analysis = analyze(image)
    want = case.scene.objects[0]
    got = analysis.objects[0] if analysis.objects else None
    scores = {"background": float(analysis.background == case.scene.background)}
    for attribute in ("colour", "shape", "position", "size"):
        scores[attribute] = float(got is not None and getattr(got, attribute) == getattr(want, attribute))
    scores["clean_pixels"] = named_colour_share(image, [case.scene.background, want.colour])
    return scores


def score_pair(case: EvalCase, image) -> dict:
    """Scores (1.0/0.0) of one two-object image: `pair_both_right` when both objects are found with the right
    shape and colour in the right relation; the diagnostics `pair_objects_right` (both found, any relation) and
    `pair_reversed` (both found, in the opposite relation: the objects swapped)."""
    detected = analyze(image).objects[:4]
    found = []
    for want in case.scene.objects:
        matches = [d for d in detected if d.shape == want.shape and d.colour == want.colour]
        found.append(matches[0] if matches else None)
    both = found[0] is not None and found[1] is not None and found[0] is not found[1]
    relation = case.scene.relation
    return {"pair_both_right": float(both and relation_holds(found[0], found[1], relation)),
            "pair_objects_right": float(both),
            # the relation holding with the objects' roles exchanged: drawn swapped
            "pair_reversed": float(both and relation_holds(found[1], found[0], relation))}


def run_benchmark(model: str = "embedded", steps: int = 20, n_single: int = 200, n_pairs: int = 100,
                  speed_runs: int = 7) -> dict:
    """Generate and judge the held-out prompt sets; print a table and a final JSON line; return the numbers."""
    from t2i.generation.engine import Engine
    from t2i.plugins import PluginManager
    from t2i.request import GenerationRequest
    from t2i.settings import Settings

    # the model alone is judged: no plugins, so no safety checker can withhold an image or add its time
    # (bench/safety_latency.py measures the checkers)
    engine = Engine(Settings(safety_allow_unchecked_images=True), plugins=PluginManager())

    def generate(case: EvalCase):
        request = GenerationRequest(prompt=case.prompt, steps=steps, seed=case.seed, model=model)
        return engine.generate(request).images[0].image

    singles = [score_single(case, generate(case)) for case in single_object_cases(n_single)]
    pairs = [score_pair(case, generate(case)) for case in pair_cases(n_pairs)]
    results = {key: statistics.mean(s[key] for s in scores) for scores in (singles, pairs) if scores
               for key in scores[0]}

    probe = GenerationRequest(prompt="a red heart in the top left on a blue background", steps=steps, seed=7, model=model)
    first = engine.generate(probe).images[0].image
    timings = []
    for _ in range(speed_runs):
        start = time.perf_counter()
        again = engine.generate(probe).images[0].image
        timings.append(time.perf_counter() - start)
    results["seconds_per_image"] = statistics.median(timings)
    results["deterministic"] = first.tobytes() == again.tobytes()

    print(f"prompt fidelity of {model!r}: {len(singles)} single-object and {len(pairs)} two-object held-out prompts, "
          f"{steps} steps")
    print(f"{'metric':<20}{'value':>10}{'target':>10}  met")
    met = {}
    for key, target in TARGETS.items():
        if key in results:
            met[key] = results[key] >= target
            print(f"{key:<20}{results[key]:>10.3f}{target:>10.2f}  {'yes' if met[key] else 'NO'}")
    met["speed"] = results["seconds_per_image"] <= SPEED_TARGET_S
    print(f"{'seconds_per_image':<20}{results['seconds_per_image']:>10.3f}{SPEED_TARGET_S:>10.2f}  "
          f"{'yes' if met['speed'] else 'NO'}  (median of {speed_runs}, "
          f"{first.width}x{first.height})")
    for key in ("pair_objects_right", "pair_reversed"):
        if key in results:
            print(f"{key:<20}{results[key]:>10.3f}{'':>10}  (diagnostic)")
    print(f"{'deterministic':<20}{str(results['deterministic']):>10}")
    results.update(model=model, steps=steps, n_single=len(singles), n_pairs=len(pairs), targets_met=met)
    print(json.dumps(results, sort_keys=True))
    return results
