"""Step 2 as the command line or a recipe describes it: selection arguments -> a `Plan`.

The glue between the argument schema (`args.SelectionArgs`), the similarity files (`selection`) and the one strategy
that needs the model itself (`sleb`). `selection` stays pure (no torch, no model); only `--strategy sleb` imports
torch, when it runs.
"""

from __future__ import annotations

from .plan import Plan, parse_layer_list
from .tables import SimilarityTables, load_similarity_tables
from .selection import select_layers


def plan_from_args(args, *, num_layers: int | None = None, model=None) -> tuple[Plan, SimilarityTables | None]:
    """Step 2 as the CLI or a recipe describes it (an `args.SelectionArgs`).

    Args:
        args: the selection fields (`strategy`, `drop_ratio` / `num_drop`, `similarities` or `hs_pack*_path`, ...).
        num_layers: depth of the model, when known (checked against the similarity files).
        model: for `sleb`, an already loaded model (otherwise `args.model` is loaded; torch is imported only then).

    Returns:
        the plan, and the similarity tables it was made from (None for `sleb` / `random` without files).
    """
    protected = parse_layer_list(args.protect, "--protect") if args.protect else ()
    tables = None
    if args.similarities or args.pack_paths:
        tables = load_similarity_tables(
            args.similarities, pack_paths=args.pack_paths or None, num_layers=args.num_layers or num_layers
        )
        if num_layers is not None and tables.num_layers != num_layers:
            raise ValueError(
                f"the similarity files describe a {tables.num_layers}-layer model but the model has {num_layers} "
                "layers; compute them on this model with `interlace-hf similarity`."
            )
    if args.strategy == "sleb":
        from .sleb import run_sleb

        return run_sleb(args, protected, model=model), tables
    if tables is None:
        depth = args.num_layers or num_layers
        if depth is None:
            raise ValueError(f"--strategy {args.strategy} needs the model depth: pass --num-layers N or --model M.")
        tables = SimilarityTables(depth, {})
    plan = select_layers(
        tables,
        args.strategy,
        drop_ratio=args.drop_ratio,
        num_drop=args.num_drop,
        seed=args.seed,
        protected_layers=protected,
        tune_baselines=args.tune_baselines,
    )
    return plan, tables
