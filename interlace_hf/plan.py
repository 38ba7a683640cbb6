"""The `Plan`: which original decoder layers are dropped, fine-tuned, frozen as anchors, or kept as they are.

Pure Python (no torch): a plan is made by selection, read by surgery, the trainer and the model card, and travels
with every checkpoint as `plan.json`. Every index is an ORIGINAL (pre-pruning) decoder layer index.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLAN_FILE = "plan.json"

# The keys written at the top level of plan.json, in this order.
_PLAN_KEYS = (
    "num_layers",
    "dropped_layers",
    "tuned_layers",
    "anchor_layers",
    "kept_layers",
    "strategy",
    "drop_ratio",
)
_OPTIONAL_KEYS = ("metadata", "interlace_hf_version")

ROLE_DROP = "drop"
ROLE_TUNE = "tune"
ROLE_ANCHOR = "anchor"
ROLE_FROZEN = "frozen"


def _as_index_tuple(name: str, values: Any) -> tuple[int, ...]:
    if values is None:
        return ()
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"`{name}` must be a list of layer indices, got {values!r}. Pass e.g. [3, 7].")
    out = []
    for value in values:
        # bool is an int subclass; True as a layer index is always a mistake.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"`{name}` must hold integer layer indices, got {value!r} in {list(values)!r}.")
        out.append(value)
    return tuple(out)


@dataclass(frozen=True)
class Plan:
    """Roles of the decoder layers of one model, in original layer indices.

    Args:
        num_layers: number of decoder layers of the original (dense) model.
        dropped_layers: layers removed from the model.
        tuned_layers: kept layers whose parameters are fine-tuned after the drop.
        anchor_layers: kept layers frozen on purpose as stable anchors (INTERLACE's third layer of a triplet).
        strategy: how the plan was chosen (`interlace`, `shortgpt`, ... or `manual`).
        drop_ratio: the requested drop ratio; `None` means "whatever `dropped_layers` amounts to".
        metadata: free-form provenance (similarity source, seed, ...), written to plan.json as is.
    """

    num_layers: int
    dropped_layers: tuple[int, ...]
    tuned_layers: tuple[int, ...] = ()
    anchor_layers: tuple[int, ...] = ()
    strategy: str = "manual"
    drop_ratio: float | None = None
    metadata: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if isinstance(self.num_layers, bool) or not isinstance(self.num_layers, int) or self.num_layers < 1:
            raise ValueError(f"`num_layers` must be a positive integer, got {self.num_layers!r}.")
        for name in ("dropped_layers", "tuned_layers", "anchor_layers"):
            values = _as_index_tuple(name, getattr(self, name))
            out_of_range = [i for i in values if not 0 <= i < self.num_layers]
            if out_of_range:
                raise ValueError(
                    f"`{name}` has out-of-range layer indices {out_of_range}: the model has {self.num_layers} "
                    f"decoder layers, so valid indices are 0..{self.num_layers - 1}."
                )
            duplicates = sorted({i for i in values if values.count(i) > 1})
            if duplicates:
                raise ValueError(f"`{name}` lists layers {duplicates} more than once; list each layer once.")
            object.__setattr__(self, name, tuple(sorted(values)))
        for first, second in (
            ("dropped_layers", "tuned_layers"),
            ("dropped_layers", "anchor_layers"),
            ("tuned_layers", "anchor_layers"),
        ):
            overlap = sorted(set(getattr(self, first)) & set(getattr(self, second)))
            if overlap:
                raise ValueError(
                    f"layers {overlap} are in both `{first}` and `{second}`; a layer has exactly one role, "
                    "remove it from one of them."
                )
        if len(self.dropped_layers) >= self.num_layers:
            raise ValueError(
                f"`dropped_layers` drops all {self.num_layers} layers; keep at least one layer "
                "(lower `drop_ratio` / `num_drop`)."
            )
        if not isinstance(self.strategy, str) or not self.strategy:
            raise ValueError(f"`strategy` must be a non-empty string, got {self.strategy!r}.")
        if self.drop_ratio is not None:
            if isinstance(self.drop_ratio, bool) or not isinstance(self.drop_ratio, (int, float)):
                raise ValueError(f"`drop_ratio` must be a number in [0, 1), got {self.drop_ratio!r}.")
            if not 0.0 <= self.drop_ratio < 1.0:
                raise ValueError(f"`drop_ratio` must be in [0, 1), got {self.drop_ratio!r}; e.g. 0.25 drops 25%.")
            object.__setattr__(self, "drop_ratio", float(self.drop_ratio))
        if not isinstance(self.metadata, dict):
            raise ValueError(f"`metadata` must be a dict, got {type(self.metadata).__name__}.")

    @classmethod
    def from_dropped(cls, num_layers: int, dropped_layers, strategy: str = "manual", **kwargs) -> "Plan":
        """A plan that only drops layers (no fine-tuning roles)."""
        return cls(num_layers=num_layers, dropped_layers=tuple(dropped_layers), strategy=strategy, **kwargs)

    @property
    def kept_layers(self) -> tuple[int, ...]:
        dropped = set(self.dropped_layers)
        return tuple(i for i in range(self.num_layers) if i not in dropped)

    @property
    def frozen_layers(self) -> tuple[int, ...]:
        """Kept layers that are neither tuned nor anchors (frozen because nothing asked to tune them)."""
        busy = set(self.tuned_layers) | set(self.anchor_layers)
        return tuple(i for i in self.kept_layers if i not in busy)

    @property
    def num_kept(self) -> int:
        return self.num_layers - len(self.dropped_layers)

    @property
    def effective_drop_ratio(self) -> float:
        return len(self.dropped_layers) / self.num_layers

    def role(self, layer: int) -> str:
        """`drop`, `tune`, `anchor` or `frozen` for an original layer index."""
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"layer {layer} is out of range for a {self.num_layers}-layer plan.")
        if layer in self.dropped_layers:
            return ROLE_DROP
        if layer in self.tuned_layers:
            return ROLE_TUNE
        if layer in self.anchor_layers:
            return ROLE_ANCHOR
        return ROLE_FROZEN

    def roles(self) -> list[str]:
        return [self.role(i) for i in range(self.num_layers)]

    def new_index(self, layer: int) -> int:
        """Position of a kept original layer in the pruned model."""
        try:
            return self.kept_layers.index(layer)
        except ValueError:
            raise ValueError(f"layer {layer} is dropped by this plan; it has no index in the pruned model.") from None

    # --- JSON -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = {
            "num_layers": self.num_layers,
            "dropped_layers": list(self.dropped_layers),
            "tuned_layers": list(self.tuned_layers),
            "anchor_layers": list(self.anchor_layers),
            "kept_layers": list(self.kept_layers),
            "strategy": self.strategy,
            "drop_ratio": self.drop_ratio,
        }
        if self.metadata:
            data["metadata"] = dict(self.metadata)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Plan":
        if not isinstance(data, dict):
            raise ValueError(f"a plan must be a JSON object with keys {list(_PLAN_KEYS)}, got {type(data).__name__}.")
        unknown = sorted(set(data) - set(_PLAN_KEYS) - set(_OPTIONAL_KEYS))
        if unknown:
            raise ValueError(f"unknown plan keys {unknown}; a plan has the keys {list(_PLAN_KEYS)} (+ `metadata`).")
        missing = [k for k in ("num_layers", "dropped_layers") if k not in data]
        if missing:
            raise ValueError(f"the plan is missing the keys {missing}; `num_layers` and `dropped_layers` are required.")
        plan = cls(
            num_layers=data["num_layers"],
            dropped_layers=_as_index_tuple("dropped_layers", data["dropped_layers"]),
            tuned_layers=_as_index_tuple("tuned_layers", data.get("tuned_layers")),
            anchor_layers=_as_index_tuple("anchor_layers", data.get("anchor_layers")),
            strategy=data.get("strategy", "manual"),
            drop_ratio=data.get("drop_ratio"),
            metadata=data.get("metadata") or {},
        )
        if "kept_layers" in data and list(_as_index_tuple("kept_layers", data["kept_layers"])) != list(plan.kept_layers):
            raise ValueError(
                f"`kept_layers` {data['kept_layers']} does not match the layers left after dropping "
                f"{list(plan.dropped_layers)} from {plan.num_layers}: {list(plan.kept_layers)}. "
                "Fix `kept_layers` or remove it (it is derived)."
            )
        return plan

    def to_json(self) -> str:
        """One key per line, lists inline: readable in a terminal, a diff and a model card."""
        items = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in self.to_dict().items()]
        return "{\n" + ",\n".join(items) + "\n}\n"

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"the plan is not valid JSON ({err}).") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write plan.json atomically (a temporary file renamed onto `path`)."""
        path = Path(path)
        if path.is_dir():
            path = path / PLAN_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".plan-", suffix=".json", dir=path.parent)
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0o600; a plan is as readable as the weights beside it
            with os.fdopen(fd, "w") as f:
                f.write(self.to_json())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Plan":
        path = Path(path)
        if path.is_dir():
            path = path / PLAN_FILE
        if not path.is_file():
            raise ValueError(f"plan file {str(path)!r} does not exist; pass the path of a plan.json.")
        try:
            return cls.from_json(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def describe(self) -> str:
        """One line a human can read."""
        return (
            f"{self.strategy}: drop {list(self.dropped_layers)}, tune {list(self.tuned_layers)}, "
            f"anchor {list(self.anchor_layers)} ({len(self.dropped_layers)}/{self.num_layers} layers dropped, "
            f"{self.num_kept} kept)"
        )


def parse_layer_list(text: str, flag: str = "--drop-layers") -> tuple[int, ...]:
    """Parse `3,7` or `3 7` or `3-5,9` into layer indices."""
    out: list[int] = []
    for part in text.replace(" ", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                out.extend(range(lo_i, hi_i + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(
                f"`{flag}` got {text!r}: {part!r} is not a layer index or range; use e.g. `3,7` or `3-5,9`."
            ) from None
    if not out:
        raise ValueError(f"`{flag}` got {text!r}, which names no layers; use e.g. `3,7`.")
    return tuple(out)
