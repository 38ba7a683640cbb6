"""The lmms-eval model `interlace`: evaluate a dense or pruned Qwen3-VL (either checkpoint format) with lmms-eval.

    pip install lmms-eval          # not a dependency of interlace-hf
    lmms-eval --model interlace --model_args pretrained=ORG/REPO,dtype=bfloat16,batch_size=8 \\
        --tasks chartqa,textvqa_val,scienceqa_img --output_path results/

lmms-eval (>= 0.6) finds the model through the `lmms_eval.models` entry point that interlace-hf declares:
`interlace = interlace_hf.integrations.lmms_eval_plugin:lmms_eval_manifest`, a callable returning the
`ModelManifest` that points lmms-eval at `Interlace` below. This module imports without lmms-eval; `Interlace` (a
subclass of lmms-eval's `lmms`) is built on first access, and without lmms-eval that access raises an ImportError
that says `pip install lmms-eval`.

What lmms-eval hands a "simple" model (checked against lmms-eval 0.7.3, `api/task.py`), as `request.args`:
- `generate_until`: `(context, gen_kwargs, doc_to_visual, doc_id, task, split)`; the images are
  `doc_to_visual(self.task_dict[task][split][doc_id])`.
- `loglikelihood`: `(context, continuation_or_doc_to_target, doc_to_visual, doc_id, task, split)`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

MODEL_ID = "interlace"
CLASS_PATH = f"{__name__}.Interlace"
INSTALL_HINT = "pip install lmms-eval"
ENTRY_POINT = f"{MODEL_ID} = {__name__}:lmms_eval_manifest"  # group: lmms_eval.models
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def _missing_lmms_eval(what: str, err: ImportError) -> ImportError:
    return ImportError(f"{what} needs lmms-eval, which could not be imported ({err}); install it with "
                       f"`{INSTALL_HINT}` (>= 0.6). interlace-hf does not depend on it.")


def lmms_eval_manifest():
    """The `lmms_eval.models` entry point: lmms-eval's `ModelManifest` for the model id `interlace`."""
    try:
        from lmms_eval.models.registry_v2 import ModelManifest
    except ImportError as err:
        raise _missing_lmms_eval("the `interlace` lmms-eval model", err) from err
    return ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)


