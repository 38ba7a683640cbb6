"""The fine-tune on the users' path, emulated on CPU: bfloat16 storage, Qwen3-VL's real chat template (no generation
markers: TRL swaps in its training variant), activation checkpointing both ways, two processes, the Hub during
training, and the output directory's rules."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import trl
import yaml
from huggingface_hub import ModelCard, snapshot_download
from safetensors import safe_open
from transformers import AutoModelForImageTextToText
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from interlace_hf.commands.cli import main
from interlace_hf.checkpoint import PROCESSOR_FILE_PATTERNS
from interlace_hf.plan import Plan
from interlace_hf.processing import load_processor
from interlace_hf.surgery import prune_model
from interlace_hf.train import drop_long_samples, parse_train_args, sample_lengths
from interlace_hf.trainer import InterlaceSFTConfig, InterlaceSFTTrainer

REPO = Path(__file__).resolve().parents[1]
# Tuned layers 4 and 9: the lowest is original layer 4 (position 3 of the pruned stack), with frozen layers under it.
PLAN = Plan(12, dropped_layers=(2, 5, 10), tuned_layers=(4, 9), anchor_layers=(6, 11), strategy="interlace")
TOKEN = "hf_alice_write"
REAL_TEMPLATE = (Path(trl.__file__).parent / "chat_templates" / "qwen3_vl.jinja").read_text()


@pytest.fixture(scope="module")
def real_template_processor(tiny_model_dir):
    """The tiny processor with Qwen3-VL's real chat template (as Qwen/Qwen3-VL-8B-Instruct ships it)."""
    processor = load_processor(tiny_model_dir)
    assert "{% generation %}" not in REAL_TEMPLATE
    processor.chat_template = processor.tokenizer.chat_template = REAL_TEMPLATE
    return processor


def pruned(tiny_model_dir, dtype):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=dtype)
    return prune_model(model, PLAN)


def config(tmp_path, **overrides):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, gradient_accumulation_steps=1,
                learning_rate=1e-5, max_steps=3, logging_steps=1, save_strategy="no", report_to="none",
                max_pixels=128 * 128, min_pixels=32 * 32, seed=0, dataloader_pin_memory=False, warmup_steps=0,
                use_cpu=True)
    base.update(overrides)
    return InterlaceSFTConfig(**base)


def tuned_prefixes(plan=PLAN):
    kept = list(plan.kept_layers)
    return tuple(f"model.language_model.layers.{kept.index(i)}." for i in plan.tuned_layers)


