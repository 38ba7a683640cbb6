"""The selective fine-tune: exactly the tuned layers train, assistant-only labels, recipes, resume, DeepSpeed."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForImageTextToText
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from interlace_hf.args import TrainArgs
from interlace_hf.checkpoint import safetensors_parameter_counts
from interlace_hf.commands.cli import main
from interlace_hf.plan import Plan
from interlace_hf.surgery import prune_model
from interlace_hf.datasets.synthetic import make_synthetic
from interlace_hf.train import TRAIN_INFO_FILE, parse_train_args, run_training
from interlace_hf.trainer import (
    InterlaceSFTConfig,
    InterlaceSFTTrainer,
    distillation_kl,
    freeze_for_plan,
    hidden_match_points,
)

REPO = Path(__file__).resolve().parents[1]
PLAN = Plan(12, dropped_layers=(2, 5, 10), tuned_layers=(1, 4, 9), anchor_layers=(3, 6, 11), strategy="interlace")


def pruned(tiny_model_dir, plan=PLAN):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    return prune_model(model, plan)


def config(tmp_path, **overrides):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, gradient_accumulation_steps=1,
                learning_rate=1e-3, max_steps=3, logging_steps=1, save_strategy="no", report_to="none",
                max_pixels=128 * 128, min_pixels=32 * 32, seed=0, dataloader_pin_memory=False)
    base.update(overrides)
    return InterlaceSFTConfig(**base)


def test_paper_defaults():
    args = InterlaceSFTConfig(output_dir="x")
    assert (args.learning_rate, args.per_device_train_batch_size, args.gradient_accumulation_steps) == (1e-5, 16, 2)
    assert str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)) == "cosine"
    assert (args.warmup_steps, args.weight_decay, args.max_grad_norm, args.num_train_epochs) == (0.03, 0.0, 1.0, 1.0)
    assert str(getattr(args.optim, "value", args.optim)) == "adamw_torch"
    assert (args.max_pixels, args.min_pixels) == (50176, 784)
    assert args.assistant_only_loss and args.bf16 == (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    with pytest.raises(ValueError, match="--min-pixels .* must be >= 1 and <= --max-pixels"):
        InterlaceSFTConfig(output_dir="x", min_pixels=100, max_pixels=10)


@pytest.mark.parametrize("checkpointing", [True, False])
def test_only_tuned_layers_change(tiny_model_dir, tiny_processor, dataset, tmp_path, checkpointing):
    model = pruned(tiny_model_dir)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = InterlaceSFTTrainer(model, PLAN, args=config(tmp_path, activation_checkpointing=checkpointing),
                                  train_dataset=dataset, processing_class=tiny_processor)
    trainer.train()
    kept = list(PLAN.kept_layers)
    tuned_prefixes = [f"model.language_model.layers.{kept.index(i)}." for i in PLAN.tuned_layers]
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    changed, unchanged = [], []
    for name, param in model.named_parameters():
        tuned = name.startswith(tuple(tuned_prefixes))
        assert param.requires_grad == tuned, name
        assert (id(param) in optimized) == tuned, f"{name}: optimizer state must exist exactly for tuned parameters"
        if not tuned:
            assert param.grad is None, f"{name} has a gradient buffer"
            assert torch.equal(param, before[name]), f"frozen {name} changed"
            unchanged.append(name)
        elif not torch.equal(param, before[name]):
            changed.append(name)
    tuned_names = [n for n, _ in model.named_parameters() if n.startswith(tuple(tuned_prefixes))]
    assert sorted(changed) == sorted(tuned_names), set(tuned_names) - set(changed)
    for must_be_frozen in ("model.visual.patch_embed.proj.weight", "model.visual.merger.linear_fc1.weight",
                           "model.visual.deepstack_merger_list.0.linear_fc1.weight", "lm_head.weight",
                           "model.language_model.embed_tokens.weight", "model.language_model.norm.weight",
                           f"model.language_model.layers.{kept.index(3)}.mlp.up_proj.weight"):  # an anchor
        assert must_be_frozen in unchanged


def test_optional_merger_and_lm_head(tiny_model_dir, tmp_path):
    model = pruned(tiny_model_dir)
    trainable, total = freeze_for_plan(model, PLAN, tune_merger=True, tune_lm_head=True)
    assert model.lm_head.weight.requires_grad and all(p.requires_grad for p in model.model.visual.merger.parameters())
    assert not model.model.visual.deepstack_merger_list[0].linear_fc1.weight.requires_grad
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad) and total > trainable
    with pytest.raises(ValueError, match="tunes no layers, so there is nothing to train"):
        freeze_for_plan(pruned(tiny_model_dir, Plan.from_dropped(12, (2, 5, 10))), Plan.from_dropped(12, (2, 5, 10)))
    with pytest.raises(ValueError, match="prune the model with this plan first"):
        freeze_for_plan(pruned(tiny_model_dir), Plan(12, (1,), tuned_layers=(2,)))


def test_labels_cover_only_the_assistant_answer(tiny_processor):
    collator = DataCollatorForVisionLanguageModeling(tiny_processor, assistant_only_loss=True)
    from PIL import Image

    examples = [
        {"images": [Image.new("RGB", (64, 64), "red")], "messages": [
            {"role": "user", "content": "What colour is the square?"}, {"role": "assistant", "content": "red"},
            {"role": "user", "content": "And the circle?"}, {"role": "assistant", "content": "blue, two of them"}]},
        {"images": [], "messages": [{"role": "user", "content": "Say yes."}, {"role": "assistant", "content": "yes"}]},
    ]
    batch = collator(examples)
    tokenizer = tiny_processor.tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    expected = [
        tokenizer("red")["input_ids"] + [im_end] + tokenizer("blue, two of them")["input_ids"] + [im_end],
        tokenizer("yes")["input_ids"] + [im_end],
    ]
    for row, want in zip(batch["labels"], expected):
        assert [t for t in row.tolist() if t != -100] == want
    image_token = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (batch["input_ids"] == image_token).any() and not (batch["labels"] == image_token).any()


def test_recipes_parse_without_loading_a_model(tmp_path):
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert len(recipes) >= 9
    for recipe in recipes:
        train_args, sft, text = parse_train_args(["--config", str(recipe)])
        assert train_args.model and train_args.dataset and sft.output_dir, recipe
        assert isinstance(sft.learning_rate, float)  # PyYAML reads 1e-5 as a string: converted
    train_args, sft, _ = parse_train_args(["--config", str(REPO / "recipes/qwen3-vl-8b-interlace-25pc.yaml"),
                                           "--learning_rate", "2e-5"])
    assert sft.learning_rate == 2e-5 and train_args.strategy == "interlace" and train_args.drop_ratio == 0.25
    assert sft.per_device_train_batch_size == 16 and sft.gradient_accumulation_steps == 2 and sft.max_pixels == 50176
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\ndataset: d\nlearnig_rate: 1e-5\nfoo: 1\n")
    with pytest.raises(ValueError, match=r"unknown recipe keys \['foo', 'learnig_rate'\]"):
        parse_train_args(["--config", str(bad)])
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="a recipe is a mapping"):
        parse_train_args(["--config", str(bad)])
    with pytest.raises(ValueError, match="does not exist"):
        parse_train_args(["--config", str(tmp_path / "missing.yaml")])


def test_resume_continues_step_count_and_schedule(tiny_model_dir, tiny_processor, dataset, tmp_path):
    from transformers import TrainerCallback

    class CountSteps(TrainerCallback):
        def __init__(self):
            self.steps = []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

    def run(output_dir, resume=None, max_steps=6):
        model = pruned(tiny_model_dir)
        args = config(tmp_path, output_dir=str(output_dir), max_steps=max_steps, save_strategy="steps", save_steps=2,
                      lr_scheduler_type="cosine", warmup_steps=1)
        counter = CountSteps()
        trainer = InterlaceSFTTrainer(model, PLAN, args=args, train_dataset=dataset, processing_class=tiny_processor,
                                      callbacks=[counter])
        trainer.train(resume_from_checkpoint=resume)
        trainer.executed_steps = counter.steps
        return trainer

    full = run(tmp_path / "full")
    first = tmp_path / "resumed"
    run(first, max_steps=6).state  # writes checkpoint-2, -4, -6
    resumed = run(first, resume=str(first / "checkpoint-2"))
    assert resumed.state.global_step == 6
    lrs = lambda t: [(e["step"], e["learning_rate"]) for e in t.state.log_history if "learning_rate" in e]  # noqa: E731
    assert resumed.executed_steps == [3, 4, 5, 6]  # continued after step 2, not from 0
    assert dict(lrs(resumed)) == dict(lrs(full))  # the same schedule, step for step
    assert len(lrs(full)) == 6
    assert (first / "checkpoint-2" / "plan.json").is_file()
    saved = json.loads((first / "checkpoint-2" / "config.json").read_text())
    assert saved["model_type"] == "interlace_qwen3_vl" and "auto_map" in saved
    for (name, a), b in zip(full.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_train_command_from_a_base_model_and_plan(tiny_model_dir, synthetic_json, tmp_path):
    plan_file = PLAN.save(tmp_path / "plan.json")
    out = tmp_path / "ft"
    rc = main(["train", "--model", str(tiny_model_dir), "--plan", str(plan_file), "--dataset", str(synthetic_json),
               "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
               "--max_pixels", "16384", "--min_pixels", "1024", "--dataloader_pin_memory", "false"])
    assert rc == 0
    assert Plan.load(out) == PLAN
    card = (out / "README.md").read_text()
    assert "- interlace" in card and "- layer-pruning" in card and "trust_remote_code=True" in card
    reloaded = AutoModelForImageTextToText.from_pretrained(out)
    assert reloaded.config.kept_layers == list(PLAN.kept_layers)
    assert json.loads((out / "interlace_train.json").read_text())["plan"] == str(plan_file)


def test_train_bad_input(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "noanswer.json").write_text(json.dumps([{"conversations": [{"from": "human", "value": "hi"}]}]))
    cases = [
        (["--dataset", "d.json"], "--model required"),
        (["--model", str(tiny_model_dir)], "--dataset required"),
        (["--model", str(tiny_model_dir), "--dataset", str(tmp_path / "noanswer.json")], "no record with an assistant"),
        (["--model", str(tiny_model_dir), "--dataset", str(tmp_path / "missing.json")],
         f"--dataset {str(tmp_path / 'missing.json')!r} does not exist"),
        (["--model", str(tiny_model_dir), "--dataset", str(tmp_path / "noanswer.json"), "--plan", "p.json",
          "--strategy", "interlace"], "either --plan plan.json or --strategy S"),
    ]
    for argv, match in cases:
        assert main(["train", *argv, "--output_dir", str(tmp_path / "o")]) == 2
        assert match in capsys.readouterr().err
    with pytest.raises(ValueError, match="is a dense model: pass --plan plan.json"):
        syn = make_synthetic(tmp_path / "syn", num=2)
        run_training(TrainArgs(model=str(tiny_model_dir), dataset=str(syn)), config(tmp_path))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_zero3(tmp_path, out, *args) -> list[dict]:
    """`interlace_hf.train` (through tests/ddp_train.py) on two CPU ranks (gloo) with the published ZeRO-3 accelerate
    recipe, parameters really sharded (persistence threshold 0: the tiny weights would otherwise stay whole).
    Returns each rank's report."""
    pytest.importorskip("deepspeed")
    ds_config = tmp_path / "ds.json"
    ds_config.write_text(json.dumps({
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0,
                              "stage3_gather_16bit_weights_on_model_save": True},
        "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto", "gradient_clipping": "auto"}))
    # The shipped recipe with two processes; `use_cpu` must also reach TrainingArguments (--use_cpu true below): the
    # DeepSpeed launcher does not pass the YAML's use_cpu on.
    recipe = yaml.safe_load((REPO / "recipes/accelerate/zero3.yaml").read_text())
    recipe.update(num_processes=2, use_cpu=True)
    recipe.pop("mixed_precision")  # with a DeepSpeed JSON, accelerate refuses its own copies of its settings
    recipe["deepspeed_config"] = {"deepspeed_config_file": str(ds_config), "zero3_init_flag": True}
    accelerate_config = tmp_path / "zero3-cpu.yaml"
    accelerate_config.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "tests")}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
           str(REPO / "tests" / "ddp_train.py"), "--config", str(REPO / "recipes/tiny.yaml"),
           "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "2",
           "--learning_rate", "1e-3", "--save_strategy", "no", "--use_cpu", "true", "--dataloader_pin_memory", "false",
           *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads((out.parent / f"ddp-rank{rank}.json").read_text()) for rank in (0, 1)]


