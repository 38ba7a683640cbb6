"""The one-pass similarity: equal to a naive output_hidden_states computation, batch-invariant, resumable."""

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForImageTextToText

from interlace_hf.args import SimilarityArgs
from interlace_hf.commands.cli import main
from interlace_hf.data import load_records, sample_indices
from interlace_hf.similarity import (
    BATCHES_FILE,
    PROGRESS_FILE,
    SUMMARY_FILE,
    bucketed_order,
    build_batch,
    compute_similarities,
    load_progress,
    padding_fraction,
    record_lengths,
    run_similarity,
)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def records(llava_json):
    return load_records(str(llava_json))[0]


def naive_block_similarities(model, processor, record, pack_sizes):
    """The paper's approach (all hidden states at once), corrected for deepstack and the final norm."""
    inputs = build_batch(processor, [record])
    captured = {}
    norm = model.model.language_model.norm
    handle = norm.register_forward_pre_hook(lambda module, args: captured.setdefault("last", args[0]))
    with torch.no_grad():
        hidden = list(model(**inputs, output_hidden_states=True).hidden_states)
    handle.remove()
    num_layers = len(model.model.language_model.layers)
    states = hidden[:num_layers] + [captured["last"]]  # s_j = input of layer j; s_L = last output before the norm
    if "pixel_values" in inputs:
        # output_hidden_states shows layer outputs WITHOUT the deepstack additions; layer j+1 receives them.
        with torch.no_grad():
            vision = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        visual = inputs["input_ids"][0] == model.config.image_token_id
        for j, features in enumerate(vision.deepstack_features):
            states[j + 1] = states[j + 1].clone()
            states[j + 1][0, visual] += torch.cat(features)
    out = {}
    for k in pack_sizes:
        out[k] = {i: F.cosine_similarity(states[i][0], states[i + k][0], dim=-1).mean().item()
                  for i in range(num_layers - k + 1)}
    return out


def test_equals_naive_computation_at_batch_size_1(model, tiny_processor, records):
    result = compute_similarities(model, tiny_processor, records, pack_sizes=(1, 2, 3, 5), progress=False)
    assert set(result.scores) == {1, 2, 3, 5}
    assert sorted(result.scores[3]) == list(range(10))  # every block, the last one (9, 10, 11) included
    for n, record in enumerate(records):
        expected = naive_block_similarities(model, tiny_processor, record, (1, 2, 3, 5))
        for k, blocks in expected.items():
            for i, value in blocks.items():
                assert result.scores[k][i][n] == pytest.approx(value, abs=1e-5), (n, k, i)


def test_deepstack_additions_are_part_of_the_input_state(model, tiny_processor, records):
    """Without the deepstack correction the naive numbers differ on image samples: the test above can fail."""
    image_record = next(r for r in records if r.images)
    result = compute_similarities(model, tiny_processor, [image_record], pack_sizes=(1,), progress=False)
    inputs = build_batch(tiny_processor, [image_record])
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states
    uncorrected = F.cosine_similarity(hidden[0][0], hidden[1][0], dim=-1).mean().item()
    assert abs(result.scores[1][0][0] - uncorrected) > 1e-4 or abs(
        result.scores[1][1][0] - F.cosine_similarity(hidden[1][0], hidden[2][0], dim=-1).mean().item()) > 1e-4


def test_batching_with_padding_matches_batch_size_1(model, tiny_processor, records):
    one = compute_similarities(model, tiny_processor, records, batch_size=1, progress=False)
    four = compute_similarities(model, tiny_processor, records, batch_size=4, progress=False)
    assert build_batch(tiny_processor, records[:4])["attention_mask"].min() == 0  # the batch really is padded
    for k in one.scores:
        for i in one.scores[k]:
            assert four.scores[k][i] == pytest.approx(one.scores[k][i], abs=1e-4)


