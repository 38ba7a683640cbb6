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
import json
import logging
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils.fileio import write_json_atomic
from .metrics import METRICS, answer_index, parse_choices, relative_performance, score
from ..datasets.sources import DOMAINS
from ..version import package_versions
from ..hub import HUB_ID
from ..utils.runtime import DTYPES

logger = logging.getLogger(__name__)

SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
LETTER_ANSWER = "\nAnswer with the option's letter from the given choices directly."
VQA_MIN_ANSWERS = 3
SYNTHETIC_DEFAULT_NUM = 200
LLAVA_MANIFESTS = ("synthetic.json", "train.json")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class TaskSpec:
    """A known task: its default metric (None: decided from the data), Hub dataset and split, prompt suffix."""

    metric: str | None
    hub_id: str | None
    split: str | None
    prompt_suffix: str


TASKS: dict[str, TaskSpec] = {
    "synthetic": TaskSpec("exact_match", None, None, SHORT_ANSWER),
    "chartqa": TaskSpec("relaxed_accuracy", DOMAINS["chartqa"], "test", SHORT_ANSWER),
    "textvqa": TaskSpec(None, DOMAINS["textvqa"], "validation", SHORT_ANSWER),
    "scienceqa": TaskSpec("multiple_choice", DOMAINS["scienceqa"], "test", LETTER_ANSWER),
}


@dataclass(frozen=True)
class EvalItem:
    """One question: images (paths, PIL images or `{"bytes": ...}`), text, accepted answers, and for multiple choice
    the options and the right one's index. `type` groups items in the per-type breakdown."""

    id: str
    images: tuple
    question: str
    references: tuple[str, ...]
    choices: tuple[str, ...] = ()
    answer: int | None = None
    type: str | None = None


@dataclass
class EvalTask:
    """A task's items, metric, prompt suffix and where its data came from."""

    name: str
    metric: str
    source: str
    split: str | None
    prompt_suffix: str
    items: list[EvalItem]
    skipped: int = 0
    _keep: Any = field(default=None, repr=False)  # a temporary directory that must live as long as the items


# ---------------------------------------------------------------------------------------------------------------
# Arguments: checked before any data or weight is read.
# ---------------------------------------------------------------------------------------------------------------


def parse_task_list(tasks: str | Iterable[str]) -> list[str]:
    """`"synthetic,chartqa"` or `["synthetic", "chartqa"]` -> a de-duplicated list of task names."""
    if isinstance(tasks, str):
        tasks = [tasks]
    names = [name.strip() for item in tasks for name in re.split(r"[,\s]+", str(item)) if name.strip()]
    return list(dict.fromkeys(names))


def parse_task_mapping(values: Iterable[str] | None, flag: str = "--data",
                       example: str = "chartqa=path/to/chartqa.json") -> dict[str, str]:
    """CLI `NAME=VALUE` pairs -> a dict (`--data synthetic=data/syn chartqa=HuggingFaceM4/ChartQA`)."""
    mapping: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = str(value).partition("=")
        if not sep or not key.strip() or not rest.strip():
            raise ValueError(f"{flag} {value!r}: expected NAME=VALUE, e.g. {flag} {example}.")
        mapping[key.strip()] = rest.strip()
    return mapping


