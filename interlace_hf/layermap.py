"""The layer map: every original layer's role in a `Plan` beside the similarity scores it was chosen from.

Pure Python (no torch). `render_layer_map` is the text `interlace-hf plan` prints; `plot_similarity_profile`
draws the same thing as a PNG and imports matplotlib (the `plot` extra) only when called.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .plan import ROLE_ANCHOR, ROLE_DROP, ROLE_FROZEN, ROLE_TUNE, Plan
from .tables import SimilarityTables

# How each role reads in the text map: the dropped layers are the ones to spot at a glance.
_ROLE_LABELS = {ROLE_DROP: "DROP", ROLE_TUNE: "tune", ROLE_ANCHOR: "anchor", ROLE_FROZEN: "frozen"}
_ROLE_COLORS = {ROLE_DROP: "#d62728", ROLE_TUNE: "#2ca02c", ROLE_ANCHOR: "#1f77b4"}
_BASE_PACKS = (1, 2, 3)


def _pack_columns(tables: SimilarityTables) -> tuple[int, ...]:
    """pack1..pack3 always (None where not loaded), then any other loaded pack size (e.g. `angular`'s n)."""
    return tuple(sorted(set(_BASE_PACKS) | set(tables.pack_sizes)))


def _check_match(plan: Plan, tables: SimilarityTables) -> None:
    if plan.num_layers != tables.num_layers:
        raise ValueError(
            f"the plan is for a {plan.num_layers}-layer model but the similarity tables are for {tables.num_layers} "
            "layers; load the similarities of the model the plan was made for."
        )


def layer_map_rows(plan: Plan, tables: SimilarityTables) -> list[dict]:
    """One row per original layer: `layer`, `role`, and `pack<k>`, the score of the `k`-layer block starting there.

    Args:
        plan: the plan to show.
        tables: the similarity tables of the same model. A score is `None` where the block runs past the last layer,
            was not measured, or its pack size is not loaded.
    """
    _check_match(plan, tables)
    packs = _pack_columns(tables)
    rows = []
    for layer in range(plan.num_layers):
        row = {"layer": layer, "role": plan.role(layer)}
        for k in packs:
            row[f"pack{k}"] = tables.score(k, layer) if k in tables.means else None
        rows.append(row)
    return rows


def render_layer_map(plan: Plan, tables: SimilarityTables) -> str:
    """A fixed-width table of `layer_map_rows` (dropped layers in capitals), then `plan.describe()`."""
    rows = layer_map_rows(plan, tables)
    packs = [key for key in rows[0] if key.startswith("pack")]
    header = f"{'layer':>5}  {'role':<6}" + "".join(f"  {key:>7}" for key in packs)
    lines = [header, "-" * len(header)]
    for row in rows:
        scores = "".join("  " + (f"{row[key]:>7.4f}" if row[key] is not None else f"{'-':>7}") for key in packs)
        lines.append(f"{row['layer']:>5}  {_ROLE_LABELS[row['role']]:<6}{scores}")
    lines.append("")
    lines.append(plan.describe())
    return "\n".join(lines) + "\n"


def require_matplotlib() -> None:
    """Fail early (before any expensive work) when the plot extra is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("plotting the similarity profile needs matplotlib: `pip install interlace-hf[plot]`.") from None


def plot_similarity_profile(plan: Plan, tables: SimilarityTables, path: str | os.PathLike) -> Path:
    """Plot the similarity of each pack size against block start, with every layer's role as a background band.

    Args:
        plan: the plan to show.
        tables: the similarity tables of the same model.
        path: the PNG to write (atomically: a temporary file in the same directory, renamed onto `path`).

    Returns:
        The path written.
    """
    _check_match(plan, tables)
    try:
        import matplotlib  # noqa: F401  (imported first so that a missing package fails here, not halfway)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ValueError(
            "plotting the similarity profile needs matplotlib: `pip install interlace-hf[plot]`."
        ) from None

    # Figure + the Agg canvas directly, not pyplot: no global backend switch, no figure registry to leak into.
    fig = Figure(figsize=(max(7.0, 0.22 * plan.num_layers + 3.0), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    roles = plan.roles()
    for layer, role in enumerate(roles):
        if role in _ROLE_COLORS:
            ax.axvspan(layer - 0.5, layer + 0.5, color=_ROLE_COLORS[role], alpha=0.18, linewidth=0)
    handles = []
    for k in tables.pack_sizes:
        scores = tables.means[k]
        xs = list(range(len(scores)))
        ys = [float("nan") if s is None else s for s in scores]  # NaN leaves a gap where a block was not measured
        (line,) = ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=f"pack {k}")
        handles.append(line)
    if 1 in tables.means:
        drops = [layer for layer in plan.dropped_layers if tables.means[1][layer] is not None]
        if drops:
            (marks,) = ax.plot(
                drops,
                [tables.means[1][layer] for layer in drops],
                linestyle="none",
                marker="x",
                markersize=8,
                color=_ROLE_COLORS[ROLE_DROP],
                label="dropped (pack 1)",
            )
            handles.append(marks)
    handles += [
        Patch(facecolor=color, alpha=0.35, label=_ROLE_LABELS[role].lower())
        for role, color in _ROLE_COLORS.items()
        if role in roles
    ]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(-0.5, plan.num_layers - 0.5)
    ax.set_xlabel("block start layer (original index)")
    ax.set_ylabel("mean cosine similarity (in vs. out)")
    ax.set_title(f"{plan.strategy}: {len(plan.dropped_layers)}/{plan.num_layers} layers dropped")
    ax.grid(alpha=0.3)
    fig.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".layermap-", suffix=".png", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0o600; a figure is as readable as any other output
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=120)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