def test_length_bucketing_keeps_every_score_and_cuts_padding(model, tiny_processor, tmp_path):
    """A length mix (synthetic shapes 64 px, charts 128 px, words 128x64 px, questions of several lengths): batches of
    similar length give each sample the score it gets alone, with less padding; an interrupted bucketed run resumes
    to the same scores."""
    from interlace_hf.datasets.synthetic import make_synthetic

    records, _ = load_records(str(make_synthetic(tmp_path / "mix", num=12, seed=3)))
    lengths = record_lengths(tiny_processor, records)
    # counted from the text and the image sizes alone, equal to what the processor makes of each sample
    assert lengths == [int(build_batch(tiny_processor, [r])["input_ids"].shape[1]) for r in records]
    assert len(set(lengths)) >= 3
    order = bucketed_order(lengths)
    assert [lengths[p] for p in order] == sorted(lengths, reverse=True)
    assert padding_fraction(lengths, order, 4) < padding_fraction(lengths, list(range(12)), 4)

    one = compute_similarities(model, tiny_processor, records, batch_size=1, progress=False)
    bucketed = compute_similarities(model, tiny_processor, records, batch_size=4, lengths=lengths, progress=False)
    for k in one.scores:
        for i in one.scores[k]:
            assert bucketed.scores[k][i] == pytest.approx(one.scores[k][i], abs=1e-4)

    class Interrupted(Exception):
        pass

    def stop(done):
        raise Interrupted

    common = dict(batch_size=4, lengths=lengths, output_dir=tmp_path / "run", settings={"seed": 3}, progress=False)
    with pytest.raises(Interrupted):
        compute_similarities(model, tiny_processor, records, on_batch_end=stop, **common)
    assert sorted(load_progress(tmp_path / "run")["scored"]) == sorted(order[:4])  # the 4 longest went first
    resumed = compute_similarities(model, tiny_processor, records, **common)
    for k in one.scores:
        for i in one.scores[k]:
            assert resumed.scores[k][i] == pytest.approx(bucketed.scores[k][i], abs=1e-6)


def test_resume_equals_uninterrupted(model, tiny_processor, records, tmp_path):
    full = compute_similarities(model, tiny_processor, records, batch_size=3, output_dir=tmp_path / "full",
                                model_name="m", dataset_name="d", settings={"seed": 1}, progress=False)

    class Interrupted(Exception):
        pass

    def stop_after_two_batches(done):
        if done >= 6:
            raise Interrupted

    with pytest.raises(Interrupted):
        compute_similarities(model, tiny_processor, records, batch_size=3, output_dir=tmp_path / "resumed",
                             model_name="m", dataset_name="d", settings={"seed": 1}, progress=False,
                             flush_seconds=1e9, on_batch_end=stop_after_two_batches)
    partial = load_progress(tmp_path / "resumed")
    assert partial["done"] == 6 and not list((tmp_path / "resumed").glob("*_hidden_state_similarities.json"))
    # Append-only: one line per batch, so a flush writes what is new, never the whole run again.
    log = (tmp_path / "resumed" / BATCHES_FILE).read_bytes()
    assert log.count(b"\n") == 2
    # A crash in the middle of a line: that batch is dropped (and cut from the file) and scored again.
    (tmp_path / "resumed" / BATCHES_FILE).write_bytes(log + log.splitlines(keepends=True)[1][:50])
    assert load_progress(tmp_path / "resumed")["done"] == 6
    assert (tmp_path / "resumed" / BATCHES_FILE).read_bytes() == log
    seen = []
    resumed = compute_similarities(model, tiny_processor, records, batch_size=3, output_dir=tmp_path / "resumed",
                                   model_name="m", dataset_name="d", settings={"seed": 1}, progress=False,
                                   on_batch_end=seen.append)
    assert seen == [9, 10]  # only the remaining samples were computed
    assert resumed.scores == full.scores
    for k in (1, 2, 3):
        name = f"m_d_pack{k}_hidden_state_similarities.json"
        assert (tmp_path / "resumed" / name).read_text() == (tmp_path / "full" / name).read_text()
    assert not (tmp_path / "resumed" / PROGRESS_FILE).exists() and not (tmp_path / "resumed" / BATCHES_FILE).exists()
    with pytest.raises(Interrupted):
        compute_similarities(model, tiny_processor, records, batch_size=3, output_dir=tmp_path / "other",
                             settings={"seed": 1}, progress=False, on_batch_end=stop_after_two_batches)
    with pytest.raises(ValueError, match="holds a partial similarity run with other settings"):
        compute_similarities(model, tiny_processor, records, output_dir=tmp_path / "other", settings={"seed": 2},
                             progress=False)


