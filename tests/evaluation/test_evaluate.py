"""Evaluation: metric tables, task data (LLaVA JSON and native domain columns), batched greedy answers on the tiny
model, relative performance, eval_results.json into the model card, and the lmms-eval / VLMEvalKit bridges."""

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from interlace_hf.evaluation.evaluate import (
    card_eval_results,
    combine_results,
    evaluate_model,
    format_results,
    run_eval,
    score_task,
)
from interlace_hf.evaluation.generation import generate_answers, prompt_messages
from interlace_hf.evaluation.tasks import (
    load_task,
    parse_metric_option,
    parse_task_list,
    parse_task_mapping,
    validate_eval_args,
)
from interlace_hf.evaluation.metrics import (
    anls,
    choice_index,
    exact_match,
    multiple_choice,
    normalize_answer,
    parse_choices,
    parse_number,
    relative_performance,
    relaxed_accuracy,
    vqa_accuracy,
)
from interlace_hf.datasets.synthetic import make_synthetic

# ---------------------------------------------------------------------------------------------------------------
# Metrics: hand-made tables.
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction, references, expected", [
    ("2", ["2"], 1.0),
    ("Two.", "2", 1.0),  # number words, trailing punctuation
    ("  The Circle ", "circle", 1.0),  # case, articles, whitespace
    ("CIRCLE", ["square", "circle"], 1.0),  # any reference
    ("red and blue", "blue, red", 1.0),  # lists are sets
    ("blue,red", "blue, red", 1.0),
    ("red", "blue, red", 0.0),  # a subset of a list is wrong
    ("red, blue, green", "blue, red", 0.0),
    ("A", "A", 1.0),  # an option letter survives article removal
    ("a", "A", 1.0),
    ("B", "A", 0.0),
    ("", "A", 0.0),  # empty prediction
    ("it is 2", "2", 0.0),  # extra words are not forgiven
    ("1,000", "1000", 1.0),  # thousands separators
    ("3.5", "3.5", 1.0),
    ("-5", "5", 0.0),  # the sign is kept
    ("50%", "50", 1.0),  # % is punctuation here (relaxed_accuracy handles percentages properly)
    ("x-ray", "x ray", 1.0),
])
def test_exact_match(prediction, references, expected):
    assert exact_match(prediction, references) == expected


@pytest.mark.parametrize("prediction, reference, expected", [
    ("104", "100", 1.0),  # within 5%
    ("105", "100", 1.0),  # on the boundary
    ("106", "100", 0.0),
    ("95.5", "100", 1.0),
    ("45%", "45", 1.0),  # a percentage as written ...
    ("0.45", "45%", 1.0),  # ... or divided by 100
    ("$1,234", "1234", 1.0),  # currency, commas
    ("7 kg", "7", 1.0),  # a unit
    ("two", "2", 1.0),
    ("0", "0", 1.0),
    ("0.01", "0", 0.0),  # a zero label needs an exact zero
    ("Yes", "yes", 1.0),  # non-numeric: exact match
    ("Yes", "no", 0.0),
    ("", "5", 0.0),  # empty prediction
    ("2019 and 2020", "2019", 0.0),  # more than one number is not a number
    ("12", ["12"], 1.0),  # ChartQA rows carry a one-element label list
])
def test_relaxed_accuracy(prediction, reference, expected):
    assert relaxed_accuracy(prediction, reference) == expected


def test_parse_number_and_normalize():
    assert parse_number("1,234.5") == (1234.5, False)
    assert parse_number("45 %") == (45.0, True)
    assert parse_number("-3.") == (-3.0, False)
    assert parse_number("three apples") is None and parse_number("abc") is None and parse_number("") is None
    assert normalize_answer("  The Two  red cars! ") == "2 red cars"
    assert normalize_answer("an") == "an"


@pytest.mark.parametrize("prediction, references, expected", [
    ("hello", ["hello"], 1.0),
    ("Hello  World", "hello world", 1.0),  # case and whitespace
    ("helo", "hello", 0.8),  # one edit in five characters
    ("hxllx", "hello", 0.6),
    ("hxxlx", "hello", 0.0),  # similarity 0.4 < 0.5: no partial credit
    ("", "hello", 0.0),  # empty prediction
    ("helo", ["world", "hello"], 0.8),  # the best reference counts
    ("", "", 1.0),
])
def test_anls(prediction, references, expected):
    assert anls(prediction, references) == pytest.approx(expected)


@pytest.mark.parametrize("prediction, answers, expected", [
    ("cat", ["cat"] * 10, 1.0),
    ("cat", ["cat"] * 4 + ["dog"] * 6, 1.0),  # 4 humans: every leave-one-out subset keeps 3
    ("cat", ["cat"] * 3 + ["dog"] * 7, 0.9),  # official protocol: (3 * 2/3 + 7 * 1) / 10
    ("cat", ["cat"] + ["dog"] * 9, 0.3),
    ("bird", ["cat"] * 10, 0.0),
    ("The Cat.", ["cat"] * 10, 1.0),  # normalised
    ("", ["cat"] * 10, 0.0),
    ("cat", ["cat"], 1 / 3),  # fewer than 4 answers: min(#matching / 3, 1)
    ("cat", ["cat", "cat", "cat"], 1.0),
])
def test_vqa_accuracy(prediction, answers, expected):
    assert vqa_accuracy(prediction, answers) == pytest.approx(expected)


