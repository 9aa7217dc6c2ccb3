"""The prompt checker's rates on every evaluation set (old, blind, held-out, dev), per category and per
language, as the default policy applies them. Prints the tables and writes bench/results/safety_rates.json,
from which the README's safety figures are taken. Only rates leave here: no prompt is printed. By default the
checker runs as shipped (the word lists and the n-gram classifier at its default threshold); `--ngram T` runs the
classifier at T instead (above 1: off, the lists alone; no value: the threshold in
plugins/safety_prompt/model/ngram_meta.json) and writes bench/results/safety_rates_ngram.json instead.

    python bench/safety_rates.py
    python bench/safety_rates.py --ngram
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_result  # noqa: E402
from t2i.plugins import PluginManager  # noqa: E402
from t2i.safety.evaluation import checkout_sets, rates, refused_by, table  # noqa: E402
from t2i.safety.gate import SafetyGate  # noqa: E402
from t2i.settings import Settings  # noqa: E402
from t2i_plugins.safety_prompt.checker import DEFAULT_THRESHOLDS, PromptModeration  # noqa: E402
from t2i_plugins.safety_prompt.ngram import MODEL_DIR  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ngram", type=float, nargs="?", const=json.loads((MODEL_DIR / "ngram_meta.json").read_text())[
        "threshold"], help="run the n-gram classifier at this threshold (no value: its model's own; above 1: off; "
                            "default: as shipped)")
    ngram = parser.parse_args().ngram
    thresholds = DEFAULT_THRESHOLDS if ngram is None else {**DEFAULT_THRESHOLDS, "ngram": ngram}
    settings = Settings(device="cpu", entry_point_plugins=False, safety_allow_unchecked_images=True,
                        data_dir=Path(tempfile.mkdtemp(prefix="t2i-bench-")))
    gate = SafetyGate(PluginManager([PromptModeration(thresholds)]), settings)

    results = {}
    for name, cases in checkout_sets(Path(__file__).resolve().parent.parent / "tests").items():
        results[name] = rates(cases, refused_by(gate))
        print(table(name, results[name]))
    write_result("safety_rates" if ngram is None else "safety_rates_ngram",
                 {"policy": settings.safety_categories, "thresholds": thresholds, "sets": results},
                 model="prompt_moderation word lists (no image model)")
    print(json.dumps({name: {k: v["all"]["rate"] for k, v in r.items()} for name, r in results.items()}))


if __name__ == "__main__":
    main()
