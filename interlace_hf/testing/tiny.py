"""A tiny, randomly initialised Qwen3-VL checkpoint built offline, for tests and smoke runs.

Everything is made here: a BPE tokenizer trained on a synthetic corpus (shapes, colours, counts,
charts, questions and answers), a Qwen3-VL chat template, a Qwen2-VL image processor sized for
64x64 images, and a `Qwen3VLForConditionalGeneration` with the real model's layout (interleaved
M-RoPE, three DeepStack features injected after text layers 0, 1 and 2, untied `lm_head`).
The same `seed` gives byte-identical weights; the tokenizer does not depend on the weight seed, so
every tiny model shares one vocabulary.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING

from ..utils.fileio import atomic_output_dir, check_output_dir


if TYPE_CHECKING:
    from transformers import BatchFeature, Qwen3VLConfig

    from ..processing import InterlaceQwen3VLProcessor


logger = logging.getLogger(__name__)

MIN_TINY_LAYERS = 4

# Qwen's special tokens, in Qwen's order; they follow the trained vocabulary as in the real tokenizer.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Words of the synthetic world; synthetic VQA data should draw from the same lists.
TINY_SHAPES = ("circle", "square", "triangle", "star", "rectangle", "diamond", "hexagon", "line", "dot", "cross")
TINY_COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "black", "white", "gray", "pink", "brown")
TINY_SIZES = ("small", "large", "tiny", "big", "medium")
TINY_POSITIONS = ("left", "right", "top", "bottom", "center", "middle", "corner", "above", "below", "next to")
TINY_CHARTS = ("bar chart", "line chart", "pie chart", "table", "plot", "diagram", "graph")
TINY_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

TINY_OBJECTS = (
    "apple", "banana", "ball", "book", "box", "car", "bus", "bicycle", "boat", "tree", "flower", "house", "door",
    "window", "chair", "table", "cup", "bottle", "clock", "phone", "dog", "cat", "bird", "fish", "horse", "cow",
    "sheep", "person", "man", "woman", "child", "sign", "road", "sky", "cloud", "sun", "moon", "water", "grass",
    "kite", "plate", "pizza", "cake", "umbrella", "bag", "hat", "shirt", "shoe", "lamp", "computer", "keyboard",
)
TINY_CHART_WORDS = (
    "axis", "label", "legend", "title", "value", "values", "percent", "percentage", "year", "month", "total",
    "average", "maximum", "minimum", "increase", "decrease", "growth", "sales", "revenue", "population",
    "temperature", "price", "score", "rate", "share", "country", "company", "category", "group", "series",
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
)
TINY_VERBS = (
    "is", "are", "has", "have", "shows", "contains", "holds", "sits", "stands", "lies", "appears", "looks",
    "moves", "points", "touches", "covers", "overlaps", "surrounds", "compares", "represents", "reaches",
)
TINY_ADJECTIVES = (
    "bright", "dark", "light", "round", "sharp", "striped", "dotted", "empty", "full", "open", "closed",
    "wooden", "metal", "plastic", "shiny", "old", "new", "highest", "lowest", "largest", "smallest", "second",
    "third", "first", "last", "same", "different", "visible", "hidden", "correct", "wrong",
)

# Trained BPE vocabulary size; with the 14 special tokens the model's vocabulary is 1024.
_TRAINED_VOCAB_SIZE = 1024 - len(QWEN_SPECIAL_TOKENS)
_CORPUS_LINES = 4000

# Qwen3-VL-style chat template. The assistant turn is written in its own branch so that
# `{% generation %}` opens and closes in the same block (Jinja rejects a block split across `if`s);
# the mask covers the answer and its <|im_end|>, not the "\n" that follows.
TINY_CHAT_TEMPLATE = (
    "{%- macro render_content(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- else -%}"
    "{%- for item in content -%}"
    "{%- if item.type == 'image' or 'image' in item or 'image_url' in item -%}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif item.type == 'video' or 'video' in item -%}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in item -%}{{ item.text }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{%- if message.role == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ render_content(message.content) }}{{ '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message.role + '\\n' }}{{ render_content(message.content) }}{{ '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def _synthetic_corpus(seed: int, lines: int = _CORPUS_LINES) -> list[str]:
    """English-like sentences about the synthetic world, deterministic in `seed`."""
    rng = random.Random(seed)
    pick = rng.choice

    def thing() -> str:
        return f"{pick(TINY_SIZES)} {pick(TINY_COLOURS)} {pick(TINY_SHAPES)}"

    def count() -> str:
        return pick(TINY_NUMBER_WORDS) if rng.random() < 0.5 else str(rng.randint(0, 99))

    def noun() -> str:
        return pick(TINY_OBJECTS + TINY_SHAPES)

    templates = [
        lambda: f"There is a {thing()} on the {pick(TINY_POSITIONS)} of the image.",
        lambda: f"How many {pick(TINY_SHAPES)}s are in the picture? Answer: {count()}.",
        lambda: f"What color is the {noun()}? The {noun()} is {pick(TINY_COLOURS)}.",
        lambda: f"Question: Which shape is {pick(TINY_POSITIONS)} the {thing()}? Answer: the {pick(TINY_SHAPES)}.",
        lambda: f"The {pick(TINY_CHARTS)} shows {count()} bars; the highest value is {rng.randint(0, 999)}.",
        lambda: f"In the {pick(TINY_CHARTS)}, {pick(TINY_COLOURS)} is {rng.randint(1, 99)}% and "
        f"{pick(TINY_COLOURS)} is {rng.randint(1, 99)}%.",
        lambda: f"Describe the image. I see {count()} {pick(TINY_COLOURS)} {pick(TINY_SHAPES)}s and a {thing()}.",
        lambda: f"Is the {thing()} {pick(TINY_POSITIONS)} the {thing()}? {pick(['Yes', 'No'])}, it is.",
        lambda: f"Count the {pick(TINY_COLOURS)} objects. There are {count()} of them.",
        lambda: f"You are a helpful assistant. Look at the picture and answer the question with a "
        f"{pick(['word', 'number', 'short sentence'])}.",
        lambda: f"The answer is {pick(['A', 'B', 'C', 'D'])}: the {thing()} is "
        f"{pick(['bigger', 'smaller', 'higher', 'lower'])} than the {pick(TINY_SHAPES)}.",
        lambda: f"What is the total? {rng.randint(0, 50)} + {rng.randint(0, 50)} = {rng.randint(0, 100)}.",
        lambda: f"The {pick(TINY_ADJECTIVES)} {noun()} {pick(TINY_VERBS)} {pick(TINY_POSITIONS)} the "
        f"{pick(TINY_ADJECTIVES)} {noun()}.",
        lambda: f"In {pick(TINY_CHART_WORDS[30:])}, the {pick(TINY_CHART_WORDS[:30])} of the {pick(TINY_CHARTS)} "
        f"was {rng.randint(0, 999)}, a {pick(['small', 'large', 'sharp'])} {pick(['increase', 'decrease'])}.",
        lambda: f"Which {pick(TINY_CHART_WORDS[:30])} is the {pick(TINY_ADJECTIVES)}? "
        f"The {pick(TINY_CHART_WORDS[:30])} for {pick(TINY_CHART_WORDS[30:])}.",
        lambda: f"A {pick(TINY_COLOURS)} {pick(TINY_OBJECTS)} {pick(TINY_VERBS)} next to a "
        f"{pick(TINY_ADJECTIVES)} {pick(TINY_OBJECTS)}.",
        lambda: f"What does the {pick(TINY_CHART_WORDS[:30])} on the {pick(['x', 'y'])}-axis show? "
        f"It shows the {pick(TINY_CHART_WORDS[:30])} per {pick(['year', 'month', 'day', 'group'])}.",
    ]
    return [pick(templates)() for _ in range(lines)]


def build_tiny_tokenizer(seed: int = 0):
    """Train the tiny byte-level BPE tokenizer (Qwen2's normalizer, pre-tokenizer and decoder) offline.

    Args:
        seed (`int`, *optional*, defaults to 0):
            Seed of the synthetic training corpus. Tiny models all use seed 0.

    Returns:
        A `Qwen2TokenizerFast` with Qwen's special tokens, eos `<|im_end|>`, pad `<|endoftext|>` and
        the tiny chat template.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import Qwen2TokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    backend = Tokenizer(BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=_TRAINED_VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_synthetic_corpus(seed), trainer=trainer)
    # Added to the backend first so they get consecutive ids in Qwen's order, right after the BPE vocabulary.
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in QWEN_SPECIAL_TOKENS])

    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=[t for t in QWEN_SPECIAL_TOKENS if t not in ("<|im_end|>", "<|endoftext|>")],
        chat_template=TINY_CHAT_TEMPLATE,
        model_max_length=4096,
        # Left padding, saved in tokenizer_config.json: batched generation and calibration rely on it.
        padding_side="left",
    )
    return tokenizer