CHOICES = ["cat", "dog", "dark red", "red"]


@pytest.mark.parametrize("prediction, expected", [
    ("B", 1), ("b", 1), ("(B)", 1), ("B.", 1), ("B) dog", 1), ("The answer is B.", 1), ("Answer: C", 2),
    ("dog", 1), ("It is a dog.", 1), ("The answer is a dog", 1),  # a lower-case "a" is an article, not option A
    ("dark red", 2), ("red", 3),  # the longer option wins inside a match
    ("I think B", 1), ("A", 0), ("", None), ("E", None), ("cat or dog", None),
])
def test_choice_index(prediction, expected):
    assert choice_index(prediction, CHOICES) == expected


def test_multiple_choice_answer_forms():
    assert multiple_choice("B", ["x", "y"], 1) == 1.0
    assert multiple_choice("B", ["x", "y"], "B") == 1.0
    assert multiple_choice("(b)", ["x", "y"], "B) y") == 1.0  # prepare's answer format
    assert multiple_choice("y", ["x", "y"], "y") == 1.0
    assert multiple_choice("A", ["x", "y"], "y") == 0.0
    with pytest.raises(ValueError, match="neither an option letter nor one of the choices"):
        multiple_choice("A", ["x", "y"], "z")
    with pytest.raises(ValueError, match="at least one choice"):
        multiple_choice("A", [], 0)


def test_parse_choices():
    assert parse_choices("Which animal?\nA) cat\nB) dog") == ("Which animal?", ["cat", "dog"])
    assert parse_choices("Which animal?\nA. cat\nB. dog\n") == ("Which animal?", ["cat", "dog"])
    assert parse_choices("Which animal?") == ("Which animal?", [])
    assert parse_choices("Q?\nB) cat\nC) dog") == ("Q?\nB) cat\nC) dog", [])  # not a run from A


