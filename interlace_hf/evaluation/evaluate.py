"""Quality of a pruned model: `interlace-hf eval`. Greedy answers on VQA sets, scored, and the paper's relative
performance against the base model (the mean over tasks of pruned score / base score).

Tasks (each with a default metric; `metric=` overrides it) and their data when no `data=` is given:

- `synthetic`: 200 records of `interlace_hf.datasets.synthetic` (seed 0), made in a temporary directory; `exact_match`,
  also per task type.
- `chartqa`: `HuggingFaceM4/ChartQA`, split `test`; `relaxed_accuracy`, also per human / augmented question.
- `textvqa`: `lmms-lab/textvqa`, split `validation`; `vqa_accuracy` when every question has >= 3 human answers,
  else `anls`.
- `scienceqa`: `derek-thomas/ScienceQA`, split `test`, the questions with an image; `multiple_choice`, also per
  subject.
- any other name: needs `data=`; `exact_match`.

`data[task]` is a LLaVA-style `.json` (what `interlace-hf data synthetic` / `data prepare` write), a directory
holding one (`synthetic.json` or `train.json`), a saved or file-based dataset directory, or a Hub dataset id. Domain
datasets in their native columns (ChartQA `query`/`label`, TextVQA `question`/`answers`, ScienceQA
`question`/`choices`/`answer`; or plain `image`/`question`/`answer(s)`) keep what the metrics need. `data prepare`
keeps only TextVQA's most frequent answer (so a prepared TextVQA scores with ANLS, the raw one with VQA accuracy),
while ScienceQA's options survive in the prepared question ("A) ..." lines) and are read back from there.

Torch is imported only by the functions that run a model.
"""

from __future__ import annotations

import datetime
import gc
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..hub import HUB_ID
from ..utils.fileio import write_json_atomic
from ..version import package_versions
from .generation import generate_answers, image_resolution, prompt_messages
from .metrics import relative_performance, score
from .tasks import EvalTask, load_tasks, validate_eval_args

logger = logging.getLogger(__name__)

def score_task(task: EvalTask, predictions: Sequence[str]) -> dict:
    """`{"metric", "score", "n", "per_type"?, "scores"}` of a task's predictions (in item order)."""
    if len(predictions) != len(task.items):
        raise ValueError(f"task {task.name!r}: {len(predictions)} predictions for {len(task.items)} questions.")
    scores = [score(task.metric, prediction, item.references, choices=item.choices, answer=item.answer)
              for item, prediction in zip(task.items, predictions)]
    result = {"metric": task.metric, "score": sum(scores) / len(scores), "n": len(scores), "scores": scores}
    groups: dict[str, list[float]] = {}
    for item, value in zip(task.items, scores):
        if item.type is not None:
            groups.setdefault(str(item.type), []).append(value)
    if groups:
        result["per_type"] = {kind: {"score": sum(v) / len(v), "n": len(v)} for kind, v in sorted(groups.items())}
    return result


def _today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def _evaluate_loaded_tasks(model_path: str, tasks: Sequence[EvalTask], *, revision: str | None, batch_size: int,
                           max_new_tokens: int, dtype: str, device: str, progress: bool,
                           resolution: dict[str, int] | None = None) -> dict[str, dict]:
    """Load one model, answer every task's questions, score them; the model is freed before returning.

    `resolution` (`min_pixels`, `max_pixels`) replaces the processor's own bounds, so that two models compared on
    the same questions also see the same image tokens."""
    import torch

    from ..checkpoint import load_model
    from ..processing import load_processor
    from ..utils.runtime import resolve_device, resolve_dtype

    resolved = resolve_device(device)
    model = load_model(model_path, revision=revision, dtype=resolve_dtype(dtype, resolved),
                       device_map=resolved if resolved != "cpu" else None).eval()
    processor = load_processor(model_path, revision=revision)
    if resolution is not None:
        processor.image_processor.size = {"shortest_edge": resolution["min_pixels"],
                                          "longest_edge": resolution["max_pixels"]}
    results = {}
    try:
        for task in tasks:
            prompts = [(prompt_messages(item.question, len(item.images), task.prompt_suffix), item.images)
                       for item in task.items]
            predictions = generate_answers(model, processor, prompts, batch_size=batch_size,
                                           max_new_tokens=max_new_tokens, progress=progress,
                                           desc=f"{task.name} ({Path(str(model_path)).name})")
            results[task.name] = {**score_task(task, predictions), "predictions": predictions}
            logger.info("%s on %s: %s = %.4f (n=%d)", model_path, task.name, task.metric,
                        results[task.name]["score"], len(predictions))
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return results


