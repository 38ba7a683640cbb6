"""The Interlace config's own validation, deepstack placement, and checkpoint loading errors."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText

from interlace_hf.checkpoint import load_model, save_pruned
from interlace_hf.checkpoint import read_model_config, resolve_checkpoint
from interlace_hf.modeling import InterlaceQwen3VLConfig, InterlaceQwen3VLTextConfig, deepstack_injection_positions
from interlace_hf.plan import Plan
from interlace_hf.surgery import prune_model


@pytest.mark.parametrize(
    "kept, expected",
    [
        ([0, 1, 2, 3], [0, 1, 2]),        # nothing dropped among 0..2: identity
        ([0, 2, 3], [0, 0, 1]),           # layer 1 dropped: feature 1 goes right after layer 0, with feature 0
        ([1, 2, 3], [-1, 0, 1]),          # layer 0 dropped: feature 0 before the first layer
        ([3, 4], [-1, -1, -1]),           # 0..2 dropped: all three before the first layer
        ([0, 5, 6], [0, 0, 0]),
        ([2, 5], [-1, -1, 0]),
    ],
)
def test_deepstack_injection_positions(kept, expected):
    assert deepstack_injection_positions(kept, 3) == expected


def test_text_config_validation():
    base = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=128)
    with pytest.raises(ValueError, match="`original_num_hidden_layers` is required"):
        InterlaceQwen3VLTextConfig(num_hidden_layers=2, kept_layers=[0, 1], **base)
    with pytest.raises(ValueError, match="`kept_layers` has 3 entries but `num_hidden_layers` is 2"):
        InterlaceQwen3VLTextConfig(num_hidden_layers=2, kept_layers=[0, 1, 2], original_num_hidden_layers=4, **base)
    with pytest.raises(ValueError, match=r"strictly increasing indices in 0..3, got \[2, 1\]"):
        InterlaceQwen3VLTextConfig(num_hidden_layers=2, kept_layers=[2, 1], original_num_hidden_layers=4, **base)
    with pytest.raises(ValueError, match="strictly increasing indices in 0..3"):
        InterlaceQwen3VLTextConfig(num_hidden_layers=2, kept_layers=[0, 4], original_num_hidden_layers=4, **base)
    ok = InterlaceQwen3VLTextConfig(num_hidden_layers=2, kept_layers=[1, 3], original_num_hidden_layers=4, **base)
    assert ok.deepstack_positions(3) == [-1, 0, 0]


def test_config_round_trips_through_autoconfig(tiny_model_dir, tmp_path):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    prune_model(model, Plan.from_dropped(12, (0, 6)))
    model.config.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, InterlaceQwen3VLConfig)
    assert config.kept_layers == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11]
    assert config.original_num_hidden_layers == 12
    assert config.text_config.model_type == "interlace_qwen3_vl_text"
    assert config.interlace["plan"]["dropped_layers"] == [0, 6]


def test_tied_embeddings_survive_pruning_and_reload(tiny_model_dir, tmp_path, image_batch):
    config = AutoConfig.from_pretrained(tiny_model_dir, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config).eval()  # like Qwen3-VL-4B: tied lm_head
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    plan = Plan.from_dropped(12, (2, 9))
    prune_model(model, plan)
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    out = save_pruned(model, plan, tmp_path / "out")
    reloaded = AutoModelForImageTextToText.from_pretrained(out).eval()
    assert reloaded.lm_head.weight is reloaded.model.language_model.embed_tokens.weight
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**image_batch).logits, model(**image_batch).logits, rtol=0, atol=0)


def test_checkpoint_resolution_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is a directory without a config.json"):
        resolve_checkpoint(str(tmp_path / "empty"))
    (tmp_path / "file.bin").write_text("x")
    with pytest.raises(ValueError, match="is a file; pass a model directory or a Hub id"):
        resolve_checkpoint(str(tmp_path / "file.bin"))
    with pytest.raises(ValueError, match="does not exist"):
        resolve_checkpoint(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="has no config.json"):
        read_model_config(str(tmp_path / "empty"))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=r"prunes Qwen3-VL models \(model_type qwen3_vl or interlace_qwen3_vl.*'bert'"):
        load_model(str(tmp_path / "bert"))


def test_save_refuses_a_plan_that_was_not_applied(tiny_model_dir, tmp_path):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    prune_model(model, Plan.from_dropped(12, (4,)))
    with pytest.raises(ValueError, match=r"holds original layers .* but the plan keeps .*save the plan that was applied"):
        save_pruned(model, Plan.from_dropped(12, (5,)), tmp_path / "out")
    assert not (tmp_path / "out").exists()
