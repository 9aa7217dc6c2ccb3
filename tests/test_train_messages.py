"""What the Train tab says names the user's files and LoRAs, never Python objects or server paths."""

import pytest
from PIL import Image

from t2i.request import RequestError
from t2i.train.dataset import prepare_dataset
from t2i.train.runner import RunStatus
from t2i.ui.train_tab import _without_server_path


def test_an_undecodable_file_is_named_without_pillows_buffer(tmp_path):
    for i in range(3):
        Image.new("RGB", (64, 64), (80 * i, 0, 0)).save(tmp_path / f"ok{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not a picture at all")
    with pytest.raises(RequestError) as refused:
        prepare_dataset(sorted(tmp_path.iterdir()))
    assert str(refused.value).startswith("broken.png could not be decoded as an image")
    assert "BytesIO" not in str(refused.value) and " at 0x" not in str(refused.value)


@pytest.mark.parametrize("message, shown", [
    ("saved {lora}", "saved to the LoRA library as zqx_style"),
    ("saved {lora} (resumed from the checkpoint at step 4)",
     "saved to the LoRA library as zqx_style (resumed from the checkpoint at step 4)"),
])
def test_a_finished_runs_status_names_the_lora_as_the_list_does(tmp_path, message, shown):
    lora = str(tmp_path / "loras" / "zqx_style.safetensors")
    status = RunStatus("r1", "done", message=message.format(lora=lora), lora=lora)
    assert _without_server_path(status) == shown
    assert _without_server_path(RunStatus("r2", "running", message="step 3")) == "step 3"
