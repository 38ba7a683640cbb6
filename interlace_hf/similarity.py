"""Step 1: local redundancy of decoder-layer blocks, in one streaming pass over the calibration data.

For every sample and every block of k consecutive decoder layers starting at layer i, the cosine similarity between
the hidden state ENTERING layer i and the one LEAVING layer i+k-1, per token, averaged over the sample's tokens
(vision, text and template tokens alike; padding excluded). Higher means more redundant.

- "Entering layer j" is exactly what layer j receives (a forward pre-hook), deepstack additions included; the
  state leaving the last layer is taken before the final norm, so every block is scored, the last ones included.
- One forward pass per batch serves every pack size: the recorder keeps only the last `max(k) + 1` states and
  scores blocks as the states stream by. The language-model head is not run (it is not needed).
- Partial results are flushed regularly; an interrupted run resumes where it stopped and ends with the same files.

Output files (the paper's names and format, so files move between the two tools):
`{model_name}_{dataset_name}_pack{k}_hidden_state_similarities.json` = `{"<i>": [one float per sample]}`, plus
`similarity_summary.json` (per-block means, sample count, model, data, seed, versions).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import Record, check_images, image_sizes, load_records, sample_indices
from .version import package_versions
from .utils.runtime import resolve_device, resolve_dtype
from .utils.fileio import write_json_atomic
from .tables import SUMMARY_FILE, similarity_file_name

logger = logging.getLogger(__name__)

PROGRESS_FILE = "similarity_progress.json"  # the run's settings, written once when it starts
BATCHES_FILE = "similarity_progress.jsonl"  # one line per scored batch, appended: a flush costs what is new only


class BlockSimilarityRecorder:
    """Forward hooks on the decoder layers that score every k-block of every sample as the pass goes.

    State `s_j` is the input of layer j (j < L) and `s_L` the output of the last layer. Block (i, k) compares
    `s_i` with `s_{i+k}`. Only the states still needed (the last `max(k) + 1`) are kept.
    """

    def __init__(self, layers, pack_sizes):
        self.layers = list(layers)
        self.pack_sizes = sorted(set(pack_sizes))
        num_layers = len(self.layers)
        too_big = [k for k in self.pack_sizes if not 1 <= k <= num_layers]
        if too_big:
            raise ValueError(f"--pack-sizes {too_big} do not fit a {num_layers}-layer model; use 1..{num_layers}.")
        self.num_layers = num_layers
        self.token_mask: torch.Tensor | None = None
        self._states: dict[int, torch.Tensor] = {}  # unit-normalised states still needed
        self._weights: dict[torch.device, torch.Tensor] = {}  # per device: the token weights of a masked mean
        # scores[k][i]: per-sample tensors of the current batch
        self.batch_scores: dict[int, dict[int, torch.Tensor]] = {}
        self._handles = []

    def __enter__(self):
        for j, layer in enumerate(self.layers):
            self._handles.append(layer.register_forward_pre_hook(self._pre_hook(j), with_kwargs=True))
        self._handles.append(self.layers[-1].register_forward_hook(self._last_output_hook, with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._states.clear()

    def start_batch(self, attention_mask: torch.Tensor) -> None:
        self.token_mask = attention_mask.bool()
        self._weights = {}
        self._states.clear()
        self.batch_scores = {k: {} for k in self.pack_sizes}

    def _pre_hook(self, j):
        def hook(module, args, kwargs):
            self._on_state(j, args[0] if args else kwargs["hidden_states"])

        return hook

    def _last_output_hook(self, module, args, kwargs, output):
        self._on_state(self.num_layers, output[0] if isinstance(output, tuple) else output)

    def batch_results(self) -> dict[int, dict[int, list[float]]]:
        """The current batch's per-sample scores, moved to the CPU in one transfer."""
        keys = [(k, i) for k in self.pack_sizes for i in sorted(self.batch_scores[k])]
        if not keys:
            return {k: {} for k in self.pack_sizes}
        device = self.batch_scores[keys[0][0]][keys[0][1]].device
        stacked = torch.stack([self.batch_scores[k][i].to(device) for k, i in keys]).double().cpu().tolist()
        out: dict[int, dict[int, list[float]]] = {k: {} for k in self.pack_sizes}
        for (k, i), values in zip(keys, stacked):
            out[k][i] = values
        return out

    def _on_state(self, j: int, hidden: torch.Tensor) -> None:
        # Each state is normalised once and reused by every block it closes or opens (up to 2 * len(packs) pairs);
        # a block's score is then sum over tokens t of weight[t] * <unit_a[t], unit_b[t]> (per-token dot products,
        # then the masked mean).
        # With `device_map` across GPUs, consecutive layers may sit on different devices: each block is scored on
        # the device of the state that closes it (the opening state moves there, once per block).
        state = hidden.float()
        unit = state / torch.linalg.vector_norm(state, dim=-1, keepdim=True).clamp_min(1e-8)
        weights = self._weights.get(unit.device)
        if weights is None:
            mask = self.token_mask.to(unit.device, unit.dtype)
            weights = self._weights[unit.device] = mask / mask.sum(dim=1, keepdim=True)  # masked mean per sample
        for k in self.pack_sizes:
            start = self._states.get(j - k)
            if start is not None:
                start = start.to(unit.device, non_blocking=True)
                self.batch_scores[k][j - k] = (torch.linalg.vecdot(start, unit) * weights).sum(dim=1)
        self._states[j] = unit
        self._states.pop(j - self.pack_sizes[-1] - 1, None)
        if j == self.num_layers:
            self._states.clear()


