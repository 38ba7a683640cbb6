"""`interlace-hf data prepare` on local FineVision-like datasets (no Hub here), in every supported layout."""

import io
import json
from pathlib import Path

import datasets
import pytest
import yaml
from PIL import Image

from interlace_hf.datasets import prepare as prepare_module
from interlace_hf.datasets import sources as sources_module
from interlace_hf.datasets import writer as writer_module
from interlace_hf.data import load_records
from interlace_hf.datasets.converters import detect_format
from interlace_hf.datasets.sources import list_subsets
from interlace_hf.datasets.prepare import prepare_dataset

FEATURES = datasets.Features({
    "images": datasets.List(datasets.Image()),
    "texts": datasets.List({"user": datasets.Value("string"), "assistant": datasets.Value("string")}),
    "source": datasets.Value("string"),
})
SIZES = {"alpha": 40, "beta": 12, "gamma(mathv360k)": 5}
BAD_IMAGE = ("alpha", 3)  # its first image is not an image


def _image_bytes(fmt: str, colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(buffer, format=fmt)
    return buffer.getvalue()


def num_images(name: str, i: int) -> int:
    return (i * 5 + len(name)) % 6  # 0-5 images; 0 = a text-only record


def has_text(i: int) -> bool:
    return i % 11 != 10


def fv_row(name: str, i: int) -> dict:
    images = []
    for k in range(num_images(name, i)):
        colour = ((i * 37) % 256, (k * 90) % 256, len(name) * 20)
        kind = (i + k) % 3
        if (name, i) == BAD_IMAGE and k == 0:
            images.append({"bytes": b"not an image", "path": None})
        elif kind == 0:
            images.append({"bytes": _image_bytes("JPEG", colour), "path": None})  # kept byte for byte
        elif kind == 1:
            images.append(Image.new("RGB", (8, 6), colour))  # datasets stores it as PNG
        else:
            images.append({"bytes": _image_bytes("GIF", colour), "path": None})  # re-encoded as PNG
    texts = []
    if has_text(i):
        texts = [{"user": f"<image>Question {i} about {name}?", "assistant": f"answer {i}"}]
        if i % 4 == 0:
            texts.append({"user": "And then?", "assistant": "more"})
    return {"images": images, "texts": texts, "source": name}


def fv_dataset(name: str) -> datasets.Dataset:
    rows = [fv_row(name, i) for i in range(SIZES[name])]
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in FEATURES}, features=FEATURES)


def eligible(name: str, max_images: int = 3) -> list[int]:
    """Row indices of `name` that prepare keeps, in order (too many images, then no text, then a bad image)."""
    return [i for i in range(SIZES[name])
            if num_images(name, i) <= max_images and has_text(i) and (name, i) != BAD_IMAGE]