def _settings(batch_size, max_new_tokens, limit, dtype, device, split, tasks: Sequence[EvalTask],
              resolution: dict[str, int]) -> dict:
    return {"batch_size": batch_size, "max_new_tokens": max_new_tokens, "limit": limit, "dtype": dtype,
            "device": device, "split": split, "decoding": "greedy", **resolution,
            "prompt_suffix": {task.name: task.prompt_suffix for task in tasks}}


def _task_entry(task: EvalTask, result: dict, save_predictions: bool) -> dict:
    entry = {"metric": result["metric"], "score": result["score"], "n": result["n"], "dataset": task.source,
             "split": task.split}
    if task.skipped:
        entry["skipped"] = task.skipped
    if "per_type" in result:
        entry["per_type"] = result["per_type"]
    if save_predictions:
        entry["predictions"] = [
            {"id": item.id, "prediction": prediction, "references": list(item.references), "score": value}
            for item, prediction, value in zip(task.items, result["predictions"], result["scores"])
        ]
    return entry


def evaluate_model(model_path: str, tasks: list[str] | str, *, data: dict[str, str] | None = None,
                   metric: str | dict[str, str] | None = None, batch_size: int = 8, max_new_tokens: int = 16,
                   limit: int | None = None, dtype: str = "auto", device: str = "auto", split: str | None = None,
                   revision: str | None = None, prompt_suffix: str | None = None, save_predictions: bool = False,
                   progress: bool = True, min_pixels: int | None = None, max_pixels: int | None = None) -> dict:
    """Score one model on VQA tasks with greedy answers.

    Args:
        model_path: a local checkpoint directory or Hub id (dense or pruned, either format).
        tasks: task names (`TASKS`, or any name given in `data`), as a list or a comma-separated string.
        data: task -> data (a LLaVA-style .json, a directory, a dataset directory or a Hub dataset id).
        metric: one metric for every task, or task -> metric; default: each task's (see `TASKS`).
        batch_size: questions per `generate` call.
        max_new_tokens: answer length limit.
        limit: the first `limit` questions of each task.
        dtype: `auto` (bfloat16 on a GPU that has it, else float32), `float32`, `bfloat16`, `float16`.
        device: `auto`, `cpu`, `cuda`, `cuda:N`, `mps`.
        split: dataset split for datasets (default: each task's).
        revision: Hub revision of the model.
        prompt_suffix: text after every question; default: each task's.
        save_predictions: keep every answer, its references and its score in the result.
        progress: show progress bars.
        min_pixels, max_pixels: image resolution bounds (default: the model's processor's); recorded in `settings`.

    Returns:
        `{"model", "tasks": {name: {"metric", "score", "n", "dataset", "split", "per_type"?, ...}}, "date",
        "versions", "settings"}`.
    """
    validate_eval_args(tasks, data=data, metric=metric, batch_size=batch_size, max_new_tokens=max_new_tokens,
                       limit=limit, dtype=dtype, device=device)
    loaded = load_tasks(tasks, data=data, metric=metric, split=split, limit=limit, prompt_suffix=prompt_suffix)
    from ..checkpoint import read_model_config

    read_model_config(model_path, revision)  # a wrong path fails here, before any weight is read
    resolution = image_resolution(model_path, revision, min_pixels=min_pixels, max_pixels=max_pixels)
    results = _evaluate_loaded_tasks(model_path, loaded, revision=revision, batch_size=batch_size,
                                     max_new_tokens=max_new_tokens, dtype=dtype, device=device, progress=progress,
                                     resolution=resolution)
    return {
        "model": str(model_path),
        "tasks": {task.name: _task_entry(task, results[task.name], save_predictions) for task in loaded},
        "date": _today(),
        "versions": package_versions("torch", "transformers", "datasets"),
        "settings": _settings(batch_size, max_new_tokens, limit, dtype, device, split, loaded, resolution),
    }