def parse_metric_option(values: Iterable[str] | str | None) -> str | dict[str, str] | None:
    """CLI `--metric anls` (every task) or `--metric textvqa=anls chartqa=exact_match` (per task)."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    values = list(values)
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return values[0].strip()
    return parse_task_mapping(values, flag="--metric", example="textvqa=anls")


def _metric_for(task: str, metric: str | Mapping[str, str] | None) -> str | None:
    if isinstance(metric, Mapping):
        return metric.get(task)
    return metric


def validate_eval_args(tasks: str | Iterable[str], *, data: Mapping[str, str] | None = None,
                       metric: str | Mapping[str, str] | None = None, batch_size: int = 8, max_new_tokens: int = 16,
                       limit: int | None = None, dtype: str = "auto", device: str = "auto") -> list[str]:
    """Refuse bad arguments with a message that names the flag and the fix; returns the task names."""
    names = parse_task_list(tasks)
    data = dict(data or {})
    if not names:
        raise ValueError(f"--tasks is empty; pass one or more of {', '.join(TASKS)} (or any name with --data).")
    unknown = [name for name in names if name not in TASKS and name not in data]
    if unknown:
        raise ValueError(
            f"--tasks {unknown}: unknown task without data; known tasks are {', '.join(TASKS)}. For another set, "
            f"pass its data, e.g. --data {unknown[0]}=path/to/records.json (and --metric {unknown[0]}=METRIC)."
        )
    extra = [name for name in data if name not in names]
    if extra:
        raise ValueError(f"--data names {extra}, which are not in --tasks {names}; add them to --tasks or drop them.")
    if isinstance(metric, Mapping):
        stray = [name for name in metric if name not in names]
        if stray:
            raise ValueError(f"--metric names {stray}, which are not in --tasks {names}.")
        chosen = list(metric.values())
    else:
        chosen = [metric] if metric is not None else []
    bad = [m for m in chosen if m not in METRICS]
    if bad:
        raise ValueError(f"--metric {bad[0]!r} is not a metric; choose one of {', '.join(METRICS)}.")
    for flag, value, minimum in (("--batch-size", batch_size, 1), ("--max-new-tokens", max_new_tokens, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{flag} must be an integer >= {minimum}, got {value!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"--limit must be an integer >= 1 (questions per task), got {limit!r}; omit it for all.")
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}.")
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"--device must be auto, cpu, mps, cuda or cuda:N, got {device!r}.")
    for name, source in data.items():
        _check_source(name, source)
    return names


def _check_source(task: str, source: str) -> None:
    path = Path(source).expanduser()
    if path.exists():
        if path.is_file() and path.suffix != ".json":
            raise ValueError(f"--data {task}={source}: a file must be a LLaVA-style .json; pass the .json, a dataset "
                             "directory or a Hub dataset id.")
        return
    if source.startswith((".", "/", "~")) or path.suffix == ".json" or not HUB_ID.fullmatch(source):
        raise ValueError(f"--data {task}={source}: no such file or directory (and it is not a Hub dataset id of the "
                         "form org/name). Make a synthetic set with `interlace-hf data synthetic OUT`, or a domain set "
                         "with `interlace-hf data prepare --dataset chartqa ...`.")


# ---------------------------------------------------------------------------------------------------------------
# Data: LLaVA-style records (synthetic / prepared) or domain datasets in their native columns.
# ---------------------------------------------------------------------------------------------------------------


def _llava_manifest(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".json":
        return path
    if path.is_dir():
        for name in LLAVA_MANIFESTS:
            if (path / name).is_file():
                return path / name
    return None


def _mc_fields(question: str, reference: str | None, raw: dict) -> tuple[tuple, int | None]:
    """Options and the right option's index: from `choices` / `answer` fields, else from the question's "A) ..."
    lines and the "B) ..." answer `data prepare --dataset scienceqa` writes. The index is None when the answer
    names no option (only an error for the multiple_choice metric, checked in `load_task`)."""
    choices = raw.get("choices") or parse_choices(question)[1]
    if not choices:
        return (), None
    answer = raw.get("answer", reference)
    try:
        index = None if answer is None else answer_index(answer, choices)
    except ValueError:
        index = None
    return tuple(str(c) for c in choices), index


def _items_from_llava(task: str, manifest: Path, limit: int | None) -> list[EvalItem]:
    from ..data import check_images, load_records

    raw_items = json.loads(manifest.read_text())
    records, _ = load_records(str(manifest))
    # a broken image stops here, before any model is loaded
    check_images(records[:limit] if limit is not None else records, f"--data {task}={manifest}")
    items = []
    for index, (raw, record) in enumerate(zip(raw_items, records)):
        question, reference = record.turns[0]
        answers = raw.get("answers")
        references = [str(a) for a in answers if a is not None and str(a).strip()] if answers else []
        if not references and reference is not None:
            references = [reference]
        if not references:
            raise ValueError(f"--data {task}={manifest}: record {index} has no reference answer (no `gpt` turn and "
                             "no `answers`); evaluation needs one.")
        choices, answer = _mc_fields(question, reference, raw)
        items.append(EvalItem(id=str(raw.get("id", index)), images=tuple(record.images), question=question,
                              references=tuple(references), choices=choices, answer=answer,
                              type=raw.get("task") or raw.get("type")))
        if limit is not None and len(items) >= limit:
            break
    return items


def _load_dataset_split(source: str, split: str | None, default_split: str | None):
    """`(dataset, split)`: a `datasets.Dataset` from a saved directory, a directory of data files or a Hub id,
    images undecoded. `split` must exist when given; otherwise `default_split` is used where the data has it, else
    its only split."""
    import datasets

    path = Path(source).expanduser()
    if path.is_dir() and any((path / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
        loaded = datasets.load_from_disk(str(path))
    elif path.is_dir():
        loaded = datasets.load_dataset(str(path))  # local files: every split is cheap to list
    else:
        split = split or default_split
        try:  # a Hub dataset: only the split needed is downloaded
            loaded = datasets.load_dataset(source, split=split)
        except ValueError as err:
            if "split" not in str(err).lower():
                raise
            raise ValueError(f"--data {source!r}: {err} Pass --split.") from None
        except Exception as err:  # offline, not on the Hub, no access: the fix is the same, get a local copy
            if not type(err).__module__.startswith(("datasets", "huggingface_hub", "requests", "httpx")) and \
                    not isinstance(err, (ConnectionError, FileNotFoundError)):
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(
                f"--data {source!r}: the Hub dataset could not be loaded ({type(err).__name__}: {first}). Where there "
                "is network, run `interlace-hf data prepare --dataset <task> --fraction 1.0 --output-dir DIR` (or "
                "`hf download --repo-type dataset ...`), then pass `--data <task>=DIR`.") from None
    if isinstance(loaded, (datasets.DatasetDict, dict)):
        if split is None:
            split = default_split if default_split in loaded else next(iter(loaded)) if len(loaded) == 1 else None
        if split not in loaded:
            raise ValueError(f"--data {source!r} has splits {sorted(loaded)}; pass --split with one of them.")
        loaded = loaded[split]
    for column, feature in loaded.features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            loaded = loaded.cast_column(column, datasets.Image(decode=False))
    return loaded, split


def _undecoded(image) -> Any:
    if isinstance(image, dict) and image.get("bytes") is None and image.get("path"):
        return image["path"]
    return image


def _label_names(dataset, column: str):
    feature = dataset.features.get(column)
    return getattr(feature, "int2str", None)


def _generic_example(row: dict):
    """A row of a plain VQA table: `image` or `images`, `question`, `answer` (or `answers`)."""
    from ..datasets.converters import Example

    images = row.get("images") or ([row["image"]] if row.get("image") is not None else [])
    answer = row.get("answer")
    if answer is None and row.get("answers"):
        answer = row["answers"][0]
    question = str(row.get("question") or "").strip()
    return Example(list(images), [(question, str(answer))] if question and answer is not None else [])


def _items_from_dataset(task: str, source: str, split: str | None, default_split: str | None,
                        limit: int | None) -> tuple[list[EvalItem], int, str | None]:
    """The questions of a dataset in native columns, how many rows were skipped, and the split read."""
    from ..datasets.converters import CONVERTERS, detect_format

    dataset, split = _load_dataset_split(source, split, default_split)
    columns = set(dataset.column_names)
    try:
        fmt = detect_format(columns)
    except ValueError as err:
        if "question" not in columns or not columns & {"answer", "answers"}:
            raise ValueError(f"--data {task}={source}: {err} Or plain `image`, `question`, `answer` (or `answers`) "
                             "columns; or pass a LLaVA-style .json.") from None
        fmt = "generic"
    if fmt == "finevision":
        raise ValueError(f"--data {task}={source} is a FineVision-style training set (images + texts); evaluation "
                         "needs questions with reference answers: ChartQA, TextVQA or ScienceQA columns, or a "
                         "LLaVA-style .json.")
    type_column = {"chartqa": "human_or_machine", "scienceqa": "subject"}.get(fmt)
    type_names = _label_names(dataset, type_column) if type_column in dataset.column_names else None
    items, skipped = [], 0
    convert = _generic_example if fmt == "generic" else CONVERTERS[fmt]
    for index, row in enumerate(dataset):
        example = convert(row)
        if not example.images or not example.turns:
            skipped += 1  # ScienceQA's text-only questions (the usual IMG subset), rows without a question
            continue
        question, reference = example.turns[0]
        references, choices, answer = [reference], (), None
        if fmt == "textvqa" or (fmt == "generic" and row.get("answers")):
            references = [str(a).strip() for a in row.get("answers") or [] if a and str(a).strip()]
        elif fmt == "chartqa":
            labels = row.get("label")
            references = [str(x) for x in (labels if isinstance(labels, (list, tuple)) else [labels]) if x is not None]
        elif fmt == "scienceqa":
            choices, answer = tuple(str(c) for c in row["choices"]), int(row["answer"])
        kind = None
        if type_column in row and row[type_column] is not None:
            value = row[type_column]
            kind = type_names(value) if type_names is not None and isinstance(value, int) else str(value)
            if fmt == "chartqa" and kind in ("0", "1", "human", "machine"):
                kind = "human" if kind in ("0", "human") else "augmented"
        items.append(EvalItem(id=str(row.get("question_id", row.get("id", index))),
                              images=tuple(_undecoded(image) for image in example.images), question=question,
                              references=tuple(references), choices=choices, answer=answer, type=kind))
        if limit is not None and len(items) >= limit:
            break
    return items, skipped, split


def load_task(name: str, data: str | None = None, *, metric: str | None = None, split: str | None = None,
              limit: int | None = None, prompt_suffix: str | None = None) -> EvalTask:
    """Read one task's questions (no model involved).

    Args:
        name: a known task (`TASKS`) or any name when `data` is given.
        data: a LLaVA-style `.json`, a directory holding `synthetic.json` / `train.json`, a dataset directory or a
            Hub dataset id; default: the task's own data (see the module docstring).
        metric: overrides the task's default metric.
        split: dataset split (datasets only; default: the task's, else the only split).
        limit: keep the first `limit` questions.
        prompt_suffix: text added after every question (default: the task's, e.g. "Answer the question using a
            single word or phrase."); "" for none.
    """
    spec = TASKS.get(name, TaskSpec("exact_match", None, None, SHORT_ANSWER))
    keep = None
    skipped = 0
    if data is None and name == "synthetic":
        from ..datasets.synthetic import make_synthetic

        keep = tempfile.TemporaryDirectory(prefix="interlace-hf-eval-synthetic-")
        # records are drawn one after another from one seeded generator: the first `limit` of the 200 are the set
        num = min(limit or SYNTHETIC_DEFAULT_NUM, SYNTHETIC_DEFAULT_NUM)
        source_path = make_synthetic(Path(keep.name) / "synthetic", num=num, seed=0)
        source = f"interlace_hf.datasets.synthetic (num={SYNTHETIC_DEFAULT_NUM}, seed=0)"
        items = _items_from_llava(name, source_path, limit)
        split = None
    else:
        if data is None:
            if spec.hub_id is None:
                raise ValueError(f"task {name!r} needs --data {name}=PATH.")
            data = spec.hub_id
        source = str(data)
        _check_source(name, source)
        manifest = _llava_manifest(Path(source).expanduser())
        if manifest is not None:
            items, split = _items_from_llava(name, manifest, limit), None
            source = str(manifest)
        else:
            items, skipped, split = _items_from_dataset(name, source, split, spec.split, limit)
    if not items:
        raise ValueError(f"task {name!r}: {source} holds no usable questions" +
                         (f" ({skipped} skipped: no image or no question)" if skipped else "") + ".")
    chosen = metric or spec.metric
    if chosen is None:  # textvqa: VQA accuracy needs the annotators' answers
        chosen = "vqa_accuracy" if all(len(item.references) >= VQA_MIN_ANSWERS for item in items) else "anls"
        if chosen == "anls":
            logger.info("%s: some questions have fewer than %d answers; scoring with ANLS (pass the raw dataset, "
                        "e.g. lmms-lab/textvqa, for VQA accuracy).", name, VQA_MIN_ANSWERS)
    if chosen == "multiple_choice":
        missing = [item.id for item in items if not item.choices or item.answer is None]
        if missing:
            raise ValueError(
                f"task {name!r}: metric multiple_choice needs options and the right one, but {len(missing)} "
                f"question(s) lack them (first: {missing[0]!r}); give records `choices` + `answer` (index, letter "
                "or text), or end questions with 'A) ...' lines and answer with the letter; or choose another --metric."
            )
    suffix = spec.prompt_suffix if prompt_suffix is None else prompt_suffix
    if chosen == "multiple_choice" and prompt_suffix is None:
        suffix = LETTER_ANSWER
    return EvalTask(name=name, metric=chosen, source=source, split=split, prompt_suffix=suffix, items=items,
                    skipped=skipped, _keep=keep)


def load_tasks(tasks: str | Iterable[str], *, data: Mapping[str, str] | None = None,
               metric: str | Mapping[str, str] | None = None, split: str | None = None, limit: int | None = None,
               prompt_suffix: str | None = None) -> list[EvalTask]:
    """`load_task` for every task name (validated first)."""
    names = validate_eval_args(tasks, data=data, metric=metric, limit=limit)
    data = dict(data or {})
    return [load_task(name, data.get(name), metric=_metric_for(name, metric), split=split, limit=limit,
                      prompt_suffix=prompt_suffix) for name in names]


# ---------------------------------------------------------------------------------------------------------------
# Generation: batched, greedy, left-padded.
# ---------------------------------------------------------------------------------------------------------------


def _load_images(images: Sequence) -> list:
    from ..data import Record

    return Record(images=list(images)).load_images()


def prompt_messages(question: str, num_images: int, suffix: str = "") -> list[dict]:
    """The chat of one question: a user turn with the images first, then the text (as in calibration and training)."""
    content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": question + suffix}]
    return [{"role": "user", "content": content}]


def _strip_answer(text: str) -> str:
    if "</think>" in text:  # a thinking model's reasoning is not its answer
        text = text.rsplit("</think>", 1)[1]
    return text.strip()


def greedy_generation_config(model, max_new_tokens: int, pad_token_id: int | None = None):
    """The model's generation config with sampling switched off (greedy, one beam) and `max_new_tokens` set."""
    import copy

    config = copy.deepcopy(model.generation_config)
    config.do_sample, config.num_beams, config.max_new_tokens = False, 1, max_new_tokens
    config.temperature = config.top_p = config.top_k = None
    if config.pad_token_id is None:
        config.pad_token_id = pad_token_id if pad_token_id is not None else config.eos_token_id
    return config


def generate_answers(model, processor, prompts: Sequence[tuple[list[dict], Sequence]], *, batch_size: int = 8,
                     max_new_tokens: int = 16, progress: bool = True, desc: str = "generating",
                     generation_config=None) -> list[str]:
    """Greedy answers to chats, `batch_size` at a time, left-padded; only the new tokens are decoded.

    Args:
        model: a loaded Qwen3-VL (dense or pruned), in eval mode.
        processor: its processor.
        prompts: `(messages, images)` per question; images as paths, PIL images or `{"bytes": ...}`.
        batch_size: questions per `generate` call.
        max_new_tokens: answer length limit.
        progress: show a progress bar.
        desc: the progress bar's label.
        generation_config: use this `GenerationConfig` instead of greedy decoding with `max_new_tokens` (its
            `stop_strings`, if any, end each answer early; they stay in the returned text).
    """
    import torch
    from tqdm import tqdm

    device = next(model.parameters()).device
    config = generation_config or greedy_generation_config(model, max_new_tokens, processor.tokenizer.pad_token_id)
    extra = {"tokenizer": processor.tokenizer} if getattr(config, "stop_strings", None) else {}
    answers: list[str] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        batch = prompts[start:start + batch_size]
        texts = [processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                 for messages, _ in batch]
        images = [image for _, item_images in batch for image in _load_images(item_images)]
        inputs = processor(text=texts, images=images or None, padding=True, padding_side="left",
                           return_tensors="pt").to(device)
        with torch.inference_mode():
            output = model.generate(**inputs, generation_config=config, **extra)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        answers += [_strip_answer(text) for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]
    return answers


# ---------------------------------------------------------------------------------------------------------------
# Scoring (pure) and the stage.
# ---------------------------------------------------------------------------------------------------------------


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


def image_resolution(model_path: str, revision: str | None = None, *, min_pixels: int | None = None,
                     max_pixels: int | None = None, processor=None) -> dict[str, int]:
    """The image resolution bounds to evaluate at: the ones given, the rest from `model_path`'s processor (or from
    `processor`, when it is already loaded)."""
    if min_pixels is None or max_pixels is None:
        if processor is None:
            from ..processing import load_processor

            processor = load_processor(model_path, revision=revision)
        size = processor.image_processor.size or {}
        min_pixels = size.get("shortest_edge") if min_pixels is None else min_pixels
        max_pixels = size.get("longest_edge") if max_pixels is None else max_pixels
    if min_pixels is None or max_pixels is None or not 1 <= min_pixels <= max_pixels:
        raise ValueError(f"--min-pixels ({min_pixels}) must be >= 1 and <= --max-pixels ({max_pixels}).")
    return {"min_pixels": int(min_pixels), "max_pixels": int(max_pixels)}


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