def test_cli_writes_the_paper_files_and_a_summary(tiny_model_dir, llava_json, tmp_path, capsys):
    out = tmp_path / "sim"
    argv = ["similarity", "--model", str(tiny_model_dir), "--data", str(llava_json), "--output-dir", str(out),
            "--sample-fraction", "0.5", "--batch-size", "2"]
    assert main(argv) == 0
    assert "most redundant blocks" in capsys.readouterr().out
    model_name = tiny_model_dir.name
    for k in (1, 2, 3):
        data = json.loads((out / f"{model_name}_calib_pack{k}_hidden_state_similarities.json").read_text())
        assert list(data) == [str(i) for i in range(12 - k + 1)]
        assert all(len(values) == 5 for values in data.values())
        assert all(-1 <= v <= 1 for values in data.values() for v in values)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["num_samples"] == 5 and summary["num_layers"] == 12 and summary["settings"]["seed"] == 42
    assert len(summary["means"]["3"]) == 10 and "transformers" in summary["versions"]
    assert main(argv) == 2  # a finished run is not silently redone
    assert "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite", "--seed", "7"]) == 0
    assert json.loads((out / SUMMARY_FILE).read_text())["settings"]["seed"] == 7


def test_finevision_style_dataset_directory(tiny_model_dir, tmp_path):
    import datasets
    from PIL import Image

    rows = {
        "images": [[Image.new("RGB", (64, 64), "red")], [], [Image.new("RGB", (32, 64), "blue")] * 2],
        "texts": [[{"user": "<image>\nWhat colour?", "assistant": "red"}], [{"user": "Say hi.", "assistant": "hi"}],
                  [{"user": "Same colour?", "assistant": "yes"}, {"user": "Sure?", "assistant": "yes"}]],
    }
    features = datasets.Features({"images": datasets.List(datasets.Image()),
                                  "texts": datasets.List({"user": datasets.Value("string"),
                                                          "assistant": datasets.Value("string")})})
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "fv"))
    records, name = load_records(str(tmp_path / "fv"))
    assert name == "fv" and [len(r.images) for r in records] == [1, 0, 2]
    assert records[0].prompt_messages()[0]["content"] == [{"type": "image"}, {"type": "text", "text": "What colour?"}]
    # Lazy: a row is read when accessed, and its images stay encoded bytes until load_images.
    stored = records[0].images[0]
    assert isinstance(stored, dict) and stored["bytes"][:4] == b"\x89PNG"
    assert records[-1].load_images()[0].size == (32, 64) and records[0].load_images()[0].getpixel((0, 0)) == (255, 0, 0)
    # Training from the dataset: rows mapped to messages, images neither decoded nor re-encoded on the way
    from interlace_hf.args import TrainArgs
    from interlace_hf.train import build_train_dataset

    train, _ = build_train_dataset(TrainArgs(model=str(tiny_model_dir), dataset=str(tmp_path / "fv")))
    assert len(train) == 3 and train[2]["messages"][-1] == {"role": "assistant", "content": "yes"}
    assert train[0]["images"][0].size == (64, 64)  # decoded when read
    raw = train.cast_column("images", datasets.List(datasets.Image(decode=False)))
    assert raw[2]["images"][1]["bytes"] == records.dataset[2]["images"][1]["bytes"]
    args = SimilarityArgs(model=str(tiny_model_dir), data=str(tmp_path / "fv"), output_dir=str(tmp_path / "sim"),
                          sample_fraction=1.0, batch_size=3)
    result = run_similarity(args)
    assert result.num_samples == 3 and len(result.scores[1][0]) == 3


def test_sample_indices_are_seeded_and_shared():
    assert sample_indices(100, 0.1, 42) == sample_indices(100, 0.1, 42)
    assert sample_indices(100, 0.1, 42) != sample_indices(100, 0.1, 43)
    assert len(sample_indices(100, 0.1, 0)) == 10 and len(sample_indices(5, 0.01, 0)) == 1
    with pytest.raises(ValueError, match=r"--sample-fraction must be in \(0, 1\]"):
        sample_indices(10, 0, 0)
    with pytest.raises(ValueError, match="has no records"):
        sample_indices(0, 0.5, 0)


