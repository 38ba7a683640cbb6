"""Exactness of the surgery: a pruned model computes what the dense model computes with the dropped layers skipped.

The reference is built independently of our code: the dense model with a forward hook on every dropped layer that
returns the layer's input unchanged (so deepstack features are still added after that position, as in the dense
model).
"""

import copy
import gc
import weakref

import pytest
import torch
from transformers import AutoModelForImageTextToText, LlamaConfig, LlamaForCausalLM, Qwen3VLForConditionalGeneration

from interlace_hf.plan import Plan
from interlace_hf.surgery import _slice_layer_lists, prune_model

PLANS = [(0,), (1,), (2,), (0, 1, 2), (1, 2), (3, 7), (1, 5, 9), (11,), (0, 4, 8, 10)]


def load_dense(model_dir):
    return AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()


def bypassed(model, dropped):
    reference = copy.deepcopy(model)
    for i in dropped:
        reference.model.language_model.layers[i].register_forward_hook(
            lambda module, args, kwargs, output: args[0] if args else kwargs["hidden_states"], with_kwargs=True
        )
    return reference


@pytest.fixture(scope="module")
def dense(tiny_model_dir):
    return load_dense(tiny_model_dir)


@pytest.mark.parametrize("dropped", PLANS, ids=lambda d: "drop" + "-".join(map(str, d)))
@pytest.mark.parametrize("modality", ["image", "text"])
def test_pruned_logits_equal_bypassed_dense(dense, dropped, modality, image_batch, text_batch):
    batch = image_batch if modality == "image" else text_batch
    assert batch["attention_mask"].shape[0] == 2 and not batch["attention_mask"].all()  # padded batch of 2
    reference = bypassed(dense, dropped)
    pruned = prune_model(copy.deepcopy(dense), Plan.from_dropped(12, dropped))
    with torch.no_grad():
        expected = reference(**batch).logits
        actual = pruned(**batch).logits
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dropped", [(0,), (1, 2), (3, 7)], ids=lambda d: "drop" + "-".join(map(str, d)))
def test_greedy_generate_with_kv_cache_matches(dense, dropped, image_batch):
    reference = bypassed(dense, dropped)
    pruned = prune_model(copy.deepcopy(dense), Plan.from_dropped(12, dropped))
    kwargs = dict(max_new_tokens=6, do_sample=False, use_cache=True)
    expected = reference.generate(**image_batch, **kwargs)
    actual = pruned.generate(**image_batch, **kwargs)
    assert torch.equal(actual, expected)
    assert actual.shape[1] == image_batch["input_ids"].shape[1] + 6


def test_renumbered_stock_model_is_wrong_when_a_deepstack_layer_is_dropped(dense, image_batch, text_batch):
    """The bug the Interlace classes exist for: slicing + renumbering alone misplaces deepstack features."""
    dropped = (1,)
    reference = bypassed(dense, dropped)
    naive = copy.deepcopy(dense)
    layers = naive.model.language_model.layers
    naive.model.language_model.layers = torch.nn.ModuleList([layer for i, layer in enumerate(layers) if i not in dropped])
    for new_idx, layer in enumerate(naive.model.language_model.layers):
        layer.self_attn.layer_idx = new_idx
    naive.config.text_config.num_hidden_layers = 11
    with torch.no_grad():
        assert not torch.allclose(naive(**image_batch).logits, reference(**image_batch).logits, atol=1e-4)
        # text-only inputs have no deepstack features, so there the naive model is right
        torch.testing.assert_close(naive(**text_batch).logits, reference(**text_batch).logits, rtol=0, atol=1e-6)


