"""Answer-scoring metrics for visual question answering, and the paper's relative performance. Pure: no torch.

Every metric takes a model's answer and the reference(s) and returns a float in [0, 1]:

- `exact_match` (the synthetic set, custom sets): the normalised answer equals a normalised reference; comma /
  "and" lists are compared as sets.
- `relaxed_accuracy` (ChartQA): numbers within 5% relative error, anything else an exact match.
- `anls` (TextVQA with one answer, DocVQA-style sets): Average Normalized Levenshtein Similarity, 0 below 0.5.
- `vqa_accuracy` (TextVQA / VQAv2, ten human answers): min(#humans who gave the answer / 3, 1), averaged
  leave-one-out.
- `multiple_choice` (ScienceQA): the option the answer picks ("B", "(B)", "B) ...", or the option's text) is right.

`relative_performance` is the paper's headline number: the mean over tasks of pruned score / base score.
See docs/evaluation.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

METRICS = ("exact_match", "relaxed_accuracy", "anls", "vqa_accuracy", "multiple_choice")

ARTICLES = frozenset({"a", "an", "the"})
NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
# Separators of list answers ("blue, red", "red and blue", "red & blue", "red; blue").
_LIST_SEPARATORS = re.compile(r"\s*(?:,|;|&|\band\b)\s*")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NON_DECIMAL_DOT = re.compile(r"(?<!\d)\.|\.(?!\d)")  # "3.5" keeps its dot, "end." does not
_NON_SIGN_HYPHEN = re.compile(r"-(?!\d)|(?<=\S)-")  # "-5" keeps its sign, "x-ray" and "5-6" do not
_OTHER_PUNCTUATION = re.compile(r"[^\w\s.-]|_")


def _words(text: str) -> list[str]:
    """Lowercased words of `text`: thousands separators dropped, punctuation turned into spaces, number words into
    digits ("two" -> "2")."""
    text = _THOUSANDS.sub("", str(text).lower().strip())
    text = _OTHER_PUNCTUATION.sub(" ", _NON_SIGN_HYPHEN.sub(" ", _NON_DECIMAL_DOT.sub(" ", text)))
    return [NUMBER_WORDS.get(word, word) for word in text.split()]


def normalize_answer(text: str) -> str:
    """The comparable form of an answer: lowercase, no punctuation, no articles, single spaces, number words as
    digits. Articles are kept when the answer is nothing but articles, so the option letter "A" stays "a".

    >>> normalize_answer("  The Two  red cars! ")
    '2 red cars'
    >>> normalize_answer("1,000.5")
    '1000.5'
    """
    words = _words(text)
    kept = [word for word in words if word not in ARTICLES]
    return " ".join(kept or words)


def _as_set(normalised_list: list[str]) -> frozenset[str]:
    return frozenset(item for item in normalised_list if item)


def _list_items(text: str) -> list[str]:
    """The normalised items of a list answer ("blue, red" -> ["blue", "red"]); one item when there is no list."""
    text = _THOUSANDS.sub("", str(text).lower())
    return [normalize_answer(part) for part in _LIST_SEPARATORS.split(text)]


def _references(references: str | Sequence[str]) -> list[str]:
    if isinstance(references, str):
        return [references]
    return [str(reference) for reference in references if reference is not None]


def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference, else 0.0.

    Normalisation (`normalize_answer`): case, punctuation, articles and extra whitespace are ignored and number words
    read as digits, so "Two." matches "2" and "the Circle" matches "circle". Extra words are not forgiven ("it is 2"
    does not match "2"). A list answer, items separated by commas, semicolons, "&" or "and", is compared as a set:
    "red and blue" matches "blue, red" (the synthetic set's colour and shape answers are sorted comma lists).

    Args:
        prediction: the model's answer.
        references: one reference answer or several (any one may match).
    """
    predicted = normalize_answer(prediction)
    predicted_items = _as_set(_list_items(prediction))
    for reference in _references(references):
        if predicted == normalize_answer(reference):
            return 1.0
        reference_items = _as_set(_list_items(reference))
        if len(reference_items) > 1 and predicted_items == reference_items:
            return 1.0
    return 0.0


_NUMBER = re.compile(
    r"^[^\w\s.+-]?\s*"  # an optional currency or other symbol ("$5", "€ 3")
    r"(?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?)"
    r"\s*(?P<percent>%|percent|per cent)?"
    r"(?:\s*[a-z]+)?"  # one unit word ("5 kg", "12 million" is read as 12)
    r"\s*\.?$"
)


def parse_number(text: str) -> tuple[float, bool] | None:
    """`(value, is_percent)` of an answer that is one number, optionally with a sign, thousands separators, a
    currency symbol, a `%` and one unit word ("1,234.5", "-3", "$12", "45%", "7 kg", "two"); None otherwise."""
    text = _THOUSANDS.sub("", str(text).strip().lower())
    words = text.split()
    if len(words) == 1 and words[0].rstrip(".") in NUMBER_WORDS:
        return float(NUMBER_WORDS[words[0].rstrip(".")]), False
    match = _NUMBER.match(text)
    if match is None:
        return None
    try:
        value = float(match["value"])
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return value, match["percent"] is not None


