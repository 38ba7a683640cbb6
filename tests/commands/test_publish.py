"""Publishing against the loopback Hub (tests/hub_server.py): the real huggingface_hub client and from_pretrained."""

import json
import os

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, snapshot_download
from transformers import AutoModelForImageTextToText

from interlace_hf.card import CardContext, render_model_card
from interlace_hf.commands.cli import main
from interlace_hf.hub import with_retries
from interlace_hf.plan import Plan

TOKEN = "hf_alice_write"


@pytest.fixture(scope="module")
def similarity_dir(tiny_model_dir, llava_json, tmp_path_factory):
    out = tmp_path_factory.mktemp("pubsim") / "sim"
    assert main(["similarity", "--model", str(tiny_model_dir), "--data", str(llava_json), "--output-dir", str(out),
                 "--sample-fraction", "1.0", "--batch-size", "5"]) == 0
    return out


def remote_files(repo_id, tmp_path):
    path = snapshot_download(repo_id, token=TOKEN, cache_dir=tmp_path / "cache")
    from pathlib import Path

    return {p.relative_to(path).as_posix(): p.read_bytes() for p in Path(path).rglob("*") if p.is_file()}


def test_prune_push_then_load_from_the_hub(hub, tiny_model_dir, similarity_dir, tmp_path, image_batch, capsys):
    out = tmp_path / "pruned"
    assert main(["prune", str(tiny_model_dir), "--similarities", str(similarity_dir), "--strategy", "interlace",
                 "--drop-ratio", "0.25", "--output-dir", str(out), "--push-to-hub", "alice/Interlace-tiny-25pc",
                 "--token", TOKEN]) == 0
    printed = capsys.readouterr().out
    assert "pushed to alice/Interlace-tiny-25pc" in printed and TOKEN not in printed
    files = remote_files("alice/Interlace-tiny-25pc", tmp_path)
    for name in ("model.safetensors", "config.json", "plan.json", "README.md", "similarity_profile.png",
                 "modeling_interlace_qwen3_vl.py", "tokenizer.json", "chat_template.jinja"):
        assert files[name] == (out / name).read_bytes(), name
    card = ModelCard((out / "README.md").read_text())
    assert card.data.base_model is None  # a local base directory is not a Hub id
    assert "layer-pruning" in card.data.tags and "alice/Interlace-tiny-25pc" in card.text
    remote = AutoModelForImageTextToText.from_pretrained("alice/Interlace-tiny-25pc", token=TOKEN,
                                                         cache_dir=tmp_path / "c2").eval()
    local = AutoModelForImageTextToText.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(remote(**image_batch).logits, local(**image_batch).logits, rtol=0, atol=0)
    for secret_holder in out.rglob("*"):
        if secret_holder.is_file():
            assert TOKEN.encode() not in secret_holder.read_bytes(), secret_holder


def test_push_twice_is_idempotent_and_a_rerun_finishes_a_broken_push(hub, tiny_model_dir, tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)  # retry backoff without waiting
    out = tmp_path / "p"
    assert main(["prune", str(tiny_model_dir), "--drop-layers", "3,7", "--output-dir", str(out),
                 "--max-shard-size", "1MB"]) == 0
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) >= 2 and (out / "model.safetensors.index.json").is_file()
    # The first push breaks for good after its first commit (the first shard): every later commit is refused.
    hub.fail_next(100, status=500, path_contains="/commit/", after=1)
    assert main(["push", str(out), "--repo-id", "alice/p", "--token", TOKEN]) == 1
    assert "Run the same command again to finish" in capsys.readouterr().err
    hub.clear_faults()
    capsys.readouterr()
    assert main(["push", str(out), "--repo-id", "alice/p", "--token", TOKEN]) == 0
    rerun = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"{len(list(out.iterdir())) - 1} files uploaded, 1 already there" in rerun, rerun  # shard 1 was kept
    assert main(["push", str(out), "--repo-id", "alice/p", "--token", TOKEN]) == 0
    second = capsys.readouterr().out.strip().splitlines()[-1]
    assert "0 files uploaded" in second and "(0 commits)" in second
    files = remote_files("alice/p", tmp_path)
    for path in out.iterdir():
        if path.is_file():
            assert files[path.name] == path.read_bytes(), path.name


