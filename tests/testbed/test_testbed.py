"""`interlace-hf testbed`: train a (tiny) Qwen3-VL from scratch, then the comparison table, end to end.

The tiny size learns nothing in its few steps; these tests check the structure of what is written, the resume
behaviour, determinism and the input errors, not the numbers (docs/results-testbed.md has those).
"""

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from interlace_hf.args import (
    TESTBED_STRATEGIES,
    TestbedCompareArgs,
    TestbedOracleArgs,
    TestbedRecoveryArgs,
    TestbedTrainArgs,
)
from interlace_hf.commands.cli import main
from interlace_hf.testbed.compare import Comparison, run_compare
from interlace_hf.testbed import model as testbed_model
from interlace_hf.testbed.model import ALL_TASKS, SIZES, command_line, majority_baseline
from interlace_hf.testbed.report import accuracy_stderr, format_compare_table
from interlace_hf.testbed.train import train_testbed

STRATEGIES = ["interlace", "shortgpt", "sleb", "random"]
# the `compared` fixture's settings (a rerun with other ones would compute other rows)
COMPARE = {"drop_ratios": [0.25], "strategies": STRATEGIES, "calibration_samples": 8, "random_draws": 2,
           "finetune_lr_grid": [1e-4, 1e-3], "validation_questions": 12, "recovery_methods": ["kd_both", "lora"]}


def _train(path: Path, seed: int = 0, **kwargs):
    kwargs = {"size": "tiny", **kwargs}
    return train_testbed(TestbedTrainArgs(output_dir=str(path), steps=4, seed=seed, num_eval=12, **kwargs))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("testbed") / "tb"
    report = _train(path)
    return path, report


@pytest.fixture(scope="module")
def compared(trained):
    path, _ = trained
    args = TestbedCompareArgs(output_dir=str(path), bench_repeats=1, **COMPARE)
    return path, run_compare(args)


def test_train_writes_model_data_and_report(trained):
    path, report = trained
    assert (path / "model" / "config.json").is_file() and (path / "model" / "model.safetensors").is_file()
    assert not (path / "checkpoints").exists()  # removed once the model is saved
    config = json.loads((path / "model" / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl"
    assert config["text_config"]["num_hidden_layers"] == SIZES["tiny"].text_layers
    assert len(config["vision_config"]["deepstack_visual_indexes"]) == 3
    on_disk = json.loads((path / "testbed.json").read_text())
    assert on_disk == report
    assert report["settings"]["num_train"] == 4 * SIZES["tiny"].batch_size
    assert set(report["accuracy"]["per_type"]) <= set(SIZES["tiny"].tasks)
    assert set(report["chance"]["per_type"]) == set(report["accuracy"]["per_type"])
    assert 0 <= report["heldout_overlap"] <= 1
    assert report["unseen_accuracy"]["n"] == 12 - round(12 * report["heldout_overlap"])
    assert report["model"]["parameters"] > 0
    records = json.loads((path / "data" / "heldout" / "synthetic.json").read_text())
    assert len(records) == 12 and {r["task"] for r in records} <= set(SIZES["tiny"].tasks)


def test_train_rerun_is_a_no_op_and_other_settings_are_refused(trained, caplog):
    path, report = trained
    mtime = (path / "model" / "model.safetensors").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="interlace_hf"):
        assert _train(path) == report
    assert "already trained" in caplog.text
    assert (path / "model" / "model.safetensors").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="trained with .* pass the same settings, --overwrite"):
        _train(path, seed=1)


def test_a_model_trained_with_other_settings_is_refused(trained, tmp_path):
    import shutil

    path, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(path, copy, ignore=shutil.ignore_patterns("compare"))
    (copy / "testbed.json").unlink()  # as if the run was cut after the model was saved
    with pytest.raises(ValueError, match="was trained with other settings"):
        _train(copy, learning_rate=5e-4)


def test_training_is_deterministic_for_a_seed(trained, tmp_path):
    path, _ = trained
    _train(tmp_path / "again")
    _train(tmp_path / "other", seed=1)
    weights = (path / "model" / "model.safetensors").read_bytes()
    assert (tmp_path / "again" / "model" / "model.safetensors").read_bytes() == weights
    assert (tmp_path / "other" / "model" / "model.safetensors").read_bytes() != weights