def test_zero3_on_two_ranks_with_frozen_layers(tiny_model_dir, synthetic_json, tmp_path):
    """Activation checkpointing on, frozen anchors behind tuned layers: trains with reentrant checkpointing on both
    ranks and saves the full, gathered model."""
    out = tmp_path / "ds-out"
    reports = launch_zero3(tmp_path, out, "--model", str(tiny_model_dir), "--plan", str(PLAN.save(tmp_path / "plan.json")),
                           "--dataset", str(synthetic_json))
    for report in reports:
        assert report["world_size"] == 2 and report["deepspeed"] and report["zero_stage"] == 3, report
        assert report["sharded"] > 0 and report["global_step"] == 2
        assert report["checkpointing"] == {"use_reentrant": True}  # chosen for ZeRO-3
    saved = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    reference = pruned(tiny_model_dir)
    kept = list(PLAN.kept_layers)
    tuned_prefixes = tuple(f"model.language_model.layers.{kept.index(i)}." for i in PLAN.tuned_layers)
    ref = dict(reference.named_parameters())
    changed = 0
    for name, param in saved.named_parameters():
        assert param.shape == ref[name].shape, name  # gathered, not a ZeRO-3 shard
        if name.startswith(tuned_prefixes):
            changed += not torch.equal(param, ref[name])
        else:
            torch.testing.assert_close(param, ref[name], rtol=0, atol=0, msg=name)
    assert changed > 0
    # The recorded count is the tuned layers' full size, not a rank's shard (each rank holds 0 elements locally)
    tuned_size = sum(p.numel() for n, p in reference.named_parameters() if n.startswith(tuned_prefixes))
    assert json.loads((out / TRAIN_INFO_FILE).read_text())["trainable_parameters"] == tuned_size > 0


