"""VLMEvalKit's `run.py --config` JSON for a base Qwen3-VL and its pruned versions. Pure: no torch, no VLMEvalKit.

The format (VLMEvalKit's `run.py --help`; there are only these two top-level keys):

    {"model": {NAME: {"class": "Qwen3VLChat", "model_path": PATH_OR_REPO, ...constructor kwargs}},
     "data":  {NAME: {"class": "ImageVQADataset", "dataset": "ChartQA_TEST"}}}

`run.py` builds each model as `vlmeval.vlm.<class>(**kwargs)` and each dataset as `vlmeval.dataset.<class>(...)`;
model and dataset keys name the prediction and score files. `Qwen3VLChat` loads with
`AutoModelForImageTextToText.from_pretrained` and no remote code: a `standard`-format checkpoint loads as it is,
an `interlace`-format one only once `interlace_hf.register()` has registered its classes, which is what
`vlmevalkit_launch_command` does before running `run.py`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

MODEL_CLASS = "Qwen3VLChat"

# VLMEvalKit dataset names -> their dataset classes (vlmeval/dataset/__init__.py); lower-case aliases for the paper's
# domains and common benchmarks. Other datasets: pass "NAME=CLASS".
DATASET_CLASSES = {
    "ChartQA_TEST": "ImageVQADataset",
    "TextVQA_VAL": "ImageVQADataset",
    "DocVQA_VAL": "ImageVQADataset",
    "InfoVQA_VAL": "ImageVQADataset",
    "OCRVQA_TESTCORE": "ImageVQADataset",
    "ScienceQA_VAL": "ImageMCQDataset",
    "ScienceQA_TEST": "ImageMCQDataset",
    "MMBench_DEV_EN": "ImageMCQDataset",
    "MMBench_DEV_EN_V11": "ImageMCQDataset",
    "AI2D_TEST": "ImageMCQDataset",
    "MMStar": "ImageMCQDataset",
    "RealWorldQA": "ImageMCQDataset",
    "SEEDBench_IMG": "ImageMCQDataset",
    "MMMU_DEV_VAL": "MMMUDataset",
    "MME": "ImageYORNDataset",
    "POPE": "ImageYORNDataset",
    "HallusionBench": "ImageYORNDataset",
    "OCRBench": "OCRBench",
    "MathVista_MINI": "MathVista",
}
DATASET_ALIASES = {
    "chartqa": "ChartQA_TEST",
    "textvqa": "TextVQA_VAL",
    "docvqa": "DocVQA_VAL",
    "infovqa": "InfoVQA_VAL",
    "scienceqa": "ScienceQA_TEST",
    "mmbench": "MMBench_DEV_EN_V11",
    "ai2d": "AI2D_TEST",
    "mmstar": "MMStar",
    "realworldqa": "RealWorldQA",
    "seedbench": "SEEDBench_IMG",
    "mmmu": "MMMU_DEV_VAL",
    "mme": "MME",
    "pope": "POPE",
    "hallusionbench": "HallusionBench",
    "ocrbench": "OCRBench",
    "mathvista": "MathVista_MINI",
}
_NAME = re.compile(r"[A-Za-z0-9][\w.+-]*")


def _dataset_entry(spec: str) -> tuple[str, dict]:
    name, sep, cls = str(spec).partition("=")
    name, cls = name.strip(), cls.strip()
    if sep:
        if not _NAME.fullmatch(name) or not _NAME.fullmatch(cls):
            raise ValueError(f"dataset {spec!r}: expected NAME=CLASS with a VLMEvalKit dataset name and class, e.g. "
                             "MMBench_DEV_CN_V11=ImageMCQDataset.")
        return name, {"class": cls, "dataset": name}
    name = DATASET_ALIASES.get(name.lower(), name)
    if name not in DATASET_CLASSES:
        raise ValueError(
            f"dataset {spec!r}: unknown to interlace-hf; use one of {', '.join(DATASET_ALIASES)} or "
            f"{', '.join(DATASET_CLASSES)}, or name its VLMEvalKit class as NAME=CLASS (e.g. "
            "MMBench_DEV_CN_V11=ImageMCQDataset; see vlmeval/dataset/__init__.py)."
        )
    return name, {"class": DATASET_CLASSES[name], "dataset": name}


def _checkpoint_format(model_path: str) -> str | None:
    """`interlace` / `standard` for a local interlace-hf checkpoint, `dense` for another local one, None remote."""
    config_file = Path(model_path).expanduser() / "config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    block = config.get("interlace")
    if block is None:
        return "dense"
    return block.get("format") or ("interlace" if str(config.get("model_type", "")).startswith("interlace") else
                                   "standard")


def vlmevalkit_config(models: Mapping[str, str], datasets: Sequence[str] | Mapping[str, Mapping], *,
                      max_new_tokens: int | None = None, temperature: float = 0.0, **model_kwargs) -> dict:
    """VLMEvalKit's `--config` dict: one `Qwen3VLChat` per model, one entry per dataset.

    Args:
        models: name -> local checkpoint directory or Hub id (e.g. {"qwen3-vl-8b": "Qwen/Qwen3-VL-8B-Instruct",
            "interlace-25pc": "outputs/interlace-25pc"}); names become VLMEvalKit's result folder names.
        datasets: VLMEvalKit dataset names ("ChartQA_TEST"), aliases ("chartqa"), "NAME=CLASS" for others, or a
            ready dict NAME -> {"class": ..., "dataset": ...}.
        max_new_tokens: `Qwen3VLChat`'s answer length limit (its default when None).
        temperature: 0.0 (the default here) is greedy decoding, as in `interlace-hf eval`, so base and pruned
            models are compared without sampling noise; `Qwen3VLChat`'s own default samples at 0.01.
        **model_kwargs: more `Qwen3VLChat` arguments (min_pixels, max_pixels, system_prompt, use_vllm, ...).

    Returns:
        `{"model": {...}, "data": {...}}`, ready for `json.dump`.
    """
    if not models:
        raise ValueError("no models: pass name -> path / Hub id, e.g. {'base': 'Qwen/Qwen3-VL-8B-Instruct'}.")
    if not datasets:
        raise ValueError(f"no datasets: pass VLMEvalKit dataset names or aliases ({', '.join(DATASET_ALIASES)}).")
    if max_new_tokens is not None and (isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int)
                                       or max_new_tokens < 1):
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}.")
    if model_kwargs.get("use_vllm"):
        interlace = [name for name, path in models.items() if _checkpoint_format(str(path)) == "interlace"]
        if interlace:
            raise ValueError(
                f"use_vllm=True with interlace-format checkpoint(s) {interlace}: vLLM would run them through its "
                "generic Transformers backend, which adds no deepstack features (silently wrong answers). Export them "
                "with `--format standard` where that is exact, or evaluate without vLLM.")
    model_entries = {}
    for name, path in models.items():
        if not _NAME.fullmatch(str(name)):
            raise ValueError(f"model name {name!r}: use letters, digits, '_', '-', '.', '+' (it names result folders).")
        if not str(path).strip():
            raise ValueError(f"model {name!r} has no path; pass a checkpoint directory or a Hub id.")
        local = Path(str(path)).expanduser()
        entry = {"class": MODEL_CLASS, "model_path": str(local.resolve()) if local.exists() else str(path),
                 "temperature": temperature}
        if max_new_tokens is not None:
            entry["max_new_tokens"] = max_new_tokens
        entry.update(model_kwargs)
        model_entries[str(name)] = entry
    if isinstance(datasets, Mapping):
        data_entries = {}
        for name, entry in datasets.items():
            if not isinstance(entry, Mapping) or "class" not in entry:
                raise ValueError(f"dataset {name!r}: a dict entry needs a 'class' (and usually 'dataset') key.")
            data_entries[str(name)] = dict(entry)
    else:
        data_entries = dict(_dataset_entry(spec) for spec in datasets)
    return {"model": model_entries, "data": data_entries}


def needs_interlace_import(config: Mapping) -> list[str]:
    """The config's models that are local `interlace`-format checkpoints: VLMEvalKit loads them only after
    `interlace_hf.register()` (Hub ids cannot be checked offline; a `standard` export needs nothing)."""
    return [name for name, entry in config.get("model", {}).items()
            if _checkpoint_format(entry.get("model_path", "")) == "interlace"]


def vlmevalkit_launch_command(config_path: str | os.PathLike, *, run_py: str = "run.py",
                              work_dir: str | None = None, import_interlace: bool = True) -> str:
    """The shell command that runs VLMEvalKit on a config (from the VLMEvalKit checkout).

    With `import_interlace` it runs `run.py` after `interlace_hf.register()`, which registers the Interlace classes with
    transformers' Auto classes so `Qwen3VLChat` loads `interlace`-format checkpoints with no remote code."""
    args = ["--config", str(config_path)] + (["--work-dir", str(work_dir)] if work_dir else [])
    if not import_interlace:
        return shlex.join(["python", run_py, *args])
    code = (f"import sys, runpy, interlace_hf; interlace_hf.register(); sys.argv = {[run_py, *args]!r}; "
            f"runpy.run_path({run_py!r}, run_name='__main__')")
    return shlex.join(["python", "-c", code])


def write_vlmevalkit_config(path: str | os.PathLike, models: Mapping[str, str],
                            datasets: Sequence[str] | Mapping[str, Mapping], *, overwrite: bool = False,
                            **kwargs) -> Path:
    """Write `vlmevalkit_config(models, datasets, **kwargs)` to `path` (a .json file); returns the path.

    Logs the command that runs it, and warns when a model is an `interlace`-format checkpoint (see
    `vlmevalkit_launch_command`)."""
    path = Path(path).expanduser()
    if path.suffix != ".json":
        raise ValueError(f"--output {str(path)!r}: VLMEvalKit reads a .json config; pass a path ending in .json.")
    if path.exists() and not overwrite:
        raise ValueError(f"--output {str(path)!r} already exists; choose another path or pass --overwrite.")
    config = vlmevalkit_config(models, datasets, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    interlace = needs_interlace_import(config)
    if interlace:
        logger.warning("%s: interlace-format checkpoint(s) %s load in VLMEvalKit only after `interlace_hf.register()`; "
                       "run: %s", path, interlace, vlmevalkit_launch_command(path))
    else:
        logger.info("run from a VLMEvalKit checkout: %s", vlmevalkit_launch_command(path))
    return path