@pytest.mark.parametrize("dtype,reentrant", [(torch.bfloat16, False), (torch.bfloat16, True), (torch.float32, False)])
def test_paper_lr_moves_the_tuned_weights_in_bf16(tiny_model_dir, real_template_processor, dataset, tmp_path, dtype,
                                                  reentrant):
    """At lr 1e-5 an in-place bf16 AdamW update is below half an ulp for most weights (they would not move): the tuned
    layers train in fp32 masters, every frozen weight stays bit-identical, and the model is saved in bf16 again."""
    model = pruned(tiny_model_dir, dtype)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = config(tmp_path, activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": reentrant})
    trainer = InterlaceSFTTrainer(model, PLAN, args=args, train_dataset=dataset,
                                  processing_class=real_template_processor)
    trainer.train()
    moved, total = 0, 0
    for name, param in model.named_parameters():
        if name.startswith(tuned_prefixes()):
            assert param.dtype == torch.float32, name  # the master copy
            moved += (param.detach() != before[name].float()).sum().item()
            total += param.numel()
        else:
            assert param.dtype == dtype and torch.equal(param, before[name]), f"frozen {name} changed"
    assert total > 0 and moved / total > 0.9, f"only {moved / total:.1%} of the tuned weights moved"
    trainer.save_model(str(tmp_path / "saved"))
    with safe_open(tmp_path / "saved" / "model.safetensors", "pt") as saved:
        dtypes = {saved.get_slice(k).get_dtype() for k in saved.keys()}
        assert dtypes == {"BF16" if dtype == torch.bfloat16 else "F32"}
        masters = dict(model.named_parameters())
        name = next(k for k in saved.keys() if k.startswith(tuned_prefixes()) and k.endswith("q_proj.weight"))
        assert torch.equal(saved.get_tensor(name), masters[name].detach().to(dtype))


@pytest.mark.parametrize("reentrant", [False, True])
def test_backward_stops_at_the_lowest_tuned_layer(tiny_model_dir, tiny_processor, dataset, tmp_path, reentrant):
    """No gradient reaches the vision tower, the embeddings or a frozen layer below the first tuned one, with
    activation checkpointing (which in transformers 5.23+ makes the embeddings' output require grad)."""
    model = pruned(tiny_model_dir, torch.float32)
    cut = list(PLAN.kept_layers).index(min(PLAN.tuned_layers))
    reached, built_graph = set(), set()

    def watch(name):
        def hook(module, args, output):
            values = [output] if torch.is_tensor(output) else list(output.values() if hasattr(output, "values") else output)
            for out in values:
                if torch.is_tensor(out) and out.requires_grad:
                    built_graph.add(name)
                    out.register_hook(lambda grad: reached.add(name))
        return hook

    layers = model.model.language_model.layers
    for position, layer in enumerate(layers):
        layer.register_forward_hook(watch(position))
    model.model.language_model.embed_tokens.register_forward_hook(watch("embeddings"))
    model.model.visual.register_forward_hook(watch("vision"))
    args = config(tmp_path, max_steps=2, learning_rate=1e-3, activation_checkpointing=True,
                  activation_checkpointing_kwargs={"use_reentrant": reentrant})
    trainer = InterlaceSFTTrainer(model, PLAN, args=args, train_dataset=dataset, processing_class=tiny_processor)
    trainer.train()
    below = {"embeddings", "vision", *range(cut)}
    assert not (built_graph & below), f"graph built below the cut: {built_graph & below}"
    assert not (reached & below)
    assert set(range(cut, len(layers))) <= reached  # the tuned layers and every layer above them get gradients
    assert not any(layers[p].gradient_checkpointing for p in range(cut))  # no checkpoints kept below the cut
    assert all(layers[p].gradient_checkpointing for p in range(cut, len(layers)))


def test_zero3_resolves_to_reentrant_checkpointing():
    from interlace_hf.trainer import resolve_checkpointing_kwargs

    assert resolve_checkpointing_kwargs(None, zero3=True) == {"use_reentrant": True}
    assert resolve_checkpointing_kwargs({"use_reentrant": False}, zero3=True) == {"use_reentrant": False}  # kept
    assert resolve_checkpointing_kwargs(None, zero3=False) == {"use_reentrant": False}
    assert resolve_checkpointing_kwargs({"use_reentrant": True, "preserve_rng_state": False}, zero3=False) == {
        "use_reentrant": True, "preserve_rng_state": False}


def test_sample_lengths_equal_the_collators_and_long_samples_are_dropped(real_template_processor, dataset):
    """The counted length (text through the tokenizer + image tokens from the image size) is what TRL's collator
    produces with the real template's training variant; samples over max_length are dropped, not truncated."""
    from trl.chat_template_utils import get_training_chat_template

    processor = real_template_processor
    processor.image_processor.size = {"shortest_edge": 32 * 32, "longest_edge": 128 * 128}
    lengths = sample_lengths(dataset, processor, min_pixels=32 * 32, max_pixels=128 * 128)
    collator = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True,
                                                     chat_template=get_training_chat_template(processor))
    for index in range(len(dataset)):
        batch = collator([dataset[index]])
        assert batch["input_ids"].shape[1] == lengths[index], index
    assert len(set(lengths)) > 1
    limit = sorted(lengths)[len(lengths) // 2]
    kept, dropped, longest = drop_long_samples(dataset, processor, limit, min_pixels=32 * 32, max_pixels=128 * 128)
    assert dropped == sum(n > limit for n in lengths) > 0 and len(kept) == len(dataset) - dropped
    assert longest == max(lengths)
    with pytest.raises(ValueError, match="every training sample is longer than --max_length 3 tokens"):
        drop_long_samples(dataset, processor, 3, min_pixels=32 * 32, max_pixels=128 * 128)
    assert InterlaceSFTConfig(output_dir="x").max_length == 8192


def train_cli(tiny_model_dir, synthetic_json, out, *extra):
    plan_file = out.parent / "plan.json"
    PLAN.save(plan_file)
    return main(["train", "--config", str(REPO / "recipes/tiny.yaml"), "--model", str(tiny_model_dir),
                 "--plan", str(plan_file), "--dataset", str(synthetic_json), "--output_dir", str(out),
                 "--max_steps", "2", "--per_device_train_batch_size", "4", "--save_strategy", "no",
                 "--dataloader_pin_memory", "false", "--use_cpu", "true", *extra])


def test_outputs_keep_the_base_processor_and_record_the_values_that_ran(tiny_model_dir, synthetic_json, tmp_path):
    out = tmp_path / "ft"
    assert train_cli(tiny_model_dir, synthetic_json, out, "--learning_rate", "2e-5", "--dtype", "bfloat16") == 0
    # Processor, tokenizer and template files: the base's, byte for byte, and no others.
    base_files = {n for n in PROCESSOR_FILE_PATTERNS if (tiny_model_dir / n).is_file()}
    assert {n for n in PROCESSOR_FILE_PATTERNS if (out / n).is_file()} == base_files
    for name in base_files:
        assert (out / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name
    # The recipe said 1e-4; the command line said 2e-5: provenance holds what ran.
    assert float(yaml.safe_load((REPO / "recipes/tiny.yaml").read_text())["learning_rate"]) == 1e-4
    recipe = yaml.safe_load((out / "interlace_recipe.yaml").read_text())
    assert recipe["learning_rate"] == 2e-5 and recipe["dtype"] == "bfloat16" and recipe["max_steps"] == 2
    assert recipe["save_steps"] == 4  # a recipe key kept with its value
    assert "hub_token" not in recipe and "overwrite" not in recipe
    card = (out / "README.md").read_text()
    assert "learning_rate: 2.0e-05" in card and "1e-4" not in card
    assert not list(tmp_path.glob(".ft.final-partial*"))
    with safe_open(out / "model.safetensors", "pt") as saved:
        assert {saved.get_slice(k).get_dtype() for k in saved.keys()} == {"BF16"}


def test_output_dir_rules(tiny_model_dir, synthetic_json, tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "modeling_old.py").write_text("# another model's file\n")
    assert train_cli(tiny_model_dir, synthetic_json, foreign) == 2
    err = capsys.readouterr().err
    assert "is not empty and holds no interlace-hf training run" in err and "--overwrite" in err
    assert (foreign / "modeling_old.py").is_file()  # refused before anything was touched

    out = tmp_path / "ft"
    assert train_cli(tiny_model_dir, synthetic_json, out) == 0
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert train_cli(tiny_model_dir, synthetic_json, out) == 0  # the same run, finished: nothing to do
    assert "already holds this training run, finished" in capsys.readouterr().out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    assert train_cli(tiny_model_dir, synthetic_json, out, "--learning_rate", "3e-4") == 2
    assert "other settings (learning_rate: 0.0001 -> 0.0003)" in capsys.readouterr().err
    assert train_cli(tiny_model_dir, synthetic_json, out, "--learning_rate", "3e-4", "--overwrite") == 0
    assert yaml.safe_load((out / "interlace_recipe.yaml").read_text())["learning_rate"] == 3e-4
    assert train_cli(tiny_model_dir, synthetic_json, foreign, "--overwrite") == 0
    assert not (foreign / "modeling_old.py").exists() and (foreign / "interlace_train.json").is_file()
    # --overwrite never deletes what the run reads: here the model to train is the output directory itself.
    assert main(["train", "--model", str(foreign), "--dataset", str(synthetic_json), "--output_dir", str(foreign),
                 "--overwrite"]) == 2
    assert "--overwrite would delete --model" in capsys.readouterr().err and (foreign / "config.json").is_file()


def test_an_interrupted_run_resumes_from_its_checkpoint(tiny_model_dir, synthetic_json, tmp_path, capsys):
    out = tmp_path / "ft"
    assert train_cli(tiny_model_dir, synthetic_json, out, "--save_strategy", "steps", "--save_steps", "1") == 0
    # Emulate a kill after the checkpoints: the final files and the completion marker are not there.
    for name in ("interlace_train.json", "model.safetensors", "README.md"):
        (out / name).unlink()
    capsys.readouterr()
    assert train_cli(tiny_model_dir, synthetic_json, out, "--save_strategy", "steps", "--save_steps", "1") == 0
    assert (out / "interlace_train.json").is_file() and (out / "model.safetensors").is_file()
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2


def test_lora_with_distillation_resumes_to_the_same_model(tiny_model_dir, synthetic_json, tmp_path, caplog):
    """LoRA + distillation, killed after its first checkpoint (an adapter and its optimizer state): the rerun resumes
    from it and ends with the model an uninterrupted run makes."""
    import shutil

    from safetensors.torch import load_file

    out = tmp_path / "ft"
    extra = ("--use_peft", "--lora_dropout", "0", "--teacher", str(tiny_model_dir), "--distill_hidden", "1.0",
             "--save_strategy", "steps", "--save_steps", "1", "--learning_rate", "1e-2")
    assert train_cli(tiny_model_dir, synthetic_json, out, *extra) == 0
    assert (out / "checkpoint-1" / "adapter_model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    reference = load_file(out / "model.safetensors")
    for name in ("interlace_train.json", "model.safetensors", "README.md"):
        (out / name).unlink()
    shutil.rmtree(out / "checkpoint-2")
    caplog.clear()
    assert train_cli(tiny_model_dir, synthetic_json, out, *extra) == 0
    assert f"resuming from {out / 'checkpoint-1'}" in caplog.text
    resumed = load_file(out / "model.safetensors")
    assert resumed.keys() == reference.keys()
    for name, tensor in resumed.items():
        torch.testing.assert_close(tensor, reference[name], rtol=1e-5, atol=1e-6, msg=name)


def test_lora_pushes_the_merged_model_once(hub, tiny_model_dir, synthetic_json, tmp_path):
    """With --use_peft, checkpoints hold adapters, so nothing is pushed mid-run: the repo gets the merged model, with
    its plan and card, at the end, and no adapter file that would make `from_pretrained` treat it as an adapter."""
    out = tmp_path / "ft"
    assert train_cli(tiny_model_dir, synthetic_json, out, "--use_peft", "--save_strategy", "steps", "--save_steps", "1",
                     "--push_to_hub", "true", "--hub_model_id", "alice/ft-lora", "--hub_token", TOKEN,
                     "--learning_rate", "1e-3") == 0
    from huggingface_hub import HfApi

    api = HfApi(token=TOKEN)
    messages = [c.title for c in api.list_repo_commits("alice/ft-lora")]
    assert not any("Training in progress" in m for m in messages), messages
    files = set(api.list_repo_files("alice/ft-lora"))
    assert {"model.safetensors", "config.json", "plan.json", "README.md", "interlace_train.json"} <= files
    assert not any(f.startswith("adapter_") or f.startswith("checkpoint-") for f in files), files
    path = Path(snapshot_download("alice/ft-lora", token=TOKEN, cache_dir=tmp_path / "cache"))
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert type(model).__name__.endswith("ForConditionalGeneration") and not hasattr(model, "peft_config")
    assert "trained through LoRA adapters (rank 16, alpha 32" in (path / "README.md").read_text()


def test_push_during_training_two_saves(hub, tiny_model_dir, synthetic_json, tmp_path):
    """Two checkpoint saves push twice during training, then the final model: every revision has the plan, the recipe
    and the trainer's tags, and the token is in no file."""
    out = tmp_path / "ft"
    assert train_cli(tiny_model_dir, synthetic_json, out, "--save_strategy", "steps", "--save_steps", "1",
                     "--push_to_hub", "true", "--hub_model_id", "alice/ft-two-saves", "--hub_token", TOKEN,
                     "--hub_always_push", "true") == 0
    from huggingface_hub import HfApi

    api = HfApi(token=TOKEN)
    commits = api.list_repo_commits("alice/ft-two-saves")
    messages = [c.title for c in commits]
    assert sum("Training in progress" in m for m in messages) == 2, messages
    for commit in commits:
        if "Training in progress" not in commit.title and "End of training" not in commit.title:
            continue
        files = {f for f in api.list_repo_files("alice/ft-two-saves", revision=commit.commit_id)}
        assert {"plan.json", "interlace_recipe.yaml", "README.md", "config.json", "model.safetensors"} <= files, (
            commit.title, files)
    path = Path(snapshot_download("alice/ft-two-saves", token=TOKEN, cache_dir=tmp_path / "cache"))
    assert Plan.load(path) == PLAN
    card = ModelCard((path / "README.md").read_text())
    assert {"trl", "sft", "interlace", "layer-pruning"} <= set(card.data.tags)
    for file in [*path.rglob("*"), *out.rglob("*")]:
        if file.is_file():
            assert TOKEN.encode() not in file.read_bytes(), file


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_bf16_end_with_identical_weights(tiny_model_dir, synthetic_json, tmp_path):
    """`torchrun --nproc_per_node 2` (gloo on CPU), bf16 storage: both ranks train and end with the same weights."""
    plan_file = PLAN.save(tmp_path / "plan.json")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "tests")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(REPO / "tests" / "ddp_train.py"), "--config", str(REPO / "recipes/tiny.yaml"),
           "--model", str(tiny_model_dir), "--plan", str(plan_file), "--dataset", str(synthetic_json),
           "--output_dir", str(out), "--max_steps", "3", "--per_device_train_batch_size", "2",
           "--learning_rate", "1e-5", "--dtype", "bfloat16", "--save_strategy", "no", "--use_cpu", "true",
           "--ddp_backend", "gloo", "--dataloader_pin_memory", "false"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    digests = [json.loads((out.parent / f"ddp-rank{r}.json").read_text()) for r in (0, 1)]
    assert digests[0]["world_size"] == digests[1]["world_size"] == 2
    assert digests[0]["parameters"] == digests[1]["parameters"]
    assert digests[0]["global_step"] == 3
    reference = pruned(tiny_model_dir, torch.bfloat16)
    saved = AutoModelForImageTextToText.from_pretrained(out)
    changed = 0
    for (name, param), ref in zip(saved.named_parameters(), reference.parameters()):
        if name.startswith(tuned_prefixes()):
            changed += not torch.equal(param, ref)
        else:
            assert torch.equal(param, ref), name
    assert changed > 0


def test_the_8b_recipes_say_what_the_paper_ran():
    """The default 8B recipes freeze lm_head (as the paper says); the paper-faithful one trains it (as its code did)."""
    default = parse_train_args(["--config", str(REPO / "recipes/qwen3-vl-8b-interlace-25pc.yaml")])
    faithful = parse_train_args(["--config", str(REPO / "recipes/qwen3-vl-8b-interlace-25pc-paper-faithful.yaml")])
    assert not default[1].tune_lm_head and faithful[1].tune_lm_head
    assert faithful[1].output_dir != default[1].output_dir and faithful[1].max_length == default[1].max_length == 8192
    for name in ("10pc", "15pc", "20pc", "25pc"):
        text = (REPO / f"recipes/qwen3-vl-8b-interlace-{name}.yaml").read_text()
        assert "TRAINED it" in text and "tune_lm_head: false" in text, name


def test_bf16_with_the_merger_and_lm_head_trained(tiny_model_dir, real_template_processor, dataset, tmp_path):
    """The optional extras in bf16 storage: the merger and lm_head get fp32 masters too (TRL's fused head reads
    lm_head.weight directly), the backward pass goes down to the merger, and everything else stays bit-identical."""
    model = pruned(tiny_model_dir, torch.bfloat16)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = InterlaceSFTTrainer(model, PLAN, args=config(tmp_path, tune_merger=True, tune_lm_head=True),
                                  train_dataset=dataset, processing_class=real_template_processor)
    trainer.train()
    extras = ("model.visual.merger.", "lm_head.")
    for name, param in model.named_parameters():
        if name.startswith(tuned_prefixes() + extras):
            assert param.dtype == torch.float32, name
            if name.startswith(extras) and name.endswith("weight") and param.dim() == 2:
                moved = (param.detach() != before[name].float()).float().mean().item()
                assert moved > 0.9, f"{name}: {moved:.1%} moved"
        else:
            assert param.dtype == torch.bfloat16 and torch.equal(param, before[name]), name


def test_recipes_follow_trl_conventions(tiny_model_dir, synthetic_json, tmp_path, capsys, monkeypatch):
    """TRL's names and `env:` block work in recipes; YAML and type errors name the file; model_init_kwargs are used."""
    import os

    plan_file = PLAN.save(tmp_path / "plan.json")
    recipe = tmp_path / "trl.yaml"
    recipe.write_text(f"env:\n  INTERLACE_TEST_VAR: from-the-recipe\nmodel_name_or_path: {tiny_model_dir}\n"
                      f"dataset_name: {synthetic_json}\nplan: {plan_file}\noutput_dir: {tmp_path / 'out'}\n"
                      "model_init_kwargs:\n  attn_implementation: eager\n  dtype: bfloat16\n"
                      "max_steps: 1\nper_device_train_batch_size: 2\nuse_cpu: true\nsave_strategy: 'no'\n"
                      "dataloader_pin_memory: false\n")
    monkeypatch.delenv("INTERLACE_TEST_VAR", raising=False)
    train_args, sft, source = parse_train_args(["--config", str(recipe), "--dataset_train_split", "train"])
    assert os.environ["INTERLACE_TEST_VAR"] == "from-the-recipe"
    assert train_args.model == str(tiny_model_dir) and train_args.dataset == str(synthetic_json)
    assert {"model", "dataset", "dataset_split"} <= set(source.keys)
    assert main(["train", "--config", str(recipe)]) == 0
    recorded = yaml.safe_load((tmp_path / "out" / "interlace_recipe.yaml").read_text())
    assert recorded["dtype"] == "bfloat16" and recorded["model_init_kwargs"]["attn_implementation"] == "eager"
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as saved:
        assert {saved.get_slice(k).get_dtype() for k in saved.keys()} == {"BF16"}
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: m\nlearning_rate: [1e-5\n")
    with pytest.raises(ValueError, match=r"broken.yaml: not valid YAML \(line 3, column 1\)"):
        parse_train_args(["--config", str(broken)])
    broken.write_text("model: m\ndataset: d\nlearning_rate: fast\n")
    with pytest.raises(ValueError, match=r"broken.yaml: `learning_rate`: .*invalid float value: 'fast'"):
        parse_train_args(["--config", str(broken)])
    broken.write_text("model: m\nmodel_name_or_path: n\n")
    with pytest.raises(ValueError, match="both `model_name_or_path` \\(TRL's name\\) and `model` are set"):
        parse_train_args(["--config", str(broken)])
    assert main(["train", "--model", str(tiny_model_dir), "--dataset", str(synthetic_json), "--learnig_rate", "1"]) == 2
    assert "unknown arguments --learnig_rate (did you mean --learning_rate?)" in capsys.readouterr().err
    assert main(["train", "--config", str(recipe), "--model_init_kwargs", '{"device_map": "auto"}',
                 "--output_dir", str(tmp_path / "o2")]) == 2
    assert "model_init_kwargs: ['device_map'] are not supported here" in capsys.readouterr().err