def test_zero3_lora_distilled_from_a_sharded_teacher(tiny_model_dir, synthetic_json, tmp_path):
    """LoRA + distillation (KL and hidden states) on two ZeRO-3 ranks: student and teacher both sharded, the
    distillation terms logged, and the saved model is the merge of the gathered weights: what peft's own
    merge_and_unload makes of the saved adapter on the pruned input, with only the tuned layers' projections moved."""
    from peft import PeftModel

    pruned_dir = tmp_path / "pruned"
    assert main(["prune", str(tiny_model_dir), "--drop-layers", "4,7,10", "--output-dir", str(pruned_dir)]) == 0
    out = tmp_path / "ds-lora"
    reports = launch_zero3(tmp_path, out, "--model", str(pruned_dir), "--plan",
                           str(LORA_PLAN.save(tmp_path / "plan.json")), "--dataset", str(synthetic_json),
                           "--use_peft", "--lora_r", "4", "--lora_dropout", "0", "--save_adapter", "--learning_rate",
                           "1e-2", "--teacher", "base", "--distill_hidden", "1.0", "--logging_steps", "1")
    for report in reports:
        assert report["zero_stage"] == 3 and report["sharded"] > 0 and report["global_step"] == 2, report
        assert {"distill_kl", "distill_hidden"} <= set(report["logged"]) and report["teacher_sharded"] > 0
    assert not (out / "adapter_config.json").exists() and (out / "adapter" / "adapter_config.json").is_file()
    saved = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    base = AutoModelForImageTextToText.from_pretrained(pruned_dir, dtype=torch.float32)
    before = {n: t.clone() for n, t in base.state_dict().items()}
    merged = PeftModel.from_pretrained(base, out / "adapter").merge_and_unload().state_dict()
    kept = list(LORA_PLAN.kept_layers)
    tuned_prefixes = tuple(f"model.language_model.layers.{kept.index(i)}." for i in LORA_PLAN.tuned_layers)
    changed = set()
    for name, tensor in saved.state_dict().items():
        torch.testing.assert_close(tensor, merged[name], rtol=1e-6, atol=1e-6, msg=name)
        if not torch.equal(tensor, before[name]):
            changed.add(name)
    assert changed and all(n.startswith(tuned_prefixes) and n.endswith("_proj.weight") for n in changed), changed
    # The recorded count is the adapters' full size, gathered: the saved adapter's tensors, not a rank's shard
    adapter_size = sum(safetensors_parameter_counts(out / "adapter").values())
    assert json.loads((out / TRAIN_INFO_FILE).read_text())["trainable_parameters"] == adapter_size > 0


