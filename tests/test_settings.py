"""Settings: every T2I_* variable read, validated at start with a message naming it, and the README tables
generated from the declarations."""

import dataclasses
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from t2i.settings import FIELDS, Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# the defaults as they were before the settings were declared with pydantic: they must not move
DEFAULTS = dict(
    device="auto", dtype="auto", default_model="embedded", model_local_paths=False, model_cache_size=2,
    model_cache_gb=0, quantize="auto", offload="auto", single_file_config="", max_prompt_chars=4000, max_side=2048, max_pixels=1536 * 1536,
    max_steps=150, max_images=16, max_upload_mb=20, queue_size=32, host="127.0.0.1", port=7860, share=False,
    data_dir=Path(tempfile.gettempdir()) / "t2i", model_dir=Path(tempfile.gettempdir()) / "t2i" / "models",
    browser_secret="", upload_ttl_s=3600, styles_dirs=(), styles_max_kb=1024, preview_every=2,
    preview_method="auto", plugin_dirs=(), entry_point_plugins=True, disabled_plugins=(), rate_limit_per_minute=60,
    api=False, api_key="", allowed_hosts=(),
    lora_dir=Path(tempfile.gettempdir()) / "t2i" / "loras", lora_cache_size=8, lora_max_mb=1024,
    lora_local_paths=False, train_threads=0, train_processes=1, train_accelerate_config="",
    train_lock=Path(tempfile.gettempdir()) / "t2i-training.lock",
    hub_timeout_s=20, controlnet_dirs=(), annotators="lllyasviel/Annotators",
    wildcards_dir=Path(tempfile.gettempdir()) / "t2i" / "wildcards", wildcards_max_kb=256, grid_max_steps=2000,
    grid_max_pixels=4096 * 4096, history_max=200, history_days=7.0,
    upscaler_dir=Path(tempfile.gettempdir()) / "t2i" / "upscalers", vae_dir=Path(tempfile.gettempdir()) / "t2i" / "vae",
    embeddings_dir=Path(tempfile.gettempdir()) / "t2i" / "embeddings", safety_action="block",
    safety_categories="sexual=block,violence_gore=block,hate=block,self_harm=block",
    safety_config="", safety_checkers=(), safety_timeout_s=10, safety_audit_log="",
    safety_allow_unchecked_images=False, safety_sd_checker="CompVis/stable-diffusion-safety-checker",
    watermark=False, c2pa_key="", c2pa_cert="", speed="auto", batch_max=1, batch_window_ms=30,
    backend="local", ray_address="", ray_replicas="1", ray_replica_cpus=1.0, ray_replica_gpus=0.0, ray_max_ongoing=2,
    ray_max_queued=32)