def build_tiny_image_processor():
    """The Qwen2-VL image processor, sized so a 64x64 image becomes 4 image tokens.

    Built with the PIL backend, which needs no torchvision. It saves as `"Qwen2VLImageProcessor"` (the
    backend suffix is dropped), so loading the checkpoint picks the torchvision backend where it exists.
    """
    from transformers import Qwen2VLImageProcessorPil as image_processor_class

    return image_processor_class(
        size={"shortest_edge": 32 * 32, "longest_edge": 128 * 128},
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        # Qwen3-VL normalises with mean/std 0.5, not Qwen2-VL's CLIP statistics.
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def build_tiny_processor(seed: int = 0) -> InterlaceQwen3VLProcessor:
    """The tiny processor: tokenizer from `build_tiny_tokenizer(seed)`, tiny image processor, chat template.

    Args:
        seed (`int`, *optional*, defaults to 0):
            Seed of the tokenizer's training corpus.
    """
    from ..processing import InterlaceQwen3VLProcessor, register_processor

    register_processor()  # its checkpoints ship the processor's code (see processing.register_processor)
    tokenizer = build_tiny_tokenizer(seed)
    return InterlaceQwen3VLProcessor(
        image_processor=build_tiny_image_processor(), tokenizer=tokenizer, chat_template=TINY_CHAT_TEMPLATE
    )


def tiny_config(num_layers: int, tokenizer) -> Qwen3VLConfig:
    """A Qwen3-VL config with the real model's structure at toy width.

    Args:
        num_layers (`int`):
            Number of text decoder layers.
        tokenizer:
            The tokenizer whose special-token ids and length the config takes.
    """
    from transformers import Qwen3VLConfig

    token_id = tokenizer.convert_tokens_to_ids
    return Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            # mrope_section sums to head_dim / 2 and has one entry per axis (time, height, width).
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [4, 2, 2],
                "mrope_interleaved": True,
            },
            "pad_token_id": token_id("<|endoftext|>"),
            "bos_token_id": None,
            "eos_token_id": token_id("<|im_end|>"),
            "dtype": "float32",
        },
        vision_config={
            "depth": 4,
            "hidden_size": 32,
            "num_heads": 2,
            "intermediate_size": 64,
            "patch_size": 16,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
            "out_hidden_size": 64,
            # An 8x8 grid of learned position embeddings, interpolated to each image's patch grid.
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [1, 2, 3],
        },
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        pad_token_id=token_id("<|endoftext|>"),
        eos_token_id=token_id("<|im_end|>"),
        tie_word_embeddings=False,
        dtype="float32",
    )