def combine_results(pruned: Mapping[str, Mapping], base: Mapping[str, Mapping] | None) -> tuple[dict, dict]:
    """Merge per-task results of the pruned and (optionally) the base model. Pure.

    Args:
        pruned: task -> `{"metric", "score", "n", "per_type"?, ...}` of the pruned model.
        base: the same for the base model, or None.

    Returns:
        `(tasks, relative)`: task -> entry with `score` / `pruned` (the pruned score), `base` and `ratio`, and
        `{"relative", "ratios", "skipped", "note"?}` (relative is None without a base or when no task counts).
    """
    tasks = {}
    for name, result in pruned.items():
        entry = {**result, "pruned": result["score"]}
        if base is not None and name in base:
            entry["base"] = base[name]["score"]
            entry["ratio"] = result["score"] / entry["base"] if entry["base"] > 0 else None
            if "per_type" in result and "per_type" in base[name]:
                entry["per_type"] = {
                    kind: {**value, "pruned": value["score"], "base": base[name]["per_type"].get(kind, {}).get("score")}
                    for kind, value in result["per_type"].items()
                }
        tasks[name] = entry
    if base is None:
        return tasks, {"relative": None, "ratios": {}, "skipped": []}
    relative, ratios, skipped = relative_performance({n: r["score"] for n, r in pruned.items()},
                                                     {n: r["score"] for n, r in base.items()})
    summary = {"relative": relative, "ratios": ratios, "skipped": skipped}
    if skipped:
        summary["note"] = (f"left out of the relative performance (base score 0, the ratio is undefined): "
                           f"{', '.join(skipped)}")
    return tasks, summary


def card_eval_results(tasks: Mapping[str, Mapping], relative: float, date: str) -> dict:
    """The `eval_results.json` that `card.card_context_from_checkpoint` reads into the model card's model-index:
    `{"relative", "date", "tasks": {name: {"base", "pruned", "metric", "dataset"?}}}`; `dataset` only for Hub ids."""
    out = {}
    for name, entry in tasks.items():
        if entry.get("base") is None:
            continue
        row = {"base": entry["base"], "pruned": entry["pruned"], "metric": entry["metric"]}
        source = str(entry.get("dataset") or "")
        if HUB_ID.fullmatch(source) and not Path(source).exists():
            row["dataset"] = source
        out[name] = row
    return {"relative": relative, "date": date, "tasks": out}


