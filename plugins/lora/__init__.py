"""Built-in LoRA plugin: stack LoRAs from the library folder (or a hub id) with weights, per request.

Units come from the UI/API (`plugin_units={"lora": [{"name": ..., "weight": ...}]}`) or from the prompt
(`<lora:name:0.8>`, A1111 syntax). See adapter.py for how a run's adapters are set and reset.
"""

from .adapter import LoraAdapter


def register(settings):
    """The LoRA adapter, reading the library folder from settings."""
    return [LoraAdapter(settings)]
