"""Saving pruned checkpoints in both formats, reloading them (also where interlace-hf is not installed), the CLI."""

import json
import shutil
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, LlamaConfig, LlamaForCausalLM, pipeline

from interlace_hf.commands.cli import main
from interlace_hf.checkpoint import choose_format, save_pruned, standard_config_dict
from interlace_hf.card import write_card_files
from interlace_hf.plan import Plan
from interlace_hf.surgery import prune_model

REPO_ROOT = Path(__file__).resolve().parents[1]


def pruned_tiny(tiny_model_dir, dropped):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    plan = Plan.from_dropped(12, dropped)
    return prune_model(model, plan, base_model=str(tiny_model_dir)), plan


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize(
    "dropped, fmt, expected_type",
    [((3, 7), "auto", "qwen3_vl"), ((1, 9), "auto", "interlace_qwen3_vl"), ((0, 5), "interlace", "interlace_qwen3_vl"),
     ((4,), "standard", "qwen3_vl")],
)
def test_round_trip(tiny_model_dir, tmp_path, image_batch, dropped, fmt, expected_type):
    model, plan = pruned_tiny(tiny_model_dir, dropped)
    out = save_pruned(model, plan, tmp_path / "out", format=fmt, processor_source=tiny_model_dir)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == expected_type
    assert config["interlace"]["kept_layers"] == list(plan.kept_layers)
    assert config["interlace"]["format"] == ("standard" if expected_type == "qwen3_vl" else "interlace")
    assert config["text_config"]["num_hidden_layers"] == 12 - len(dropped)
    if expected_type == "qwen3_vl":
        # No model code: a stock checkpoint. (The base's processor code, if it ships one, travels as it is.)
        assert "auto_map" not in config and [p.name for p in out.glob("*.py")] == ["processing_interlace_qwen3_vl.py"]
    else:
        assert config["auto_map"]["AutoModelForImageTextToText"].startswith("modeling_interlace_qwen3_vl.")
        assert (out / "modeling_interlace_qwen3_vl.py").is_file()
    assert Plan.load(out) == plan
    for name in ("tokenizer.json", "chat_template.jinja", "processor_config.json", "generation_config.json"):
        assert (out / name).is_file(), name
    assert list(out.glob("*.safetensors"))
    reloaded = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32).eval()
    assert reloaded.config.interlace["kept_layers"] == list(plan.kept_layers)
    torch.testing.assert_close(logits(reloaded, image_batch), logits(model, image_batch), rtol=0, atol=0)


def test_standard_is_refused_when_not_exact_unless_forced(tiny_model_dir, tmp_path, image_batch):
    model, plan = pruned_tiny(tiny_model_dir, (2, 6))
    with pytest.raises(ValueError, match=r"would not be exact: the plan drops layer\(s\) \[2\].*--format interlace"):
        save_pruned(model, plan, tmp_path / "std", format="standard")
    assert not (tmp_path / "std").exists()
    out = save_pruned(model, plan, tmp_path / "std", format="standard", force=True,
                      on_staged=lambda staging: write_card_files(staging, plan, model_name="std"))
    forced = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32).eval()
    assert type(forced).__name__ == "Qwen3VLForConditionalGeneration"
    assert not torch.allclose(logits(forced, image_batch), logits(model, image_batch), atol=1e-4)
    # The inexact checkpoint says so, in config.json and at the top of its card.
    block = json.loads((out / "config.json").read_text())["interlace"]
    assert block["exact"] is False and "drops layer(s) [2]" in block["inexact_reason"]
    card = (out / "README.md").read_text()
    assert "**Warning: not exact.**" in card and "drops layer(s) [2]" in card
    model, plan = pruned_tiny(tiny_model_dir, (4, 6))
    exact = save_pruned(model, plan, tmp_path / "std-exact", format="standard",
                        on_staged=lambda staging: write_card_files(staging, plan, model_name="std-exact"))
    assert json.loads((exact / "config.json").read_text())["interlace"]["exact"] is True
    assert "not exact" not in (exact / "README.md").read_text()
    # Writing a checkpoint renders no card by itself: presentation is the commands' job.
    bare = save_pruned(*pruned_tiny(tiny_model_dir, (4, 6)), tmp_path / "bare", format="standard")
    assert not (bare / "README.md").exists() and (bare / "plan.json").is_file()