def test_train_from_a_base_model_and_similarities(tiny_model_dir, llava_json, synthetic_json, tmp_path):
    """The published recipes' path: base model + similarities + strategy, pruned in memory, then trained."""
    sim = tmp_path / "sim"
    assert main(["similarity", "--model", str(tiny_model_dir), "--data", str(llava_json), "--output-dir", str(sim),
                 "--sample-fraction", "1.0", "--batch-size", "5"]) == 0
    out = tmp_path / "ft"
    assert main(["train", "--model", str(tiny_model_dir), "--similarities", str(sim), "--strategy", "interlace",
                 "--drop_ratio", "0.25", "--dataset", str(synthetic_json), "--output_dir", str(out), "--max_steps", "1",
                 "--per_device_train_batch_size", "2", "--max_pixels", "16384", "--min_pixels", "1024",
                 "--dataloader_pin_memory", "false"]) == 0
    from interlace_hf.tables import load_similarity_tables
    from interlace_hf.selection import select_layers

    expected = select_layers(load_similarity_tables(sim), "interlace", drop_ratio=0.25, seed=42)
    assert Plan.load(out) == expected and len(expected.anchor_layers) == 3
    assert json.loads((out / "config.json").read_text())["interlace"]["kept_layers"] == list(expected.kept_layers)