@dataclass(frozen=True)
class SimilarityResult:
    """Per-sample similarities: `scores[k][i]` lists one float per sample for the block of k layers at i."""

    scores: dict[int, dict[int, list[float]]]
    num_layers: int
    num_samples: int
    files: dict[int, Path] | None = None

    def means(self) -> dict[int, list[float]]:
        return {k: [sum(v) / len(v) for _, v in sorted(blocks.items())] for k, blocks in self.scores.items()}


def build_batch(processor, records: list[Record]):
    """Tokenize the calibration prompts of a batch (first user turn, images first, generation prompt)."""
    texts, images = [], []
    for record in records:
        texts.append(processor.apply_chat_template(record.prompt_messages(), tokenize=False, add_generation_prompt=True))
        images.extend(record.load_images())
    return processor(text=texts, images=images or None, padding=True, return_tensors="pt")


def _fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def load_progress(out: str | os.PathLike) -> dict | None:
    """A partial run in `out`: `{"fingerprint", "settings", "done", "scored", "scores"}`, or None when there is none.

    `scores[k][i]` has one entry per sample, in sample order, None where the sample is not scored yet; `scored` lists
    the samples that are, in the order they were scored. The batches log is read up to its last complete line; a line
    cut off by a crash is dropped (and cut from the file), so its batch is scored again.
    """
    out = Path(out)
    if not (out / PROGRESS_FILE).is_file():
        return None
    header = json.loads((out / PROGRESS_FILE).read_text())
    settings = header["settings"]
    count, num_layers = settings["num_samples"], settings["num_layers"]
    scores = {k: {i: [None] * count for i in range(num_layers - k + 1)} for k in settings["pack_sizes"]}
    scored, good_bytes = [], 0
    path = out / BATCHES_FILE
    if path.is_file():
        with open(path, "rb") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except ValueError:
                    break
                if not line.endswith(b"\n"):
                    break
                # logs written before length bucketing scored the samples in order and did not list them
                positions = entry.get("positions") or list(range(len(scored), entry["done"]))
                for k, blocks in entry["scores"].items():
                    for i, values in blocks.items():
                        column = scores[int(k)][int(i)]
                        for position, value in zip(positions, values):
                            column[position] = value
                scored += positions
                good_bytes += len(line)
        if good_bytes < path.stat().st_size:
            with open(path, "r+b") as handle:
                handle.truncate(good_bytes)
    return {"fingerprint": header.get("fingerprint"), "settings": settings, "done": len(scored), "scored": scored,
            "scores": scores}


def record_lengths(processor, records: list[Record]) -> list[int]:
    """Tokens each calibration prompt becomes (chat template + image tokens at the processor's resolution), from the
    text and the images' sizes: no pixel is processed."""
    from .processing import prompt_lengths

    texts = [processor.apply_chat_template(r.prompt_messages(), tokenize=False, add_generation_prompt=True)
             for r in records]
    # headers only: image files were checked whole by `check_images`; an embedded image that cannot be read is named
    sizes = [image_sizes(record.images, verify=False) for record in records]
    return prompt_lengths(processor, texts, sizes)


def bucketed_order(lengths: list[int]) -> list[int]:
    """Samples longest first (ties in sample order): consecutive batches then hold samples of similar length, and the
    largest batch comes first, so a batch size that does not fit fails at once, not hours in (pure)."""
    return sorted(range(len(lengths)), key=lambda position: -lengths[position])


def padding_fraction(lengths: list[int], order: list[int], batch_size: int) -> float:
    """The share of the tokens in padded batches that is padding, batching `order` `batch_size` at a time (pure)."""
    real = padded = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[p] for p in order[start:start + batch_size]]
        real += sum(batch)
        padded += max(batch) * len(batch)
    return 1 - real / padded if padded else 0.0