def test_relative_performance_tables():
    relative, ratios, skipped = relative_performance({"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 1.0, "b": 0.6, "c": 0.0})
    assert relative == pytest.approx(0.5) and ratios == {"a": 0.5, "b": pytest.approx(0.5)} and skipped == ["c"]
    relative, _, _ = relative_performance({"a": 0.9, "b": 0.4}, {"a": 0.9, "b": 0.8})
    assert relative == pytest.approx(0.75)  # the mean of ratios (1.0, 0.5), not the ratio of means
    assert relative_performance({"a": 0.3}, {"a": 0.0}) == (None, {}, ["a"])
    assert relative_performance({"a": 1.2}, {"a": 1.0})[0] == pytest.approx(1.2)  # a pruned model may do better


def test_combine_results_and_card_shape():
    pruned = {"synthetic": {"metric": "exact_match", "score": 0.4, "n": 10, "dataset": "/data/syn.json",
                            "per_type": {"count": {"score": 0.5, "n": 4}, "text": {"score": 1 / 3, "n": 6}}},
              "chartqa": {"metric": "relaxed_accuracy", "score": 0.2, "n": 5, "dataset": "HuggingFaceM4/ChartQA"},
              "zero": {"metric": "anls", "score": 0.1, "n": 5, "dataset": "x/y"}}
    base = {"synthetic": {"metric": "exact_match", "score": 0.5, "n": 10,
                          "per_type": {"count": {"score": 0.75, "n": 4}, "text": {"score": 1 / 3, "n": 6}}},
            "chartqa": {"metric": "relaxed_accuracy", "score": 0.25, "n": 5},
            "zero": {"metric": "anls", "score": 0.0, "n": 5}}
    tasks, summary = combine_results(pruned, base)
    assert summary["relative"] == pytest.approx(0.8) and summary["skipped"] == ["zero"]
    assert "zero" in summary["note"] and "base score 0" in summary["note"]
    assert tasks["synthetic"]["ratio"] == pytest.approx(0.8) and tasks["zero"]["ratio"] is None
    assert tasks["synthetic"]["per_type"]["count"] == {"score": 0.5, "n": 4, "pruned": 0.5, "base": 0.75}
    card = card_eval_results(tasks, summary["relative"], "2026-01-01")
    assert card["tasks"]["chartqa"] == {"base": 0.25, "pruned": 0.2, "metric": "relaxed_accuracy",
                                        "dataset": "HuggingFaceM4/ChartQA"}
    assert "dataset" not in card["tasks"]["synthetic"]  # a local file is no Hub dataset
    table = format_results({"tasks": tasks, "base": "b", **summary, "relative_tasks": sorted(summary["ratios"])})
    assert "relative performance: 80.0% (mean of 2 task ratio(s))" in table and "base score 0" in table
    assert "  count" in table  # the per-type rows
    tasks, summary = combine_results(pruned, None)
    assert summary["relative"] is None and "base" not in tasks["chartqa"] and tasks["chartqa"]["pruned"] == 0.2


def test_metric_modules_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import interlace_hf.evaluation.metrics, interlace_hf.evaluation.evaluate\n"
            "import interlace_hf.integrations.vlmevalkit, interlace_hf.integrations.lmms_eval_plugin\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PATH": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# ---------------------------------------------------------------------------------------------------------------
# Arguments and data (no model).
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-data") / "synthetic"
    make_synthetic(out, num=8, seed=0)
    return out


def test_cli_parsers():
    assert parse_task_list("synthetic, chartqa") == ["synthetic", "chartqa"]
    assert parse_task_list(["synthetic", "chartqa,synthetic"]) == ["synthetic", "chartqa"]
    assert parse_task_mapping(["synthetic=data/syn", "chartqa=HuggingFaceM4/ChartQA"]) == {
        "synthetic": "data/syn", "chartqa": "HuggingFaceM4/ChartQA"}
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        parse_task_mapping(["data/syn"])
    assert parse_metric_option(["anls"]) == "anls"
    assert parse_metric_option(["textvqa=anls"]) == {"textvqa": "anls"}
    assert parse_metric_option(None) is None


@pytest.mark.parametrize("kwargs, match", [
    ({"tasks": ["mmmu"]}, "unknown task without data"),
    ({"tasks": []}, "--tasks is empty"),
    ({"tasks": ["synthetic"], "data": {"chartqa": "x.json"}}, "not in --tasks"),
    ({"tasks": ["synthetic"], "data": {"synthetic": "/no/such/file.json"}}, "no such file or directory"),
    ({"tasks": ["synthetic"], "data": {"synthetic": "./missing"}}, "no such file or directory"),
    ({"tasks": ["synthetic"], "batch_size": 0}, "--batch-size must be an integer >= 1"),
    ({"tasks": ["synthetic"], "max_new_tokens": 0}, "--max-new-tokens must be an integer >= 1"),
    ({"tasks": ["synthetic"], "limit": 0}, "--limit must be an integer >= 1"),
    ({"tasks": ["synthetic"], "metric": "bleu"}, "is not a metric"),
    ({"tasks": ["synthetic"], "metric": {"chartqa": "anls"}}, "not in --tasks"),
    ({"tasks": ["synthetic"], "dtype": "int8"}, "--dtype must be one of"),
    ({"tasks": ["synthetic"], "device": "gpu"}, "--device must be"),
])
def test_validation_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        validate_eval_args(**kwargs)


def test_errors_come_before_any_model_is_loaded(tmp_path, synthetic_dir):
    with pytest.raises(ValueError, match="no config.json"):
        run_eval(str(tmp_path), tasks=["synthetic"], data={"synthetic": str(synthetic_dir)})
    with pytest.raises(ValueError, match="is a directory"):
        run_eval(str(tmp_path), tasks=["synthetic"], data={"synthetic": str(synthetic_dir)}, output=str(tmp_path))
    with pytest.raises(ValueError, match="a file must be a LLaVA-style .json"):
        run_eval(str(tmp_path), tasks=["synthetic"], data={"synthetic": str(synthetic_dir / "images" / "000000.png")})


def test_load_synthetic_task(synthetic_dir):
    task = load_task("synthetic", str(synthetic_dir), limit=5)
    assert task.metric == "exact_match" and len(task.items) == 5 and task.source.endswith("synthetic.json")
    assert all(item.type and item.images and item.references for item in task.items)
    assert "single word or phrase" in task.prompt_suffix
    perfect = score_task(task, [item.references[0] for item in task.items])
    assert perfect["score"] == 1.0 and perfect["n"] == 5
    assert sum(group["n"] for group in perfect["per_type"].values()) == 5
    assert all(group["score"] == 1.0 for group in perfect["per_type"].values())
    wrong = score_task(task, ["zzz"] * 5)
    assert wrong["score"] == 0.0
    half = ["zzz" if i % 2 else item.references[0] for i, item in enumerate(task.items)]
    assert score_task(task, half)["score"] == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="4 predictions for 5 questions"):
        score_task(task, ["x"] * 4)
    default = load_task("synthetic", limit=3)  # no data: made on the fly, the first records of the seed-0 set
    assert default.source.startswith("interlace_hf.datasets.synthetic") and len(default.items) == 3
    assert all(Path(item.images[0]).is_file() for item in default.items)
    made = json.loads((synthetic_dir / "synthetic.json").read_text())[:3]
    assert [item.question for item in default.items] == [
        r["conversations"][0]["value"].removeprefix("<image>\n") for r in made]


def write_llava(path: Path, records: list[dict], image: str = "img.png") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), "white").save(path / image)
    (path / "records.json").write_text(json.dumps(records))
    return path / "records.json"