def _values(parsed: tuple[float, bool]) -> list[float]:
    value, percent = parsed
    return [value, value / 100] if percent else [value]


def relaxed_accuracy(prediction: str, reference: str | Sequence[str], tolerance: float = 0.05) -> float:
    """ChartQA's relaxed accuracy: 1.0 when both answers are numbers and the prediction is within `tolerance`
    relative error of the reference (|p - r| / |r| <= 0.05), otherwise the `exact_match` of the two.

    Numbers are read by `parse_number` (commas, currency symbols, units, number words). A percentage is compared both
    as written and divided by 100, so "45%" matches "45" and "0.45"; the reference implementation (Qwen-VL's, used by
    lmms-eval) only divides, so there "45%" does not match the label "45". A reference of 0 needs an exact 0.

    Args:
        prediction: the model's answer.
        reference: the label, or several (ChartQA rows carry a one-element list); any one may match.
        tolerance: the allowed relative error.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}.")
    predicted = parse_number(prediction)
    for label in _references(reference):
        expected = parse_number(label)
        if predicted is not None and expected is not None:
            for p in _values(predicted):
                for r in _values(expected):
                    if (r == 0 and p == 0) or (r != 0 and abs(p - r) / abs(r) <= tolerance + 1e-12):
                        return 1.0
        elif exact_match(prediction, label):
            return 1.0
    return 0.0


def levenshtein(a: str, b: str) -> int:
    """The edit distance between two strings (insertions, deletions and substitutions cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def anls(prediction: str, references: str | Sequence[str], threshold: float = 0.5) -> float:
    """Average Normalized Levenshtein Similarity of one answer (DocVQA / TextVQA style).

    For each reference, similarity = 1 - levenshtein(p, r) / max(len(p), len(r)) on lowercased, whitespace-collapsed
    strings; the best reference counts, and a similarity below `threshold` scores 0 (a wrong answer is not partly
    right because it shares letters). The dataset score is the mean over questions.

    Args:
        prediction: the model's answer.
        references: the accepted answers.
        threshold: similarities below it count as 0 (0.5 in the DocVQA / TextVQA protocol).
    """
    predicted = " ".join(str(prediction).lower().split())
    best = 0.0
    for reference in _references(references):
        expected = " ".join(reference.lower().split())
        length = max(len(predicted), len(expected))
        similarity = 1.0 if length == 0 else 1.0 - levenshtein(predicted, expected) / length
        best = max(best, similarity)
    return best if best >= threshold else 0.0


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy (VQAv2 / TextVQA): an answer is fully right when at least 3 annotators gave it.

    With 4 or more human answers (the datasets have 10) this is the official protocol: min(#matching / 3, 1) over
    each leave-one-out subset of the annotators, averaged. With fewer answers it is min(#matching / 3, 1) itself.
    Answers are compared after `normalize_answer`.

    Args:
        prediction: the model's answer.
        answers: all human answers, repeats included (their counts matter).
    """
    answers = _references(answers)
    if not answers:
        return 0.0
    predicted = normalize_answer(prediction)
    matches = [normalize_answer(answer) == predicted for answer in answers]
    if len(answers) < 4:
        return min(sum(matches) / 3, 1.0)
    total = sum(matches)
    return sum(min((total - own) / 3, 1.0) for own in matches) / len(answers)


_LETTER_ALONE = re.compile(r"^\(?([a-z])\)?[.):]?$", re.IGNORECASE)
_LETTER_FIRST = re.compile(r"^\(?([A-Z])(?:[.):]|\)\.?)(?:\s|$)")
# the keyword in any case, the letter a capital: "the answer is a dog" picks no option
_LETTER_AFTER_KEYWORD = re.compile(r"\b(?i:answer|option|choice)\s*(?i:is|:)?\s*(?i:option\s*)?\(?([A-Z])(?![\w'])")
_LETTER_IN_PARENTHESES = re.compile(r"\(([A-Z])\)")
_LETTER_TOKEN = re.compile(r"(?<![\w'])([A-Z])(?![\w'])")
_CHOICE_LINE = re.compile(r"^\s*\(?([A-Z])[.)]\s+(.*\S)\s*$")


def option_letter(index: int) -> str:
    return chr(ord("A") + index)


def _letter_index(letter: str, num_choices: int) -> int | None:
    index = ord(letter.upper()) - ord("A")
    return index if 0 <= index < num_choices else None


def choice_index(prediction: str, choices: Sequence[str]) -> int | None:
    """Which option a free-form answer picks, or None: a letter first ("B", "(B)", "B) text", "The answer is B"),
    then an option's text ("lion", "It is a lion."), then a lone capital letter in range ("I think C")."""
    text = str(prediction).strip()
    num = len(choices)
    if not text or not num:
        return None
    for pattern in (_LETTER_ALONE, _LETTER_FIRST):
        match = pattern.match(text)
        if match and _letter_index(match[1], num) is not None:
            return _letter_index(match[1], num)
    for pattern in (_LETTER_AFTER_KEYWORD, _LETTER_IN_PARENTHESES):
        found = {_letter_index(m, num) for m in pattern.findall(text)} - {None}
        if len(found) == 1:
            return found.pop()
    predicted = normalize_answer(text)
    normalised = [normalize_answer(choice) for choice in choices]
    exact = [i for i, choice in enumerate(normalised) if choice and choice == predicted]
    if len(exact) == 1:
        return exact[0]
    padded = f" {predicted} "
    contained = [i for i, choice in enumerate(normalised) if choice and f" {choice} " in padded]
    # "dark red" names one option even when "red" is another: drop options inside a longer matched one
    contained = [i for i in contained if not any(
        j != i and normalised[i] != normalised[j] and f" {normalised[i]} " in f" {normalised[j]} " for j in contained)]
    if len(contained) == 1:
        return contained[0]
    found = {_letter_index(m, num) for m in _LETTER_TOKEN.findall(text)} - {None}
    if len(found) == 1:
        return found.pop()
    return None


def answer_index(answer: int | str, choices: Sequence[str]) -> int:
    """The index of the right option, given as an index (0 = A), a letter ("B", "(B)"), "B) text" or the text."""
    if isinstance(answer, bool):
        raise ValueError(f"answer must be an option index, letter or text, got {answer!r}.")
    if isinstance(answer, int):
        index = answer
    else:
        text = str(answer).strip()
        match = _LETTER_ALONE.match(text) or _CHOICE_LINE.match(text)  # "B", "(B)", "B) lion" (prepare's format)
        if match and _letter_index(match[1], len(choices)) is not None:
            index = _letter_index(match[1], len(choices))
        else:
            normalised = [normalize_answer(choice) for choice in choices]
            if normalize_answer(text) not in normalised:
                raise ValueError(f"answer {answer!r} is neither an option letter nor one of the choices "
                                 f"{list(choices)}.")
            index = normalised.index(normalize_answer(text))
    if not 0 <= index < len(choices):
        raise ValueError(f"answer index {index} is out of range for {len(choices)} choices.")
    return index


def multiple_choice(prediction: str, choices: Sequence[str], answer: int | str) -> float:
    """ScienceQA-style multiple choice: 1.0 when the option the prediction picks (see `choice_index`) is `answer`.

    Args:
        prediction: the model's answer ("B", "(B)", "B) lion", "The answer is B.", "lion", ...).
        choices: the options' texts, in order (option A first).
        answer: the right option, as an index (0 = A), a letter, "B) text" or the option's text.
    """
    if not choices:
        raise ValueError("multiple_choice needs at least one choice.")
    return 1.0 if choice_index(prediction, choices) == answer_index(answer, choices) else 0.0


def parse_choices(question: str) -> tuple[str, list[str]]:
    """Split a question whose last lines list options ("A) cat" / "B. dog", as `data prepare --dataset scienceqa`
    writes them) into the question text and the options; no such lines -> `(question, [])`."""
    lines = str(question).rstrip().split("\n")
    start = len(lines)
    while start > 0 and _CHOICE_LINE.match(lines[start - 1]):
        start -= 1
    matches = [_CHOICE_LINE.match(line) for line in lines[start:]]
    letters = [match[1] for match in matches]
    if "A" not in letters:
        return str(question), []
    first = len(letters) - 1 - letters[::-1].index("A")  # the last run that starts at A
    if letters[first:] != [option_letter(i) for i in range(len(letters) - first)]:
        return str(question), []
    return "\n".join(lines[:start + first]).rstrip(), [match[2] for match in matches[first:]]


def score(metric: str, prediction: str, references: Sequence[str], *, choices: Sequence[str] | None = None,
          answer: int | str | None = None) -> float:
    """Score one answer with the metric named `metric` (one of `METRICS`)."""
    if metric == "exact_match":
        return exact_match(prediction, references)
    if metric == "relaxed_accuracy":
        return relaxed_accuracy(prediction, references)
    if metric == "anls":
        return anls(prediction, references)
    if metric == "vqa_accuracy":
        return vqa_accuracy(prediction, references)
    if metric == "multiple_choice":
        if not choices:
            raise ValueError("metric multiple_choice needs the options (`choices`) of every question.")
        return multiple_choice(prediction, choices, answer if answer is not None else references[0])
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")


def relative_performance(pruned: Mapping[str, float], base: Mapping[str, float]) -> tuple[float | None, dict, list]:
    """The paper's relative performance: the mean over tasks of pruned score / base score.

    Args:
        pruned: task -> score of the pruned model.
        base: task -> score of the base model, on the same data and settings.

    Returns:
        `(relative, ratios, skipped)`: the mean ratio (None when no task can count), task -> ratio for every task
        that counts, and the tasks left out because their base score is 0 (the ratio is undefined) or missing.
    """
    ratios, skipped = {}, []
    for task, score_ in pruned.items():
        reference = base.get(task)
        if reference is None or reference <= 0:
            skipped.append(task)
        else:
            ratios[task] = score_ / reference
    relative = sum(ratios.values()) / len(ratios) if ratios else None
    return relative, ratios, skipped
