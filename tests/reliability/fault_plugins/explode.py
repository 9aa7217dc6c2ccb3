"""A test plugin that raises from inside the UNet at a chosen sampling step: a plugin failing mid-sampling."""

import contextlib

from t2i.plugins import Adapter, Param


class Explode(Adapter):
    """Raises RuntimeError on the UNet call of step `at_step`; the hook is removed again on exit."""

    name = "explode"
    label = "Explode (reliability tests)"
    max_units = 1
    params = (Param("at_step", "int", default=3, minimum=1, maximum=1000, step=1, label="At step"),)

    @contextlib.contextmanager
    def activate(self, model, units):
        at_step, calls = units[0]["at_step"], []

        def count_and_raise(module, args):
            calls.append(1)
            if len(calls) >= at_step:
                raise RuntimeError(f"explode plugin: boom at step {at_step}")

        hook = model.pipeline.unet.register_forward_pre_hook(count_and_raise)
        try:
            yield
        finally:
            hook.remove()


def register(settings):
    return [Explode()]
