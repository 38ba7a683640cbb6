"""`interlace-hf run`: the whole method on the embedded default, then again to show finished stages are skipped."""

import json

import pytest
import yaml

from interlace_hf.commands.cli import main
from interlace_hf.commands.pipeline import load_run_recipe


def test_run_tiny_end_to_end_then_resume(tmp_path, capsys):
    recipe = yaml.safe_load(open("recipes/run/tiny.yaml"))
    recipe.update(output_dir=str(tmp_path / "run"), synthetic_num=40, eval_limit=8, bench_image_size=64,
                  bench_repeats=1)
    recipe["train"].update(max_steps=2)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(recipe))
    assert main(["run", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "run"
    for artifact in ("base/config.json", "data/synthetic.json", "eval-data/synthetic.json",
                     "similarity/similarity_summary.json", "plan.json", "plan.png", "pruned/plan.json",
                     "finetuned/interlace_train.json", "finetuned/README.md", "eval.json", "bench.json",
                     "run_report.json"):
        assert (out / artifact).is_file(), artifact
    report = json.loads((out / "run_report.json").read_text())
    assert report["layers_before"] == 12 and report["layers_after"] == 9
    assert report["parameters_after"] < report["parameters_before"]
    claim = report["ttft_speedup_claim"]
    assert claim["rounds"] == 1 and claim["ideal"] > 1 and not claim["quotable"]  # one round: never quoted
    assert report["ttft_speedup"] == (claim["median"] if claim["quotable"] else None)  # quoted only when stable
    evaluation = json.loads((out / "eval.json").read_text())
    assert evaluation["tasks"]["synthetic"]["n"] == 8 and evaluation["base"]
    # The random tiny base answers nothing (score 0), so there is no ratio to report; a trained model has one.
    if evaluation["relative"] is None:
        assert report["relative_performance"] is None and "relative performance: n/a" in printed
    else:
        assert 0 <= report["relative_performance"]
    assert "INTERLACE run report" in printed and f"TTFT:                 {claim['text']}" in printed
    card = (out / "finetuned" / "README.md").read_text()
    assert claim["text"] in card
    # Again: every stage is already done.
    assert main(["run", "--config", str(config)]) == 0
    again = capsys.readouterr().out
    for stage in ("base", "data", "similarity", "plan", "prune", "train", "eval", "bench"):
        assert f"[{stage}] already done, skipping" in again, stage
    # A changed setting re-runs its stage and everything after it, and says why; nothing stale is reported.
    recipe["drop_ratio"] = 0.34
    config.write_text(yaml.safe_dump(recipe))
    assert main(["run", "--config", str(config)]) == 0
    changed = capsys.readouterr().out
    for stage in ("base", "data", "similarity"):
        assert f"[{stage}] already done, skipping" in changed, stage
    for stage in ("plan", "prune", "train", "eval", "bench"):
        assert f"[{stage}] settings changed (drop_ratio: 0.25 -> 0.34): running again" in changed, stage
    report = json.loads((out / "run_report.json").read_text())
    assert report["layers_after"] == 8
    from interlace_hf.plan import Plan

    assert len(Plan.load(out / "finetuned").dropped_layers) == 4 == len(Plan.load(out / "pruned").dropped_layers)
    assert yaml.safe_load((out / "run_recipe.yaml").read_text())["drop_ratio"] == 0.34
    state = json.loads((out / "run_state.json").read_text())
    assert state["train"]["status"] == "done" and state["train"]["settings"]["drop_ratio"] == 0.34


def test_a_typo_in_the_train_block_is_found_before_any_stage(tmp_path, capsys):
    recipe = yaml.safe_load(open("recipes/run/tiny.yaml"))
    recipe.update(output_dir=str(tmp_path / "run"))
    recipe["train"]["learnig_rate"] = 1e-4
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(recipe))
    assert main(["run", "--config", str(config)]) == 2
    assert "train: unknown keys ['learnig_rate']" in capsys.readouterr().err
    assert not (tmp_path / "run" / "base").exists()
    del recipe["train"]["learnig_rate"]
    recipe["train"]["output_dir"] = "elsewhere"
    config.write_text(yaml.safe_dump(recipe))
    assert main(["run", "--config", str(config)]) == 2
    assert "train: ['output_dir'] are set by the run itself" in capsys.readouterr().err


def test_run_recipe_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tiny\noutput_dir: x\ndrop_rato: 0.2\n")
    with pytest.raises(ValueError, match=r"unknown run recipe keys \['drop_rato'\]"):
        load_run_recipe(bad)
    bad.write_text("model: tiny\noutput_dir: x\nskip: [training]\n")
    with pytest.raises(ValueError, match=r"skip: unknown stages \['training'\]"):
        load_run_recipe(bad)
    bad.write_text("output_dir: x\n")
    with pytest.raises(ValueError, match="needs model"):
        load_run_recipe(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_run_recipe(tmp_path / "missing.yaml")
    assert load_run_recipe("recipes/run/tiny.yaml").drop_ratio == 0.25
