"""Data for calibration, fine-tuning and evaluation, written as LLaVA-style JSON with image files.

`sources` finds and opens a dataset (Hub id, saved dataset, parquet / JSON files) and its subsets; `converters` turns
rows of known formats (FineVision, ChartQA, TextVQA, ScienceQA) into one `Example`; `sampling` draws the seeded
per-subset samples; `writer` writes them resumably; `prepare` is `interlace-hf data prepare`; `synthetic` draws the
offline VQA set. No torch.
"""