def test_compare_table_structure(compared):
    path, results = compared
    rows = results["rows"]
    # Dense, Dense-FT, then every strategy without and with the fine-tune.
    assert [(r["method"], r["fine_tuned"]) for r in rows[:2]] == [("Dense", False), ("Dense-FT", True)]
    assert [(r["strategy"], r["fine_tuned"]) for r in rows[2:]] == [
        (s, ft) for s in STRATEGIES for ft in (False, True)] + [("interlace+kd_both", True), ("interlace+lora", True)]
    assert [r["method"] for r in rows[-2:]] == ["INTERLACE + KD", "INTERLACE + LoRA"]
    for row in rows:
        assert set(row) >= {"method", "drop_ratio", "fine_tuned", "ttft_speedup", "accuracy", "relative", "per_type"}
        assert 0 <= row["accuracy"] <= 1 and row["ttft_speedup"] > 0 and row["accuracy_stderr"] >= 0
        # the paper's relative performance: the mean over task types of accuracy / the dense model's accuracy
        ratios = [row["per_type"][t] / p for t, p in rows[0]["per_type"].items() if p > 0]
        assert row["relative"] == (pytest.approx(sum(ratios) / len(ratios)) if ratios else None)
    for row in rows[2:]:
        assert row["drop_ratio"] == 0.25
        assert len(row["dropped_layers"]) == 3 and row["layers"] == 9
        assert row["tuned_layers"], f"{row['strategy']}: the fine-tuned rows need tuned layers"
    assert rows[0]["ttft_speedup"] == 1.0
    from interlace_hf.benchmark.flops import ideal_speedup

    ideal = ideal_speedup(json.loads((path / "model" / "config.json").read_text()), 9, num_text_tokens=64,
                          image_size=448)
    assert rows[0]["flop_speedup"] == 1.0 and all(row["flop_speedup"] == ideal > 1 for row in rows[2:])
    markdown = (path / "compare" / "results.md").read_text()
    assert markdown.startswith("| Method | Drop ratio | Fine-tuned | FLOP speed-up | TTFT speed-up (measured) | Accuracy "
                               "| Relative performance |")
    assert markdown.count("\n") == len(rows) + 2
    assert json.loads((path / "compare" / "results.json").read_text()) == results
    assert results["settings"]["finetune_samples"] >= 1 and results["command"].startswith("interlace-hf testbed compare")
    assert format_compare_table(results) == markdown.rstrip("\n")


def test_compare_pairs_every_row_with_interlace(compared):
    """Each row at a drop ratio is compared with the INTERLACE row of the same ratio and fine-tune state, question
    by question (the per-question scores stay in the cached rows, not in results.json)."""
    path, results = compared
    for row in results["rows"]:
        assert "scores" not in row
        if row["strategy"] in ("dense", "interlace"):
            assert "vs_interlace" not in row
        else:
            versus = row["vs_interlace"]
            assert versus["low"] <= versus["mean"] <= versus["high"]
            interlace = next(r for r in results["rows"] if r["strategy"] == "interlace"
                             and r["fine_tuned"] == row["fine_tuned"])
            dense = results["rows"][0]["per_type"]
            ratios = [(row["per_type"][t] - interlace["per_type"][t]) / p for t, p in dense.items() if p > 0]
            assert versus["mean"] == pytest.approx(sum(ratios) / len(ratios))  # in relative performance
    # Random: the mean of its draws (here 2), each its own seeded plan and cached row
    for row in (r for r in results["rows"] if r["strategy"] == "random"):
        assert len(row["draws"]) == 2 and row["accuracy"] == pytest.approx(
            sum(d["accuracy"] for d in row["draws"]) / 2)
    first = json.loads((path / "compare" / "plans" / "25pc-random.json").read_text())["dropped_layers"]
    second = json.loads((path / "compare" / "plans" / "25pc-random-1.json").read_text())["dropped_layers"]
    assert [d["dropped_layers"] for d in next(r for r in results["rows"] if r["strategy"] == "random")["draws"]] == [
        first, second]
    # every fine-tuned row says how many parameters it trained: here one layer's worth per tuned layer
    interlace_ft = next(r for r in results["rows"] if r["strategy"] == "interlace" and r["fine_tuned"])
    dense_ft = results["rows"][1]
    per_layer = dense_ft["trainable_parameters"] // 12
    assert interlace_ft["trainable_parameters"] == per_layer * len(interlace_ft["tuned_layers"]) > 0
    cached = json.loads((path / "compare" / "rows" / "25pc-shortgpt.json").read_text())
    assert len(cached["scores"]) == len(cached["logliks"]) == 12  # teacher-forced: exact match and log-likelihood
    scores = json.loads((path / "compare" / "scores.json").read_text())
    assert len(scores["tasks"]) == 12 and len(scores["rows"]) == len(results["rows"])
    shortgpt = next(r for r in scores["rows"] if r["strategy"] == "shortgpt" and not r["fine_tuned"])
    assert shortgpt["scores"] == cached["scores"] and shortgpt["logliks"] == cached["logliks"]
    assert "vs INTERLACE, paired (points, 95% CI)" in (path / "compare" / "results.md").read_text()


