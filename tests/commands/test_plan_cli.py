"""`interlace-hf plan`, `interlace-hf prune --similarities ... --strategy ...`, and the SLEB baseline."""

import copy
import json

import pytest
import torch
from transformers import AutoModelForImageTextToText

from interlace_hf.commands.cli import main
from interlace_hf.data import load_records
from interlace_hf.plan import Plan
from interlace_hf.tables import load_similarity_tables
from interlace_hf.selection import select_layers
from interlace_hf.sleb import build_loss_batches, calibration_loss, select_sleb
from interlace_hf.surgery import prune_model


@pytest.fixture(scope="module")
def similarity_dir(tiny_model_dir, llava_json, tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "sim"
    assert main(["similarity", "--model", str(tiny_model_dir), "--data", str(llava_json), "--output-dir", str(out),
                 "--sample-fraction", "1.0", "--batch-size", "5", "--pack-sizes", "1", "2", "3", "4"]) == 0
    return out


def test_plan_writes_json_layer_map_and_plot(similarity_dir, tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", "--similarities", str(similarity_dir), "--strategy", "interlace", "--drop-ratio", "0.25",
                 "--output", str(out), "--plot", str(tmp_path / "plan.png")]) == 0
    printed = capsys.readouterr().out
    plan = Plan.load(out)
    expected = select_layers(load_similarity_tables(similarity_dir), "interlace", drop_ratio=0.25)
    assert plan == expected and len(plan.dropped_layers) == 3 and len(plan.anchor_layers) == 3
    rows = [line for line in printed.splitlines() if line.strip()[:2].strip().isdigit()]
    assert len(rows) == 12
    for layer in plan.dropped_layers:
        assert f"{layer:>5}  DROP" in printed
    assert (tmp_path / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(out.read_text())
    assert {"dropped_layers", "tuned_layers", "anchor_layers", "kept_layers", "num_layers", "strategy",
            "drop_ratio"} <= set(data)


def test_plan_from_explicit_pack_files_and_protect(similarity_dir, tmp_path):
    paths = {k: next(similarity_dir.glob(f"*_pack{k}_hidden_state_similarities.json")) for k in (1, 2, 3)}
    out = tmp_path / "p.json"
    assert main(["plan", "--hs-pack1-path", str(paths[1]), "--hs-pack2-path", str(paths[2]), "--hs-pack3-path",
                 str(paths[3]), "--strategy", "shortgpt", "--num-drop", "2", "--protect", "10,11",
                 "--output", str(out)]) == 0
    plan = Plan.load(out)
    assert not {10, 11} & set(plan.dropped_layers) and len(plan.dropped_layers) == 2
    assert main(["plan", "--similarities", str(similarity_dir), "--strategy", "angular", "--num-drop", "4",
                 "--output", str(out)]) == 0
    dropped = Plan.load(out).dropped_layers
    assert list(dropped) == list(range(dropped[0], dropped[0] + 4))  # one contiguous block


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--strategy", "interlace", "--drop-ratio", "0.25"], "needs similarity scores: pass --similarities DIR"),
        (["--similarities", "{sim}", "--drop-ratio", "0.25"], "--strategy is required"),
        (["--similarities", "{sim}", "--strategy", "interlace"], "exactly one of --drop-ratio R"),
        (["--similarities", "{sim}", "--strategy", "interlace", "--drop-ratio", "0.25", "--num-drop", "2"],
         "exactly one of --drop-ratio R"),
        (["--strategy", "sleb", "--num-drop", "1"], "it needs --model M and --data D"),
        (["--strategy", "random", "--num-drop", "1"], "needs the model depth: pass --num-layers N or --model M"),
        (["--similarities", "{sim}", "--strategy", "interlace", "--num-drop", "11"], "found only 4 of the 11 layers to drop"),
        (["--similarities", "{sim}", "--strategy", "angular", "--num-drop", "5"], "--pack-sizes 1 2 3 5"),
        (["--similarities", "{sim}", "--strategy", "interlace", "--num-drop", "1", "--protect", "x"],
         "`--protect` got 'x'"),
    ],
)
def test_plan_bad_input(similarity_dir, tmp_path, capsys, argv, match):
    argv = [a.replace("{sim}", str(similarity_dir)) for a in argv]
    assert main(["plan", *argv, "--output", str(tmp_path / "p.json")]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_prune_with_similarities_and_strategy(tiny_model_dir, similarity_dir, tmp_path, capsys):
    out = tmp_path / "pruned"
    assert main(["prune", str(tiny_model_dir), "--similarities", str(similarity_dir), "--strategy", "interlace",
                 "--drop-ratio", "0.25", "--output-dir", str(out)]) == 0
    plan = Plan.load(out)
    assert plan == select_layers(load_similarity_tables(similarity_dir), "interlace", drop_ratio=0.25)
    config = json.loads((out / "config.json").read_text())
    assert config["interlace"]["plan"]["tuned_layers"] == list(plan.tuned_layers)
    assert config["text_config"]["num_hidden_layers"] == 9
    assert main(["prune", str(tiny_model_dir), "--strategy", "random", "--num-drop", "2", "--seed", "3",
                 "--output-dir", str(tmp_path / "random")]) == 0
    assert len(Plan.load(tmp_path / "random").dropped_layers) == 2


def test_sleb_removes_the_layer_that_hurts_the_loss_least(tiny_model_dir, tiny_processor, llava_json):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    records = load_records(str(llava_json))[0][:4]
    plan = select_sleb(model, tiny_processor, records, 2, protected_layers=(0,), progress=False)
    assert plan.strategy == "sleb" and len(plan.dropped_layers) == 2 and 0 not in plan.dropped_layers
    # Independently: the loss of each really pruned model; SLEB's first pick is the argmin.
    batches = build_loss_batches(tiny_processor, records)
    losses = {}
    for layer in range(1, 12):
        pruned = prune_model(copy.deepcopy(model), Plan.from_dropped(12, (layer,)))
        losses[layer] = calibration_loss(pruned, batches)
    # The loss computed only at the labelled positions is the model's own loss (its logits at every position).
    reference = [(float(model(**batch, use_cache=False).loss), int((batch["labels"][:, 1:] != -100).sum()))
                 for batch in build_loss_batches(tiny_processor, records, batch_size=3)]
    assert calibration_loss(model, build_loss_batches(tiny_processor, records, batch_size=3)) == pytest.approx(
        sum(loss * n for loss, n in reference) / sum(n for _, n in reference), abs=1e-5)
    first = plan.metadata["removal_order"][0]
    assert first["dropped"] == min(losses, key=losses.get)
    assert first["loss"] == pytest.approx(losses[first["dropped"]], abs=1e-5)
    tuned = select_sleb(model, tiny_processor, records, 1, tune_baselines=True, progress=False)
    assert tuned.tuned_layers == (tuned.dropped_layers[0] + 1,)
    answers = build_loss_batches(tiny_processor, records[:3], batch_size=3, answer_only=True)[0]
    for row, record in zip(answers["labels"], records[:3]):  # left-padded batch, answers of different lengths
        assert tiny_processor.tokenizer.decode(row[row != -100]) == record.turns[0][1] + "<|im_end|>"
    # The last layer has no next survivor: the one before it is tuned (as for shortgpt / angular), never nothing.
    last = select_sleb(model, tiny_processor, records, 1, protected_layers=range(11), tune_baselines=True,
                       progress=False)
    assert last.dropped_layers == (11,) and last.tuned_layers == (10,)
    with pytest.raises(ValueError, match="only 1 are not protected"):
        select_sleb(model, tiny_processor, records, 2, protected_layers=range(11), progress=False)


def test_sleb_at_scale_caps_its_calibration_and_says_its_cost(tiny_model_dir, tiny_processor, llava_json, caplog):
    """`--calibration-samples` (SLEB's 128 by default) caps the samples each of SLEB's evaluations runs; the cost
    (evaluations x samples) is logged before the work; the layers chosen are today's on the same samples."""
    from interlace_hf.args import SelectionArgs
    from interlace_hf.data import sample_indices
    from interlace_hf.sleb import run_sleb

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    image_token = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    args = SelectionArgs(strategy="sleb", num_drop=2, data=str(llava_json), sample_fraction=1.0, seed=3,
                         calibration_samples=3)
    args.validate_selection(str(tiny_model_dir))
    args.model = str(tiny_model_dir)
    seen = []
    handle = model.model.register_forward_hook(lambda module, a, kw, out: seen.append(kw["input_ids"].shape[0]),
                                               with_kwargs=True)
    try:
        plan = run_sleb(args, model=model)
    finally:
        handle.remove()
    evaluations = 12 + 11
    assert sum(seen) == evaluations * 3  # every evaluation ran exactly the 3 capped samples
    assert "sleb: 2 rounds, 23 evaluations x 3 calibration samples = 69 sample forward passes" in caplog.text
    records = load_records(str(llava_json))[0]
    same = [records[i] for i in sample_indices(len(records), 1.0, 3)[:3]]
    assert plan.dropped_layers == select_sleb(model, tiny_processor, same, 2, progress=False).dropped_layers
    # --sleb-max-pixels bounds the calibration images' resolution (the 64x64 images become 32x32: 4x fewer tokens)
    lengths = {}
    for max_pixels in (0, 32 * 32):
        args.sleb_max_pixels, args.num_drop = max_pixels, 1
        seen = []
        handle = model.model.register_forward_hook(
            lambda module, a, kw, out: seen.append(int((kw["input_ids"] == image_token).sum())), with_kwargs=True)
        try:
            run_sleb(args, model=model)
        finally:
            handle.remove()
        lengths[max_pixels] = max(seen)
    assert lengths[32 * 32] * 4 == lengths[0]
    with pytest.raises(ValueError, match="--calibration-samples must be >= 0"):
        SelectionArgs(strategy="sleb", num_drop=1, data="d", calibration_samples=-1).validate_selection("m")
    with pytest.raises(ValueError, match="--sleb-max-pixels must be at least 1024"):
        SelectionArgs(strategy="sleb", num_drop=1, data="d", sleb_max_pixels=100).validate_selection("m")