@pytest.fixture
def clean_env(monkeypatch):
    """No T2I_* variable set: what a fresh shell gives."""
    for name in [name for name in os.environ if name.startswith("T2I_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_defaults_are_unchanged(clean_env):
    assert dataclasses.asdict(Settings()) == DEFAULTS


def test_variables_are_read_and_parsed_and_keywords_win(clean_env):
    for name, value in dict(T2I_PORT="8000", T2I_SHARE="1", T2I_DATA_DIR="/srv/t2i", T2I_PLUGIN_DIRS=os.pathsep.join(
            ["/a", "/b"]), T2I_DISABLED_PLUGINS="lora, controlnet,", T2I_SPEED="channels_last,cache=2",
            T2I_SAFETY_TIMEOUT="2.5", T2I_MODEL_CACHE_GB="1.5").items():
        clean_env.setenv(name, value)
    settings = Settings(port=9000)
    assert (settings.port, settings.share, settings.speed, settings.safety_timeout_s) == (
        9000, True, "channels_last,cache=2", 2.5)
    assert settings.plugin_dirs == (Path("/a"), Path("/b")) and settings.disabled_plugins == ("lora", "controlnet")
    assert (settings.model_dir, settings.lora_dir) == (Path("/srv/t2i/models"), Path("/srv/t2i/loras"))


@pytest.mark.parametrize("variable, value, takes", [
    ("T2I_SPEED", "bogus", "use auto, quality, fast, or a comma list"),
    ("T2I_SPEED", "cache=0", "cache=N"),
    ("T2I_PREVIEW_METHOD", "fancy", "'auto', 'full' or 'approx'"),
    ("T2I_SAFETY_ACTION", "ignore", "'block', 'blur' or 'black'"),
    ("T2I_DEVICE", "gpu", "cuda:N"),
    ("T2I_DTYPE", "fp8", "'float16'"),
    ("T2I_PORT", "http", "valid integer"),
    ("T2I_PORT", "70000", "less than or equal to 65535"),
    ("T2I_MAX_STEPS", "0", "greater than or equal to 1"),
    ("T2I_SHARE", "maybe", "valid boolean"),
    ("T2I_SAFETY_TIMEOUT", "-1", "greater than 0"),
    ("T2I_RATE_LIMIT", "nan", "finite number"),
])
def test_a_bad_value_names_the_variable_and_what_it_takes(clean_env, variable, value, takes):
    clean_env.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        Settings()
    assert str(error.value).startswith(f"{variable}={value!r}: ") and takes in str(error.value)
    assert "\n" not in str(error.value)  # one line per bad variable, no pydantic report


def test_every_bad_variable_is_reported_at_once(clean_env):
    clean_env.setenv("T2I_SPEED", "turbo")
    clean_env.setenv("T2I_PORT", "x")
    message = str(pytest.raises(SettingsError, Settings).value)
    assert [line.split("=")[0] for line in message.splitlines()] == ["T2I_PORT", "T2I_SPEED"]


def test_a_keyword_overrides_a_bad_variable_and_replace_revalidates(clean_env):
    clean_env.setenv("T2I_SPEED", "turbo")
    settings = Settings(speed="fast")
    assert settings.speed == "fast"
    with pytest.raises(SettingsError, match="T2I_PREVIEW_METHOD='nope'"):
        dataclasses.replace(settings, preview_method="nope")


def test_load_settings_prints_one_paragraph_and_exits_2(clean_env, capsys):
    clean_env.setenv("T2I_PREVIEW_METHOD", "fancy")
    with pytest.raises(SystemExit) as stop:
        load_settings()
    assert stop.value.code == 2
    assert "T2I_PREVIEW_METHOD='fancy'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["app.py"], ["-m", "t2i", "generate", "a red circle", "-o", "never-written.png"]])
def test_the_app_and_the_cli_stop_at_start_on_a_bad_variable(command, tmp_path):
    # checked before the model stack (torch, diffusers, gradio) is imported, so this takes about a second
    env = {**os.environ, "T2I_SPEED": "bogus", "T2I_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "T2I_SPEED='bogus': unknown switch 'bogus'" in done.stderr


def test_the_settings_module_imports_no_model_stack():
    code = "import sys, t2i.settings; print(sorted({'torch', 'diffusers', 'gradio'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def _settings_table():
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "scripts" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(table: str) -> dict[str, list[str]]:
    """A markdown settings table as {variable: [default, meaning]}."""
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    return {row[0].strip("`"): row[1:] for row in cells}


def test_the_readme_tables_match_the_declarations():
    script = _settings_table()
    lines = README.read_text(encoding="utf-8").splitlines()
    tables = {}
    for name in script.TABLES:
        start = lines.index(script.marker(name)) + 1
        end = next(i for i in range(start, len(lines) + 1) if i == len(lines) or not lines[i].startswith("|"))
        tables[name] = "\n".join(lines[start:end])
    fix = "; run python scripts/settings_table.py --write"
    assert {variable for table in tables.values() for variable in _rows(table)} == {
        field.alias for field in FIELDS.values()}, "the README's variables differ from t2i/settings.py" + fix
    for name, table in tables.items():
        declared, shown = _rows(script.table(name)), _rows(table)
        defaults = {variable: row[0] for variable, row in shown.items()}
        assert defaults == {variable: row[0] for variable, row in declared.items()}, f"{name} table defaults" + fix
        assert table == script.table(name), f"the README's {name} table differs from t2i/settings.py" + fix
