"""The command layer: `cli` parses `interlace-hf ...` and calls one module per command. Only this layer prints;
the library logs."""
