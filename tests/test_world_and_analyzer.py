"""The shapes world and the analyzer that the fidelity benchmark stands on."""

import random
from dataclasses import replace

import pytest
from PIL import Image

from t2i.embedded.captions import EVAL_TEMPLATES, TRAIN_TEMPLATES, caption, is_held_out
from t2i.embedded.training.train_model import TrainConfig, training_scenes
from t2i.embedded.world import COLOURS, POSITIONS, SHAPES, Scene, random_scene, render
from t2i.eval.analyzer import analyze, relation_holds
from t2i.eval.benchmark import pair_cases, score_pair, single_object_cases


def _matches(scene, analysis) -> bool:
    if analysis.background != scene.background or len(analysis.objects) != len(scene.objects):
        return False
    for want in scene.objects:
        found = [d for d in analysis.objects if d.position == want.position]
        if not found or (found[0].shape, found[0].colour, found[0].size) != (want.shape, want.colour, want.size):
            return False
    if scene.relation:
        first, second = ([d for d in analysis.objects if d.position == o.position][0] for o in scene.objects)
        return relation_holds(first, second, scene.relation)
    return True


@pytest.mark.slow  # a measurement over many renders (about 20 s)
def test_analyzer_reads_ground_truth_renders():
    rng = random.Random(2024)
    scenes = [random_scene(rng, two_objects=i % 4 == 0) for i in range(500)]
    correct = sum(_matches(scene, analyze(render(scene))) for scene in scenes)
    assert correct / len(scenes) >= 0.99


def test_world_has_the_promised_variety():
    assert len(SHAPES) >= 6 and len(COLOURS) >= 10 and len(POSITIONS) == 9
    rng = random.Random(0)
    scene = random_scene(rng)
    captions = {caption(scene, rng) for _ in range(200)}
    assert len(captions) > 20  # many wordings of one scene


def test_held_out_combinations_never_reach_training():
    scenes = training_scenes(TrainConfig(out=None, work=None, n_scenes=3000))
    assert not any(is_held_out(o) for s in scenes for o in s.objects)
    assert all(is_held_out(c.scene.objects[0]) for c in single_object_cases(50))
    assert all(any(is_held_out(o) for o in c.scene.objects) for c in pair_cases(20))


def test_training_pairs_sit_at_the_two_ends_of_one_row_or_column():
    pairs = [s for s in training_scenes(TrainConfig(out=None, work=None, n_scenes=400)) if s.relation]
    assert len(pairs) > 60
    for scene in pairs:
        axis = 0 if scene.relation in ("left of", "right of") else 1
        (ax, ay), (bx, by) = (POSITIONS[o.position] for o in scene.objects)
        assert {(ax, ay)[axis], (bx, by)[axis]} == {0, 2} and (ax, ay)[1 - axis] == (bx, by)[1 - axis]
    # the relation the caption states still holds in the picture
    assert all(_matches(scene, analyze(render(scene))) for scene in pairs[:40])


def test_eval_wordings_are_not_training_wordings():
    assert not set(EVAL_TEMPLATES) & set(TRAIN_TEMPLATES)
    rng = random.Random(5)
    train_starts = {caption(random_scene(rng), rng).split()[0] for _ in range(300)}
    assert "draw" not in train_starts and "please" not in train_starts


def test_analyzer_reads_a_blank_image_as_background_only():
    analysis = analyze(Image.new("RGB", (64, 64), (128, 128, 128)))
    assert analysis.background == "gray" and analysis.objects == ()


def test_pair_score_tells_a_swapped_pair_from_a_missing_object():
    case = pair_cases(1)[0]
    first, second = case.scene.objects
    swapped = Scene((replace(first, position=second.position), replace(second, position=first.position)),
                    case.scene.background, case.scene.relation)
    missing = Scene((first,), case.scene.background)
    assert score_pair(case, render(case.scene)) == {"pair_both_right": 1.0, "pair_objects_right": 1.0,
                                                     "pair_reversed": 0.0}
    assert score_pair(case, render(swapped)) == {"pair_both_right": 0.0, "pair_objects_right": 1.0,
                                                  "pair_reversed": 1.0}
    assert score_pair(case, render(missing)) == {"pair_both_right": 0.0, "pair_objects_right": 0.0,
                                                  "pair_reversed": 0.0}