def test_prepared_formats(tmp_path):
    # ScienceQA as `data prepare` writes it: options in the question, the answer as "B) text"
    science = write_llava(tmp_path / "sci", [
        {"id": "s0", "image": "img.png", "conversations": [
            {"from": "human", "value": "<image>\nWhich is a mammal?\nA) frog\nB) whale"},
            {"from": "gpt", "value": "B) whale"}]}])
    task = load_task("scienceqa", str(science))
    assert task.metric == "multiple_choice" and task.items[0].choices == ("frog", "whale")
    assert task.items[0].answer == 1 and "option's letter" in task.prompt_suffix
    assert score_task(task, ["B"])["score"] == 1.0 and score_task(task, ["frog"])["score"] == 0.0
    # TextVQA prepared (one answer) -> ANLS; with all annotators' answers in `answers` -> VQA accuracy
    one = write_llava(tmp_path / "tv1", [{"image": "img.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat brand?"}, {"from": "gpt", "value": "nike"}]}])
    assert load_task("textvqa", str(one)).metric == "anls"
    many = write_llava(tmp_path / "tv10", [{"image": "img.png", "answers": ["nike"] * 3 + ["adidas"] * 7,
                                            "conversations": [{"from": "human", "value": "<image>\nWhat brand?"},
                                                              {"from": "gpt", "value": "adidas"}]}])
    task = load_task("textvqa", str(many))
    assert task.metric == "vqa_accuracy" and score_task(task, ["nike"])["score"] == pytest.approx(0.9)
    # a custom task: exact match unless told otherwise; multiple choice needs options
    assert load_task("mine", str(one)).metric == "exact_match"
    assert load_task("mine", str(one), metric="anls", prompt_suffix="").prompt_suffix == ""
    with pytest.raises(ValueError, match="needs options and the right one"):
        load_task("mine", str(one), metric="multiple_choice")
    unanswerable = write_llava(tmp_path / "mc", [{"image": "img.png", "conversations": [
        {"from": "human", "value": "Pick one\nA) x\nB) y"}, {"from": "gpt", "value": "z"}]}])
    assert load_task("mine", str(unanswerable)).metric == "exact_match"  # options matter only to multiple_choice
    with pytest.raises(ValueError, match="needs options and the right one"):
        load_task("mine", str(unanswerable), metric="multiple_choice")
    no_answer = write_llava(tmp_path / "na", [{"conversations": [{"from": "human", "value": "hi"}]}])
    with pytest.raises(ValueError, match="no reference answer"):
        load_task("mine", str(no_answer))


def test_native_domain_columns(tmp_path):
    """Raw ChartQA / TextVQA / ScienceQA columns (a saved dataset here, a Hub id in real use) keep what the
    metrics need: every TextVQA answer, ScienceQA's options, ChartQA's human / augmented split."""
    import datasets

    image = Image.new("RGB", (32, 32), "red")
    textvqa = datasets.Dataset.from_dict({
        "image": [image, image], "question": ["what brand?", "what number?"], "question_id": [7, 8],
        "answers": [["nike"] * 3 + ["adidas"] * 7, ["5"] * 10]}).cast_column("image", datasets.Image())
    textvqa.save_to_disk(str(tmp_path / "textvqa"))
    task = load_task("textvqa", str(tmp_path / "textvqa"))
    assert task.metric == "vqa_accuracy" and len(task.items[0].references) == 10 and task.items[0].id == "7"
    assert isinstance(task.items[0].images[0], dict)  # kept undecoded until its batch is generated
    assert score_task(task, ["adidas", "five"])["score"] == pytest.approx(1.0)

    science = datasets.Dataset.from_dict({
        "image": [image, None, image], "question": ["Which is a mammal?", "Text only?", "Which is wet?"],
        "choices": [["frog", "whale"], ["yes", "no"], ["sand", "water", "rock"]], "answer": [1, 0, 1],
        "subject": ["natural science", "language science", "natural science"]}).cast_column("image", datasets.Image())
    science.save_to_disk(str(tmp_path / "scienceqa"))
    task = load_task("scienceqa", str(tmp_path / "scienceqa"))
    assert len(task.items) == 2 and task.skipped == 1  # the text-only question is left out
    assert task.items[1].choices == ("sand", "water", "rock") and task.items[1].answer == 1
    assert "C) rock" in task.items[1].question  # the training format's option lines
    result = score_task(task, ["B", "A"])
    assert result["score"] == 0.5 and result["per_type"] == {"natural science": {"score": 0.5, "n": 2}}

    chart = datasets.Dataset.from_dict({
        "image": [image, image], "query": ["Max value?", "Which country?"], "label": [["12.5"], ["France"]],
        "human_or_machine": [0, 1]}).cast_column("image", datasets.Image())
    chart.save_to_disk(str(tmp_path / "chartqa"))
    task = load_task("chartqa", str(tmp_path / "chartqa"), limit=2)
    assert task.metric == "relaxed_accuracy"
    result = score_task(task, ["12.9", "Spain"])
    assert result["score"] == 0.5 and set(result["per_type"]) == {"human", "augmented"}

    plain = datasets.Dataset.from_dict({"image": [image], "question": ["What colour?"], "answer": ["red"]})
    (tmp_path / "plain").mkdir()
    plain.cast_column("image", datasets.Image()).to_parquet(str(tmp_path / "plain" / "data.parquet"))
    task = load_task("mine", str(tmp_path / "plain"))  # data files: their only split, here `train`
    assert task.metric == "exact_match" and task.split == "train" and task.items[0].references == ("red",)
    with pytest.raises(ValueError, match="pass --split with one of them"):
        load_task("mine", str(tmp_path / "plain"), split="test")

    finevision = datasets.Dataset.from_dict({"images": [[image]], "texts": [[{"user": "q", "assistant": "a"}]]})
    finevision.save_to_disk(str(tmp_path / "finevision"))
    with pytest.raises(ValueError, match="FineVision-style training set"):
        load_task("mine", str(tmp_path / "finevision"))