@pytest.mark.parametrize("status, mode", [(429, "status"), (500, "status"), (503, "status"), (None, "drop")])
def test_transient_failures_are_retried(hub, tiny_model_dir, tmp_path, status, mode, monkeypatch, capsys):
    monkeypatch.setattr("time.sleep", lambda s: None)  # backoff without waiting
    out = tmp_path / "p"
    assert main(["prune", str(tiny_model_dir), "--drop-layers", "5", "--output-dir", str(out)]) == 0
    for path_part in ("/api/whoami-v2", "/api/repos/create", "/commit/"):
        hub.fail_next(2, status=status or 500, path_contains=path_part, mode=mode)
    assert main(["push", str(out), "--repo-id", "alice/flaky", "--token", TOKEN]) == 0
    files = remote_files("alice/flaky", tmp_path)
    assert files["model.safetensors"] == (out / "model.safetensors").read_bytes()
    assert Plan.from_json(files["plan.json"].decode()) == Plan.load(out)


def test_missing_or_bad_token_fails_fast_before_any_work(hub, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "never"
    argv = ["prune", str(tiny_model_dir), "--drop-layers", "3", "--output-dir", str(out), "--push-to-hub", "alice/x"]
    assert main(argv) == 2
    assert "needs a token with write access: set HF_TOKEN" in capsys.readouterr().err
    assert main(argv + ["--token", "hf_wrong"]) == 2
    err = capsys.readouterr().err
    assert "rejected the token (401" in err and "hf_wrong" not in err
    assert main(argv + ["--token", "hf_bob_write"]) == 2
    assert "cannot write to 'alice'" in capsys.readouterr().err
    assert not out.exists()  # nothing was computed or written
    assert not any("/commit/" in path for _, path in hub.requests)


def test_dry_run_touches_nothing(hub, tiny_model_dir, similarity_dir, tmp_path, capsys):
    out = tmp_path / "dry"
    assert main(["prune", str(tiny_model_dir), "--similarities", str(similarity_dir), "--strategy", "interlace",
                 "--drop-ratio", "0.25", "--output-dir", str(out), "--push-to-hub", "alice/dry", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "would push to https://huggingface.co/alice/dry" in printed and "model*.safetensors" in printed
    assert "model card:" in printed and "# alice/dry" in printed
    assert not out.exists() and hub.requests == []


def test_publish_a_family_into_a_collection(hub, tiny_model_dir, similarity_dir, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    argv = ["publish", "--model", str(tiny_model_dir), "--similarities", str(similarity_dir), "--ratios", "0.10",
            "0.25", "--namespace", "alice-org", "--collection-title", "INTERLACE tiny", "--work-dir", str(work),
            "--token", TOKEN]
    assert main(argv) == 0
    state = json.loads((work / "publish_state.json").read_text())
    slug = state["collection_slug"]
    api = HfApi(token=TOKEN)
    collection = api.get_collection(slug)
    assert collection.title == "INTERLACE tiny"
    assert sorted(item.item_id for item in collection.items) == [f"alice-org/Interlace-qwen3-vl-tiny-{pc}pc"
                                                                 for pc in (10, 25)]
    plan10 = Plan.from_json(remote_files("alice-org/Interlace-qwen3-vl-tiny-10pc", tmp_path)["plan.json"].decode())
    assert len(plan10.dropped_layers) == 1
    # A rerun with one more ratio: finished variants are skipped, the same collection is updated.
    capsys.readouterr()
    assert main(argv[:6] + ["0.10", "0.20", "0.25"] + argv[8:]) == 0
    printed = capsys.readouterr().out
    assert "Interlace-qwen3-vl-tiny-10pc: already published, skipping" in printed
    assert json.loads((work / "publish_state.json").read_text())["collection_slug"] == slug
    assert len(api.get_collection(slug).items) == 3
    assert main(argv[:-2] + ["--dry-run"]) == 0  # no token needed for a dry run


def test_publish_refuses_ratios_that_make_the_same_model(tiny_model_dir, similarity_dir, tmp_path, capsys):
    """On 12 layers, 10% and 15% both drop one layer: publishing both would push one model under two names."""
    base = ["publish", "--model", str(tiny_model_dir), "--similarities", str(similarity_dir), "--namespace", "alice",
            "--work-dir", str(tmp_path / "work"), "--dry-run", "--ratios"]
    assert main(base + ["0.10", "0.15", "0.25"]) == 2
    err = capsys.readouterr().err
    assert "--ratios 0.1, 0.15 all drop 1 of 12 layers" in err and "Keep one ratio per number" in err
    assert main(base + ["0.25", "0.25"]) == 2
    assert "--ratios lists [0.25] more than once" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()
    assert main(base + ["0.10", "0.25"]) == 0


def test_card_metadata_parses_and_the_tiny_card_matches_its_snapshot():
    from pathlib import Path

    plan = Plan(12, (2, 5, 10), (1, 4, 9), (3, 6, 11), "interlace", 0.25)
    ctx = CardContext(plan=plan, model_name="interlace-hf/Interlace-qwen3-vl-tiny-25pc",
                      base_model="interlace-hf/qwen3-vl-tiny", checkpoint_format="interlace", license="apache-2.0",
                      datasets=["HuggingFaceM4/FineVision"], trained=True, params_before=746_000,
                      params_after=642_880,
                      similarity_means={1: [0.8 + 0.01 * i for i in range(12)], 2: [0.7 + 0.01 * i for i in range(11)],
                                        3: [0.6 + 0.01 * i for i in range(10)]},
                      profile_image="similarity_profile.png", recipe="model: m\nlearning_rate: 1e-5\n",
                      bench={"base_ttft_ms": 20.0, "ttft_ms": 16.0, "speedup": 1.25, "device": "CPU (2 cores)",
                             "dtype": "float32", "date": "2026-11-21", "ideal_speedup": 1.31,
                             "base_ttft_samples": [20.0, 20.4, 19.8], "ttft_samples": [16.0, 16.2, 15.9]},
                      eval={"relative": 0.9, "date": "2026-11-21",
                            "tasks": {"synthetic": {"base": 0.5, "pruned": 0.45, "metric": "exact_match"}}},
                      versions={"interlace-hf": "0.1.0", "transformers": "5.23.0"})
    text = render_model_card(ctx)
    card = ModelCard(text)
    assert card.data.base_model == "interlace-hf/qwen3-vl-tiny" and card.data.base_model_relation == "finetune"
    assert card.data.license == "apache-2.0" and card.data.pipeline_tag == "image-text-to-text"
    assert card.data.library_name == "transformers" and "interlace" in card.data.tags
    assert card.data.eval_results[0].metric_value == 0.45
    assert "**1.25x faster (range 1.25-1.26x over 3 rounds; FLOP ideal 1.31x)**" in text
    assert "90.0%" in text and "trust_remote_code=True" in text
    snapshot = Path(__file__).resolve().parents[2] / "interlace_hf" / "model_cards" / "example-tiny-interlace-25pc.md"
    if os.environ.get("INTERLACE_HF_UPDATE_SNAPSHOTS"):
        snapshot.write_text(text)
    assert text == snapshot.read_text(), (
        "the rendered card changed: review the difference, then rerun with INTERLACE_HF_UPDATE_SNAPSHOTS=1")
    standard = render_model_card(CardContext(plan=Plan.from_dropped(12, (7,)), model_name="m", base_model="b/c",
                                             checkpoint_format="standard"))
    assert "trust_remote_code" not in standard and "no remote code" in standard


def test_with_retries_gives_up_on_permanent_errors():
    calls = []

    def fail():
        calls.append(1)
        raise ValueError("not transient")

    with pytest.raises(ValueError):
        with_retries(fail, what="x", sleep=lambda s: None)
    assert len(calls) == 1


def test_trainer_push_to_hub_keeps_the_format_the_plan_and_our_card(hub, tiny_model_dir, tiny_processor, tmp_path):
    from interlace_hf.surgery import prune_model
    from interlace_hf.datasets.synthetic import make_synthetic
    from interlace_hf.train import build_train_dataset
    from interlace_hf.args import TrainArgs
    from interlace_hf.trainer import InterlaceSFTConfig, InterlaceSFTTrainer

    plan = Plan(12, (2, 5, 10), (1, 4, 9), (3, 6, 11), "interlace")
    model = prune_model(AutoModelForImageTextToText.from_pretrained(tiny_model_dir), plan)
    data = make_synthetic(tmp_path / "d", num=4)
    dataset, _ = build_train_dataset(TrainArgs(model="x", dataset=str(data)))
    args = InterlaceSFTConfig(output_dir=str(tmp_path / "ft"), max_steps=1, per_device_train_batch_size=2,
                              gradient_accumulation_steps=1, save_strategy="no", report_to="none",
                              max_pixels=16384, min_pixels=1024, dataloader_pin_memory=False,
                              push_to_hub=True, hub_model_id="alice/ft", hub_token=TOKEN)
    trainer = InterlaceSFTTrainer(model, plan, args=args, train_dataset=dataset, processing_class=tiny_processor)
    trainer.train()
    trainer.push_to_hub()
    files = remote_files("alice/ft", tmp_path)
    assert Plan.from_json(files["plan.json"].decode()) == plan
    assert json.loads(files["config.json"])["model_type"] == "interlace_qwen3_vl"
    card = ModelCard(files["README.md"].decode())
    assert {"interlace", "layer-pruning"} <= set(card.data.tags) and "alice/ft" in card.text
    assert TOKEN.encode() not in b"".join(files.values())