# --- distillation from the dense model ------------------------------------------------------------------------------
def test_hidden_match_points_follow_the_dense_stack():
    """After tuned layer t, the student's state entering the next kept layer is matched to the dense model's state
    entering that same original layer: the tuned layer stands in for the dropped layers between them."""
    kept = list(PLAN.kept_layers)  # [0, 1, 3, 4, 6, 7, 8, 9, 11]
    assert hidden_match_points(PLAN, kept) == [(2, 3), (4, 6), (8, 11)]
    last = Plan(12, dropped_layers=(11,), tuned_layers=(10,), anchor_layers=(), strategy="manual")
    assert hidden_match_points(last, list(last.kept_layers)) == [(11, None)]  # the final states


def test_distillation_kl_in_chunks_equals_the_full_logits():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    student, teacher = torch.randn(7, 16), torch.randn(7, 16)
    for temperature in (1.0, 2.0):
        full = torch.nn.functional.kl_div(torch.log_softmax(head(student) / temperature, -1),
                                          torch.log_softmax(head(teacher) / temperature, -1), log_target=True,
                                          reduction="sum") * temperature**2
        chunked = distillation_kl(student, teacher, head, head, temperature, chunk=3)
        assert chunked.item() == pytest.approx(full.item(), rel=1e-5)
    assert distillation_kl(teacher, teacher, head, head, 1.0).item() == pytest.approx(0.0, abs=1e-5)


def test_distillation_from_the_dense_model(tiny_model_dir, tiny_processor, dataset, tmp_path):
    """With the dense model as teacher: both terms are zero where the student still is the teacher (nothing dropped
    yet), they are logged, only the tuned layers change, and the teacher does not."""
    teacher = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    teacher_before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    # nothing dropped: the student computes what the teacher computes, so at the first step KL and cosine loss are 0
    same = Plan(12, dropped_layers=(), tuned_layers=(4, 9), anchor_layers=(), strategy="manual")
    student = pruned(tiny_model_dir, same)
    trainer = InterlaceSFTTrainer(student, same, args=config(tmp_path / "same", max_steps=1, learning_rate=0.0,
                                                             distill_hidden=1.0),
                                  train_dataset=dataset, processing_class=tiny_processor, teacher_model=teacher)
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "distill_kl" in entry)
    assert logged["distill_kl"] == pytest.approx(0.0, abs=1e-5)
    assert logged["distill_hidden"] == pytest.approx(0.0, abs=1e-5)

    model = pruned(tiny_model_dir)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = InterlaceSFTTrainer(model, PLAN, args=config(tmp_path / "kd", distill_hidden=1.0),
                                  train_dataset=dataset, processing_class=tiny_processor, teacher_model=teacher)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "distill_kl" in entry]
    assert logged and all(entry["distill_kl"] > 0 and entry["distill_hidden"] > 0 for entry in logged)
    kept = list(PLAN.kept_layers)
    tuned_prefixes = tuple(f"model.language_model.layers.{kept.index(i)}." for i in PLAN.tuned_layers)
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) != name.startswith(tuned_prefixes), name
    for name, param in teacher.named_parameters():
        assert torch.equal(param, teacher_before[name]) and param.grad is None and not param.requires_grad
    with pytest.raises(ValueError, match="the teacher has 9 decoder layers but the plan was made for 12"):
        InterlaceSFTTrainer(pruned(tiny_model_dir), PLAN, args=config(tmp_path / "bad"), train_dataset=dataset,
                            processing_class=tiny_processor, teacher_model=pruned(tiny_model_dir))
    with pytest.raises(ValueError, match="--distill_alpha .* must be >= 0"):
        config(tmp_path, distill_alpha=-1.0)


