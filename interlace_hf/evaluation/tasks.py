"""What is asked: the known tasks (synthetic, ChartQA, TextVQA, ScienceQA) and any other with its data, each read into
`EvalItem`s (question, images, references, metric) from LLaVA-style records or a dataset in its native columns; and
the checks of `interlace-hf eval`'s arguments, made before any data or weight is read. No torch."""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..datasets.sources import DOMAINS
from ..hub import HUB_ID
from ..utils.runtime import DTYPES
from .metrics import METRICS, answer_index, parse_choices

logger = logging.getLogger(__name__)


SHORT_ANSWER = "\nAnswer the question using a single word or phrase."


LETTER_ANSWER = "\nAnswer with the option's letter from the given choices directly."


VQA_MIN_ANSWERS = 3


SYNTHETIC_DEFAULT_NUM = 200


LLAVA_MANIFESTS = ("synthetic.json", "train.json")


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


def metric_for(task: str, metric: str | Mapping[str, str] | None) -> str | None:
    if isinstance(metric, Mapping):
        return metric.get(task)
    return metric


def check_source(task: str, source: str) -> None:
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
        check_source(name, source)
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
    return [load_task(name, data.get(name), metric=metric_for(name, metric), split=split, limit=limit,
                      prompt_suffix=prompt_suffix) for name in names]


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


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
        check_source(name, source)
    return names