def test_a_second_run_into_the_same_new_directory_is_refused(tmp_path):
    """Two runs into one new path: the first to finish keeps it; the second is refused at the rename, not silently
    swapped in, and leaves no staging directory behind."""
    from interlace_hf.utils.fileio import atomic_output_dir

    target = tmp_path / "out"
    with pytest.raises(ValueError, match="appeared while this run was writing"):
        with atomic_output_dir(target) as staging:
            (staging / "mine.txt").write_text("second run")
            target.mkdir()
            (target / "theirs.txt").write_text("first run")  # the other run finished meanwhile
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic_output_dir(target, overwrite=True) as staging:
        (staging / "mine.txt").write_text("replaced on purpose")
    assert [p.name for p in target.iterdir()] == ["mine.txt"]


def test_format_helpers():
    assert choose_format("auto", [0, 1, 2, 4], 3) == "standard"
    assert choose_format("auto", [0, 2, 3], 3) == "interlace"
    assert choose_format("auto", [1, 2, 3], 0) == "standard"  # no deepstack: always exact
    with pytest.raises(ValueError, match=r"`--format` must be one of \['auto', 'interlace', 'standard'\]"):
        choose_format("gguf", [0], 3)
    config = {"model_type": "interlace_qwen3_vl", "auto_map": {"x": "y"}, "interlace": {"kept_layers": [0]},
              "text_config": {"model_type": "interlace_qwen3_vl_text", "kept_layers": [0], "original_num_hidden_layers": 2}}
    std = standard_config_dict(config)
    assert std["model_type"] == "qwen3_vl" and std["text_config"] == {"model_type": "qwen3_vl_text"}
    assert std["interlace"] == {"kept_layers": [0], "format": "standard"}
    assert "auto_map" not in std and config["auto_map"] == {"x": "y"}


