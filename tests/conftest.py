import pytest

from interlace_hf.processing import load_processor
from interlace_hf.tiny import build_tiny_model, tiny_example_conversations, tiny_example_inputs


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 12-layer tiny Qwen3-VL (seed 0) with its processor, built once per test session. Treat it as read-only."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen3-vl-tiny", num_layers=12, seed=0)


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