# ---------------------------------------------------------------------------------------------------------------
# The tiny model: batched greedy generation, base vs pruned, eval_results.json into the card.
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model is too small to gain from a second thread, and with 2 cores shared with anything else
    OpenMP's spinning threads make each `generate` step up to 10x slower; one thread keeps this module's time stable."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_loaded(tiny_model_dir):
    from interlace_hf.checkpoint import load_model
    from interlace_hf.processing import load_processor

    return load_model(str(tiny_model_dir), dtype="float32").eval(), load_processor(tiny_model_dir)


def test_batched_generation_equals_one_at_a_time(tiny_loaded, synthetic_dir):
    model, processor = tiny_loaded
    task = load_task("synthetic", str(synthetic_dir), limit=4)
    prompts = [(prompt_messages(item.question, len(item.images), task.prompt_suffix), item.images)
               for item in task.items]
    prompts.append((prompt_messages("How many shapes are there? Answer with one number please.", 0), ()))  # no image
    batched = generate_answers(model, processor, prompts, batch_size=3, max_new_tokens=6, progress=False)
    single = generate_answers(model, processor, prompts, batch_size=1, max_new_tokens=6, progress=False)
    assert batched == single and len(batched) == 5 and all(isinstance(answer, str) for answer in batched)
    longer = generate_answers(model, processor, prompts[:2], batch_size=2, max_new_tokens=12, progress=False)
    assert all(long.startswith(short) for long, short in zip(longer, batched))  # greedy: a longer run extends it


@pytest.fixture(scope="module")
def pruned_dir(tiny_model_dir, tmp_path_factory):
    from interlace_hf.checkpoint import load_model, save_pruned
    from interlace_hf.plan import Plan
    from interlace_hf.surgery import prune_model

    model = load_model(str(tiny_model_dir), dtype="float32")
    plan = Plan.from_dropped(12, [4, 8])
    prune_model(model, plan, base_model=str(tiny_model_dir))
    return save_pruned(model, plan, tmp_path_factory.mktemp("pruned") / "tiny-pruned", processor_source=tiny_model_dir)