def test_compare_chooses_each_fine_tune_rate_on_the_validation_split(compared):
    """Each fine-tuned row tried every rate of the grid, scored each on the validation split (never the held-out
    questions) and reports the held-out accuracy at the best one; Random's later draws reuse its first draw's rate."""
    path, results = compared
    validation = json.loads((path / "compare" / "data" / "validation" / "synthetic.json").read_text())
    heldout = json.loads((path / "compare" / "data" / "validation" / "made_with.json").read_text())
    assert len(validation) == 12 and heldout["exclude"] == [str(path / "data" / "heldout" / "synthetic.json")]
    for row in (r for r in results["rows"] if r["fine_tuned"]):
        scores = row["validation_accuracy"]
        assert set(scores) == ({"0.001", "0.01"} if row["strategy"] == "interlace+lora" else {"0.0001", "0.001"})
        best = max(scores.values())
        assert scores[f"{row['learning_rate']:g}"] == best
        if min(scores.values()) == best:  # ties go to the smaller rate
            assert row["learning_rate"] == min(map(float, scores))
        key = "dense" if row["strategy"] == "dense" else f"25pc-{row['strategy'].replace('+', '-')}"
        for rate in scores:
            cached = json.loads((path / "compare" / "rows" / f"{key}-lr{rate}-validation.json").read_text())
            assert cached["n"] == 12 and cached["learning_rate"] == float(rate)
    assert not list((path / "compare" / "finetuned").iterdir())  # every fine-tuned model deleted once scored
    random_ft = next(r for r in results["rows"] if r["strategy"] == "random" and r["fine_tuned"])
    draw = json.loads((path / "compare" / "rows" / "25pc-random-1-ft.json").read_text())
    assert draw["learning_rate"] == random_ft["learning_rate"]
    assert "| Fine-tune lr | Trained parameters |" in (path / "compare" / "results.md").read_text()


def test_compare_adds_interlace_recovery_rows(compared):
    """INTERLACE + KD and + LoRA: the same pruned model and data as INTERLACE's fine-tuned row, each paired with it;
    LoRA searches ten times the grid's rates and trains only its adapters."""
    path, results = compared
    by = {(r["strategy"], r["fine_tuned"]): r for r in results["rows"]}
    sft, kd, lora = by[("interlace", True)], by[("interlace+kd_both", True)], by[("interlace+lora", True)]
    assert kd["dropped_layers"] == lora["dropped_layers"] == sft["dropped_layers"]
    assert set(kd["validation_accuracy"]) == {"0.0001", "0.001"}
    assert set(lora["validation_accuracy"]) == {"0.001", "0.01"}
    assert kd["trainable_parameters"] == sft["trainable_parameters"] > lora["trainable_parameters"] > 0
    for row in (kd, lora):
        assert row["vs_interlace"]["low"] <= row["vs_interlace"]["mean"] <= row["vs_interlace"]["high"]
    assert ("interlace+lora", False) not in by  # recovery rows are fine-tuned rows only


def test_compare_fine_tunes_only_the_plans_layers(compared):
    path, results = compared
    plan = json.loads((path / "compare" / "plans" / "25pc-shortgpt.json").read_text())
    assert plan["tuned_layers"], "shortgpt's fine-tuned row tunes the layer after each drop (tune_baselines)"
    dense_ft = json.loads((path / "compare" / "plans" / "dense-ft.json").read_text())
    assert dense_ft["dropped_layers"] == [] and dense_ft["tuned_layers"] == list(range(SIZES["tiny"].text_layers))


def test_sleb_and_the_similarities_share_one_calibration_sample(compared):
    import hashlib

    path, _ = compared
    comparison = Comparison(TestbedCompareArgs(output_dir=str(path), drop_ratios=[0.25],
                                                       strategies=STRATEGIES, calibration_samples=8))
    manifest = json.loads((path / "compare" / "data" / "finetune" / "synthetic.json").read_text())
    index = {record["image"].split("/")[-1]: i for i, record in enumerate(manifest)}
    indices = [index[Path(record.images[0]).name] for record in comparison.calibration_records()]
    summary = json.loads((path / "compare" / "similarity" / "similarity_summary.json").read_text())
    assert len(indices) == 8
    assert json.dumps(summary).count(hashlib.sha256(json.dumps(indices).encode()).hexdigest()[:16]) == 1


def test_command_line_records_every_flag_that_is_not_a_default():
    args = TestbedTrainArgs(output_dir="o", num_eval=12, tasks=["count"])
    assert command_line("train", args, always=("size", "seed")) == (
        "interlace-hf testbed train o --size small --seed 0 --tasks count --num-eval 12")
    args = TestbedCompareArgs(output_dir="o", drop_ratios=[0.1], no_finetune=True)
    assert command_line("compare", args, always=("drop_ratios", "strategies")) == (
        "interlace-hf testbed compare o --drop-ratios 0.1 --strategies " + " ".join(TESTBED_STRATEGIES)
        + " --no-finetune")