def compute_similarities(
    model,
    processor,
    records: list[Record],
    *,
    pack_sizes=(1, 2, 3),
    batch_size: int = 1,
    output_dir: str | os.PathLike | None = None,
    model_name: str = "model",
    dataset_name: str = "data",
    settings: dict | None = None,
    flush_seconds: float = 30.0,
    progress: bool = True,
    on_batch_end=None,
    finalize: bool = True,
    lengths: list[int] | None = None,
) -> SimilarityResult:
    """Score every k-block of `model` on `records` in one pass per batch.

    Args:
        model: a loaded Qwen3-VL (dense or pruned).
        processor: its processor.
        records: the calibration samples, in order.
        pack_sizes: block sizes k to score.
        batch_size: samples per forward pass (padding is excluded from the averages).
        output_dir: where the files go; with it, each batch's scores are appended to a log there (flushed to disk
            every `flush_seconds`; the cost of a flush does not grow with the run) and a rerun resumes.
        model_name, dataset_name: used in the output file names.
        settings: what defines the run (model, data, seed, ...); a resume with other settings is refused.
        flush_seconds: how often partial results are flushed.
        progress: show a progress bar.
        on_batch_end: called with the number of samples done after each batch (and its flush).
        finalize: write the paper-format files and drop the progress log (a data-parallel rank leaves its log for
            rank 0 to merge instead).
        lengths: each record's length in tokens (`record_lengths`); with it, batches hold records of similar length
            (longest first). Each record's scores are the same either way; only the padding changes.
    """
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}.")
    recorder = BlockSimilarityRecorder(model.model.language_model.layers, pack_sizes)
    num_layers = recorder.num_layers
    settings = dict(settings or {}, pack_sizes=recorder.pack_sizes, num_samples=len(records), num_layers=num_layers,
                    length_bucketing=lengths is not None)
    out = Path(output_dir) if output_dir is not None else None
    log = ProgressLog(out, flush_seconds)
    empty = {k: {i: [None] * len(records) for i in range(num_layers - k + 1)} for k in recorder.pack_sizes}
    scored, scores = log.start(settings, empty, len(records))
    order = list(range(len(records)))
    if lengths is not None:
        if len(lengths) != len(records):
            raise ValueError(f"`lengths` has {len(lengths)} entries for {len(records)} records.")
        order = bucketed_order(lengths)
        logger.info("padding: %.1f%% of the batched tokens with length bucketing, %.1f%% in sample order",
                    100 * padding_fraction(lengths, order, batch_size),
                    100 * padding_fraction(lengths, list(range(len(records))), batch_size))
    done_already = set(scored)
    remaining = [position for position in order if position not in done_already]
    done = len(records) - len(remaining)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(records), initial=done, unit="sample", desc="similarity", disable=not progress)
    model_was_training = model.training
    model.eval()
    try:
        with recorder, torch.inference_mode():
            for positions, batch_scores in _score_batches(model, processor, recorder, records, remaining, batch_size):
                for k, blocks in batch_scores.items():
                    for i, values in blocks.items():
                        column = scores[k][i]
                        for position, value in zip(positions, values):
                            column[position] = value
                done += len(positions)
                log.append(batch_scores, done, positions)
                bar.update(len(positions))
                if on_batch_end is not None:
                    on_batch_end(done)
    except BaseException:
        log.flush()  # keep what was computed: a rerun resumes from here
        raise
    finally:
        bar.close()
        model.train(model_was_training)
        log.close()

    result = SimilarityResult(scores=scores, num_layers=num_layers, num_samples=len(records))
    if out is None or not finalize:
        return result
    return write_similarity_files(out, result, settings, model_name=model_name, dataset_name=dataset_name)


def _score_batches(model, processor, recorder: BlockSimilarityRecorder, records: list[Record], order: list[int],
                   batch_size: int):
    """Yield `(positions, {k: {block start: [similarity per sample]}})` for the records at `order`, `batch_size` at a
    time, one forward pass each."""
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        positions = order[start:start + batch_size]
        inputs = build_batch(processor, [records[p] for p in positions]).to(device)
        recorder.start_batch(inputs["attention_mask"])
        # The base model (no LM head): every state the similarity needs, none of the vocabulary projection.
        model.model(**inputs, use_cache=False)
        yield positions, recorder.batch_results()


