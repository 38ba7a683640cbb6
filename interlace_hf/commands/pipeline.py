"""`interlace-hf run --config recipe.yaml`: the whole method in one output directory, resumable stage by stage.

    data -> similarity -> plan -> prune -> fine-tune -> eval -> bench -> card -> (push)

Each stage writes its outputs under `output_dir` and records the settings it ran with (its own recipe keys and every
upstream stage's) in `run_state.json`. A rerun skips a stage whose outputs are there and whose settings are the same,
so it continues where an interruption stopped (the fine-tune itself resumes from its last checkpoint); a stage whose
settings changed runs again, and so does everything after it, and the run says which keys changed. The recipe's
top-level keys are the fields of `RunArgs`; its `train:` section holds `interlace-hf train` keys (the same schema
as a training recipe; model, dataset and output directory are filled in by the run).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

STAGES = ("base", "data", "similarity", "plan", "prune", "train", "eval", "bench", "card", "push")
STATE_FILE = "run_state.json"
# The recipe keys each stage depends on directly (a stage's settings also hold every upstream stage's).
STAGE_KEYS = {
    "base": ("model", "seed"),
    "data": ("data", "synthetic_num", "eval_data"),
    "similarity": ("pack_sizes", "sample_fraction"),
    "plan": ("strategy", "drop_ratio"),
    "prune": ("format",),
    "train": ("train",),
    "eval": ("eval_tasks", "eval_limit"),
    "bench": ("bench_image_size", "bench_repeats"),
}


@dataclass(kw_only=True)
class RunArgs:
    """The whole method from one recipe."""

    model: str = field(default="", metadata={"help": "the dense base model (directory, Hub id, or `tiny`)"})
    output_dir: str = field(default="", metadata={"help": "one directory for every artifact"})
    data: str = field(default="synthetic", metadata={"help": "calibration + training data, or `synthetic`"})
    synthetic_num: int = field(default=200, metadata={"help": "records of the synthetic set (data: synthetic)"})
    eval_data: str | None = field(default=None, metadata={"help": "held-out evaluation data (default: a new synthetic set)"})
    eval_tasks: list[str] = field(default_factory=lambda: ["synthetic"], metadata={"help": "evaluation tasks"})
    eval_limit: int | None = field(default=None, metadata={"help": "evaluate on at most N records per task"})
    pack_sizes: list[int] = field(default_factory=lambda: [1, 2, 3], metadata={"help": "similarity block sizes"})
    sample_fraction: float = field(default=0.1, metadata={"help": "calibration fraction"})
    strategy: str = field(default="interlace", metadata={"help": "selection strategy"})
    drop_ratio: float = field(default=0.25, metadata={"help": "fraction of layers to drop"})
    seed: int = field(default=42, metadata={"help": "seed of sampling, selection and training"})
    format: str = field(default="auto", metadata={"help": "checkpoint format"})
    train: dict = field(default_factory=dict, metadata={"help": "`interlace-hf train` keys (a training recipe)"})
    bench_image_size: int = field(default=448, metadata={"help": "benchmark image side"})
    bench_repeats: int = field(default=5, metadata={"help": "benchmark repeats"})
    skip: list[str] = field(default_factory=list, metadata={"help": f"stages to skip: {', '.join(STAGES)}"})
    push_to_hub: str | None = field(default=None, metadata={"help": "push the final checkpoint to this repo id"})

    def validate(self) -> None:
        missing = [name for name in ("model", "output_dir") if not getattr(self, name)]
        if missing:
            raise ValueError(f"the run recipe needs {', '.join(missing)}.")
        unknown = sorted(set(self.skip) - set(STAGES))
        if unknown:
            raise ValueError(f"skip: unknown stages {unknown}; stages are {', '.join(STAGES)}.")
        if not 0 < self.drop_ratio < 1:
            raise ValueError(f"drop_ratio must be in (0, 1), got {self.drop_ratio}.")
        if not isinstance(self.train, dict):
            raise ValueError("train: must be a mapping of `interlace-hf train` keys.")
        if self.push_to_hub:
            from ..args import validate_repo_id

            validate_repo_id(self.push_to_hub, "push_to_hub:")


def load_run_recipe(path: str | Path, overrides: dict | None = None) -> RunArgs:
    """Read a run recipe; unknown keys are an error that names them."""
    from ..args import read_recipe_file

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config {str(path)!r} does not exist; pass a run recipe (see recipes/run/tiny.yaml).")
    data = read_recipe_file(path)
    data.update(overrides or {})
    names = {f.name for f in dataclasses.fields(RunArgs)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{path}: unknown run recipe keys {unknown}; the keys are {sorted(names)}.")
    floats = {"sample_fraction", "drop_ratio"}
    for key in floats & set(data):
        data[key] = float(data[key])  # PyYAML reads 1e-1 as a string
    args = RunArgs(**data)
    args.validate()
    return args


class Pipeline:
    """Runs the stages in order; each one checks its own outputs and returns early when they exist."""

    def __init__(self, args: RunArgs, recipe_text: str | None = None):
        self.args = args
        self.out = Path(args.output_dir)
        self.recipe_text = recipe_text
        self.report: dict = {"stages": {}}
        self.state: dict = {}

    # paths
    @property
    def data_file(self) -> Path:
        return self.out / "data" / "synthetic.json" if self.args.data == "synthetic" else Path(self.args.data)

    @property
    def eval_file(self) -> Path:
        if self.args.eval_data:
            return Path(self.args.eval_data)
        return self.out / "eval-data" / "synthetic.json"

    def _settings(self, name: str) -> dict:
        """The settings stage `name` runs with: its own keys and every upstream stage's (pure, JSON-able)."""
        keys = [k for stage in STAGES[: STAGES.index(name) + 1] for k in STAGE_KEYS.get(stage, ())]
        if "train" in self.args.skip and STAGES.index(name) > STAGES.index("train"):
            keys = [k for k in keys if k != "train"]  # a skipped fine-tune does not make eval / bench stale
        return json.loads(json.dumps({k: getattr(self.args, k) for k in keys}, default=str))

    def _load_state(self) -> dict:
        path = self.out / STATE_FILE
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError:
            return {}

    def _record(self, name: str, status: str) -> None:
        from ..utils.fileio import write_json_atomic

        self.state[name] = {"status": status, "settings": self._settings(name)}
        write_json_atomic(self.out / STATE_FILE, self.state)

    def _changed(self, name: str) -> list[str]:
        """The keys whose values differ from the ones stage `name` last ran (or started) with."""
        before = (self.state.get(name) or {}).get("settings")
        if before is None:
            return []
        now = self._settings(name)
        return sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))

    def _stage(self, name: str, outputs_exist: bool, run, *, clear=None) -> None:
        """Run stage `name` unless its outputs exist and were made with the same settings.

        `clear` removes the stage's previous outputs when its settings changed (a stage that would otherwise resume).
        """
        if name in self.args.skip:
            self.report["stages"][name] = "skipped (recipe)"
            return
        record = self.state.get(name) or {}
        changed = self._changed(name)
        if outputs_exist and record.get("status") == "done" and not changed:
            print(f"[{name}] already done, skipping")
            self.report["stages"][name] = "already done"
            return
        if changed:
            before = record["settings"]
            now = self._settings(name)
            details = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
            print(f"[{name}] settings changed ({details}): running again")
            if clear is not None:
                clear()
        elif outputs_exist and record.get("status") != "running":
            print(f"[{name}] outputs from an earlier run with unrecorded settings: running again")
            if clear is not None:
                clear()
        else:
            print(f"[{name}] running")
        self._record(name, "running")
        start = time.perf_counter()
        run()
        self._record(name, "done")
        self.report["stages"][name] = f"done in {time.perf_counter() - start:.1f}s"

    def run(self) -> dict:
        import shutil

        a, out = self.args, self.out
        out.mkdir(parents=True, exist_ok=True)
        self._check_train_block()  # a typo under train: is found now, not after five stages
        self.state = self._load_state()
        if self.recipe_text is not None:
            (out / "run_recipe.yaml").write_text(self.recipe_text)
        if a.model == "tiny":  # the embedded default, built here
            from ..testing.tiny import build_tiny_model

            self.args.model = str(out / "base")
            self._stage("base", (out / "base" / "config.json").is_file(),
                        lambda: build_tiny_model(out / "base", seed=a.seed, overwrite=True))
        self._stage("data", self.data_file.is_file() and self.eval_file.is_file(), self._data)
        sim = out / "similarity"
        self._stage("similarity", (sim / "similarity_summary.json").is_file(), lambda: self._similarity(sim))
        self._stage("plan", (out / "plan.json").is_file(), lambda: self._plan(sim))
        pruned = out / "pruned"
        self._stage("prune", (pruned / "plan.json").is_file(), lambda: self._prune(sim, pruned))
        final = out / "finetuned"
        self._stage("train", (final / "interlace_train.json").is_file(), lambda: self._train(pruned, final),
                    clear=lambda: shutil.rmtree(final, ignore_errors=True))
        if "train" in a.skip or not (final / "config.json").is_file():
            final = pruned
        self._stage("eval", (out / "eval.json").is_file(), lambda: self._eval(final))
        self._stage("bench", (out / "bench.json").is_file(), lambda: self._bench(final))
        self._stage("card", False, lambda: self._card(final))
        if a.push_to_hub:
            self._stage("push", False, lambda: self._push(final))
        return self._final_report(final)

    def _check_train_block(self) -> None:
        """The `train:` keys are `interlace-hf train` arguments; the run sets model, dataset and output_dir itself."""
        if "train" in self.args.skip:
            return
        from ..args import TrainArgs
        from ..trainer import InterlaceSFTConfig

        names = {f.name for cls in (TrainArgs, InterlaceSFTConfig) for f in dataclasses.fields(cls)}
        unknown = sorted(set(self.args.train) - names)
        if unknown:
            raise ValueError(f"train: unknown keys {unknown}; they are the argument names of `interlace-hf train "
                             "--help` (learning_rate, max_steps, ...).")
        owned = sorted(set(self.args.train) & {"model", "dataset", "output_dir"})
        if owned:
            raise ValueError(f"train: {owned} are set by the run itself (the pruned model, the run's data, "
                             f"{self.out / 'finetuned'}); remove them from the train: section.")

    # stages
    def _data(self) -> None:
        from ..datasets.synthetic import make_synthetic

        a = self.args
        if a.data == "synthetic":
            make_synthetic(self.out / "data", num=a.synthetic_num, seed=a.seed, overwrite=True)
        if not a.eval_data:  # held out: another seed
            make_synthetic(self.out / "eval-data", num=max(16, a.synthetic_num // 4), seed=a.seed + 1, overwrite=True)

    def _similarity(self, sim: Path) -> None:
        from ..args import SimilarityArgs
        from ..similarity import run_similarity

        a = self.args
        run_similarity(SimilarityArgs(model=a.model, data=str(self.data_file), output_dir=str(sim),
                                      pack_sizes=a.pack_sizes, sample_fraction=a.sample_fraction, seed=a.seed,
                                      batch_size=8, overwrite=True))

    def _plan(self, sim: Path) -> None:
        from ..layermap import plot_similarity_profile, render_layer_map
        from ..tables import load_similarity_tables
        from ..selection import select_layers

        tables = load_similarity_tables(sim)
        plan = select_layers(tables, self.args.strategy, drop_ratio=self.args.drop_ratio, seed=self.args.seed)
        plan.save(self.out / "plan.json")
        print(render_layer_map(plan, tables))
        try:
            plot_similarity_profile(plan, tables, self.out / "plan.png")
        except ValueError as err:
            logger.info("no plot: %s", err)

    def _prune(self, sim: Path, pruned: Path) -> None:
        from ..checkpoint import choose_format, load_model
        from .prune import prune_with_card
        from ..plan import Plan
        from ..tables import load_similarity_tables
        from ..checkpoint import num_deepstack_features

        plan = Plan.load(self.out / "plan.json")
        model = load_model(self.args.model)
        fmt = choose_format(self.args.format, list(plan.kept_layers), num_deepstack_features(model.config))
        prune_with_card(model, plan, self.args.model, pruned, load_similarity_tables(sim), format=fmt, overwrite=True)

    def _train(self, pruned: Path, final: Path) -> None:
        import yaml

        from ..train import parse_train_args, run_training

        recipe = dict(self.args.train)
        recipe.update(model=str(pruned), dataset=str(self.data_file), output_dir=str(final))
        recipe.setdefault("seed", self.args.seed)
        path = self.out / "train_recipe.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        train_args, sft_config, text = parse_train_args(["--config", str(path)])
        run_training(train_args, sft_config, text)

    def _eval(self, final: Path) -> None:
        from ..evaluation.evaluate import run_eval

        run_eval(str(final), base=self.args.model, tasks=self.args.eval_tasks,
                 data={task: str(self.eval_file) for task in self.args.eval_tasks if task == "synthetic"},
                 limit=self.args.eval_limit, output=str(self.out / "eval.json"))

    def _bench(self, final: Path) -> None:
        from ..benchmark.bench import run_bench

        run_bench([self.args.model, str(final)], image_size=self.args.bench_image_size,
                  repeats=self.args.bench_repeats, output=str(self.out / "bench.json"), write_model_results=True)

    def _card(self, final: Path) -> None:
        from ..card import write_model_card

        print(f"card: {write_model_card(final, model_name=self.args.push_to_hub or final.name)}")

    def _push(self, final: Path) -> None:
        from ..hub import check_push_access
        from .push import push_checkpoint, push_summary

        api = check_push_access(self.args.push_to_hub)
        print(push_summary(push_checkpoint(api, final, self.args.push_to_hub)))

    def _final_report(self, final: Path) -> dict:
        from ..checkpoint import parameter_counts
        from ..plan import Plan

        plan = Plan.load(final)
        before, after = parameter_counts(final, plan)
        report = dict(self.report, checkpoint=str(final), card=str(final / "README.md"),
                      layers_before=plan.num_layers, layers_after=plan.num_kept,
                      parameters_before=before, parameters_after=after)
        evaluation = _read(self.out / "eval.json")
        bench = _read(final / "bench_results.json")
        if evaluation:
            report["relative_performance"] = evaluation.get("relative")
        claim = None
        if bench:
            from ..card import speedup_claim

            claim = speedup_claim(bench.get("base_ttft_samples"), bench.get("ttft_samples"), bench.get("ideal_speedup"))
            report["ttft_speedup"] = claim["median"] if claim["quotable"] else None
            report["ttft_speedup_claim"] = claim
        (self.out / "run_report.json").write_text(json.dumps(report, indent=2))
        lines = [
            "",
            "INTERLACE run report",
            f"  layers:               {plan.num_layers} -> {plan.num_kept} ({plan.strategy}, drop {list(plan.dropped_layers)})",
            f"  parameters:           {before / 1e6:.2f}M -> {after / 1e6:.2f}M",
        ]
        if report.get("relative_performance") is not None:
            lines.append(f"  relative performance: {100 * report['relative_performance']:.1f}% of the base model")
        elif evaluation is not None:
            lines.append("  relative performance: n/a (the base model scores 0 on every task: nothing to keep; a "
                         "randomly initialised model answers nothing)")
        if claim is not None:
            lines.append(f"  TTFT:                 {claim['text']} ({bench.get('device')})")
        lines += [f"  checkpoint:           {final}", f"  model card:           {final / 'README.md'}",
                  f"  report:               {self.out / 'run_report.json'}"]
        print("\n".join(lines))
        return report


def _read(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def run_pipeline(config: str, overrides: dict | None = None) -> dict:
    args = load_run_recipe(config, overrides)
    return Pipeline(args, Path(config).read_text()).run()