def quota(count: int, fraction: float) -> int:
    return max(1, int(count * fraction))


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The same three subsets as: sub-directories of parquet files, a Hub-repo copy (README.md configs + counts,
    one declared subset without data), and a save_to_disk DatasetDict with one entry per subset."""
    root = tmp_path_factory.mktemp("finevision")
    tables = {name: fv_dataset(name) for name in SIZES}
    for layout in ("subdirs", "repo"):
        for name, table in tables.items():
            (root / layout / name).mkdir(parents=True)
            table.to_parquet(root / layout / name / "train-00000-of-00001.parquet")
    configs = [{"config_name": name, "data_files": [{"split": "train", "path": f"{name}/train-*"}]}
               for name in [*SIZES, "delta"]]
    infos = [{"config_name": name, "splits": [{"name": "train", "num_bytes": 1, "num_examples": size}]}
             for name, size in SIZES.items()]
    metadata = yaml.safe_dump({"configs": configs, "dataset_info": infos}, sort_keys=False)
    (root / "repo" / "README.md").write_text(f"---\n{metadata}---\n# FineVision look-alike\n")
    datasets.DatasetDict(tables).save_to_disk(str(root / "disk"))
    return {layout: str(root / layout) for layout in ("subdirs", "repo", "disk")}


def tree(directory: Path) -> dict:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def ids(output_dir: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for item in json.loads((output_dir / "train.json").read_text()):
        name, index = item["id"].rsplit("-", 1)
        out.setdefault(name, []).append(int(index))
    return out


@pytest.mark.parametrize("layout", ["subdirs", "repo", "disk"])
def test_first_takes_the_first_eligible_records_per_subset(layouts, layout, tmp_path):
    assert list_subsets(layouts[layout]) == list(SIZES)
    out = tmp_path / "out"
    summary = prepare_dataset(layouts[layout], out, fraction=0.25, progress=layout == "disk")
    assert summary.layout == layout and summary.manifest == out.resolve() / "train.json"
    expected = {name: eligible(name)[:quota(size, 0.25)] for name, size in SIZES.items()}
    assert ids(out) == expected
    written = json.loads((out / "summary.json").read_text())
    assert written == summary.to_dict() and written["records"] == sum(map(len, expected.values()))
    count_source = {"subdirs": "parquet-metadata", "repo": "metadata", "disk": "metadata"}[layout]
    for name, size in SIZES.items():
        stats = written["subsets"][name]
        last = expected[name][-1]
        skipped = [i for i in range(last + 1) if i not in expected[name]]
        assert stats["available"] == size and stats["count_source"] == count_source
        assert stats["quota"] == quota(size, 0.25) == stats["kept"] and stats["examined"] == last + 1
        assert stats["skipped_too_many_images"] == sum(num_images(name, i) > 3 for i in skipped)
        assert stats["skipped_no_text"] == sum(num_images(name, i) <= 3 and not has_text(i) for i in skipped)
        assert stats["skipped_bad_image"] == (BAD_IMAGE[0] == name and BAD_IMAGE[1] <= last)
    assert written["subsets"]["alpha"]["skipped_bad_image"] == 1
    assert written["versions"]["datasets"] == datasets.__version__ and written["sampling"] == "first"

    records, _ = load_records(str(out / "train.json"))
    items = json.loads((out / "train.json").read_text())
    assert len(records) == len(items) == summary.records
    for item, record in zip(items, records):
        name, index = item["id"].rsplit("-", 1)
        n = num_images(name, int(index))
        assert len(record.images) == n and all(Path(p).is_file() for p in record.images)
        assert ("image" in item) == (n > 0) and (n != 1 or isinstance(item["image"], str))
        human = item["conversations"][0]["value"]
        assert human == "<image>\n" * n + f"Question {index} about {name}?"
        assert record.turns[0] == (f"Question {index} about {name}?", f"answer {index}")
        assert len(record.turns) == (2 if int(index) % 4 == 0 else 1)
        assert all("<image>" not in c["value"] for c in item["conversations"][1:])
    assert len(record.load_images()) == len(record.images)
    # JPEG bytes are kept as they are, PNG too; the GIFs became PNG
    index = next(i for i in expected["alpha"] if i % 3 == 0 and num_images("alpha", i))  # image 0 is a JPEG
    jpeg = out / f"images/alpha/{index:07d}_0.jpg"
    assert jpeg.read_bytes() == fv_row("alpha", index)["images"][0]["bytes"]
    suffixes = {p.suffix for p in (out / "images").rglob("*.*")}
    assert suffixes == {".jpg", ".png"}
    assert sum(1 for _ in (out / "images").rglob("*.*")) == summary.images
    assert not (out / "parts").exists()


def test_layouts_give_the_same_result(layouts, tmp_path):
    outs = {layout: tmp_path / layout for layout in layouts}
    for layout, out in outs.items():
        prepare_dataset(layouts[layout], out, fraction=0.5, sampling="random", seed=3, progress=False)
    manifests = {(out / "train.json").read_bytes() for out in outs.values()}
    images = [{k: v for k, v in tree(out).items() if k.startswith("images/")} for out in outs.values()]
    assert len(manifests) == 1 and images[0] == images[1] == images[2]


def test_random_is_seeded_uniform_over_eligible_records(layouts, tmp_path):
    a = prepare_dataset(layouts["subdirs"], tmp_path / "a", fraction=0.25, sampling="random", seed=1, progress=False)
    prepare_dataset(layouts["subdirs"], tmp_path / "b", fraction=0.25, sampling="random", seed=1, progress=False)
    prepare_dataset(layouts["subdirs"], tmp_path / "c", fraction=0.25, sampling="random", seed=2, progress=False)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert ids(tmp_path / "a") != ids(tmp_path / "c")
    for name, picked in ids(tmp_path / "a").items():
        assert len(picked) == quota(SIZES[name], 0.25) and picked == sorted(picked)
        assert set(picked) <= set(eligible(name))
    assert ids(tmp_path / "a")["alpha"] != eligible("alpha")[:10]
    # surplus candidates leave no images behind
    referenced = {p for r in load_records(str(tmp_path / "a/train.json"))[0] for p in r.images}
    assert {str(p) for p in (tmp_path / "a/images").rglob("*.*")} == referenced
    assert a.to_dict()["seed"] == 1 and a.sampling == "random"
    # each subset draws from its own seed: taking one subset alone gives the same sample of it
    prepare_dataset(layouts["subdirs"], tmp_path / "d", fraction=0.25, sampling="random", seed=1,
                    subsets=["beta"], progress=False)
    assert ids(tmp_path / "d") == {"beta": ids(tmp_path / "a")["beta"]}
    # the whole subset, random order irrelevant: every eligible row exactly once
    prepare_dataset(layouts["disk"], tmp_path / "e", fraction=1.0, sampling="random", progress=False)
    assert ids(tmp_path / "e") == {name: eligible(name) for name in SIZES}


def test_max_images(layouts, tmp_path):
    prepare_dataset(layouts["disk"], tmp_path / "none", fraction=1.0, max_images=0, progress=False)
    assert ids(tmp_path / "none") == {name: eligible(name, 0) for name in SIZES}
    assert not (tmp_path / "none/images").exists() or not any((tmp_path / "none/images").rglob("*.*"))
    summary = prepare_dataset(layouts["disk"], tmp_path / "all", fraction=1.0, max_images=5, progress=False)
    assert ids(tmp_path / "all") == {name: eligible(name, 5) for name in SIZES}
    assert all(s.skipped_too_many_images == 0 for s in summary.subsets)


def test_subsets_filter(layouts, tmp_path):
    summary = prepare_dataset(layouts["repo"], tmp_path / "a", subsets=["gamma(mathv360k),beta"], progress=False)
    assert [s.name for s in summary.subsets] == ["beta", "gamma(mathv360k)"]  # the dataset's order
    assert ids(tmp_path / "a") == {"beta": eligible("beta")[:1], "gamma(mathv360k)": eligible("gamma(mathv360k)")[:1]}
    assert (tmp_path / "a/images/gamma(mathv360k)").is_dir() or summary.subsets[1].images == 0
    with pytest.raises(ValueError, match=r"unknown subset\(s\) \['alpah'\].*did you mean \['alpha'\].*it has 3: alpha"):
        prepare_dataset(layouts["repo"], tmp_path / "b", subsets=["alpah"])
    with pytest.raises(ValueError, match=r"\['delta'\]: declared in .*README.md but their data files are not there"):
        prepare_dataset(layouts["repo"], tmp_path / "b", subsets=["delta"])
    assert not (tmp_path / "b").exists()


def test_resume_after_an_interruption_equals_an_uninterrupted_run(layouts, tmp_path, monkeypatch):
    settings = {"fraction": 0.5, "sampling": "random", "seed": 7, "progress": False}
    prepare_dataset(layouts["subdirs"], tmp_path / "whole", **settings)

    # interrupted after the first subset is written
    real_write_part, calls = prepare_module.write_part, []

    def write_then_fail(*args):
        real_write_part(*args)
        calls.append(args[1])
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "write_part", write_then_fail)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(layouts["subdirs"], tmp_path / "cut", **settings)
    assert calls == ["alpha"] and not (tmp_path / "cut/train.json").exists()
    assert (tmp_path / "cut/parts/alpha.json").is_file()
    monkeypatch.setattr(prepare_module, "write_part", real_write_part)

    # and interrupted again, half-way through the next subset's images
    real_encode, seen = writer_module.encode_image, []

    def encode_then_fail(value):
        seen.append(1)
        if len(seen) == 4:
            raise KeyboardInterrupt
        return real_encode(value)

    monkeypatch.setattr(writer_module, "encode_image", encode_then_fail)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(layouts["subdirs"], tmp_path / "cut", **settings)
    assert any((tmp_path / "cut/images/beta").iterdir()) and not (tmp_path / "cut/parts/beta.json").exists()
    monkeypatch.setattr(writer_module, "encode_image", real_encode)

    summary = prepare_dataset(layouts["subdirs"], tmp_path / "cut", **settings)
    assert tree(tmp_path / "cut") == tree(tmp_path / "whole")
    # a finished prepare with the same settings is left as it is
    again = prepare_dataset(layouts["subdirs"], tmp_path / "cut", **settings)
    assert again == summary and tree(tmp_path / "cut") == tree(tmp_path / "whole")


def test_output_dir_checks(layouts, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used/notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists and is not empty.*--overwrite"):
        prepare_dataset(layouts["disk"], tmp_path / "used", progress=False)
    with pytest.raises(ValueError, match="--split 'dev'"):  # refused before anything is removed
        prepare_dataset(layouts["subdirs"], tmp_path / "used", split="dev", overwrite=True, progress=False)
    assert (tmp_path / "used/notes.txt").read_text() == "mine"
    prepare_dataset(layouts["disk"], tmp_path / "used", overwrite=True, progress=False)
    assert not (tmp_path / "used/notes.txt").exists() and (tmp_path / "used/train.json").is_file()
    with pytest.raises(ValueError, match=r"other settings \(fraction=0.01 \(now 0.5\)\).*--overwrite"):
        prepare_dataset(layouts["disk"], tmp_path / "used", fraction=0.5, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        prepare_dataset(layouts["disk"], tmp_path / "file", progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"fraction": 0}, r"--fraction must be in \(0, 1\], got 0"),
    ({"fraction": 1.5}, r"--fraction must be in \(0, 1\]"),
    ({"fraction": float("nan")}, r"--fraction must be in \(0, 1\]"),
    ({"fraction": "0.1"}, r"--fraction must be in \(0, 1\]"),
    ({"sampling": "middle"}, "--sampling must be one of first, random, got 'middle'"),
    ({"max_images": -1}, "--max-images must be an integer >= 0, got -1"),
    ({"seed": 1.5}, "--seed must be an integer"),
    ({"split": "test"}, r"--split 'test': subset 'alpha' of .* has splits \['train'\]"),
])
def test_bad_arguments(layouts, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        prepare_dataset(layouts["subdirs"], tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dataset", ["./no/such/dir", "/no/such/dir", "finevision", "not a dataset!", ""])
def test_unknown_dataset(dataset, tmp_path):
    with pytest.raises(ValueError, match=r"cannot be found.*a Hub dataset id \(org/name\), a local path or one of "
                                         r"chartqa\|textvqa\|scienceqa"):
        prepare_dataset(dataset, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_dataset_paths_that_are_not_datasets(tmp_path):
    (tmp_path / "train.json").write_text("[]")
    with pytest.raises(ValueError, match="is a file .*already a manifest"):
        prepare_dataset(str(tmp_path / "train.json"), tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot be found .*holds no data files"):
        list_subsets(str(tmp_path / "empty"))


def test_hub_errors_are_value_errors(monkeypatch, tmp_path):
    def missing(name, **kwargs):
        raise datasets.exceptions.DatasetNotFoundError(f"Dataset '{name}' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "get_dataset_config_names", missing)
    with pytest.raises(ValueError, match="'someone/nothing' cannot be found on the Hub .*chartqa|textvqa|scienceqa"):
        prepare_dataset("someone/nothing", tmp_path / "out")

    def offline(name, **kwargs):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub")

    monkeypatch.setattr(datasets, "get_dataset_config_names", offline)
    with pytest.raises(ValueError, match="could not reach the Hub .*local copy"):
        list_subsets("chartqa")
    assert not (tmp_path / "out").exists()


def test_stream_count_when_the_metadata_has_none(layouts, tmp_path, monkeypatch):
    def no_footers(files):
        raise OSError("footers unreadable")

    monkeypatch.setattr(sources_module, "_parquet_rows", no_footers)
    summary = prepare_dataset(layouts["subdirs"], tmp_path / "out", fraction=0.25, progress=False)
    assert summary.counted_while_streaming == list(SIZES)
    assert json.loads((tmp_path / "out/summary.json").read_text())["counted_while_streaming"] == list(SIZES)
    assert [s.available for s in summary.subsets] == list(SIZES.values())
    assert ids(tmp_path / "out") == {name: eligible(name)[:quota(size, 0.25)] for name, size in SIZES.items()}


# ----- domain sets: local look-alikes with the Hub datasets' columns -----

def _picture(colour) -> Image.Image:
    return Image.new("RGB", (10, 10), colour)


def chartqa_table() -> datasets.Dataset:
    return datasets.Dataset.from_dict({
        "image": [_picture("red"), _picture("green"), _picture("blue")],
        "query": ["What is the highest value?", "Which year is lowest?", "<image> Sum of bars?"],
        "label": [["42"], ["2019"], ["17", "seventeen"]],
        "human_or_machine": [0, 1, 0],
    }, features=datasets.Features({
        "image": datasets.Image(), "query": datasets.Value("string"), "label": datasets.List(datasets.Value("string")),
        "human_or_machine": datasets.ClassLabel(names=["human", "machine"]),
    }))


def textvqa_table() -> datasets.Dataset:
    answers = [["stop"] * 6 + ["stop sign"] * 4, ["nokia", "samsung", "samsung", "nokia", "", "lg"], [""] * 10]
    return datasets.Dataset.from_dict({
        "image_id": ["a", "b", "c"], "question_id": [1, 2, 3],
        "question": ["what does the sign say?", "what brand is the phone?", "what is written?"],
        "image": [_picture("red"), _picture("white"), _picture("black")],
        "answers": answers, "ocr_tokens": [["stop"], ["nokia"], []], "set_name": ["train"] * 3,
    }, features=datasets.Features({
        "image_id": datasets.Value("string"), "question_id": datasets.Value("int32"),
        "question": datasets.Value("string"), "image": datasets.Image(),
        "answers": datasets.List(datasets.Value("string")), "ocr_tokens": datasets.List(datasets.Value("string")),
        "set_name": datasets.Value("string"),
    }))


def scienceqa_table() -> datasets.Dataset:
    return datasets.Dataset.from_dict({
        "image": [_picture("gray"), None, _picture("blue")],
        "question": ["Which animal is a mammal?", "What is 2 + 2?", "Which is a solid?"],
        "choices": [["frog", "whale", "trout"], ["3", "4"], ["milk", "rock"]],
        "answer": [1, 1, 1], "hint": ["", "", "Look closely."], "subject": ["natural science"] * 3,
        "lecture": ["", "", ""], "solution": ["", "", ""],
    }, features=datasets.Features({
        "image": datasets.Image(), "question": datasets.Value("string"),
        "choices": datasets.List(datasets.Value("string")), "answer": datasets.Value("int8"),
        "hint": datasets.Value("string"), "subject": datasets.Value("string"),
        "lecture": datasets.Value("string"), "solution": datasets.Value("string"),
    }))


def conversations(output_dir: Path) -> list[tuple[str, str]]:
    items = json.loads((output_dir / "train.json").read_text())
    assert all(isinstance(item["image"], str) and (output_dir / item["image"]).is_file() for item in items)
    return [(item["conversations"][0]["value"], item["conversations"][1]["value"]) for item in items]


def test_domain_conversions(tmp_path):
    chartqa = tmp_path / "chartqa"
    (chartqa / "data").mkdir(parents=True)
    chartqa_table().to_parquet(chartqa / "data/train-00000-of-00001.parquet")  # the Hub repo's parquet layout
    datasets.DatasetDict({"train": textvqa_table(), "validation": textvqa_table()}).save_to_disk(str(tmp_path / "tv"))
    scienceqa_table().save_to_disk(str(tmp_path / "sqa"))
    assert detect_format(chartqa_table().column_names) == "chartqa"
    assert detect_format(textvqa_table().column_names) == "textvqa"
    assert detect_format(scienceqa_table().column_names) == "scienceqa"

    summary = prepare_dataset(str(chartqa), tmp_path / "c", fraction=1.0, progress=False)
    assert summary.layout == "files" and [s.name for s in summary.subsets] == ["default"]
    assert summary.subsets[0].format == "chartqa" and summary.subsets[0].count_source == "parquet-metadata"
    assert conversations(tmp_path / "c") == [
        ("<image>\nWhat is the highest value?", "42"), ("<image>\nWhich year is lowest?", "2019"),
        ("<image>\nSum of bars?", "17"),
    ]
    summary = prepare_dataset(str(tmp_path / "tv"), tmp_path / "t", fraction=1.0, progress=False)
    assert summary.layout == "disk" and summary.subsets[0].skipped_no_text == 1  # no answers in it
    assert conversations(tmp_path / "t") == [
        ("<image>\nwhat does the sign say?", "stop"), ("<image>\nwhat brand is the phone?", "nokia"),
    ]
    summary = prepare_dataset(str(tmp_path / "sqa"), tmp_path / "s", fraction=1.0, progress=False)
    assert summary.subsets[0].skipped_no_image == 1 and summary.records == 2
    assert conversations(tmp_path / "s") == [
        ("<image>\nWhich animal is a mammal?\nA) frog\nB) whale\nC) trout", "B) whale"),
        ("<image>\nWhich is a solid?\nA) milk\nB) rock", "B) rock"),
    ]
    records, _ = load_records(str(tmp_path / "s/train.json"))
    assert records[0].turns == [("Which animal is a mammal?\nA) frog\nB) whale\nC) trout", "B) whale")]
    with pytest.raises(ValueError, match=r"--split 'test': .* has splits \['train', 'validation'\]"):
        prepare_dataset(str(tmp_path / "tv"), tmp_path / "t2", split="test")


def test_domain_names_read_their_hub_datasets(tmp_path, monkeypatch):
    """`chartqa` -> HuggingFaceM4/ChartQA, read through `datasets` as from the Hub (redirected to a local copy)."""
    local = tmp_path / "ChartQA"
    (local / "data").mkdir(parents=True)
    chartqa_table().to_parquet(local / "data/train-00000-of-00001.parquet")
    real_builder, real_load, asked = datasets.load_dataset_builder, datasets.load_dataset, []

    def redirect(function):
        def redirected(path, *args, **kwargs):
            asked.append((path, kwargs.get("name")))
            return function(str(local) if path == "HuggingFaceM4/ChartQA" else path, *args, **kwargs)
        return redirected

    monkeypatch.setattr(datasets, "get_dataset_config_names", lambda path, **kwargs: ["default"])
    monkeypatch.setattr(datasets, "load_dataset_builder", redirect(real_builder))
    monkeypatch.setattr(datasets, "load_dataset", redirect(real_load))
    assert list_subsets("ChartQA") == ["chartqa"]
    summary = prepare_dataset("chartqa", tmp_path / "out", fraction=0.5, progress=False)
    assert set(asked) == {("HuggingFaceM4/ChartQA", None)} and summary.source == "HuggingFaceM4/ChartQA"
    assert summary.layout == "hub" and [(s.name, s.quota, s.kept) for s in summary.subsets] == [("chartqa", 1, 1)]
    assert conversations(tmp_path / "out") == [("<image>\nWhat is the highest value?", "42")]
    assert (tmp_path / "out/images/chartqa").is_dir()
