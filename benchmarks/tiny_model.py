#!/usr/bin/env python3
"""A model whose compute is nearly free: a 1-layer, 32-wide BERT with MiniLM's tokenizer.

Served by Convoy it makes the serving stack, not the model, the bottleneck, as a GPU does for
real models: what is left is the cost per request of HTTP, validation, batching and hand-offs.

    python benchmarks/tiny_model.py bench-out/tiny-bert    # prints the folder
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_tiny_model(folder: Path) -> Path:
    """Save the tiny BERT (random weights, seeded) and MiniLM's tokenizer into `folder`, once."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from models.loader import default_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("bench-out/tiny-bert"))
    print(build_tiny_model(parser.parse_args().folder))


if __name__ == "__main__":
    main()
