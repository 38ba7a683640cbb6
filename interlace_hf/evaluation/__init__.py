"""`interlace-hf eval`: tasks (what is asked), generation (batched greedy answers), metrics (how answers are scored),
and the command that ties them together (`evaluate`)."""