def test_surgery_renumbers_fixes_config_and_copies_nothing(tiny_model_dir):
    model = load_dense(tiny_model_dir)
    layers = model.model.language_model.layers
    kept_ptrs = {i: layers[i].mlp.up_proj.weight.data_ptr() for i in range(12)}
    dropped_refs = [weakref.ref(layers[i]) for i in (3, 7)]
    del layers
    plan = Plan(12, (3, 7), tuned_layers=(2,), anchor_layers=(4,), strategy="manual")
    pruned = prune_model(model, plan, base_model="some/base", base_model_revision="abc123")
    assert pruned is model
    assert type(pruned).__name__ == "InterlaceQwen3VLForConditionalGeneration"
    new_layers = pruned.model.language_model.layers
    assert len(new_layers) == 10
    assert [layer.self_attn.layer_idx for layer in new_layers] == list(range(10))
    for new_idx, original in enumerate(plan.kept_layers):
        assert new_layers[new_idx].mlp.up_proj.weight.data_ptr() == kept_ptrs[original]
    gc.collect()
    assert all(ref() is None for ref in dropped_refs), "dropped layers are still referenced"
    config = pruned.config
    assert config.text_config.num_hidden_layers == 10
    assert config.kept_layers == list(plan.kept_layers)
    assert config.original_num_hidden_layers == 12
    assert config.interlace["dropped_layers"] == [3, 7]
    assert config.interlace["base_model"] == "some/base"
    assert config.interlace["base_model_revision"] == "abc123"
    assert config.interlace["plan"]["tuned_layers"] == [2]
    assert pruned.model.language_model.config is config.text_config
    # Every module that holds a config holds the new one (or its text / vision part): none keeps 12 layers.
    allowed = {id(config), id(config.text_config), id(config.vision_config)}
    holders = [(name, m) for name, m in pruned.named_modules() if getattr(m, "config", None) is not None]
    assert any(name.endswith("self_attn") for name, _ in holders) and any("rotary" in name for name, _ in holders)
    for name, module in holders:
        assert id(module.config) in allowed, name
    pruned.set_attn_implementation("eager")
    assert {layer.self_attn.config._attn_implementation for layer in new_layers} == {"eager"}


def test_interlace_classes_generate_and_pass_the_cache_through(dense, image_batch):
    """GenerationMixin is a direct base (transformers checks `__bases__` for remote-code classes), and the text
    model passes the KV cache on under the caller's name, without the deprecated `past_key_values` warning."""
    import warnings

    from transformers import GenerationMixin

    from interlace_hf.modeling import InterlaceQwen3VLForConditionalGeneration

    assert GenerationMixin in InterlaceQwen3VLForConditionalGeneration.__bases__
    model = prune_model(copy.deepcopy(dense), Plan.from_dropped(12, (1, 5)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        model.generate(**image_batch, max_new_tokens=3, do_sample=False)


def test_pruning_a_pruned_model_composes(dense, image_batch):
    once = prune_model(copy.deepcopy(dense), Plan.from_dropped(12, (3,)))
    twice = prune_model(once, Plan.from_dropped(12, (1, 3, 8)))
    assert twice.config.kept_layers == [0, 2, 4, 5, 6, 7, 9, 10, 11]
    direct = prune_model(copy.deepcopy(dense), Plan.from_dropped(12, (1, 3, 8)))
    with torch.no_grad():
        torch.testing.assert_close(twice(**image_batch).logits, direct(**image_batch).logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"keeps layers \[3, 8\], which this model already dropped"):
        prune_model(twice, Plan.from_dropped(12, (1,)))


def test_per_layer_config_lists_are_sliced_and_index_lists_remapped():
    text = {"num_hidden_layers": 6, "layer_types": list("abcdef"), "mlp_only_layers": [0, 2, 5], "mrope_section": [1, 2, 3]}
    sliced = _slice_layer_lists(text, [0, 1, 3, 5])
    assert sliced["layer_types"] == ["a", "b", "d", "f"]
    assert sliced["mlp_only_layers"] == [0, 3]
    assert sliced["mrope_section"] == [1, 2, 3]
    assert sliced["num_hidden_layers"] == 4
    assert text["layer_types"] == list("abcdef")  # the input is not mutated


def test_bad_inputs(dense):
    with pytest.raises(ValueError, match="the plan is for a 10-layer model but this model has 12 decoder layers"):
        prune_model(copy.deepcopy(dense), Plan.from_dropped(10, (1,)))
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2))
    with pytest.raises(ValueError, match=r"expects a Qwen3VLForConditionalGeneration, got LlamaForCausalLM"):
        prune_model(llama, Plan.from_dropped(2, (1,)))
    wrong = copy.deepcopy(dense)
    wrong.config.model_type = "llava"
    with pytest.raises(ValueError, match=r"prunes Qwen3-VL models .*qwen3_vl.*model_type 'llava'"):
        prune_model(wrong, Plan.from_dropped(12, (1,)))
    assert isinstance(dense, Qwen3VLForConditionalGeneration)