def _parse_arg_string(arg_string: str) -> dict:
    """`k=v,k2=v2` as lmms-eval parses `--model_args`: booleans, integers and floats converted, the rest strings."""
    out = {}
    for item in (arg_string or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"--model_args item {item!r} is not key=value.")
        key, value = (part.strip() for part in item.split("=", 1))
        if value.lower() in ("true", "false"):
            out[key] = value.lower() == "true"
            continue
        for convert in (int, float):
            try:
                out[key] = convert(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def _cut_at_stop(text: str, until: list[str]) -> str:
    for stop in until:
        if stop:
            text = text.split(stop, 1)[0]
    return text


class InterlaceLMM:
    """The model behind lmms-eval's `--model interlace`, without lmms-eval's base class (it is mixed in by
    `Interlace`). `--model_args` become these keyword arguments.

    Args:
        pretrained: a local checkpoint directory or Hub id: a dense Qwen3-VL or an interlace-hf checkpoint of either
            format (loaded with `interlace_hf.load_model`, so the exact `interlace` format needs no remote code).
        revision: Hub revision.
        device: `auto`, `cpu`, `cuda`, `cuda:N`, `mps` (one process; lmms-eval's data parallelism is not supported).
        dtype: `auto`, `float32`, `bfloat16` or `float16`.
        batch_size: requests per `generate` call (an integer; lmms-eval's `auto` is not supported).
        max_new_tokens: used when a task's `generation_kwargs` has none.
        system_prompt: an optional system turn before every question.
    """

    is_simple = True

    def __init__(self, pretrained: str, revision: str | None = None, device: str | None = "auto",
                 dtype: str = "auto", batch_size: int | str = 1, max_new_tokens: int = 128,
                 system_prompt: str | None = None, max_batch_size: int | None = None,
                 min_pixels: int | None = None, max_pixels: int | None = None, **kwargs) -> None:
        super().__init__()
        if kwargs:
            raise ValueError(f"--model_args {sorted(kwargs)} are not arguments of the `interlace` model; it takes "
                             "pretrained, revision, device, dtype, batch_size, max_new_tokens, system_prompt, "
                             "min_pixels, max_pixels.")
        try:
            batch_size = int(batch_size)
        except (TypeError, ValueError):
            raise ValueError(f"batch_size must be an integer for the `interlace` model, got {batch_size!r}.") from None
        from ..evaluation.tasks import validate_eval_args
        from ..checkpoint import load_model
        from ..processing import load_processor
        from ..utils.runtime import resolve_device, resolve_dtype

        # the checks of `interlace-hf eval` (batch size, token limit, dtype, device), before any weight is read
        validate_eval_args("synthetic", batch_size=batch_size, max_new_tokens=int(max_new_tokens), dtype=dtype,
                           device=device or "auto")
        resolved = resolve_device(device or "auto")
        self._model = load_model(str(pretrained), revision=revision, dtype=resolve_dtype(dtype, resolved),
                                 device_map=resolved if resolved != "cpu" else None).eval()
        self.processor = load_processor(str(pretrained), revision=revision)
        if min_pixels is not None or max_pixels is not None:
            from ..evaluation.generation import image_resolution

            bounds = image_resolution(str(pretrained), revision, min_pixels=None if min_pixels is None else
                                      int(min_pixels), max_pixels=None if max_pixels is None else int(max_pixels),
                                      processor=self.processor)
            self.processor.image_processor.size = {"shortest_edge": bounds["min_pixels"],
                                                   "longest_edge": bounds["max_pixels"]}
        self._device = resolved
        self.batch_size_per_gpu = batch_size
        self.max_new_tokens = int(max_new_tokens)
        self.system_prompt = system_prompt
        for name, default in (("task_dict", {}), ("_rank", 0), ("_world_size", 1)):
            if not hasattr(self, name):  # set by lmms.__init__ when lmms-eval's base class is mixed in
                setattr(self, name, default)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        """lmms-eval's constructor: `--model_args k=v,...` plus the CLI's own settings (`batch_size`, `device`, ...).

        lmms-eval always passes its `--batch_size` (default 1) in `additional_config`; its base implementation then
        fails with "multiple values for keyword argument 'batch_size'" when `--model_args` sets it too. Here the
        model args win over the CLI's defaults.
        """
        model_args = _parse_arg_string(arg_string)
        merged = {k: v for k, v in (additional_config or {}).items() if v is not None}
        merged.update(model_args)
        return cls(**merged)

    # --- what lmms-eval reads -----------------------------------------------------------------------------------

    @property
    def model(self):
        return self._model

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def eot_token_id(self):
        return self.tokenizer.eos_token_id

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self) -> str:
        return self._device

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    def _cache(self, kind: str, key, value) -> None:
        hook = getattr(self, "cache_hook", None)
        if hook is not None:
            hook.add_partial(kind, key, value)

    # --- requests ------------------------------------------------------------------------------------------------

    def _visuals(self, doc_to_visual, doc_id, task, split) -> list:
        if doc_to_visual is None:
            return []
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) or []
        if not isinstance(visuals, (list, tuple)):
            visuals = [visuals]
        images = []
        for visual in visuals:
            if visual is None:
                continue
            if hasattr(visual, "convert"):  # a PIL image
                images.append(visual)
            elif isinstance(visual, (str, Path)) and str(visual).lower().endswith(_IMAGE_SUFFIXES):
                images.append(str(visual))
            else:
                raise ValueError(f"task {task!r} gives the model a {type(visual).__name__} ({str(visual)[:80]!r}); "
                                 "the `interlace` model takes images only (no video or audio tasks).")
        return images

    def _messages(self, context: str, num_images: int) -> list[dict]:
        from ..data import strip_image_placeholders
        from ..evaluation.generation import prompt_messages

        messages = prompt_messages(strip_image_placeholders(str(context)), num_images)
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        return messages

    def _generation_config(self, gen_kwargs: dict):
        from ..evaluation.generation import greedy_generation_config

        gen_kwargs = dict(gen_kwargs or {})
        until = gen_kwargs.get("until") or []
        if isinstance(until, str):
            until = [until]
        if not isinstance(until, (list, tuple)):
            raise ValueError(f"gen_kwargs['until'] must be a string or a list of strings, got {type(until).__name__}.")
        config = greedy_generation_config(self.model, int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens),
                                          self.tokenizer.pad_token_id)
        temperature = gen_kwargs.get("temperature") or 0
        if gen_kwargs.get("do_sample", temperature > 0) and temperature > 0:
            config.do_sample, config.temperature = True, float(temperature)
            for key in ("top_p", "top_k"):
                if gen_kwargs.get(key) is not None:
                    setattr(config, key, gen_kwargs[key])
        if gen_kwargs.get("num_beams"):
            config.num_beams = int(gen_kwargs["num_beams"])
        stops = [stop for stop in until if stop]
        config.stop_strings = stops or None
        return config, stops

    def generate_until(self, requests) -> list[str]:
        """Answers to `generate_until` requests, batched among requests with the same `gen_kwargs`, in order."""
        from tqdm import tqdm

        from ..evaluation.generation import generate_answers

        args = [request.args for request in requests]
        groups: dict[str, list[int]] = {}
        for index, arguments in enumerate(args):
            groups.setdefault(json.dumps(arguments[1], sort_keys=True, default=str), []).append(index)
        results: list[str | None] = [None] * len(args)
        bar = tqdm(total=len(args), desc="Model Responding", disable=self.rank != 0)
        for indices in groups.values():
            config, stops = self._generation_config(args[indices[0]][1])
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start:start + self.batch_size]
                prompts = []
                for index in batch:
                    context, _, doc_to_visual, doc_id, task, split = args[index]
                    images = self._visuals(doc_to_visual, doc_id, task, split)
                    prompts.append((self._messages(context, len(images)), images))
                answers = generate_answers(self.model, self.processor, prompts, batch_size=len(prompts),
                                           generation_config=config, progress=False)
                for index, answer in zip(batch, answers):
                    answer = _cut_at_stop(answer, stops).strip()
                    results[index] = answer
                    self._cache("generate_until", (args[index][0], args[index][1]), answer)
                    bar.update(1)
        bar.close()
        return results

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        """`(sum of the continuation's token log-probabilities, whether greedy decoding would produce it)`."""
        import torch

        results = []
        for arguments in [request.args for request in requests]:
            if len(arguments) == 2:
                # The unconditional half of `acc_mutual_info` tasks: ("", choice), no document, no image.
                (context, continuation), doc_to_visual, doc_id, task, split = arguments, None, None, None, None
            else:
                context, continuation, doc_to_visual, doc_id, task, split = arguments
            if callable(continuation):
                continuation = continuation(self.task_dict[task][split][doc_id])
            if isinstance(continuation, (list, tuple)):
                continuation = continuation[0]
            continuation = str(continuation)
            images = self._visuals(doc_to_visual, doc_id, task, split)
            prompt = self.processor.apply_chat_template(self._messages(context, len(images)), tokenize=False,
                                                        add_generation_prompt=True)
            inputs = dict(self.processor(text=[prompt], images=images or None, return_tensors="pt"))
            target = self.tokenizer(continuation, add_special_tokens=False, return_tensors="pt")["input_ids"]
            if target.shape[1] == 0:
                results.append((0.0, True))
                continue
            length = inputs["input_ids"].shape[1]
            for key, value in list(inputs.items()):  # token-aligned tensors grow by the continuation (text tokens)
                if torch.is_tensor(value) and value.dim() == 2 and value.shape == (1, length):
                    if key == "input_ids":
                        fill = target
                    elif key == "attention_mask":
                        fill = torch.ones_like(target)
                    else:  # mm_token_type_ids and the like: 0 = text
                        fill = torch.zeros_like(target)
                    inputs[key] = torch.cat([value, fill.to(value.dtype)], dim=1)
            inputs = {k: v.to(self.model.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
            with torch.inference_mode():
                logits = self.model(**inputs).logits[0, length - 1:-1].float()
            log_probs = torch.log_softmax(logits, dim=-1)
            target = target[0].to(log_probs.device)
            result = (float(log_probs.gather(1, target[:, None]).sum()), bool((log_probs.argmax(-1) == target).all()))
            results.append(result)
            self._cache("loglikelihood", (context, continuation), result)
        return results

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("the `interlace` lmms-eval model does not run multi-round tasks; choose "
                                  "single-turn generation or loglikelihood tasks.")


_INTERLACE_CLASS = None


def _interlace_class():
    global _INTERLACE_CLASS
    if _INTERLACE_CLASS is None:
        try:
            from lmms_eval.api.model import lmms
        except ImportError as err:
            raise _missing_lmms_eval(CLASS_PATH, err) from err
        _INTERLACE_CLASS = type("Interlace", (InterlaceLMM, lmms),
                                {"__module__": __name__, "__qualname__": "Interlace", "__doc__": InterlaceLMM.__doc__})
    return _INTERLACE_CLASS


def __getattr__(name: str):
    # `Interlace` subclasses lmms-eval's `lmms`, so it can only exist once lmms-eval is importable.
    if name == "Interlace":
        return _interlace_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
