"""Bad input and faults: every row of docs/reliability.md. Each ends in a message that names the problem and the fix,
with no traceback, before the expensive part, and with no output directory left half-written."""

import errno
import json
import os
import shutil

import pytest

from interlace_hf.commands.cli import main
from interlace_hf.plan import Plan
from interlace_hf.datasets.synthetic import make_synthetic


def run(capsys, *argv):
    """(exit code, stderr) of one `interlace-hf` command; a raw traceback would fail the test by raising."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def copy_model(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    return model


def test_truncated_weights_and_config_are_named(tiny_model_dir, tmp_path, capsys):
    model = copy_model(tiny_model_dir, tmp_path)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    rc, err = run(capsys, "prune", model, "--drop-layers", "3", "--output-dir", tmp_path / "out")
    assert rc == 2 and f"{weights} is damaged or truncated" in err and "download it again" in err
    (model / "config.json").write_text((tiny_model_dir / "config.json").read_text()[:200])
    rc, err = run(capsys, "prune", model, "--drop-layers", "3", "--output-dir", tmp_path / "out")
    assert rc == 2 and f"{model / 'config.json'} is not valid JSON (line" in err
    assert not (tmp_path / "out").exists()


def test_output_directory_under_a_file_read_only_or_full(tiny_model_dir, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc, err = run(capsys, "prune", tiny_model_dir, "--drop-layers", "3", "--output-dir", blocker / "out")
    assert rc == 2 and f"{str(blocker)!r} is a file, not a directory" in err
    if os.geteuid() != 0:  # root writes anywhere: the check cannot be seen as root
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        rc, err = run(capsys, "prune", tiny_model_dir, "--drop-layers", "3", "--output-dir", locked / "out")
        assert rc == 2 and "is not writable by this user" in err
    from transformers import PreTrainedModel

    def disk_full(self, directory, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", disk_full)
    rc, err = run(capsys, "prune", tiny_model_dir, "--drop-layers", "3", "--output-dir", tmp_path / "full")
    assert rc == 2 and "is full" in err and "nothing of this run was kept" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"] + (["locked"] if os.geteuid() != 0 else [])


def test_stale_staging_of_killed_runs_is_removed(tiny_model_dir, tmp_path, capsys):
    dead = tmp_path / ".out.partial-999999999-deadbeef"  # no such process
    (dead / "sub").mkdir(parents=True)
    (dead / "sub" / "model.safetensors").write_bytes(b"0" * 1024)
    alive = tmp_path / f".out.partial-{os.getpid()}-cafecafe"  # this process: a run still going, kept
    alive.mkdir()
    rc, _ = run(capsys, "prune", tiny_model_dir, "--drop-layers", "3", "--output-dir", tmp_path / "out")
    assert rc == 0 and not dead.exists() and alive.exists() and (tmp_path / "out" / "plan.json").is_file()


def test_cuda_asked_for_where_there_is_none(tiny_model_dir, llava_json, tmp_path, capsys):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    rc, err = run(capsys, "similarity", "--model", tiny_model_dir, "--data", llava_json, "--output-dir",
                  tmp_path / "sim", "--device", "cuda")
    assert rc == 2 and "--device cuda: CUDA is not available here; pass --device cpu" in err
    rc, err = run(capsys, "eval", tiny_model_dir, "--device", "cuda:1")
    assert rc == 2 and "CUDA is not available here" in err


def test_missing_and_broken_images(tiny_model_dir, tmp_path, capsys):
    """Data errors stop the run before the model is loaded, naming the record and the file (no record is skipped)."""
    data = make_synthetic(tmp_path / "syn", num=6, seed=0)
    records = json.loads(data.read_text())
    missing = tmp_path / "syn" / records[2]["image"]
    missing.unlink()
    plan_file = Plan.from_dropped(12, (3,)).save(tmp_path / "plan.json")
    for argv in (["similarity", "--model", tiny_model_dir, "--data", data, "--output-dir", tmp_path / "sim",
                  "--sample-fraction", "1.0"],
                 ["train", "--model", tiny_model_dir, "--plan", plan_file, "--dataset", data, "--output_dir",
                  tmp_path / "ft"],
                 ["eval", tiny_model_dir, "--data", f"synthetic={data}"]):
        rc, err = run(capsys, *argv)
        flag = "--dataset" if argv[0] == "train" else "--data"
        assert rc == 2 and f"{flag} {str(data)!r}: 1 image file(s) do not exist: record 2: {missing}" in err, argv
    # A file that is there but broken (truncated): named too, still before the model is loaded.
    make_synthetic(tmp_path / "syn2", num=6, seed=0)
    data = tmp_path / "syn2" / "synthetic.json"
    broken = tmp_path / "syn2" / json.loads(data.read_text())[4]["image"]
    broken.write_bytes(broken.read_bytes()[:60])
    rc, err = run(capsys, "similarity", "--model", tiny_model_dir, "--data", data, "--output-dir", tmp_path / "sim2",
                  "--sample-fraction", "1.0")
    assert rc == 2 and f"record 4: image {str(broken)!r} cannot be read" in err
    rc, err = run(capsys, "train", "--model", tiny_model_dir, "--plan", plan_file, "--dataset", data,
                  "--output_dir", tmp_path / "ft2", "--use_cpu", "true")
    assert rc == 2 and f"image {str(broken)!r} cannot be read" in err
    assert not (tmp_path / "sim").exists() and not (tmp_path / "ft").exists() and not (tmp_path / "ft2").exists()


def test_hub_dataset_offline_and_hub_errors(hub, tiny_model_dir, tmp_path, capsys):
    rc, err = run(capsys, "eval", tiny_model_dir, "--tasks", "chartqa")
    assert rc == 2 and "the Hub dataset could not be loaded" in err and "interlace-hf data prepare" in err
    rc, err = run(capsys, "prune", "alice/no-such-model", "--drop-layers", "3", "--output-dir", tmp_path / "o")
    assert rc == 1 and "Hub error after retries" in err and "Check the model / dataset id" in err
    assert "Run the same command again to finish" not in err  # that hint is for interrupted uploads only


def test_invalid_repo_ids_are_refused_before_anything(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["prune", str(tiny_model_dir), "--drop-layers", "3", "--output-dir", str(out)]) == 0
    for repo_id in ("no-namespace", "a/b/c", "alice/bad--name", "alice/.hidden", "alice/has space"):
        rc, err = run(capsys, "push", out, "--repo-id", repo_id, "--dry-run")
        assert rc == 2 and f"--repo-id {repo_id!r} is not a valid Hub repo id" in err, repo_id
        rc, err = run(capsys, "prune", tiny_model_dir, "--drop-layers", "3", "--output-dir", tmp_path / "q",
                      "--push-to-hub", repo_id, "--dry-run")
        assert rc == 2 and "is not a valid Hub repo id" in err, repo_id


def test_random_weight_bench_that_cannot_fit_is_refused_first(monkeypatch, capsys):
    from interlace_hf.benchmark import models as bench_models

    monkeypatch.setattr(bench_models, "available_memory", lambda device: 8 * 2**30)  # an 8 GiB machine
    rc, err = run(capsys, "bench", "--random-weights", "--config", "qwen3-vl-8b", "base", "25pc",
                  "--dtype", "float32", "--device", "cpu")
    assert rc == 2 and "needs about 3" in err and "GiB on cpu" in err and "only 8.0 GiB is free" in err
    assert "--dtype bfloat16" in err