def test_train_command_distils_from_the_base(tiny_model_dir, synthetic_json, tmp_path):
    """`--teacher base`: the dense model the pruned checkpoint records; the card says the layers were distilled."""
    assert main(["prune", str(tiny_model_dir), "--drop-layers", "2,5,10", "--output-dir", str(tmp_path / "p")]) == 0
    out = tmp_path / "kd"
    rc = main(["train", "--model", str(tmp_path / "p"), "--dataset", str(synthetic_json), "--teacher", "base",
               "--plan", str(PLAN.save(tmp_path / "plan.json")), "--distill_hidden", "0.5",
               "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
               "--max_pixels", "16384", "--min_pixels", "1024", "--dataloader_pin_memory", "false"])
    assert rc == 0
    info = json.loads((out / "interlace_train.json").read_text())["distillation"]
    assert info == {"teacher": str(tiny_model_dir), "kl_weight": 1.0, "temperature": 1.0, "hidden_weight": 0.5}
    card = (out / "README.md").read_text()
    assert f"distilled from the dense model `{tiny_model_dir}`" in card and "0.5 x a hidden-state loss" in card
    with pytest.raises(ValueError, match="is itself a pruned checkpoint"):
        run_training(TrainArgs(model=str(tmp_path / "p"), dataset=str(synthetic_json), teacher=str(tmp_path / "p")),
                     config(tmp_path / "x"))


# --- LoRA through peft ------------------------------------------------------------------------------------------------
# Drops no layer before the last deepstack injection, so both checkpoint formats are exact.
LORA_PLAN = Plan(12, dropped_layers=(4, 7, 10), tuned_layers=(3, 6, 9), anchor_layers=(5, 8, 11), strategy="interlace")


def lora_train(tiny_model_dir, synthetic_json, tmp_path, fmt, *extra, dtype="float32"):
    """Prune to `fmt` on disk, then `interlace-hf train --use_peft` on it; returns the run's trainer and paths."""
    pruned_dir = tmp_path / f"pruned-{fmt}"
    assert main(["prune", str(tiny_model_dir), "--drop-layers", "4,7,10", "--format", fmt,
                 "--output-dir", str(pruned_dir)]) == 0
    out = tmp_path / f"lora-{fmt}"
    train_args, sft_config, source = parse_train_args([
        "--model", str(pruned_dir), "--plan", str(LORA_PLAN.save(tmp_path / "plan.json")), "--dataset", str(synthetic_json),
        "--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0.0", "--dtype", dtype,
        "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4", "--learning_rate", "1e-2",
        "--max_pixels", "16384", "--min_pixels", "1024", "--dataloader_pin_memory", "false", *extra])
    return run_training(train_args, sft_config, source), pruned_dir, out