def run_eval(model: str, base: str | None = None, tasks: list[str] | str = ("synthetic",), output: str | None = None,
             *, data: dict[str, str] | None = None, metric: str | dict[str, str] | None = None, batch_size: int = 8,
             max_new_tokens: int = 16, limit: int | None = None, dtype: str = "auto", device: str = "auto",
             split: str | None = None, revision: str | None = None, base_revision: str | None = None,
             prompt_suffix: str | None = None, save_predictions: bool = False, write_card_results: bool = True,
             progress: bool = True, min_pixels: int | None = None, max_pixels: int | None = None) -> dict:
    """`interlace-hf eval`: score a (pruned) model, and its base on the same questions with the same settings.

    Args:
        model: the model to evaluate (local directory or Hub id).
        base: the dense model it was pruned from; with it, the result has per-task pruned / base ratios and the
            paper's relative performance (their mean; tasks where the base scores 0 are left out and named).
        tasks, data, metric, batch_size, max_new_tokens, limit, dtype, device, split, prompt_suffix,
            save_predictions, progress: as in `evaluate_model`.
        min_pixels, max_pixels: the image resolution both models are evaluated at (default: the base's processor's,
            or the model's without a base); a fine-tuned checkpoint's own processor is never what decides it.
        output: where to write the results JSON (optional).
        revision, base_revision: Hub revisions of the two models.
        write_card_results: when `model` is a local directory and `base` is given, write `eval_results.json` there
            (what the model card's results table and model-index are made from).

    Returns:
        `{"model", "base", "tasks": {name: {"metric", "score", "pruned", "base"?, "ratio"?, "n", "dataset",
        "split", "per_type"?}}, "relative", "relative_tasks", "skipped", "note"?, "date", "versions", "settings"}`.
    """
    validate_eval_args(tasks, data=data, metric=metric, batch_size=batch_size, max_new_tokens=max_new_tokens,
                       limit=limit, dtype=dtype, device=device)
    if output is not None and Path(output).expanduser().is_dir():
        raise ValueError(f"--output {output!r} is a directory; pass a file path such as results.json.")
    from ..checkpoint import read_model_config

    read_model_config(model, revision)  # both models are checked before any data or weight is read
    if base is not None:
        read_model_config(base, base_revision)
    resolution = image_resolution(base if base is not None else model, base_revision if base is not None else revision,
                                  min_pixels=min_pixels, max_pixels=max_pixels)
    loaded = load_tasks(tasks, data=data, metric=metric, split=split, limit=limit, prompt_suffix=prompt_suffix)
    common = dict(batch_size=batch_size, max_new_tokens=max_new_tokens, dtype=dtype, device=device,
                  progress=progress, resolution=resolution)
    pruned_results = _evaluate_loaded_tasks(model, loaded, revision=revision, **common)
    base_results = _evaluate_loaded_tasks(base, loaded, revision=base_revision, **common) if base else None
    entries = {task.name: _task_entry(task, pruned_results[task.name], save_predictions) for task in loaded}
    base_entries = ({task.name: _task_entry(task, base_results[task.name], False) for task in loaded}
                    if base_results else None)
    if save_predictions and base_results:
        for task in loaded:
            for row, prediction in zip(entries[task.name]["predictions"], base_results[task.name]["predictions"]):
                row["base_prediction"] = prediction
    combined, summary = combine_results(entries, base_entries)
    date = _today()
    result = {
        "model": str(model),
        "base": None if base is None else str(base),
        "tasks": combined,
        "relative": summary["relative"],
        "relative_tasks": sorted(summary["ratios"]),
        "skipped": summary["skipped"],
        **({"note": summary["note"]} if "note" in summary else {}),
        "date": date,
        "versions": package_versions("torch", "transformers", "datasets"),
        "settings": _settings(batch_size, max_new_tokens, limit, dtype, device, split, loaded, resolution),
    }
    if summary.get("note"):
        logger.warning("%s", summary["note"])
    model_dir = Path(str(model)).expanduser()
    if write_card_results and base is not None and (model_dir / "config.json").is_file():
        from ..card import EVAL_FILE

        if summary["relative"] is None:
            logger.warning("no task has a base score above 0: no relative performance, %s not written.", EVAL_FILE)
        else:
            write_json_atomic(model_dir / EVAL_FILE, card_eval_results(combined, summary["relative"], date))
            result["card_results"] = str(model_dir / EVAL_FILE)
    if output is not None:
        write_json_atomic(Path(output).expanduser(), result)
    return result


def format_results(result: Mapping) -> str:
    """A plain-text table of `run_eval` / `evaluate_model` results, for the command line. Pure."""
    rows = [("task", "metric", "n", "base", "score", "ratio")]
    for name, entry in result["tasks"].items():
        base, ratio = entry.get("base"), entry.get("ratio")
        rows.append((name, entry["metric"], str(entry["n"]), "-" if base is None else f"{base:.4f}",
                     f"{entry['score']:.4f}", "-" if ratio is None else f"{ratio:.3f}"))
        for kind, group in (entry.get("per_type") or {}).items():
            group_base = group.get("base")
            rows.append((f"  {kind}", "", str(group["n"]), "-" if group_base is None else f"{group_base:.4f}",
                         f"{group['score']:.4f}", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    if result.get("base"):
        relative = result.get("relative")
        counted = result.get("relative_tasks") or []
        lines.append("")
        lines.append("relative performance: " + ("undefined (every base score is 0)" if relative is None else
                                                 f"{100 * relative:.1f}% (mean of {len(counted)} task ratio(s))"))
        if result.get("note"):
            lines.append(result["note"])
    settings = result.get("settings") or {}
    if settings.get("max_pixels"):
        lines.append(f"images: {settings['min_pixels']}..{settings['max_pixels']} pixels"
                     + (" (both models)" if result.get("base") else ""))
    return "\n".join(lines)
