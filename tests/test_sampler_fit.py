"""A sampler distilled models need (LCM) warns on a model that was not distilled for it, on every front end."""

from t2i.generation.samplers import SAMPLERS, sampler_warning
from t2i.studio import GenerateForm, Studio


def test_lcm_warns_only_where_the_model_was_not_distilled_for_it():
    assert "distilled for LCM" in sampler_warning("LCM", {"_class_name": "EulerDiscreteScheduler"})
    assert sampler_warning("LCM", {"_class_name": "LCMScheduler"}) == ""
    assert all(sampler_warning(name, {"_class_name": "EulerDiscreteScheduler"}) == ""
               for name in SAMPLERS if name != "LCM")


def test_an_lcm_result_on_the_embedded_model_carries_the_warning(settings, engine):
    studio = Studio(settings, engine)
    assert "distilled for LCM" in studio.sampler_warning("embedded", "LCM")
    form = GenerateForm(prompt="a red circle on a blue background", sampler="LCM", steps=4, seed=1)
    finished = [update for update in studio.generate(form, "lcm-session") if update.files]
    assert "distilled for LCM" in finished[0].info
    plain = [update for update in studio.generate(GenerateForm(prompt="a red circle", steps=4, seed=1), "s")
             if update.files]
    assert "distilled" not in plain[0].info
