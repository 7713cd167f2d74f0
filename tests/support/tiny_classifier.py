"""A tiny, randomly initialised BERT sequence classifier saved to disk, with MiniLM's tokenizer.

Real transformers weights and config on a local path, so tests exercise the real loader and the
classify task without a download. Its labels are meaningless; its shapes and plumbing are real.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from models.loader import default_model_path

LABELS = ("negative", "neutral", "positive")


def build_tiny_classifier(directory: Path, *, labels: tuple[str, ...] = LABELS, seed: int = 0) -> Path:
    """Write a 2-layer, 64-wide classifier with `labels` to `directory`; return the directory."""
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
