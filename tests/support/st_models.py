"""Real model folders, saved by sentence-transformers and transformers themselves, built from the
packaged all-MiniLM-L6-v2 weights (no hub). One function per model shape: build_x(folder) -> folder.

The heads these add (Dense, classifiers) are seeded random layers: the tests compare Convoy with
sentence-transformers on the same folder, so what matters is that every module is real.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.hub import default_model_path

HIDDEN = 384  # MiniLM's hidden size
DENSE_OUT = 256
PROMPTS = {"query": "query: ", "passage": "passage: "}
LABELS = ("alpha", "beta", "gamma")
MAX_SEQ_LENGTH = 256  # what all-MiniLM-L6-v2 declares; the builders keep it


def minilm() -> Path:
    return default_model_path()


def build_cls_dense_normalize(folder: Path) -> Path:
    """CLS pooling, Dense(384 -> 256, tanh), Normalize."""
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling

    torch.manual_seed(0)
    dense = Dense(HIDDEN, DENSE_OUT, activation_function=torch.nn.Tanh())
    return _save_st(folder, [_transformer(), Pooling(HIDDEN, "cls"), dense, Normalize()])


def build_lasttoken(folder: Path) -> Path:
    """Last-token pooling, no Normalize."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    return _save_st(folder, [_transformer(), Pooling(HIDDEN, "lasttoken")])


def build_max(folder: Path) -> Path:
    from sentence_transformers.sentence_transformer.modules import Pooling

    return _save_st(folder, [_transformer(), Pooling(HIDDEN, "max")])


def build_weightedmean(folder: Path) -> Path:
    from sentence_transformers.sentence_transformer.modules import Pooling

    return _save_st(folder, [_transformer(), Pooling(HIDDEN, "weightedmean")])


def build_cls_mean(folder: Path) -> Path:
    """Two modes concatenated (768 dimensions), as sentence-transformers orders them."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    return _save_st(folder, [_transformer(), Pooling(HIDDEN, ("cls", "mean"))])


def build_prompted(folder: Path, *, include_prompt: bool = True, pooling: str = "mean") -> Path:
    """Prompts and a default prompt name in config_sentence_transformers.json; with
    include_prompt false the pooling skips the prompt's tokens (INSTRUCTOR-style)."""
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    modules = [_transformer(), Pooling(HIDDEN, pooling, include_prompt=include_prompt), Normalize()]
    return _save_st(folder, modules, prompts=PROMPTS, default_prompt_name="query")


def build_plain(folder: Path) -> Path:
    """No sentence-transformers files: transformers' save_pretrained of model and tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    AutoModel.from_pretrained(str(minilm())).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(minilm())).save_pretrained(folder)
    return folder


def build_multilabel_classifier(folder: Path) -> Path:
    """3 labels, problem_type multi_label_classification: a sigmoid per label."""
    return _save_classifier(folder, problem_type="multi_label_classification")


def build_single_label_classifier(folder: Path) -> Path:
    """3 classes, one label per input: softmax."""
    return _save_classifier(folder, problem_type="single_label_classification")


def build_cross_encoder(folder: Path) -> Path:
    """A one-logit reranker saved by sentence-transformers' CrossEncoder (its activation included)."""
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    CrossEncoder(str(minilm()), num_labels=1).save(str(folder))
    return folder


def build_tiny_roberta(folder: Path) -> Path:
    """A small RoBERTa: 514 position rows (pad_token_id 1, so 512 usable), a byte-level BPE
    tokenizer trained here, and no model_max_length anywhere."""
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer()
    corpus = [f"Sentence {i} about convoys, batching, tokens and positions." for i in range(200)]
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1, special_tokens=specials)
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        mask_token="<mask>",
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    RobertaModel(config).save_pretrained(folder)
    return folder


def build_lowercase(folder: Path) -> Path:
    """do_lower_case over a cased tokenizer (the tiny RoBERTa's): "HELLO" and "hello" embed alike.

    sentence-transformers 6 bakes lower-casing into tokenizer.json when it saves; older releases
    wrote `do_lower_case` (and `max_seq_length`) into sentence_bert_config.json instead, and
    loaders must still honour that, so the flag is written the old way here.
    """
    import json
    from tempfile import TemporaryDirectory

    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    with TemporaryDirectory() as base:
        build_tiny_roberta(Path(base))
        _save_st(folder, [Transformer(base), Pooling(32, "mean")])
    config_file = folder / "sentence_bert_config.json"
    config = json.loads(config_file.read_text())
    config.update(max_seq_length=128, do_lower_case=True)
    config_file.write_text(json.dumps(config, indent=2))
    return folder


# Every shape, by the name the fixtures and tests use.
BUILDERS = {
    "cls_dense_normalize": build_cls_dense_normalize,
    "lasttoken": build_lasttoken,
    "max": build_max,
    "weightedmean": build_weightedmean,
    "cls_mean": build_cls_mean,
    "prompted": build_prompted,
    "prompted_exclusive": lambda folder: build_prompted(folder, include_prompt=False),
    "plain": build_plain,
    "multilabel": build_multilabel_classifier,
    "single_label": build_single_label_classifier,
    "cross_encoder": build_cross_encoder,
    "tiny_roberta": build_tiny_roberta,
    "lowercase": build_lowercase,
}


def _transformer() -> object:
    from sentence_transformers.sentence_transformer.modules import Transformer

    return Transformer(str(minilm()), max_seq_length=MAX_SEQ_LENGTH)


def _save_st(folder: Path, modules: list[object], **kwargs: object) -> Path:
    from sentence_transformers import SentenceTransformer

    SentenceTransformer(modules=modules, **kwargs).save(str(folder))
    return folder


def _save_classifier(folder: Path, *, problem_type: str) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    network = AutoModelForSequenceClassification.from_pretrained(
        str(minilm()),
        num_labels=len(LABELS),
        problem_type=problem_type,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    network.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(minilm())).save_pretrained(folder)
    return folder
