"""The tiny Qwen3-VL checkpoint and the image-only processor: they load with stock classes and feed the model."""

import json

import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING, processor_class_from_name
from transformers.processing_utils import ProcessorMixin
from transformers.utils import is_torchvision_available

from interlace_hf.processing import InterlaceQwen3VLProcessor, load_processor, register_processor
from interlace_hf.testing.tiny import (
    QWEN_SPECIAL_TOKENS,
    TINY_CHAT_TEMPLATE,
    build_tiny_model,
    build_tiny_processor,
    build_tiny_tokenizer,
    tiny_example_inputs,
)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return Qwen3VLForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def image_chat(answer=None, colour="red"):
    chat = [
        {"role": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "content": [
                {"type": "image", "image": Image.new("RGB", (64, 64), colour)},
                {"type": "text", "text": "What color is the square?"},
            ],
        },
    ]
    if answer is not None:
        chat.append({"role": "assistant", "content": answer})
    return chat


def test_checkpoint_loads_with_stock_classes(tiny_model_dir, tiny_processor):
    model, info = Qwen3VLForConditionalGeneration.from_pretrained(tiny_model_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    auto_model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert type(auto_model) is Qwen3VLForConditionalGeneration

    config = model.config
    tokenizer = tiny_processor.tokenizer
    assert config.text_config.num_hidden_layers == 12
    assert len(model.model.language_model.layers) == 12
    assert list(config.vision_config.deepstack_visual_indexes) == [1, 2, 3]
    assert len(model.model.visual.deepstack_merger_list) == 3
    assert config.text_config.vocab_size == len(tokenizer)
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert config.vision_end_token_id == tokenizer.convert_tokens_to_ids("<|vision_end|>")
    assert config.tie_word_embeddings is False
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.pad_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.padding_side == "left"
    special_ids = [tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS]
    assert special_ids == list(range(len(tokenizer) - len(QWEN_SPECIAL_TOKENS), len(tokenizer)))  # Qwen's order, last
    text = "<|im_start|>user\nHow many red circles? Answer: 12.<|im_end|>\n"
    assert tokenizer(text)["input_ids"] == build_tiny_tokenizer()(text)["input_ids"]  # tokenizer.json round trip
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    for name in ("processor_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (tiny_model_dir / name).is_file(), name
    assert not (tiny_model_dir / "video_preprocessor_config.json").exists()
    processor_config = json.loads((tiny_model_dir / "processor_config.json").read_text())
    assert processor_config["processor_class"] == "InterlaceQwen3VLProcessor"
    assert processor_config["image_processor"]["image_mean"] == [0.5, 0.5, 0.5]
    # Saved without a backend suffix, so a machine with torchvision loads the torchvision backend.
    assert processor_config["image_processor"]["image_processor_type"] == "Qwen2VLImageProcessor"
    expected_backend = "Qwen2VLImageProcessor" if is_torchvision_available() else "Qwen2VLImageProcessorPil"
    assert type(tiny_processor.image_processor).__name__ == expected_backend


def test_auto_processor_resolves_our_class_and_leaves_stock_qwen3_vl_alone(tiny_model_dir):
    register_processor()
    register_processor()  # idempotent

    for processor in (
        AutoProcessor.from_pretrained(tiny_model_dir),
        load_processor(tiny_model_dir),
        InterlaceQwen3VLProcessor.from_pretrained(tiny_model_dir),
    ):
        assert isinstance(processor, InterlaceQwen3VLProcessor)
        assert processor.image_processor.patch_size == 16 and processor.image_processor.merge_size == 2
        assert processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") == processor.image_token_id
        assert processor.chat_template == TINY_CHAT_TEMPLATE
    assert InterlaceQwen3VLProcessor.get_attributes() == ["image_processor", "tokenizer"]

    # Stock qwen3_vl checkpoints still resolve to the stock class, by config and by name.
    assert PROCESSOR_MAPPING[Qwen3VLConfig] is Qwen3VLProcessor
    assert processor_class_from_name("Qwen3VLProcessor") is Qwen3VLProcessor
    assert processor_class_from_name("InterlaceQwen3VLProcessor") is InterlaceQwen3VLProcessor


def test_processor_outputs_feed_forward_and_generate(tiny_processor, model):
    image_id = tiny_processor.image_token_id
    inputs = tiny_processor.apply_chat_template(
        image_chat(), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"):
        assert key in inputs, key
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]  # 64x64 -> 4x4 patches of 16 -> 4 tokens after 2x2 merge
    assert torch.equal(inputs["mm_token_type_ids"], (inputs["input_ids"] == image_id).long())
    assert int((inputs["input_ids"] == image_id).sum()) == 4
    prompt_suffix = tiny_processor.tokenizer("<|im_start|>assistant\n")["input_ids"]
    assert inputs["input_ids"][0, -len(prompt_suffix) :].tolist() == prompt_suffix

    # The plain __call__ path gives the same tensors.
    text = tiny_processor.apply_chat_template(image_chat(), add_generation_prompt=True, tokenize=False)
    plain = tiny_processor(text=[text], images=[Image.new("RGB", (64, 64), "red")], return_tensors="pt")
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"):
        assert torch.equal(plain[key], inputs[key]), key

    batch = tiny_example_inputs(tiny_processor, with_image=True, batch_size=2)
    assert torch.equal(batch["mm_token_type_ids"], (batch["input_ids"] == image_id).long())
    assert batch["attention_mask"][:, -1].all() and not batch["attention_mask"][:, 0].all()  # left padding
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (*batch["input_ids"].shape, len(tiny_processor.tokenizer))
    assert torch.isfinite(logits).all()

    # A left-padded row computes what it computes alone.
    short_row = int(batch["attention_mask"].sum(1).argmin())
    length = int(batch["attention_mask"][short_row].sum())
    alone = tiny_example_inputs(tiny_processor, with_image=True, batch_size=2)
    alone = {
        "input_ids": alone["input_ids"][short_row : short_row + 1, -length:],
        "attention_mask": alone["attention_mask"][short_row : short_row + 1, -length:],
        "mm_token_type_ids": alone["mm_token_type_ids"][short_row : short_row + 1, -length:],
        "pixel_values": alone["pixel_values"][16 * short_row : 16 * (short_row + 1)],
        "image_grid_thw": alone["image_grid_thw"][short_row : short_row + 1],
    }
    with torch.no_grad():
        alone_logits = model(**alone).logits
    torch.testing.assert_close(logits[short_row, -length:], alone_logits[0], rtol=1e-4, atol=1e-4)

    generated = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert generated.shape == (2, batch["input_ids"].shape[1] + 3)
    assert torch.equal(generated[:, : batch["input_ids"].shape[1]], batch["input_ids"])


def test_text_only_batch_has_no_image_tokens(tiny_processor, model):
    batch = tiny_example_inputs(tiny_processor, with_image=False, batch_size=3)
    assert "pixel_values" not in batch
    assert not batch["mm_token_type_ids"].any()
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()


@pytest.mark.parametrize("content_kind", ["string", "list"])
def test_chat_template_renders_string_and_list_content(tiny_processor, content_kind):
    def content(text):
        return text if content_kind == "string" else [{"type": "text", "text": text}]

    chat = [
        {"role": "system", "content": content("Be brief.")},
        {"role": "user", "content": content("Count the stars.")},
        {"role": "assistant", "content": content("Three.")},
    ]
    rendered = tiny_processor.apply_chat_template(chat, tokenize=False)
    assert rendered == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nCount the stars.<|im_end|>\n"
        "<|im_start|>assistant\nThree.<|im_end|>\n"
    )
    prompt = tiny_processor.apply_chat_template(chat[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("Count the stars.<|im_end|>\n<|im_start|>assistant\n")
    with_image = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    assert tiny_processor.apply_chat_template(with_image, tokenize=False) == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n"
    )


@pytest.mark.parametrize("content_kind", ["string", "list"])
def test_assistant_mask_covers_exactly_the_answers(tiny_processor, content_kind):
    def content(text):
        return text if content_kind == "string" else [{"type": "text", "text": text}]

    chat = image_chat(answer=content("The square is red."))
    chat += [
        {"role": "user", "content": content("And how many squares?")},
        {"role": "assistant", "content": content("One square.")},
    ]
    out = tiny_processor.apply_chat_template(
        chat, tokenize=True, return_dict=True, return_tensors="pt", return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"][0], out["assistant_masks"][0].bool()
    tokenizer = tiny_processor.tokenizer
    assert tokenizer.decode(ids[mask]) == "The square is red.<|im_end|>One square.<|im_end|>"
    # Two contiguous runs, each ending on <|im_end|> and followed by the unmasked newline.
    starts = (mask[1:] & ~mask[:-1]).nonzero().flatten() + 1
    ends = (mask[:-1] & ~mask[1:]).nonzero().flatten()
    assert len(starts) == len(ends) == 2
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert all(int(ids[end]) == im_end for end in ends)
    assert not mask[out["mm_token_type_ids"][0].bool()].any()


def test_same_seed_same_bytes_other_seed_other_weights(tiny_model_dir, tmp_path):
    again = build_tiny_model(tmp_path / "again", num_layers=12, seed=0)
    other = build_tiny_model(tmp_path / "other", num_layers=12, seed=1)
    weights = (tiny_model_dir / "model.safetensors").read_bytes()
    assert (again / "model.safetensors").read_bytes() == weights
    assert (other / "model.safetensors").read_bytes() != weights
    tokenizer_json = (tiny_model_dir / "tokenizer.json").read_text()
    assert (again / "tokenizer.json").read_text() == tokenizer_json
    # The weight seed leaves the vocabulary alone: every tiny model shares one tokenizer.
    assert (other / "tokenizer.json").read_text() == tokenizer_json
    assert json.loads((other / "interlace_tiny.json").read_text())["seed"] == 1


def test_bad_arguments_raise_before_writing(tmp_path):
    with pytest.raises(ValueError, match="--num-layers must be at least 4"):
        build_tiny_model(tmp_path / "few", num_layers=3)
    assert not (tmp_path / "few").exists()

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="exists and is not empty"):
        build_tiny_model(taken, num_layers=4)
    assert (taken / "notes.txt").read_text() == "keep me"

    path = build_tiny_model(taken, num_layers=4, overwrite=True)
    assert path == taken and not (taken / "notes.txt").exists()
    assert Qwen3VLConfig.from_pretrained(taken).text_config.num_hidden_layers == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no staging directories left behind


def test_load_processor_refuses_a_tokenizer_only_directory(tmp_path):
    build_tiny_tokenizer().save_pretrained(tmp_path / "plain")
    assert not isinstance(AutoProcessor.from_pretrained(tmp_path / "plain"), ProcessorMixin)  # the silent fallback
    with pytest.raises(ValueError, match=r"Could not load an image\+text processor .* returned a Qwen2Tokenizer"):
        load_processor(tmp_path / "plain")

    # A tokenizer that names our processor class but has no image processor next to it.
    build_tiny_processor().tokenizer.save_pretrained(tmp_path / "claims")
    config = json.loads((tmp_path / "claims" / "tokenizer_config.json").read_text())
    config["processor_class"] = "InterlaceQwen3VLProcessor"
    (tmp_path / "claims" / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="rebuilding it as InterlaceQwen3VLProcessor failed"):
        load_processor(tmp_path / "claims")


def test_load_processor_on_a_stock_qwen3_vl_layout(tmp_path):
    """Files laid out like Qwen/Qwen3-VL-8B-Instruct: preprocessor, video preprocessor, chat_template.json."""
    processor = build_tiny_processor()
    processor.image_processor.save_pretrained(tmp_path)
    processor.tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": TINY_CHAT_TEMPLATE}))
    for name in ("preprocessor_config.json", "tokenizer_config.json"):
        config = json.loads((tmp_path / name).read_text())
        config["processor_class"] = "Qwen3VLProcessor"
        (tmp_path / name).write_text(json.dumps(config))
    (tmp_path / "video_preprocessor_config.json").write_text(
        json.dumps({"video_processor_type": "Qwen3VLVideoProcessor", "processor_class": "Qwen3VLProcessor"})
    )

    loaded = load_processor(tmp_path)
    assert isinstance(loaded, Qwen3VLProcessor) and loaded.image_processor is not None
    if not is_torchvision_available():
        assert isinstance(loaded, InterlaceQwen3VLProcessor)
    assert loaded.chat_template == TINY_CHAT_TEMPLATE
    out = loaded.apply_chat_template(image_chat(), tokenize=True, return_dict=True, return_tensors="pt")
    assert int(out["mm_token_type_ids"].sum()) == 4


def test_videos_are_refused_with_a_clear_error(tiny_processor):
    with pytest.raises(ValueError, match="images and text only"):
        tiny_processor(text=["<|vision_start|><|video_pad|><|vision_end|>"], videos=[[Image.new("RGB", (32, 32))]])