@pytest.mark.parametrize("fmt", ["standard", "interlace"])
def test_lora_on_the_tuned_layers_merges_into_a_plain_checkpoint(tiny_model_dir, synthetic_json, tmp_path, fmt,
                                                                  caplog):
    """Adapters land only on the tuned layers' seven projections, at their positions in the PRUNED stack; the saved
    model is a plain pruned checkpoint (no adapter files) that loads with from_pretrained and equals peft's own
    merge_and_unload of the trained model; the adapter kept beside it reloads onto the pruned input."""
    from peft import PeftModel

    from interlace_hf.adapters import DEFAULT_LORA_TARGETS, adapter_layers

    trainer, pruned_dir, out = lora_train(tiny_model_dir, synthetic_json, tmp_path, fmt, "--save_adapter")
    kept = list(LORA_PLAN.kept_layers)
    positions = [kept.index(t) for t in LORA_PLAN.tuned_layers]
    assert positions == [3, 5, 7]  # original 9 sits at position 7
    wrapped = adapter_layers(trainer.model)
    expected = {f"model.language_model.layers.{p}.{part}.{proj}" for p in positions
                for part, projs in (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")),
                                    ("mlp", ("gate_proj", "up_proj", "down_proj"))) for proj in projs}
    assert {name.removeprefix("base_model.model.") for name in wrapped} == expected
    assert len(DEFAULT_LORA_TARGETS) == 7
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    count = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    assert f"trainable {count:,} / " in caplog.text and "LoRA r=4 on" in caplog.text  # counted after wrapping

    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").is_file()
    saved = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    assert type(saved).__name__ == ("InterlaceQwen3VLForConditionalGeneration" if fmt == "interlace"
                                    else "Qwen3VLForConditionalGeneration")
    assert json.loads((out / "config.json").read_text())["interlace"]["kept_layers"] == kept
    reference = trainer.model.merge_and_unload().state_dict()
    before = AutoModelForImageTextToText.from_pretrained(pruned_dir, dtype=torch.float32).state_dict()
    changed = set()
    for name, tensor in saved.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=0, msg=name)
        if not torch.equal(tensor, before[name]):
            changed.add(name)
    assert changed == {f"{name}.weight" for name in expected}  # the adapters moved every projection they wrap
    info = json.loads((out / "interlace_train.json").read_text())["lora"]
    assert info["r"] == 4 and info["target_modules"] == list(DEFAULT_LORA_TARGETS) and info["adapter"] == "adapter"
    assert "trained through LoRA adapters (rank 4, alpha 8" in (out / "README.md").read_text()

    again = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(pruned_dir, dtype=torch.float32),
                                      out / "adapter").merge_and_unload()
    for name, tensor in again.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], rtol=1e-6, atol=1e-6, msg=name)


def test_lora_in_bf16_under_distillation(tiny_model_dir, synthetic_json, tmp_path):
    """bf16 storage: the adapters train in fp32 (peft), the frozen base stays bf16, the merged checkpoint is bf16 and
    equals merge_and_unload; with the dense model as teacher the distillation terms are logged."""
    trainer, _, out = lora_train(tiny_model_dir, synthetic_json, tmp_path, "standard", "--teacher", str(tiny_model_dir),
                                 "--distill_hidden", "1.0", dtype="bfloat16")
    adapters = {p.dtype for n, p in trainer.model.named_parameters() if p.requires_grad}
    frozen = {p.dtype for n, p in trainer.model.named_parameters() if not p.requires_grad}
    assert adapters == {torch.float32} and frozen == {torch.bfloat16}
    logged = [entry for entry in trainer.state.log_history if "distill_kl" in entry]
    assert logged and all(entry["distill_kl"] > 0 and entry["distill_hidden"] > 0 for entry in logged)
    saved = AutoModelForImageTextToText.from_pretrained(out)
    assert saved.dtype == torch.bfloat16
    reference = trainer.model.merge_and_unload().state_dict()
    for name, tensor in saved.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    info = json.loads((out / "interlace_train.json").read_text())
    assert info["lora"]["adapter"] is None and info["distillation"]["teacher"] == str(tiny_model_dir)


def test_lora_bad_input(tiny_model_dir, dataset, tmp_path):
    from interlace_hf.adapters import config_for_plan, lora_config

    model = pruned(tiny_model_dir)
    with pytest.raises(ValueError, match="layers_to_transform=.0. disagrees with the plan"):
        config_for_plan(lora_config().__class__(layers_to_transform=[0], target_modules=["q_proj"]), PLAN, model)
    from peft import LoraConfig

    with pytest.raises(ValueError, match=r"\['use_dora'\] are not supported"):
        config_for_plan(LoraConfig(use_dora=True, target_modules=["q_proj"]), PLAN, model)
    with pytest.raises(ValueError, match=r"Target modules \{'qkv'\} not found .* 'layers_to_transform': \[1, 3, 7\]"):
        InterlaceSFTTrainer(model, PLAN, args=config(tmp_path), peft_config=lora_config(target_modules=["qkv"]),
                            train_dataset=dataset)
    with pytest.raises(ValueError, match="--save_adapter keeps the LoRA adapter"):
        TrainArgs(model="m", dataset="d", save_adapter=True).validate()
    with pytest.raises(ValueError, match="--tune_merger / --tune_lm_head need full fine-tuning"):
        InterlaceSFTTrainer(pruned(tiny_model_dir), PLAN, args=config(tmp_path, tune_merger=True),
                            peft_config=lora_config(), train_dataset=dataset)