class ProgressLog:
    """A run's progress in its output directory, append-only: a header (`PROGRESS_FILE`: the settings' fingerprint)
    and one JSON line per scored batch (`BATCHES_FILE`), flushed to disk every `flush_seconds` and on an error. A
    rerun with the same settings resumes from it; a flush costs the same however long the run has been going. With
    no directory, it keeps nothing."""

    def __init__(self, out: Path | None, flush_seconds: float = 30.0):
        self.out, self.flush_seconds = out, flush_seconds
        self.handle = None
        self.last_flush = time.monotonic()

    def start(self, settings: dict, empty_scores: dict, total: int) -> tuple[list[int], dict]:
        """`(samples scored, scores so far)`: an earlier run's with the same settings, else `([], empty_scores)` and a
        new header. An earlier run with other settings is refused."""
        if self.out is None:
            return [], empty_scores
        self.out.mkdir(parents=True, exist_ok=True)
        fingerprint = _fingerprint(settings)
        saved = load_progress(self.out)
        scored, scores = [], empty_scores
        if saved is not None:
            if saved["fingerprint"] != fingerprint:
                raise ValueError(
                    f"{self.out} holds a partial similarity run with other settings ({saved['settings']}); "
                    "pass --overwrite to start over, or choose another --output-dir."
                )
            scored, scores = saved["scored"], saved["scores"]
            logger.info("resuming: %d of %d samples already scored", len(scored), total)
        else:
            (self.out / BATCHES_FILE).unlink(missing_ok=True)
            write_json_atomic(self.out / PROGRESS_FILE, {"fingerprint": fingerprint, "settings": settings}, indent=1)
        self.handle = open(self.out / BATCHES_FILE, "a")
        self.last_flush = time.monotonic()
        return scored, scores

    def append(self, batch_scores: dict, done: int, positions: list[int]) -> None:
        if self.handle is None:
            return
        self.handle.write(json.dumps({"done": done, "positions": positions, "scores": batch_scores}) + "\n")
        if time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.handle is not None:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.last_flush = time.monotonic()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def write_similarity_files(out: Path, result: SimilarityResult, settings: dict, *, model_name: str,
                           dataset_name: str) -> SimilarityResult:
    """The paper-format files (one per pack size) and the summary, then the progress log goes. The summary's settings
    also record what the result says of itself (pack sizes, samples, layers)."""
    settings = dict(settings, pack_sizes=sorted(result.scores), num_samples=result.num_samples,
                    num_layers=result.num_layers)
    files = {}
    for k in sorted(result.scores):
        path = out / similarity_file_name(model_name, dataset_name, k)
        write_json_atomic(path, {str(i): v for i, v in result.scores[k].items()}, indent=1)
        files[k] = path
    summary = {
        "model": settings.get("model", model_name),
        "data": settings.get("data", dataset_name),
        "num_layers": result.num_layers,
        "pack_sizes": sorted(result.scores),
        "num_samples": result.num_samples,
        "means": {str(k): v for k, v in result.means().items()},
        "files": {str(k): p.name for k, p in files.items()},
        "settings": settings,
        "versions": package_versions("torch", "transformers"),
    }
    write_json_atomic(out / SUMMARY_FILE, summary, indent=1)
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    (out / BATCHES_FILE).unlink(missing_ok=True)
    return SimilarityResult(scores=result.scores, num_layers=result.num_layers, num_samples=result.num_samples,
                            files=files)


