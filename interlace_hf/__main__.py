"""`python -m interlace_hf ...` is `interlace-hf ...`."""

from interlace_hf.commands.cli import main

raise SystemExit(main())