@pytest.mark.parametrize(
    "override, match",
    [
        (dict(model=""), "--model required"),
        (dict(pack_sizes=[0, 1]), "--pack-sizes must be positive"),
        (dict(sample_fraction=1.5), r"--sample-fraction must be in \(0, 1\]"),
        (dict(batch_size=0), "--batch-size must be >= 1"),
        (dict(dtype="int4"), "--dtype must be"),
        (dict(pack_sizes=[13]), r"--pack-sizes \[13\] do not fit a 12-layer model"),
        (dict(data="{tmp}/missing.json"), "does not exist"),
        (dict(data="{tmp}/bad.json"), "must hold a JSON list"),
        (dict(data="{tmp}/noconv.json"), "record 0 has no `conversations`"),
    ],
)
def test_bad_input(tiny_model_dir, llava_json, tmp_path, override, match):
    (tmp_path / "bad.json").write_text('{"a": 1}')
    (tmp_path / "noconv.json").write_text('[{"image": "x.png"}]')
    fields = dict(model=str(tiny_model_dir), data=str(llava_json), output_dir=str(tmp_path / "out"))
    fields.update({k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v for k, v in override.items()})
    with pytest.raises(ValueError, match=match):
        run_similarity(SimilarityArgs(**fields))


def test_data_parallel_pass_equals_one_process_and_resumes_a_killed_rank(tiny_model_dir, tiny_processor, model,
                                                                        llava_json, tmp_path):
    """`torchrun --nproc_per_node 2 -m interlace_hf.similarity` (gloo on CPU): the seeded sample is shared out
    (rank r scores samples r, r+2, ...) and rank 0 merges the files one process writes, within 1e-6; a rank killed
    part-way (its log on disk) resumes from its own log."""
    import os
    import socket
    import subprocess
    import sys

    import torch

    from interlace_hf.args import SimilarityArgs
    from interlace_hf.similarity import record_lengths, run_settings, shard_settings

    common = ["--model", str(tiny_model_dir), "--data", str(llava_json), "--sample-fraction", "1.0",
              "--batch-size", "2", "--seed", "5", "--dtype", "float32"]
    single = tmp_path / "single"
    assert main(["similarity", *common, "--output-dir", str(single)]) == 0

    # Rank 1 of a 2-process run was killed after its first batch: what it leaves on disk.
    parallel = tmp_path / "parallel"
    args = SimilarityArgs(model=str(tiny_model_dir), data=str(llava_json), output_dir=str(parallel),
                          sample_fraction=1.0, batch_size=2, seed=5, dtype="float32")
    records = load_records(str(llava_json))[0]
    indices = sample_indices(len(records), 1.0, 5)
    samples = [records[i] for i in indices]

    class Killed(Exception):
        pass

    def kill(done):
        raise Killed

    with pytest.raises(Killed):
        compute_similarities(model, tiny_processor, samples[1::2], batch_size=2, output_dir=parallel / "rank1",
                             model_name=tiny_model_dir.name, dataset_name=llava_json.stem, progress=False,
                             settings=shard_settings(run_settings(args, indices, torch.float32), 1, 2),
                             finalize=False, on_batch_end=kill, lengths=record_lengths(tiny_processor, samples[1::2]))
    assert load_progress(parallel / "rank1")["done"] == 2

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                             str(port), "-m", "interlace_hf.similarity", *common, "--output-dir", str(parallel)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resuming: 2 of 5 samples already scored" in result.stderr  # rank 1 continued its shard
    summary = json.loads((parallel / SUMMARY_FILE).read_text())
    assert summary["num_samples"] == 10 and not list(parallel.glob("rank*"))
    for k in (1, 2, 3):
        name = f"{tiny_model_dir.name}_{llava_json.stem}_pack{k}_hidden_state_similarities.json"
        one, two = (json.loads((d / name).read_text()) for d in (single, parallel))
        assert one.keys() == two.keys()
        for block in one:
            assert len(one[block]) == len(two[block]) == 10
            assert max(abs(a - b) for a, b in zip(one[block], two[block])) < 1e-6, (k, block)
