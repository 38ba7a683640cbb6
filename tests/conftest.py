import json
import tempfile

# A loopback Hub for the whole session, started before anything imports huggingface_hub (it reads HF_ENDPOINT once):
# every Hub call of the tests (and any accidental one) goes to 127.0.0.1, never to the internet.
from hub_server import start_session_hub

HUB = start_session_hub(tokens={"hf_alice_write": "alice", "hf_bob_write": "bob"}, orgs={"alice": ["alice-org"]},
                        hf_home=tempfile.mkdtemp(prefix="interlace-hf-test-home-"))

import pytest  # noqa: E402

import interlace_hf  # noqa: E402
from interlace_hf.processing import load_processor  # noqa: E402

# The tests load checkpoints with plain `AutoModelForImageTextToText.from_pretrained`, as users do after registering.
interlace_hf.register()
from interlace_hf.testing.tiny import build_tiny_model, tiny_example_conversations, tiny_example_inputs


@pytest.fixture
def hub():
    """The session's loopback Hub, emptied (repos, collections, injected faults, request log) for each test."""
    HUB.reset()
    return HUB


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 12-layer tiny Qwen3-VL (seed 0) with its processor, built once per test session. Treat it as read-only."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen3-vl-tiny", num_layers=12, seed=0)


@pytest.fixture(scope="session")
def synthetic_json(tmp_path_factory):
    """24 synthetic VQA records (seed 1): the fine-tune's training data in the trainer tests."""
    from interlace_hf.datasets.synthetic import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("syn") / "data", num=24, seed=1)


@pytest.fixture(scope="session")
def dataset(synthetic_json):
    """`synthetic_json` as the training `datasets.Dataset` (images + messages) that TRL's collator takes."""
    from interlace_hf.args import TrainArgs
    from interlace_hf.train import build_train_dataset

    return build_train_dataset(TrainArgs(model="x", dataset=str(synthetic_json)))[0]


@pytest.fixture(scope="session")
def tiny_processor(tiny_model_dir):
    return load_processor(tiny_model_dir)


@pytest.fixture(scope="session")
def image_batch(tiny_processor):
    """A left-padded batch of 2 image + text prompts of different lengths (a plain dict of tensors)."""
    return dict(tiny_example_inputs(tiny_processor, with_image=True, batch_size=2))


@pytest.fixture(scope="session")
def text_batch(tiny_processor):
    """A left-padded batch of 2 text-only prompts of different lengths."""
    return dict(tiny_example_inputs(tiny_processor, with_image=False, batch_size=2))


@pytest.fixture(scope="session")
def sample_image():
    _, images = tiny_example_conversations(with_image=True, batch_size=1)
    return images[0][0]


def write_llava_calibration(directory, num_records: int = 10):
    """A small LLaVA-style calibration set: drawn images (one, two or none per record) and questions."""
    from PIL import Image, ImageDraw

    directory.mkdir(parents=True, exist_ok=True)
    colours = ["red", "green", "blue", "yellow", "purple"]
    items = []
    for n in range(num_records):
        images = []
        for m in range(n % 3):  # 0, 1 or 2 images
            image = Image.new("RGB", (48 + 16 * m, 64), "white")
            ImageDraw.Draw(image).ellipse([8, 8, 40, 40], fill=colours[(n + m) % len(colours)])
            name = f"img_{n}_{m}.png"
            image.save(directory / name)
            images.append(name)
        question = f"What colour is the circle number {n}?" + " Answer briefly." * (n % 4)
        item = {"id": str(n), "conversations": [
            {"from": "human", "value": "<image>\n" * len(images) + question},
            {"from": "gpt", "value": colours[n % len(colours)]},
        ]}
        if len(images) == 1:
            item["image"] = images[0]
        elif images:
            item["image"] = images
        items.append(item)
    path = directory / "calib.json"
    path.write_text(json.dumps(items))
    return path


@pytest.fixture(scope="session")
def llava_json(tmp_path_factory):
    return write_llava_calibration(tmp_path_factory.mktemp("calib"))