def test_base_vs_pruned_and_card(tiny_model_dir, pruned_dir, synthetic_dir, tmp_path):
    from huggingface_hub import ModelCard

    from interlace_hf.card import EVAL_FILE, card_context_from_checkpoint, render_model_card

    # An "echo" task whose references are the base model's own answers: the base scores 1.0 on it, so the ratio is
    # defined; the random tiny model scores 0 on the synthetic questions, which the relative mean must leave out.
    base_run = evaluate_model(str(tiny_model_dir), "synthetic", data={"synthetic": str(synthetic_dir)},
                              batch_size=4, max_new_tokens=8, save_predictions=True, progress=False)
    rows = base_run["tasks"]["synthetic"]["predictions"]
    records = json.loads((synthetic_dir / "synthetic.json").read_text())
    for record, row in zip(records, rows):
        record["conversations"][1]["value"] = row["prediction"]
        record["image"] = str(synthetic_dir / record["image"])
    echo = tmp_path / "echo.json"
    echo.write_text(json.dumps(records))

    output = tmp_path / "results.json"
    result = run_eval(str(pruned_dir), base=str(tiny_model_dir), tasks=["synthetic", "echo"],
                      data={"synthetic": str(synthetic_dir), "echo": str(echo)}, batch_size=4, max_new_tokens=8,
                      output=str(output), progress=False)
    assert json.loads(output.read_text()) == json.loads(json.dumps(result))
    synthetic, echoed = result["tasks"]["synthetic"], result["tasks"]["echo"]
    assert synthetic["n"] == echoed["n"] == 8 and synthetic["metric"] == echoed["metric"] == "exact_match"
    assert all(0.0 <= entry[key] <= 1.0 for entry in (synthetic, echoed) for key in ("score", "pruned", "base"))
    assert sum(group["n"] for group in synthetic["per_type"].values()) == 8
    assert all({"score", "pruned", "base", "n"} <= set(group) for group in synthetic["per_type"].values())
    assert synthetic["base"] == base_run["tasks"]["synthetic"]["score"]  # same data, same settings
    assert echoed["base"] == 1.0 and echoed["ratio"] == echoed["pruned"]
    if synthetic["base"] == 0:
        assert result["skipped"] == ["synthetic"] and "synthetic" in result["note"]
        assert result["relative"] == pytest.approx(echoed["pruned"]) and result["relative_tasks"] == ["echo"]
    assert result["settings"]["batch_size"] == 4 and result["settings"]["decoding"] == "greedy"
    assert {"interlace-hf", "torch", "transformers"} <= set(result["versions"])

    written = json.loads((pruned_dir / EVAL_FILE).read_text())
    assert written["relative"] == result["relative"] and written["tasks"]["echo"]["base"] == 1.0
    ctx = card_context_from_checkpoint(pruned_dir)
    card = ModelCard(render_model_card(ctx))
    scores = {r.dataset_name: r.metric_value for r in card.data.eval_results}
    assert scores == {"synthetic": synthetic["pruned"], "echo": echoed["pruned"]}
    assert all(r.metric_type == "exact_match" for r in card.data.eval_results)


# ---------------------------------------------------------------------------------------------------------------
# lmms-eval: the plugin imports without lmms-eval; its request handling on the tiny model.
# ---------------------------------------------------------------------------------------------------------------


def test_lmms_eval_plugin_without_lmms_eval(monkeypatch):
    monkeypatch.setitem(sys.modules, "lmms_eval", None)  # as if lmms-eval were not installed
    for name in [n for n in sys.modules if n.startswith("lmms_eval.")]:
        monkeypatch.setitem(sys.modules, name, None)
    plugin = importlib.reload(importlib.import_module("interlace_hf.integrations.lmms_eval_plugin"))
    with pytest.raises(ImportError, match="pip install lmms-eval"):
        from interlace_hf.integrations.lmms_eval_plugin import Interlace  # noqa: F401
    with pytest.raises(ImportError, match="pip install lmms-eval"):
        plugin.lmms_eval_manifest()
    assert plugin.ENTRY_POINT == "interlace = interlace_hf.integrations.lmms_eval_plugin:lmms_eval_manifest"
    with pytest.raises(AttributeError):
        plugin.Nothing  # noqa: B018


@pytest.fixture(scope="module")
def lmms_model(tiny_model_dir):
    from interlace_hf.integrations.lmms_eval_plugin import InterlaceLMM

    model = type("FakeLMMS", (InterlaceLMM,), {})(pretrained=str(tiny_model_dir), dtype="float32", batch_size="2",
                                                  max_new_tokens=8, device="cpu")
    image = Image.new("RGB", (64, 64), "red")
    model.task_dict = {"shapes": {"test": [{"image": image}, {"image": image}, {"image": None}]}}
    return model


def visuals(doc):
    return [doc["image"]] if doc["image"] is not None else []


def request(context, gen_kwargs, doc_id, task="shapes", doc_to_visual=visuals):
    # what lmms-eval puts in `Instance.arguments` for a simple model's generate_until (lmms_eval/api/task.py)
    return SimpleNamespace(args=(context, gen_kwargs, doc_to_visual, doc_id, task, "test"))


