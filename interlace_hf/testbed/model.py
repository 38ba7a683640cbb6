"""The testbed's model and data: the sizes (a Qwen3-VL at small width), its untrained initial checkpoint, the
synthetic train / held-out / fine-tune sets with their seeds, and accuracy on held-out questions (with the
majority-answer baseline and the questions seen in training set apart)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


TESTBED_FILE = "testbed.json"


TRAIN_SEED_OFFSET = 1_000  # data seeds: train, held-out and fine-tune sets never share a generator stream


HELDOUT_SEED_OFFSET = 2_000


FINETUNE_SEED_OFFSET = 3_000
# (`testbed compare`'s validation split, on which each fine-tuned row's learning rate is chosen)
VALIDATION_SEED_OFFSET = 4_000


# The shape pictures' side unless a size or `--image-size` says otherwise; every synthetic set and testbed made before
# the side was a setting was drawn at it, so a record without `image_size` means this.
SHAPE_IMAGE_SIZE = 64


@dataclass(frozen=True)
class TestbedSize:
    """The shape and training budget of one testbed size (the text model is Qwen3-VL's, at small width)."""

    text_layers: int
    hidden_size: int
    vision_hidden_size: int
    vision_depth: int
    steps: int
    batch_size: int
    learning_rate: float
    tasks: tuple[str, ...]
    num_eval: int = 600  # held-out questions
    unseen_heldout: bool = False  # held-out questions drawn outside the training set (0% overlap)
    finetune_fraction: float = 0.01  # `compare`'s fine-tune set, a fraction of the training questions (the paper's)
    image_size: int = SHAPE_IMAGE_SIZE  # side of the shape pictures (one image token per 32x32 pixels)

    @property
    def head_dim(self) -> int:
        return 32 if self.hidden_size >= 64 else 16


# What a 2-core CPU can teach a model from scratch in minutes: reading the word in `text` images and the printed
# number in `bar_value` charts stayed at chance after 300-1000 steps of every setting tried (docs/results-testbed.md),
# so `small` trains on the four visual-reasoning types; `base` (GPU) trains on all six.
SMALL_TASKS = ("count", "colour", "shape", "bar_tallest")


ALL_TASKS = ("count", "colour", "shape", "bar_tallest", "bar_value", "text")


# `deep`: where depth should matter: two-step questions (find, then read / count / look next to;
# `interlace_hf.datasets.synthetic.COMPOSITIONAL_TASKS`) with one-word answers, next to `count` and `bar_tallest`.
# All of them colour-only: a shape at 64 pixels is a faint feature the text model did not learn to use, and every type
# that needed it (`colour_unique`, `shape_unique`, `relation`) stalled near chance in the six-type design (72.5%),
# while its depth-sensitive types were the learned colour-only ones. `cell_colour` (the colour in a place) is the
# one-step question that names each cell. With a learning rate of 2e-3 (1e-3 was behind on every type at 2,400
# steps) this model scores 85.4% on unseen questions and INTERLACE's 25% drop is told apart from every baseline's
# (docs/results-testbed.md); 128-pixel shapes read better but made depth stop mattering.
DEEP_TASKS = ("count", "cell_colour", "count_colour", "neighbour_colour", "bar_tallest")


SIZES = {
    # 12 text layers, ~3M parameters: minutes on a 2-core CPU.
    "small": TestbedSize(text_layers=12, hidden_size=128, vision_hidden_size=64, vision_depth=4, steps=1500,
                         batch_size=16, learning_rate=1e-3, tasks=SMALL_TASKS),
    # 24 text layers, ~20M parameters: for a GPU (hours on a CPU).
    "base": TestbedSize(text_layers=24, hidden_size=256, vision_hidden_size=128, vision_depth=6, steps=6000,
                        batch_size=32, learning_rate=1e-3, tasks=ALL_TASKS),
    # 24 text layers at the small width, two-step tasks, 3,000 held-out questions none of which occurs in training:
    # a testbed whose layers are not all alike (about an hour of training per seed on a 2-core CPU). Its fine-tune
    # set is 2% of the 64,000 training questions (1,280), so that the fine-tune can matter.
    "deep": TestbedSize(text_layers=24, hidden_size=128, vision_hidden_size=64, vision_depth=4, steps=4000,
                        batch_size=16, learning_rate=2e-3, tasks=DEEP_TASKS, num_eval=3000, unseen_heldout=True,
                        finetune_fraction=0.02),
    # For tests: the structure, not the quality.
    "tiny": TestbedSize(text_layers=12, hidden_size=32, vision_hidden_size=16, vision_depth=4, steps=8,
                        batch_size=4, learning_rate=2e-3, tasks=SMALL_TASKS),
}


def testbed_config(size: TestbedSize, tokenizer):
    """A Qwen3-VL config of `size`: the tiny model's structure (3 DeepStack features, M-RoPE, untied head), wider."""
    from ..testing.tiny import tiny_config

    config = tiny_config(size.text_layers, tokenizer)
    text, vision = config.text_config, config.vision_config
    text.hidden_size = size.hidden_size
    text.intermediate_size = 3 * size.hidden_size
    text.head_dim = size.head_dim
    text.num_attention_heads = max(2, size.hidden_size // size.head_dim)
    text.num_key_value_heads = max(1, text.num_attention_heads // 2)
    quarter = size.head_dim // 4  # M-RoPE sections (time, height, width) sum to head_dim / 2
    text.rope_parameters["mrope_section"] = [quarter, quarter // 2, quarter // 2]
    vision.hidden_size = size.vision_hidden_size
    vision.intermediate_size = 2 * size.vision_hidden_size
    vision.num_heads = max(2, size.vision_hidden_size // 32)
    vision.depth = size.vision_depth
    vision.out_hidden_size = size.hidden_size
    vision.deepstack_visual_indexes = [size.vision_depth - 3, size.vision_depth - 2, size.vision_depth - 1]
    return config


def build_testbed_init(size: TestbedSize, seed: int):
    """A randomly initialised testbed model and its processor (the tiny tokenizer and image processor)."""
    from ..testing.tiny import build_tiny_processor, init_qwen3_vl

    processor = build_tiny_processor()
    return init_qwen3_vl(testbed_config(size, processor.tokenizer), processor.tokenizer, seed), processor


def manifest_path(directory: Path) -> Path:
    return directory / "synthetic.json"


def read_testbed(directory: Path) -> dict:
    """The report of the trained testbed in `directory` (`testbed.json`); an error naming the fix when the directory
    holds no trained testbed (no report, or no model)."""
    report = directory / TESTBED_FILE
    if not report.is_file() or not (directory / "model" / "config.json").is_file():
        raise ValueError(f"{str(directory)!r} is not a trained testbed (no {TESTBED_FILE} / model); run "
                         f"`interlace-hf testbed train {directory}` first.")
    return json.loads(report.read_text())


def ensure_synthetic(directory: Path, num: int, seed: int, tasks, exclude: Path | list[Path] | None = None,
                     image_size: int = SHAPE_IMAGE_SIZE) -> Path:
    """The synthetic set at `directory` (made once, atomically; a set of another size or seed is an error). With
    `exclude` (other sets' manifests), none of their questions is drawn."""
    from ..datasets.synthetic import make_synthetic

    manifest = manifest_path(directory)
    stamp = directory / "made_with.json"
    wanted = {"num": num, "seed": seed, "tasks": list(tasks)}
    if image_size != SHAPE_IMAGE_SIZE:  # so the stamps of sets made before it was a setting still match
        wanted["image_size"] = image_size
    if exclude is not None:
        wanted["exclude"] = [str(p) for p in exclude] if isinstance(exclude, list) else str(exclude)
    if manifest.is_file():
        made = json.loads(stamp.read_text()) if stamp.is_file() else None
        if made != wanted:
            raise ValueError(f"{directory} holds a synthetic set made with {made}, not {wanted}; this directory "
                             "belongs to another run: pass the same settings, or a new OUTPUT_DIR / --overwrite.")
        return manifest
    make_synthetic(directory, num=num, seed=seed, overwrite=True, tasks=tasks, exclude=exclude, image_size=image_size)
    stamp.write_text(json.dumps(wanted) + "\n")
    return manifest


def majority_baseline(train_manifest: Path, heldout_manifest: Path) -> dict[str, float]:
    """Per task type, the held-out accuracy of always giving the training set's most frequent answer ("chance")."""
    from ..evaluation.metrics import score

    answers: dict[str, Counter] = {}
    for record in json.loads(train_manifest.read_text()):
        answers.setdefault(record["task"], Counter())[record["conversations"][1]["value"]] += 1
    hits: dict[str, list[float]] = {}
    for record in json.loads(heldout_manifest.read_text()):
        common = answers.get(record["task"])
        guess = common.most_common(1)[0][0] if common else ""
        hits.setdefault(record["task"], []).append(score("exact_match", guess, [record["conversations"][1]["value"]]))
    return {task: sum(v) / len(v) for task, v in sorted(hits.items())}


def seen_in_training(train_manifest: Path, heldout_manifest: Path) -> list[bool]:
    """For each held-out question, whether it also occurs in training (same image bytes, same question)."""
    from ..datasets.synthetic import manifest_keys

    seen = set(manifest_keys(train_manifest))
    return [key in seen for key in manifest_keys(heldout_manifest)]


def evaluate_accuracy(model_dir: Path | str, heldout: Path, *, device: str = "auto", batch_size: int = 32,
                      item_scores: bool = False) -> dict:
    """Greedy answers to the held-out questions: exact match per task type and their mean (`accuracy`).

    With `item_scores`, also `scores`: each question's score, in the manifest's order.
    """
    from ..evaluation.evaluate import evaluate_model

    result = evaluate_model(str(model_dir), ["synthetic"], data={"synthetic": str(heldout)}, batch_size=batch_size,
                            max_new_tokens=8, device=device, prompt_suffix="", progress=False,
                            save_predictions=item_scores)
    task = result["tasks"]["synthetic"]
    per_type = {kind: entry["score"] for kind, entry in task["per_type"].items()}
    # The mean over task types (each type a "benchmark"), so the mix of the held-out draw does not weigh them.
    accuracy = {"accuracy": sum(per_type.values()) / len(per_type), "per_type": per_type, "n": task["n"]}
    if item_scores:
        accuracy["scores"] = [entry["score"] for entry in task["predictions"]]
    return accuracy


def testbed_processor(model_dir: Path | str):
    """The processor of a testbed checkpoint, at the image sizes the testbed was trained at (64-128 pixels)."""
    from ..processing import load_processor

    processor = load_processor(str(model_dir))
    processor.image_processor.size = {"shortest_edge": 32 * 32, "longest_edge": 128 * 128}
    return processor


def answer_batches(manifest: Path, processor, *, batch_size: int = 32,
                   limit: int | None = None) -> tuple[list[dict], list[str]]:
    """The questions of `manifest` (the first `limit`), collated as the trainer's collator does it (labels on the
    answer and the end of the turn), in batches; and each question's task type."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from ..args import TrainArgs
    from ..train import build_train_dataset

    dataset, _ = build_train_dataset(TrainArgs(model="x", dataset=str(manifest), max_train_samples=limit))
    collator = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True)
    rows = [dataset[i] for i in range(len(dataset))]
    tasks = [record["task"] for record in json.loads(Path(manifest).read_text())[:len(rows)]]
    return [collator(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)], tasks


def answer_scores(model, batches) -> tuple[list[float], list[int]]:
    """Teacher-forced (log-likelihood, exact) of each example's labelled tokens, over collated `batches`: exact is 1
    when every answer token, and the end of the turn, is the model's top choice, which is when greedy decoding gives
    the answer."""
    import torch

    device = next(model.parameters()).device
    logliks, exact = [], []
    with torch.no_grad():
        for batch in batches:
            batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
            labels = batch["labels"][:, 1:]
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1].float()
            mask = labels != -100
            logp = torch.log_softmax(logits, dim=-1)
            target = labels.clamp(min=0)
            picked = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            hits = (logits.argmax(-1) == target) | ~mask
            logliks += (picked * mask).sum(-1).tolist()
            exact += hits.all(-1).int().tolist()
    return logliks, exact


def per_type_accuracy(tasks: list[str], exact: list[int]) -> dict[str, float]:
    """Exact-match rate per task type (sorted by type), from each question's type and score."""
    groups: dict[str, list[int]] = {}
    for task, hit in zip(tasks, exact):
        groups.setdefault(task, []).append(hit)
    return {kind: sum(v) / len(v) for kind, v in sorted(groups.items())}


def score_answers(model_dir: Path | str, manifest: Path, *, device: str = "auto", batch_size: int = 32,
                  batches: tuple[list[dict], list[str]] | None = None) -> dict:
    """Teacher-forced scores of a checkpoint on `manifest`: exact match per task type and their mean (`accuracy`),
    and per question (`scores`, in the manifest's order) with the answer's log-likelihood (`logliks`). One forward
    pass per batch instead of `evaluate_accuracy`'s generation loop; the same exact match. `batches`: the
    `answer_batches` of `manifest`, collated once for many models."""
    from ..checkpoint import load_model
    from ..utils.runtime import resolve_device

    model = load_model(str(model_dir), dtype="float32").eval().to(resolve_device(device))
    batches, tasks = batches or answer_batches(manifest, testbed_processor(model_dir), batch_size=batch_size)
    logliks, exact = answer_scores(model, batches)
    per_type = per_type_accuracy(tasks, exact)
    return {"accuracy": sum(per_type.values()) / len(per_type), "per_type": per_type, "n": len(exact),
            "scores": [float(x) for x in exact], "logliks": logliks}


def unseen_accuracy(heldout_manifest: Path, seen: list[bool], scores: list[float]) -> dict:
    """The accuracy on the held-out questions not `seen` in training (per task type and their mean)."""
    records = json.loads(heldout_manifest.read_text())
    groups: dict[str, list[float]] = {}
    for was_seen, record, value in zip(seen, records, scores):
        if not was_seen:
            groups.setdefault(record["task"], []).append(value)
    per_type = {kind: sum(v) / len(v) for kind, v in sorted(groups.items())}
    return {"accuracy": sum(per_type.values()) / len(per_type) if per_type else None, "per_type": per_type,
            "n": sum(len(v) for v in groups.values())}


RESULTS_FORMAT = "interlace-hf-testbed/1"


def command_line(command: str, args, always: tuple[str, ...] = ()) -> str:
    """The `interlace-hf testbed COMMAND ...` line for `args`: OUTPUT_DIR, the `always` flags, then every other flag
    whose value is not its default."""
    defaults = type(args)(output_dir="")
    words = ["interlace-hf", "testbed", command, args.output_dir]
    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
        if f.name == "output_dir" or value is None or value is False:
            continue
        if f.name in always or value != getattr(defaults, f.name):
            words.append("--" + f.name.replace("_", "-"))
            if isinstance(value, list):
                words += map(str, value)
            elif value is not True:
                words.append(str(value))
    return " ".join(words)
