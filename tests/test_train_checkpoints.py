"""LoRA checkpoints through Accelerate: a resumed run equals a straight one bit for bit, a half-written checkpoint is
never read, old checkpoints are pruned, and an earlier version's checkpoint still resumes."""

import json

import torch
from accelerate import Accelerator
from safetensors.torch import save_file

from t2i.train.resume import KEEP, LORA_FILE, LoraCheckpoints, latest_checkpoint_step


def _run(folder, steps: int, save_every: int = 0, resume: bool = False):
    """A toy run shaped like the trainer's: the weights, the AdamW optimizer and one generator for all randomness."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    generator = torch.Generator().manual_seed(7)
    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=0.1))
    checkpoints = LoraCheckpoints(accelerator, folder, lambda: {"unet." + k: v for k, v in model.state_dict().items()},
                                  lambda weights: model.load_state_dict({k[5:]: v for k, v in weights.items()}),
                                  optimizer, generator)
    start = checkpoints.resume() if resume else 0
    for step in range(start + 1, steps + 1):
        loss = model(torch.randn(3, 4, generator=generator)).square().mean()
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        if save_every and step % save_every == 0:
            checkpoints.save(step)
    return start, model.state_dict(), generator.get_state()


def test_a_resumed_run_equals_a_straight_one(tmp_path):
    _, straight, straight_generator = _run(tmp_path / "a", steps=6)
    _run(tmp_path / "b", steps=4, save_every=2)  # stops after the checkpoint at step 4, like a kill right after it
    start, resumed, resumed_generator = _run(tmp_path / "b", steps=6, resume=True)
    assert start == 4 and latest_checkpoint_step(tmp_path / "b") == 4
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert torch.equal(straight_generator, resumed_generator)


def test_checkpoints_hold_the_lora_weights_and_only_complete_ones_count(tmp_path):
    _run(tmp_path, steps=8, save_every=2)
    folders = sorted(path.name for path in tmp_path.iterdir())
    assert folders == [f"step-{step:06d}" for step in range(2, 9, 2)][-KEEP:]
    files = {path.name for path in (tmp_path / "step-000008").iterdir()}
    assert LORA_FILE in files and "step.json" in files and not any(name.startswith("model") for name in files)
    (tmp_path / ".tmp-step-000010").mkdir()  # killed mid-save: never renamed, never read
    (tmp_path / "step-000012").mkdir()  # no step.json: incomplete
    assert latest_checkpoint_step(tmp_path) == 8


def test_an_earlier_versions_checkpoint_still_resumes(tmp_path):
    _, straight, _ = _run(tmp_path / "a", steps=5)
    # what the checkpoint module wrote before Accelerate: lora.safetensors + state.pt + step.json
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    generator = torch.Generator().manual_seed(7)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(3):
        model(torch.randn(3, 4, generator=generator)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    old = tmp_path / "c" / "step-000003"
    old.mkdir(parents=True)
    save_file({"unet." + k: v.contiguous() for k, v in model.state_dict().items()}, str(old / LORA_FILE))
    torch.save({"optimizer": optimizer.state_dict(), "generator": generator.get_state()}, old / "state.pt")
    (old / "step.json").write_text(json.dumps({"step": 3}))
    start, resumed, _ = _run(tmp_path / "c", steps=5, resume=True)
    assert start == 3 and all(torch.equal(straight[k], resumed[k]) for k in straight)