def test_lmms_eval_generate_until(lmms_model):
    free = lmms_model.generate_until([request("<image>\nWhat colour is it?", {"max_new_tokens": 16}, 0)])[0]
    short = lmms_model.generate_until([request("<image>\nWhat colour is it?", {"max_new_tokens": 4}, 0)])[0]
    assert isinstance(free, str) and len(short) < len(free) and free.startswith(short)  # max_new_tokens
    stop = free[len(free) // 2:len(free) // 2 + 2]
    cut = lmms_model.generate_until([request("<image>\nWhat colour is it?", {"max_new_tokens": 16, "until": [stop]},
                                             0)])[0]
    assert cut == free.split(stop, 1)[0].strip()  # until
    mixed = [request("<image>\nWhat colour is it?", {"max_new_tokens": 16}, 0),
             request("How many?", {"max_new_tokens": 4}, 2),
             request("<image>\nWhat colour is it?", {"max_new_tokens": 16, "until": stop}, 1)]
    assert lmms_model.generate_until(mixed)[0] == free and lmms_model.generate_until(mixed)[2] == cut  # order kept
    scores = lmms_model.loglikelihood([request("What colour is it?", " red", 0),
                                       request("What colour is it?", lambda doc: "blue", 1)])
    assert all(isinstance(lp, float) and lp < 0 and isinstance(greedy, bool) for lp, greedy in scores)
    with pytest.raises(NotImplementedError, match="multi-round"):
        lmms_model.generate_until_multi_round([])
    with pytest.raises(ValueError, match="images only"):
        lmms_model.generate_until([request("Watch", {}, 0, doc_to_visual=lambda doc: ["clip.mp4"])])


def test_lmms_eval_model_args_win_over_the_cli_and_mutual_info_requests(lmms_model, tiny_model_dir):
    """lmms-eval always passes its --batch_size: `--model_args ...,batch_size=8` must not clash with it; the
    two-element requests of acc_mutual_info tasks are scored; min/max pixels reach the processor."""
    from interlace_hf.integrations.lmms_eval_plugin import InterlaceLMM, _parse_arg_string

    assert _parse_arg_string("pretrained=a/b,batch_size=8,dtype=float32,flag=True,t=0.5") == {
        "pretrained": "a/b", "batch_size": 8, "dtype": "float32", "flag": True, "t": 0.5}
    made = type("FakeLMMS", (InterlaceLMM,), {}).create_from_arg_string(
        f"pretrained={tiny_model_dir},dtype=float32,batch_size=3,min_pixels=1024,max_pixels=4096",
        {"batch_size": 1, "device": "cpu", "max_batch_size": None})
    assert made.batch_size == 3 and made.device == "cpu"
    assert made.processor.image_processor.size == {"shortest_edge": 1024, "longest_edge": 4096}
    with pytest.raises(ValueError, match="is not key=value"):
        _parse_arg_string("pretrained")
    unconditional = lmms_model.loglikelihood([SimpleNamespace(args=("", " red")),
                                              SimpleNamespace(args=("", " blue"))])
    assert all(isinstance(lp, float) and lp < 0 for lp, _ in unconditional)


def test_lmms_eval_model_args_are_checked(tiny_model_dir):
    from interlace_hf.integrations.lmms_eval_plugin import InterlaceLMM

    with pytest.raises(ValueError, match="not arguments of the `interlace` model"):
        InterlaceLMM(pretrained=str(tiny_model_dir), use_flash_attention=True)
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        InterlaceLMM(pretrained=str(tiny_model_dir), batch_size="auto")


def test_lmms_eval_real_classes(tiny_model_dir):
    """Only where lmms-eval is installed (it is not a test dependency): the manifest and the class are the real ones."""
    pytest.importorskip("lmms_eval.api.model", reason="lmms-eval is not installed")
    from lmms_eval.api.instance import Instance
    from lmms_eval.api.model import lmms

    from interlace_hf.integrations import lmms_eval_plugin
    from interlace_hf.integrations.lmms_eval_plugin import Interlace

    manifest = lmms_eval_plugin.lmms_eval_manifest()
    assert manifest.model_id == "interlace" and manifest.simple_class_path.endswith("lmms_eval_plugin.Interlace")
    assert issubclass(Interlace, lmms) and Interlace.is_simple
    model = Interlace.create_from_arg_string(f"pretrained={tiny_model_dir},dtype=float32",
                                             {"batch_size": 2, "device": "cpu"})
    model.task_dict = {"t": {"test": [{"image": Image.new("RGB", (64, 64), "blue")}]}}
    instance = Instance(request_type="generate_until", idx=0, metadata={"task": "t", "doc_id": 0, "repeats": 1},
                        arguments=("What colour?", {"max_new_tokens": 4}, visuals, 0, "t", "test"))
    assert isinstance(model.generate_until([instance])[0], str)


# ---------------------------------------------------------------------------------------------------------------
# VLMEvalKit: the --config JSON.
# ---------------------------------------------------------------------------------------------------------------


def test_vlmevalkit_config(tmp_path, pruned_dir):
    from interlace_hf.integrations.vlmevalkit import (
        needs_interlace_import,
        vlmevalkit_config,
        vlmevalkit_launch_command,
        write_vlmevalkit_config,
    )

    config = vlmevalkit_config({"qwen3-vl-8b": "Qwen/Qwen3-VL-8B-Instruct", "pruned": str(pruned_dir)},
                               ["chartqa", "TextVQA_VAL", "scienceqa", "MMBench_DEV_CN_V11=ImageMCQDataset"],
                               max_new_tokens=128, max_pixels=1280 * 28 * 28)
    assert set(config) == {"model", "data"}
    assert config["model"]["qwen3-vl-8b"] == {"class": "Qwen3VLChat", "model_path": "Qwen/Qwen3-VL-8B-Instruct",
                                              "temperature": 0.0, "max_new_tokens": 128, "max_pixels": 1003520}
    assert config["model"]["pruned"]["model_path"] == str(Path(pruned_dir).resolve())
    assert config["data"] == {
        "ChartQA_TEST": {"class": "ImageVQADataset", "dataset": "ChartQA_TEST"},
        "TextVQA_VAL": {"class": "ImageVQADataset", "dataset": "TextVQA_VAL"},
        "ScienceQA_TEST": {"class": "ImageMCQDataset", "dataset": "ScienceQA_TEST"},
        "MMBench_DEV_CN_V11": {"class": "ImageMCQDataset", "dataset": "MMBench_DEV_CN_V11"},
    }
    with pytest.raises(ValueError, match="unknown to interlace-hf"):
        vlmevalkit_config({"m": "a/b"}, ["NotABenchmark"])
    with pytest.raises(ValueError, match="no datasets"):
        vlmevalkit_config({"m": "a/b"}, [])
    with pytest.raises(ValueError, match="model name"):
        vlmevalkit_config({"bad name": "a/b"}, ["mme"])

    interlace_dir = tmp_path / "interlace-ckpt"
    interlace_dir.mkdir()
    (interlace_dir / "config.json").write_text(json.dumps({"model_type": "interlace_qwen3_vl",
                                                           "interlace": {"format": "interlace"}}))
    path = write_vlmevalkit_config(tmp_path / "vlmeval.json", {"interlace": str(interlace_dir)}, ["mme"])
    written = json.loads(path.read_text())
    assert written["data"] == {"MME": {"class": "ImageYORNDataset", "dataset": "MME"}}
    assert needs_interlace_import(written) == ["interlace"]
    assert needs_interlace_import(config) == []  # a standard export (or a Hub id) needs nothing
    with pytest.raises(ValueError, match="already exists"):
        write_vlmevalkit_config(path, {"interlace": str(interlace_dir)}, ["mme"])
    command = vlmevalkit_launch_command(path)
    assert command.startswith("python -c ") and str(path) in command
    assert "import sys, runpy, interlace_hf; interlace_hf.register()" in command
    assert vlmevalkit_launch_command(path, import_interlace=False) == f"python run.py --config {path}"
    # vLLM would run an interlace-format checkpoint without deepstack: refused; a standard one is fine.
    with pytest.raises(ValueError, match=r"use_vllm=True with interlace-format checkpoint\(s\) \['interlace'\]"):
        vlmevalkit_config({"interlace": str(interlace_dir)}, ["mme"], use_vllm=True)
    assert vlmevalkit_config({"pruned": str(pruned_dir)}, ["mme"], use_vllm=True)["model"]["pruned"]["use_vllm"]


def test_base_and_pruned_are_evaluated_at_one_resolution(tiny_model_dir, pruned_dir, synthetic_dir, tmp_path):
    """A checkpoint whose processor says another resolution (as fine-tuned checkpoints used to ship the training
    one) is evaluated at the base's, so both models see the same image tokens; the bounds are in the results."""
    import shutil

    from interlace_hf.evaluation.evaluate import evaluate_model
    from interlace_hf.evaluation.generation import image_resolution

    shrunk = tmp_path / "shrunk"
    shutil.copytree(pruned_dir, shrunk)
    config = json.loads((shrunk / "processor_config.json").read_text())
    config["image_processor"]["size"] = {"shortest_edge": 1024, "longest_edge": 4096}
    (shrunk / "processor_config.json").write_text(json.dumps(config))
    base_size = json.loads((tiny_model_dir / "processor_config.json").read_text())["image_processor"]["size"]
    assert base_size["longest_edge"] != 4096
    common = dict(tasks=["synthetic"], data={"synthetic": str(synthetic_dir)}, batch_size=4, max_new_tokens=8,
                  limit=4, progress=False, write_card_results=False, save_predictions=True)
    reference = run_eval(str(pruned_dir), base=str(tiny_model_dir), **common)
    result = run_eval(str(shrunk), base=str(tiny_model_dir), **common)
    assert result["settings"]["min_pixels"] == base_size["shortest_edge"]
    assert result["settings"]["max_pixels"] == base_size["longest_edge"]
    assert [r["prediction"] for r in result["tasks"]["synthetic"]["predictions"]] == \
        [r["prediction"] for r in reference["tasks"]["synthetic"]["predictions"]]
    alone = evaluate_model(str(shrunk), ["synthetic"], data={"synthetic": str(synthetic_dir)}, limit=1,
                           max_new_tokens=2, progress=False)
    assert alone["settings"]["max_pixels"] == 4096  # without a base: the model's own
    explicit = evaluate_model(str(shrunk), ["synthetic"], data={"synthetic": str(synthetic_dir)}, limit=1,
                              max_new_tokens=2, progress=False, min_pixels=32 * 32, max_pixels=64 * 64)
    assert (explicit["settings"]["min_pixels"], explicit["settings"]["max_pixels"]) == (1024, 4096)
    assert "images: 1024..4096 pixels" in format_results(explicit)
    with pytest.raises(ValueError, match=r"--min-pixels \(5000\) must be >= 1 and <= --max-pixels \(4096\)"):
        image_resolution(str(shrunk), min_pixels=5000)