def init_qwen3_vl(config: Qwen3VLConfig, tokenizer, seed: int):
    """A randomly initialised `Qwen3VLForConditionalGeneration` of `config`, with greedy generation defaults.

    Initialised on CPU in float32 whatever the caller's defaults, so a seed always gives the same bytes; `fork_rng`
    leaves the caller's global RNG state as it was.
    """
    import torch
    from transformers import GenerationConfig, Qwen3VLForConditionalGeneration

    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with torch.random.fork_rng(devices=[]), torch.device("cpu"):
            torch.manual_seed(seed)
            model = Qwen3VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default_dtype)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
        do_sample=False,
    )
    return model


def build_tiny_model(output_dir: str | Path, num_layers: int = 12, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a randomly initialised tiny Qwen3-VL checkpoint with its processor and generation config.

    Args:
        output_dir (`str` or `Path`):
            Directory to create. It is built next to itself and renamed into place, so a crash never
            leaves a half-written checkpoint there.
        num_layers (`int`, *optional*, defaults to 12):
            Text decoder layers; at least 4 (three carry DeepStack features, one more is needed to prune).
        seed (`int`, *optional*, defaults to 0):
            Seed of the weights; the same seed gives byte-identical safetensors.
        overwrite (`bool`, *optional*, defaults to `False`):
            Replace `output_dir` if it exists and is not empty.

    Returns:
        The checkpoint directory.
    """
    output_dir = Path(output_dir)
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < MIN_TINY_LAYERS:
        raise ValueError(
            f"--num-layers must be at least {MIN_TINY_LAYERS} for a tiny Qwen3-VL (DeepStack features go into "
            f"text layers 0-2 and pruning needs a layer beyond them), got {num_layers}. "
            f"Pass --num-layers {MIN_TINY_LAYERS} or more."
        )
    check_output_dir(output_dir, overwrite, flag="OUTPUT_DIR")

    from ..version import __version__

    processor = build_tiny_processor()
    model = init_qwen3_vl(tiny_config(num_layers, processor.tokenizer), processor.tokenizer, seed).eval()

    with atomic_output_dir(output_dir, overwrite, flag="OUTPUT_DIR") as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        provenance = {
            "builder": "interlace_hf.testing.tiny.build_tiny_model",
            "interlace_hf_version": __version__,
            "num_layers": num_layers,
            "seed": seed,
        }
        (staging / "interlace_tiny.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    logger.info("Wrote a tiny Qwen3-VL with %d text layers (seed %d) to %s", num_layers, seed, output_dir)
    return output_dir


def _draw_shapes(size: int, shapes: list[tuple[str, str]]):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    step = size // max(len(shapes), 1)
    for index, (shape, colour) in enumerate(shapes):
        left, top = index * step + 2, size // 4
        box = (left, top, left + step - 4, top + step - 4)
        if shape == "circle":
            draw.ellipse(box, fill=colour)
        elif shape == "triangle":
            draw.polygon([(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), (box[2], box[3])], fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    return image


def tiny_example_conversations(with_image: bool = True, batch_size: int = 2) -> tuple[list[list[dict]], list]:
    """Short chats of different lengths about drawn shapes, and the images they refer to.

    Returns:
        `(conversations, images)`: one conversation per batch row (user turn only, ready for a
        generation prompt); `images` holds one list of PIL images per row, empty when `with_image=False`.
    """
    questions = [
        "What color is the circle?",
        "How many shapes are in the picture? Count the red and the blue ones and answer with a number.",
        "Which shape is on the left?",
        "Describe the image in one short sentence about the colors and the shapes you see.",
    ]
    scenes = [
        [("circle", "red")],
        [("square", "blue"), ("triangle", "green")],
        [("triangle", "yellow"), ("circle", "purple"), ("square", "black")],
        [("square", "orange")],
    ]
    conversations, images = [], []
    for row in range(batch_size):
        question = questions[row % len(questions)]
        content: list[dict] = [{"type": "text", "text": question}]
        if with_image:
            content.insert(0, {"type": "image"})
            images.append([_draw_shapes(64, scenes[row % len(scenes)])])
        conversations.append([{"role": "user", "content": content}])
    return conversations, images


def tiny_example_inputs(processor, with_image: bool = True, batch_size: int = 2) -> BatchFeature:
    """A left-padded batch of `batch_size` chats of different lengths, with one 64x64 image each.

    Args:
        processor:
            The tiny processor (or any Qwen3-VL processor).
        with_image (`bool`, *optional*, defaults to `True`):
            Add one drawn image per row.
        batch_size (`int`, *optional*, defaults to 2):
            Number of rows.

    Returns:
        A `BatchFeature` with `input_ids`, `attention_mask`, `mm_token_type_ids` and, with images,
        `pixel_values` and `image_grid_thw`, as PyTorch tensors.
    """
    conversations, images = tiny_example_conversations(with_image=with_image, batch_size=batch_size)
    texts = [processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    return processor(text=texts, images=images or None, padding=True, padding_side="left", return_tensors="pt")