def test_compare_rerun_reuses_finished_rows(compared, capsys):
    path, results = compared
    rows_dir = path / "compare" / "rows"
    before = {p.name: p.stat().st_mtime_ns for p in rows_dir.iterdir()}
    again = run_compare(TestbedCompareArgs(output_dir=str(path), bench_repeats=1, **COMPARE))
    assert {p.name: p.stat().st_mtime_ns for p in rows_dir.iterdir()} == before
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in results["rows"]]
    # without a measured bench (the default), the table gives the counted-FLOP speed-up only
    quiet = run_compare(TestbedCompareArgs(output_dir=str(path), results_dir=str(path / "compare"), **COMPARE))
    assert all("ttft_speedup" not in r and r["flop_speedup"] >= 1 for r in quiet["rows"])
    assert "TTFT" not in format_compare_table(quiet).splitlines()[0]


def test_cli_errors_name_the_fix(tmp_path, capsys):
    assert main(["testbed", "compare", str(tmp_path)]) == 2
    assert "not a trained testbed" in capsys.readouterr().err
    assert main(["testbed", "train", str(tmp_path / "x"), "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    assert main(["testbed", "train", str(tmp_path / "x"), "--tasks", "colour", "poetry"]) == 2
    assert "poetry" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--strategies .*wanda"):
        TestbedCompareArgs(output_dir="x", strategies=["wanda"]).validate()
    with pytest.raises(ValueError, match="--drop-ratios"):
        TestbedCompareArgs(output_dir="x", drop_ratios=[1.5]).validate()
    with pytest.raises(ValueError, match="--sleb-loss must be `answers` or `all`"):
        TestbedCompareArgs(output_dir="x", sleb_loss="perplexity").validate()
    with pytest.raises(ValueError, match="--finetune-lr-grid must list learning rates > 0"):
        TestbedCompareArgs(output_dir="x", finetune_lr_grid=[1e-4, 0]).validate()
    assert main(["testbed", "compare", str(tmp_path), "--validation-questions", "2"]) == 2
    assert "--validation-questions must be >= 6" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a testbed"):
        _train(tmp_path / "busy")


def test_compare_refuses_a_ratio_that_drops_nothing(trained):
    path, _ = trained
    with pytest.raises(ValueError, match="rounds down to 0 layers"):
        run_compare(TestbedCompareArgs(output_dir=str(path), drop_ratios=[0.05], strategies=["interlace"]))


def test_majority_baseline_is_the_most_frequent_training_answer(tmp_path):
    def manifest(name, rows):
        path = tmp_path / name
        path.write_text(json.dumps([{"task": t, "conversations": [{"from": "human", "value": "q"},
                                                                    {"from": "gpt", "value": a}]} for t, a in rows]))
        return path

    train = manifest("train.json", [("count", "2"), ("count", "2"), ("count", "3"), ("colour", "red")])
    heldout = manifest("heldout.json", [("count", "2"), ("count", "4"), ("colour", "blue"), ("colour", "red")])
    assert majority_baseline(train, heldout) == {"colour": 0.5, "count": 0.5}


def test_accuracy_stderr_is_the_binomial_error_of_the_type_mean():
    assert accuracy_stderr({"a": 0.5, "b": 1.0}, {"a": 100, "b": 50}) == pytest.approx((0.25 / 100) ** 0.5 / 2)


def test_testbed_config_keeps_qwen3_vl_structure():
    from interlace_hf.testing.tiny import build_tiny_tokenizer

    config = testbed_model.testbed_config(SIZES["small"], build_tiny_tokenizer())
    text = config.text_config
    assert text.num_hidden_layers == 12 and text.hidden_size == 128
    assert sum(text.rope_parameters["mrope_section"]) == text.head_dim // 2
    assert config.vision_config.out_hidden_size == text.hidden_size
    assert config.vision_config.deepstack_visual_indexes == [1, 2, 3]
    assert SIZES["base"].text_layers == 24 and set(SIZES["base"].tasks) == set(ALL_TASKS)


def test_paired_bootstrap():
    """The paired difference of the mean-over-types accuracy, its interval over resampled seeds and questions."""
    from interlace_hf.testbed.report import paired_bootstrap

    tasks = ["count"] * 4 + ["shape"] * 2
    same = [[1, 0, 1, 0, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert paired_bootstrap(same, same, tasks, resamples=200) == {"mean": 0.0, "low": 0.0, "high": 0.0,
                                                                 "per_seed": [0.0, 0.0]}
    better = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    worse = [[1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 0, 0]]
    stats = paired_bootstrap(better, worse, tasks, resamples=500)
    # seed 0: count +0.5, shape 0 -> 0.25; seed 1: count 0, shape +1 -> 0.5 (each type weighs the same)
    assert stats["per_seed"] == [0.25, 0.5] and stats["mean"] == pytest.approx(0.375)
    assert 0 <= stats["low"] < stats["mean"] < stats["high"] <= 1
    with pytest.raises(ValueError, match="expected seeds x 6 questions"):
        paired_bootstrap([[1, 0]], [[1, 1]], tasks)
    # in relative performance: each type's difference over the dense model's accuracy on it; types without a
    # factor (the dense model scores 0 on them) are left out
    scaled = paired_bootstrap(better, worse, tasks, resamples=200, scale={"count": 2.0, "shape": 1.0})
    assert scaled["per_seed"] == [0.5, 0.5]
    assert paired_bootstrap(better, worse, tasks, resamples=200, scale={"shape": 4.0})["per_seed"] == [0.0, 4.0]
    with pytest.raises(ValueError, match="no task type to compare"):
        paired_bootstrap(better, worse, tasks, scale={"colour": 1.0})


def test_recovery_compares_methods_pairwise_and_resumes(trained, capsys):
    """`testbed recovery`: for each seed, one pruned model, each method fine-tuned on the same data; every row has
    every question's score, the summary pairs each method with SFT, and a rerun recomputes nothing."""
    from interlace_hf.testbed.recovery import run_recovery

    path, _ = trained
    args = TestbedRecoveryArgs(output_dir=str(path), methods=["sft", "kd_both", "lora"], seeds=[0, 1], bootstrap=200)
    results = run_recovery(args)
    assert [(r["seed"], r["method"]) for r in results["rows"]] == [
        (s, m) for s in (0, 1) for m in ("none", "sft", "kd_both", "lora")]
    rows = path / "recovery" / "seed-0" / "rows"
    cached = json.loads((rows / "25pc-interlace-kd_both.json").read_text())
    assert len(cached["scores"]) == 12 and cached["learning_rate"] == pytest.approx(results["rows"][1]["learning_rate"])
    # scored as `compare` scores (teacher-forced): each answer's log-likelihood too, kept in scores.json
    assert cached["scoring"] == "teacher-forced" and len(cached["logliks"]) == 12 and max(cached["logliks"]) <= 0
    kept = json.loads((path / "recovery" / "scores.json").read_text())
    assert len(kept["rows"]) == 8 and len(kept["tasks"]) == 12 and "logliks" not in results["rows"][0]
    lora = json.loads((rows / "25pc-interlace-lora.json").read_text())
    assert lora["learning_rate"] == pytest.approx(10 * cached["learning_rate"])
    assert not (path / "recovery" / "seed-0" / "finetuned" / "25pc-interlace-lora").exists()  # scores kept, weights not
    summary = {entry["method"]: entry for entry in results["summary"]}
    assert "vs_sft" not in summary["sft"] and len(summary["lora"]["relative"]) == 2
    for method in ("none", "kd_both", "lora"):
        versus = summary[method]["vs_sft"]
        assert versus["low"] <= versus["mean"] <= versus["high"] and len(versus["per_seed"]) == 2
    markdown = (path / "recovery" / "results.md").read_text()
    assert markdown.startswith("| Method | Relative performance, mean of 2 seeds |") and "LoRA (merged)" in markdown
    stamps = {p: p.stat().st_mtime_ns for p in (path / "recovery").rglob("rows/*.json")}
    assert main(["testbed", "recovery", str(path), "--methods", "sft", "kd_both", "lora", "--seeds", "0", "1",
                 "--bootstrap", "200"]) == 0
    assert "SFT + KD logits + hidden" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (path / "recovery").rglob("rows/*.json")} == stamps
    # a row scored another way is scored again, not mixed in
    none = rows / "25pc-interlace-none.json"
    none.write_text(json.dumps({**json.loads(none.read_text()), "scoring": "greedy", "logliks": None}))
    again = run_recovery(dataclasses.replace(args, methods=["sft"], seeds=[0]))
    assert json.loads(none.read_text())["logliks"] is not None
    assert again["rows"][0]["accuracy"] == pytest.approx(results["rows"][0]["accuracy"])
    assert main(["testbed", "recovery", str(path), "--methods", "lora"]) == 2
    assert "sft included" in capsys.readouterr().err


def test_deep_size_holds_out_only_unseen_questions(tmp_path):
    """`deep`: 24 text layers, the two-step task types, and a held-out set drawn outside the training set (0% overlap,
    as counted by the report); 3,000 held-out questions unless --num-eval says otherwise."""
    from interlace_hf.testbed.model import DEEP_TASKS

    assert SIZES["deep"].num_eval == 3000 and SIZES["deep"].text_layers == 24
    report = _train(tmp_path / "deep", size="deep", batch_size=8, tasks=["count", "colour"], image_size=128)
    assert report["settings"]["unseen_heldout"] and report["heldout_overlap"] == 0.0
    from interlace_hf.datasets.synthetic import ALL_TASK_TYPES, GRID_COMPOSITIONAL_TASKS

    # colour-only two-step types in the grid (shapes at 64 pixels stalled), each one the synthetic set can draw
    assert report["model"]["text_layers"] == 24 and set(DEEP_TASKS) <= set(ALL_TASK_TYPES)
    assert {"count_colour", "neighbour_colour", "cell_colour"} <= set(DEEP_TASKS) <= {"count", "bar_tallest",
                                                                                      *GRID_COMPOSITIONAL_TASKS}
    made = json.loads((tmp_path / "deep" / "data" / "heldout" / "made_with.json").read_text())
    assert made["exclude"].endswith("train/synthetic.json") and made["num"] == 12
    # --image-size 128 (four image tokens a shape) reaches every set the testbed and compare draw
    assert report["settings"]["image_size"] == 128 == made["image_size"]
    # compare's validation split (where the fine-tune rate is chosen) and fine-tune set keep clear of the held-out
    # (test) questions; the validation split, like the held-out set, of the training questions too
    from interlace_hf.datasets.synthetic import manifest_keys

    comparison = Comparison(TestbedCompareArgs(output_dir=str(tmp_path / "deep"), validation_questions=40))
    keys = {name: set(manifest_keys(path)) for name, path in (
        ("train", tmp_path / "deep" / "data" / "train" / "synthetic.json"), ("heldout", comparison.heldout),
        ("validation", comparison.validation_data()), ("finetune", comparison.finetune_data()))}
    assert len(keys["validation"]) > 20 and keys["finetune"]
    assert not keys["validation"] & (keys["heldout"] | keys["train"])
    assert not keys["finetune"] & (keys["heldout"] | keys["validation"])
    from PIL import Image

    for name in ("train", "finetune", "validation"):
        directory = tmp_path / "deep" / ("data" if name == "train" else "compare/data") / name
        first = json.loads((directory / "synthetic.json").read_text())[0]
        assert Image.open(directory / first["image"]).size == (128, 128)


def test_a_testbed_from_before_image_size_resumes(tmp_path):
    """A testbed trained before the shape pictures' size was a setting (64 pixels then) is still recognised as
    trained; asking for another size is refused, not silently mixed."""
    report = _train(tmp_path / "old", batch_size=2)
    assert report["settings"]["image_size"] == 64
    path = tmp_path / "old" / "testbed.json"
    settings = {k: v for k, v in report["settings"].items() if k != "image_size"}
    path.write_text(json.dumps({**report, "settings": settings}))
    assert _train(tmp_path / "old", batch_size=2)["settings"] == settings  # nothing retrained
    with pytest.raises(ValueError, match="trained with"):
        _train(tmp_path / "old", batch_size=2, image_size=96)
    with pytest.raises(ValueError, match="multiple of 32"):
        _train(tmp_path / "new", image_size=100)


def test_oracle_draws_and_ranks():
    from interlace_hf.testbed.oracle import draw_drop_sets, percentile

    assert draw_drop_sets(5, 2, 100, seed=0) == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 4), (2, 3),
                                                 (2, 4), (3, 4)]  # fewer than asked: all of them
    drawn = draw_drop_sets(24, 6, 50, seed=1)
    assert len(set(drawn)) == 50 and all(len(s) == 6 and list(s) == sorted(s) for s in drawn)
    assert drawn == draw_drop_sets(24, 6, 50, seed=1) != draw_drop_sets(24, 6, 50, seed=2)
    assert percentile(0.5, [0.1, 0.5, 0.9, 1.0]) == 37.5 and percentile(2.0, [0.1, 1.0]) == 100.0


def test_oracle_places_each_method_in_the_distribution(compared, capsys):
    """`testbed oracle`: sampled drop sets scored in memory (teacher-forced), each compare plan's set placed by
    percentile; teacher-forced exact match agrees with the greedy evaluation; a rerun rescores nothing."""
    from interlace_hf.testbed.model import evaluate_accuracy, manifest_path, score_answers
    from interlace_hf.testbed.oracle import run_oracle

    path, _ = compared
    args = TestbedOracleArgs(output_dir=str(path), samples=6, num_questions=12, batch_size=5)
    results = run_oracle(args)
    assert results["possible_sets"] == 220 and results["scored_sets"] == len(results["sets"]) == 6
    assert set(results["methods"]) == {*STRATEGIES, "random-1"}  # each draw of Random placed on its own
    for name, entry in results["methods"].items():
        plan = json.loads((path / "compare" / "plans" / f"25pc-{name}.json").read_text())
        assert entry["dropped_layers"] == plan["dropped_layers"] and 0 <= entry["percentile"] <= 100
    assert results["dense"]["loglik"] < 0 and 0 <= results["relative_quantiles"]["50"] <= 1.5
    scored = json.loads((path / "oracle" / "scores-25pc.json").read_text())
    for name, entry in results["methods"].items():  # relative: the mean of per-type ratios, as compare's
        types = scored[",".join(map(str, entry["dropped_layers"]))]["per_type"]
        ratios = [types[t] / p for t, p in scored[""]["per_type"].items() if p > 0]
        assert entry["relative"] == pytest.approx(sum(ratios) / len(ratios) if ratios else 0.0)

    # teacher-forced exact match is greedy decoding's, question by question, on the dense and a pruned model
    for model in (path / "model", path / "compare" / "models" / "25pc" / "shortgpt"):
        forced = score_answers(model, manifest_path(path / "data" / "heldout"), batch_size=5)
        greedy = evaluate_accuracy(model, manifest_path(path / "data" / "heldout"), item_scores=True)
        assert forced["scores"] == greedy["scores"] and forced["per_type"] == greedy["per_type"]
        assert len(forced["logliks"]) == 12 and all(x < 0 for x in forced["logliks"])

    cache = path / "oracle" / "scores-25pc.json"
    stamp = cache.stat().st_mtime_ns
    assert main(["testbed", "oracle", str(path), "--samples", "6", "--num-questions", "12", "--batch-size", "5"]) == 0
    assert cache.stat().st_mtime_ns == stamp and "percentile among the scored sets" in capsys.readouterr().out


def test_seed_bootstrap_resamples_seeds_and_their_own_questions():
    from interlace_hf.testbed.report import seed_bootstrap

    # seed 0: 4 questions of two types; seed 1: 2 other questions of one type (each seed has its own held-out set)
    first = ([1, 1, 1, 0], [1, 0, 0, 0], ["count", "count", "shape", "shape"], {"count": 1.0, "shape": 2.0})
    second = ([1, 0], [1, 0], ["count", "count"], {"count": 4.0})
    stats = seed_bootstrap([first, second], resamples=300)
    # seed 0: count +0.5 x 1, shape +0.5 x 2 -> (0.5 + 1.0) / 2 = 0.75; seed 1: 0
    assert stats["per_seed"] == [0.75, 0.0] and stats["mean"] == pytest.approx(0.375)
    assert 0 <= stats["low"] < stats["mean"] < stats["high"] <= 1.5  # seeds resampled: 0 and 1.5 are possible ends
    same = seed_bootstrap([(first[0], first[0], first[2], first[3])], resamples=100)
    assert (same["low"], same["mean"], same["high"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="expected 4 scores"):
        seed_bootstrap([([1, 0], [1, 0], first[2], first[3])])


def test_summary_over_seeds(compared, tmp_path, capsys, caplog):
    """`testbed summary`: the rows every seed compared, each seed's relative performance and their mean, the paired
    difference from INTERLACE and the recovery by the fine-tune, pooled over seeds. Here the second seed is the
    comparison's (fine-tune and calibration data, trainer order) on the same model: seeds vary separately."""
    from interlace_hf.args import TestbedSummaryArgs
    from interlace_hf.testbed.summary import run_summary

    path, results = compared
    second = run_compare(TestbedCompareArgs(output_dir=str(path), strategies=["interlace", "shortgpt"],
                                            calibration_samples=8, finetune_learning_rate=1e-3, seed=1,
                                            results_dir=str(tmp_path / "compare-1")))
    with caplog.at_level(logging.WARNING, logger="interlace_hf.testbed.summary"):
        summary = run_summary(TestbedSummaryArgs(output_dir=str(tmp_path / "summary"),
                                                 results=[str(path), str(tmp_path / "compare-1")], bootstrap=200))
    assert "rows left out" in caplog.text  # sleb and random were compared on seed 0 only
    assert summary["seeds"] == [{"model": 0, "compare": 0}, {"model": 0, "compare": 1}]
    assert [(r["strategy"], r["fine_tuned"]) for r in summary["rows"]] == [
        ("dense", False), ("dense", True), ("interlace", False), ("interlace", True), ("shortgpt", False),
        ("shortgpt", True), ("interlace+kd_both", True), ("interlace+lora", True)]

    def row_of(result, strategy, fine_tuned):
        return next(r for r in result["rows"] if r["strategy"] == strategy and r["fine_tuned"] == fine_tuned)

    assert results["rows"][0]["accuracy"] > 0, "the tiny testbed of seed 0 answers something; the checks need it"
    for row in summary["rows"]:
        mine = [row_of(r, row["strategy"], row["fine_tuned"]) for r in (results, second)]
        assert row["relative_per_seed"] == [m["relative"] for m in mine]
        assert row["relative"] == pytest.approx(sum(row["relative_per_seed"]) / 2)
        if row["strategy"] not in ("dense", "interlace"):  # `compare`'s paired difference of each seed, averaged
            versus = row["vs_interlace"]
            assert versus["per_seed"] == pytest.approx([m["vs_interlace"]["mean"] for m in mine])
            assert versus["low"] <= versus["mean"] <= versus["high"]
        else:
            assert "vs_interlace" not in row
        if row["fine_tuned"]:  # fine-tuned minus not, same questions: the difference of the relative performances
            plain = [row_of(r, row["strategy"].partition("+")[0], False)["relative"] for r in (results, second)]
            assert row["recovery"]["per_seed"] == pytest.approx([a - b for a, b in zip(row["relative_per_seed"],
                                                                                      plain)])
            assert row["learning_rate_per_seed"][1] == (1e-2 if row["strategy"] == "interlace+lora" else 1e-3)
        else:
            assert "recovery" not in row
    markdown = (tmp_path / "summary" / "summary.md").read_text()
    assert markdown.startswith("| Method | Drop ratio | Fine-tuned | FLOP speed-up | Relative performance, mean of 2 "
                               "seeds |") and markdown.count("\n") == len(summary["rows"]) + 2

    assert main(["testbed", "summary", str(tmp_path / "s2"), "--results", str(path), str(path / "compare")]) == 2
    assert "pairs [(0, 0), (0, 0)] repeat" in capsys.readouterr().err
    assert main(["testbed", "summary", str(tmp_path / "s2"), "--results", str(path), str(tmp_path / "nothing")]) == 2
    assert "run `interlace-hf testbed compare TESTBED` first" in capsys.readouterr().err
    assert main(["testbed", "summary", str(tmp_path / "s3"), "--results", str(path), str(tmp_path / "compare-1")]) == 0
    assert "model 0 / compare 1" in capsys.readouterr().out


def test_compare_fine_tunes_only_the_finetune_ratios(trained, tmp_path):
    """`--finetune-ratios`: every ratio gets its rows without the fine-tune, only these get fine-tuned ones."""
    path, _ = trained
    results = run_compare(TestbedCompareArgs(
        output_dir=str(path), drop_ratios=[0.1, 0.25], finetune_ratios=[0.25], strategies=["interlace"],
        recovery_methods=["none"], finetune_learning_rate=1e-4, calibration_samples=8,
        results_dir=str(tmp_path / "compare")))
    assert [(r["method"], r["drop_ratio"], r["fine_tuned"]) for r in results["rows"]] == [
        ("Dense", 0.0, False), ("Dense-FT", 0.0, True), ("INTERLACE", 0.1, False), ("INTERLACE", 0.25, False),
        ("INTERLACE", 0.25, True)]
    assert len(results["rows"][2]["dropped_layers"]) == 1 and len(results["rows"][-1]["dropped_layers"]) == 3
    with pytest.raises(ValueError, match=r"--finetune-ratios \[0.1\] are not among --drop-ratios"):
        TestbedCompareArgs(output_dir="x", drop_ratios=[0.25], finetune_ratios=[0.1]).validate()


def test_angular_gets_the_pack_size_of_its_block(trained, tmp_path):
    """Angular drops one block of n layers and needs pack-size-n similarities: compare computes them for every
    ratio (4 of 12 layers at 34%; 6 of 24 on `deep` at 25%), also over a similarity run made without them."""
    path, _ = trained
    comparison = Comparison(TestbedCompareArgs(output_dir=str(path), drop_ratios=[0.25], strategies=["angular"],
                                               calibration_samples=8, results_dir=str(tmp_path / "c")))
    assert comparison.similarities().pack_sizes == (1, 2, 3)
    wider = Comparison(TestbedCompareArgs(output_dir=str(path), drop_ratios=[0.25, 0.34], strategies=["angular"],
                                          calibration_samples=8, results_dir=str(tmp_path / "c")))
    plan = wider.plan("angular", 0.34)
    assert wider.similarities().pack_sizes == (1, 2, 3, 4) and len(plan.dropped_layers) == 4
    start = plan.dropped_layers[0]
    assert list(plan.dropped_layers) == list(range(start, start + 4))