def test_crash_leaves_no_half_written_directory(tiny_model_dir, tmp_path, monkeypatch):
    model, plan = pruned_tiny(tiny_model_dir, (1,))
    original_save = type(model).save_pretrained

    def save_then_crash(self, directory, **kwargs):
        original_save(self, directory, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(model), "save_pretrained", save_then_crash)
    with pytest.raises(RuntimeError, match="disk full"):
        save_pruned(model, plan, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_interlace_format_loads_without_interlace_hf(tiny_model_dir, tmp_path, image_batch):
    model, plan = pruned_tiny(tiny_model_dir, (0, 2, 8))
    out = save_pruned(model, plan, tmp_path / "out", format="interlace", processor_source=tiny_model_dir)
    torch.save({k: v for k, v in image_batch.items()}, tmp_path / "batch.pt")
    torch.save(logits(model, image_batch), tmp_path / "expected.pt")
    script = f"""
import sys
sys.modules["interlace_hf"] = None  # interlace-hf is not importable here
import torch
from transformers import AutoModelForImageTextToText
model = AutoModelForImageTextToText.from_pretrained({str(out)!r}, trust_remote_code=True, dtype=torch.float32).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
batch = torch.load({str(tmp_path / "batch.pt")!r})
with torch.no_grad():
    got = model(**batch).logits
torch.testing.assert_close(got, torch.load({str(tmp_path / "expected.pt")!r}), rtol=0, atol=0)
print("loaded", type(model).__name__, model.config.kept_layers)
from transformers import AutoModel
bare = AutoModel.from_pretrained({str(out)!r}, trust_remote_code=True, dtype=torch.float32).eval()
with torch.no_grad():
    hidden = bare(**batch).last_hidden_state
torch.testing.assert_close(model.lm_head(hidden), got, rtol=0, atol=0)
print("AutoModel", type(bare).__name__)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded InterlaceQwen3VLForConditionalGeneration [1, 3, 4, 5, 6, 7, 9, 10, 11]" in result.stdout
    assert "AutoModel InterlaceQwen3VLModel" in result.stdout
    assert set(json.loads((out / "config.json").read_text())["auto_map"]) >= {
        "AutoConfig", "AutoModel", "AutoModelForImageTextToText"}
    # The shipped code imports only torch and transformers (and its own config, relatively).
    for code_file in out.glob("*.py"):
        imports = [line for line in code_file.read_text().splitlines() if line.startswith(("import ", "from "))]
        assert all(line.split()[1].split(".")[0] in ("torch", "transformers", "") for line in imports), imports


@pytest.mark.parametrize("fmt", ["interlace", "standard"])
def test_pipeline_with_an_image_where_interlace_hf_is_not_installed(tiny_model_dir, tmp_path, fmt):
    """Both formats, in a process that cannot import interlace_hf: AutoProcessor gives the real (image-only)
    processor, not a bare tokenizer, and `pipeline(model=DIR)` answers a question about an image."""
    model, plan = pruned_tiny(tiny_model_dir, (1,) if fmt == "interlace" else (4, 6))
    out = save_pruned(model, plan, tmp_path / "out", format=fmt, processor_source=tiny_model_dir)
    assert (out / "processing_interlace_qwen3_vl.py").read_bytes() == \
        (tiny_model_dir / "processing_interlace_qwen3_vl.py").read_bytes()
    script = f"""
import sys
sys.modules["interlace_hf"] = None  # interlace-hf is not importable here
from PIL import Image
from transformers import AutoProcessor, pipeline
processor = AutoProcessor.from_pretrained({str(out)!r}, trust_remote_code=True)
assert hasattr(processor, "image_processor"), type(processor)
pipe = pipeline("image-text-to-text", model={str(out)!r}, trust_remote_code=True)
messages = [{{"role": "user", "content": [{{"type": "image", "image": Image.new("RGB", (64, 64), "red")}},
                                          {{"type": "text", "text": "What colour is the square?"}}]}}]
answer = pipe(text=messages, max_new_tokens=4)[0]["generated_text"][-1]
assert answer["role"] == "assistant" and isinstance(answer["content"], str), answer
print("answered", type(processor).__name__, type(pipe.model).__name__)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = "InterlaceQwen3VLForConditionalGeneration" if fmt == "interlace" else "Qwen3VLForConditionalGeneration"
    assert f"answered InterlaceQwen3VLProcessor {expected}" in result.stdout


@pytest.mark.parametrize("dropped", [(1,), (3, 7)])
def test_pipeline_answers_on_a_pruned_checkpoint(tiny_model_dir, tmp_path, dropped, sample_image):
    model, plan = pruned_tiny(tiny_model_dir, dropped)
    out = save_pruned(model, plan, tmp_path / "out", processor_source=tiny_model_dir)
    pipe = pipeline("image-text-to-text", model=str(out))
    messages = [{"role": "user", "content": [{"type": "image", "image": sample_image},
                                             {"type": "text", "text": "What colour is the square?"}]}]
    result = pipe(text=messages, max_new_tokens=4, do_sample=False)
    assert isinstance(result[0]["generated_text"], list)
    answer = result[0]["generated_text"][-1]
    assert answer["role"] == "assistant" and isinstance(answer["content"], str)


def test_cli_prune(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "pruned"
    assert main(["prune", str(tiny_model_dir), "--drop-layers", "3,7", "--output-dir", str(out)]) == 0
    assert "wrote standard checkpoint" in capsys.readouterr().out
    assert Plan.load(out).dropped_layers == (3, 7)
    plan_file = Plan(12, (1,), tuned_layers=(0,), anchor_layers=(2,), strategy="interlace").save(tmp_path / "p.json")
    out2 = tmp_path / "pruned2"
    assert main(["prune", str(tiny_model_dir), "--plan", str(plan_file), "--output-dir", str(out2)]) == 0
    assert json.loads((out2 / "config.json").read_text())["model_type"] == "interlace_qwen3_vl"
    assert Plan.load(out2).tuned_layers == (0,)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--drop-layers", "3"], "`--output-dir` is required"),
        (["--output-dir", "{tmp}/o"], "pass exactly one of `--drop-layers 3,7`, `--plan plan.json` or `--strategy S"),
        (["--drop-layers", "3", "--plan", "p.json", "--output-dir", "{tmp}/o"], "pass exactly one of"),
        (["--drop-layers", "3,x", "--output-dir", "{tmp}/o"], "`--drop-layers` got '3,x'"),
        (["--drop-layers", "12", "--output-dir", "{tmp}/o"], r"out-of-range layer indices \[12\]"),
        (["--drop-layers", "1", "--format", "standard", "--output-dir", "{tmp}/o"], "would not be exact"),
        (["--drop-layers", "3", "--output-dir", "{tmp}"], "already exists and is not empty"),
        (["--drop-layers", "3", "--dtype", "int8", "--output-dir", "{tmp}/o"], "`--dtype` must be"),
        (["--plan", "{tmp}/missing.json", "--output-dir", "{tmp}/o"], "does not exist"),
    ],
)
def test_cli_prune_bad_input(tiny_model_dir, tmp_path, capsys, argv, match):
    (tmp_path / "occupied").write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["prune", str(tiny_model_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert not (tmp_path / "o").exists()


def test_cli_prune_rejects_models_that_are_not_qwen3_vl(tmp_path, capsys):
    LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(tmp_path / "llama")
    assert main(["prune", str(tmp_path / "llama"), "--drop-layers", "1", "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "prunes Qwen3-VL models" in err and "model_type 'llama'" in err
    assert main(["prune", str(tmp_path / "nowhere"), "--drop-layers", "1", "--output-dir", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_help_does_not_import_torch():
    code = (
        "import sys; sys.argv = ['interlace-hf', '--help']; sys.modules['torch'] = None\n"
        "from interlace_hf.commands.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    sys.exit(e.code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "prune" in result.stdout and "tiny" in result.stdout


def test_cli_tiny_and_verify(tmp_path, capsys, monkeypatch):
    tiny = tmp_path / "tiny"
    assert main(["tiny", str(tiny), "--num-layers", "6", "--seed", "3"]) == 0
    assert json.loads((tiny / "config.json").read_text())["text_config"]["num_hidden_layers"] == 6
    assert main(["tiny", str(tiny)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert main(["tiny", str(tmp_path / "t2"), "--num-layers", "2"]) == 2
    assert "--num-layers must be at least 4" in capsys.readouterr().err
    assert main(["prune", str(tiny), "--drop-layers", "0,4", "--output-dir", str(tmp_path / "p")]) == 0
    assert main(["verify", str(tiny), str(tmp_path / "p"), "--image-size", "64", "--new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "decoder layers:      6 -> 4" in out and "EXACT" in out
    # One model in memory at a time: the base is gone before the pruned model is loaded.
    import gc
    import weakref

    from interlace_hf import checkpoint

    real_load, loaded = checkpoint.load_model, []

    def load_and_track(*args, **kwargs):
        gc.collect()
        assert all(ref() is None for ref in loaded), "an earlier model is still in memory"
        model = real_load(*args, **kwargs)
        loaded.append(weakref.ref(model))
        return model

    monkeypatch.setattr(checkpoint, "load_model", load_and_track)
    assert main(["verify", str(tiny), str(tmp_path / "p"), "--image-size", "64", "--new-tokens", "3",
                 "--device", "cpu"]) == 0
    monkeypatch.setattr(checkpoint, "load_model", real_load)
    assert len(loaded) == 2 and "EXACT" in capsys.readouterr().out
    # A standard checkpoint forced where it is not exact is caught by verify.
    assert main(["prune", str(tiny), "--drop-layers", "1", "--format", "standard", "--force",
                 "--output-dir", str(tmp_path / "s")]) == 0
    assert main(["verify", str(tiny), str(tmp_path / "s"), "--image-size", "64", "--new-tokens", "3"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    # A fine-tuned checkpoint differs by design, and verify says so instead of MISMATCH.
    finetuned = tmp_path / "ft"
    shutil.copytree(tmp_path / "p", finetuned)
    with torch.no_grad():
        from safetensors.torch import load_file, save_file

        weights = load_file(finetuned / "model.safetensors")
        name = next(k for k in weights if ".layers.1." in k and k.endswith("up_proj.weight"))
        weights[name] += 0.1
        save_file(weights, finetuned / "model.safetensors", metadata={"format": "pt"})
    (finetuned / "interlace_train.json").write_text("{}")
    assert main(["verify", str(tiny), str(finetuned), "--image-size", "64", "--new-tokens", "3"]) == 0
    assert "DIFFERENT, as expected: this checkpoint was fine-tuned" in capsys.readouterr().out
    # Wrong paths are named as what they are.
    assert main(["verify", str(tiny), str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in (err := capsys.readouterr().err) and "plan file" not in err
    assert main(["verify", str(tmp_path / "p"), str(tiny)]) == 2
    assert "has no plan.json, so it is not a checkpoint written by interlace-hf" in capsys.readouterr().err
