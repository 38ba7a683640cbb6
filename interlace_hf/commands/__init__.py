"""The command layer: `cli` parses `interlace-hf ...` and calls one module per command. Only this layer prints;
the library logs."""

import logging


def configure_logging(verbose: bool = False) -> None:
    """Progress of interlace-hf (its loggers' INFO) on stderr; other libraries' warnings only, unless `--verbose`."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("interlace_hf").setLevel(logging.DEBUG if verbose else logging.INFO)