def distributed_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) under torchrun / accelerate launch (their environment), else (0, 1, 0)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def merge_shards(parts: list[dict[int, dict[int, list[float]]]]) -> dict[int, dict[int, list[float]]]:
    """Per-rank scores back in the sample order: rank r scored samples r, r + W, r + 2W, ... (pure)."""
    world = len(parts)
    merged = {}
    for k, blocks in parts[0].items():
        merged[k] = {}
        for i in blocks:
            shards = [part[k][i] for part in parts]
            total = sum(len(shard) for shard in shards)
            merged[k][i] = [shards[j % world][j // world] for j in range(total)]
    return merged


def run_settings(args, indices: list[int], dtype) -> dict:
    """What defines a similarity run (a resume with other settings is refused)."""
    return {
        "model": args.model,
        "data": args.data,
        "subset": args.subset,
        "split": args.split,
        "sample_fraction": args.sample_fraction,
        "seed": args.seed,
        "sample_indices_sha": hashlib.sha256(json.dumps(indices).encode()).hexdigest()[:16],
        "dtype": str(dtype).replace("torch.", ""),
    }


def shard_settings(settings: dict, rank: int, world: int) -> dict:
    """A data-parallel rank's settings: its shard is samples `rank::world` of the run's sample."""
    return {**settings, "rank": rank, "world_size": world}


def run_similarity(args) -> SimilarityResult:
    """`interlace-hf similarity`: load the model and data described by `SimilarityArgs`, score, write the files."""
    from .checkpoint import load_model, read_model_config
    from .processing import load_processor

    args.validate()
    device = resolve_device(args.device)  # a CUDA device on a machine without one: refused before anything heavy
    device = _init_distributed(device)
    config = read_model_config(args.model)  # a clear error for a model that is not Qwen3-VL, before anything heavy
    num_layers = config["text_config"]["num_hidden_layers"]
    too_big = [k for k in args.pack_sizes if k > num_layers]
    if too_big:
        raise ValueError(f"--pack-sizes {too_big} do not fit a {num_layers}-layer model; use 1..{num_layers}.")
    out = Path(args.output_dir)
    _prepare_output_dir(out, args.overwrite)
    records, dataset_name = load_records(args.data, split=args.split, subset=args.subset)
    indices = sample_indices(len(records), args.sample_fraction, args.seed)
    samples = [records[i] for i in indices]
    check_images(samples, indices=indices)  # a broken image stops the run now, not in the middle of the pass
    processor = load_processor(args.model)
    rank, world, _ = distributed_info()
    # each rank counts its own share; an embedded image that cannot be read is named here, before the model loads
    lengths = record_lengths(processor, samples[rank::world]) if args.length_bucketing else None
    dtype = resolve_dtype(args.dtype, device)
    model = load_model(args.model, dtype=dtype, device_map=device if device != "cpu" else None)
    names = {"model_name": Path(args.model.rstrip("/")).name, "dataset_name": dataset_name}
    settings = run_settings(args, indices, dtype)
    if world > 1:
        return _score_data_parallel(model, processor, samples, lengths, args, out, settings, names, device)
    logger.info("scoring %d of %d records (%s) on %s", len(samples), len(records), dataset_name, device)
    return compute_similarities(model, processor, samples, pack_sizes=args.pack_sizes, batch_size=args.batch_size,
                                output_dir=out, settings=settings, lengths=lengths, **names)


def _prepare_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty directory that is not a run to resume; with `overwrite`, rank 0 removes an earlier run's
    files. Every rank waits until that is done."""
    from .utils.fileio import check_output_dir

    rank, world, _ = distributed_info()
    resumable = (out / PROGRESS_FILE).is_file() or any(out.glob(f"rank*/{PROGRESS_FILE}"))
    if overwrite and out.is_dir():
        if rank == 0:
            for stale in [out / PROGRESS_FILE, out / BATCHES_FILE, out / SUMMARY_FILE,
                          *out.glob("*_hidden_state_similarities.json")]:
                stale.unlink(missing_ok=True)
            for shard_dir in out.glob("rank*"):
                shutil.rmtree(shard_dir, ignore_errors=True)
    elif not resumable:
        check_output_dir(out, overwrite=False)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # every rank has checked the directory before any writes into it


def _score_data_parallel(model, processor, samples: list[Record], lengths: list[int] | None, args, out: Path,
                         settings: dict, names: dict, device: str) -> SimilarityResult:
    """Rank r scores samples r, r + W, ...; each keeps its own progress log (a rerun resumes each shard); rank 0
    merges them into the files one process would write."""
    import torch.distributed as dist

    rank, world, _ = distributed_info()
    shard = samples[rank::world]
    logger.info("rank %d/%d: scoring %d of %d samples on %s", rank, world, len(shard), len(samples), device)
    part = compute_similarities(model, processor, shard, pack_sizes=args.pack_sizes, batch_size=args.batch_size,
                                output_dir=out / f"rank{rank}", settings=shard_settings(settings, rank, world),
                                progress=rank == 0, finalize=False, lengths=lengths, **names)
    dist.barrier()
    result = part
    if rank == 0:
        parts = [load_progress(out / f"rank{r}")["scores"] for r in range(world)]
        merged = SimilarityResult(scores=merge_shards(parts), num_layers=part.num_layers, num_samples=len(samples))
        result = write_similarity_files(out, merged, settings, **names)
        for r in range(world):
            shutil.rmtree(out / f"rank{r}", ignore_errors=True)
    dist.barrier()
    return result


def _init_distributed(device: str) -> str:
    """Join the process group torchrun / accelerate launch describe (gloo on CPU, nccl on GPUs); the rank's device."""
    import torch.distributed as dist

    rank, world, local_rank = distributed_info()
    if world == 1:
        return device
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


if __name__ == "__main__":
    # `torchrun -m interlace_hf.similarity` runs the command layer's entry point (it prints; this module does not).
    import runpy

    runpy.run_module("interlace_hf.commands.similarity", run_name="__main__", alter_sys=True)
