"""A small sequence classifier built from a config with MiniLM's tokenizer, saved to a folder."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from models.loader import default_model_path

LABELS = ("negative", "neutral", "positive")


def build_tiny_classifier(folder: Path, labels: tuple[str, ...] = LABELS) -> Path:
    """Random weights (seeded), real tokenizer: enough to exercise the classify path end to end."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
