"""The bench's inputs: a deterministic generated corpus in several length profiles, or a user file.

The texts are built from bundled word lists with a seeded RNG, so every run (and the offline
limit) sees the same texts in the same order. Word counts are calibrated against the MiniLM
WordPiece tokenizer (tests check it): `short` is ~19 tokens, `paragraph` ~130, `long` 2-4k
characters in paragraphs (several chunks), `mixed` single chunks spread log-uniformly from ~9 to ~190 tokens.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import orjson

PROFILES = ("short", "paragraph", "long", "mixed")
DEFAULT_SIZE = 1000


def _wordlist(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_DETS = ("the", "a", "every", "each", "one", "that", "this", "our", "their", "some")
_ADJS = _wordlist(
    "small quick quiet heavy bright early late long short old new young great large little red blue "
    "green dark cold warm dry wet open narrow broad busy calm clear careful simple strong weak rare "
    "common steady rapid slow gentle sharp plain fresh public local distant northern southern wooden "
    "golden silver empty full final first second main central rough smooth hidden"
)
_NOUNS = _wordlist(
    "convoy truck driver road river bridge village city market farmer harbour ship captain crew cargo "
    "crate barrel wagon horse engine station train signal tower valley mountain forest field garden "
    "house window door table letter message report paper book story song voice child teacher student "
    "doctor nurse worker engineer officer soldier king queen council court law rule plan idea question "
    "answer number record system network server request model batch queue window morning evening night "
    "winter summer spring autumn storm rain snow wind sun moon star light fire water stone iron wood "
    "glass bread coffee tea sugar salt grain cotton wool coal oil gold price trade company office bank "
    "school church hospital library museum theatre camp border coast island lake sea shore path track"
)
_VERBS = _wordlist(
    "carried moved crossed reached left found kept held brought sent took gave made built opened closed "
    "followed watched saw heard called asked told showed turned passed pulled pushed lifted dropped "
    "filled emptied loaded checked counted measured repaired painted cleaned guarded visited entered "
    "joined started finished delivered collected gathered ordered signed wrote read answered explained"
)
_ADVS = _wordlist(
    "quickly slowly quietly carefully early late again soon often rarely always never once twice "
    "still already nearly almost finally suddenly gently firmly openly calmly"
)
_PREPS = _wordlist(
    "across over under through along near behind beside beyond toward into onto from with without "
    "before after during around between against past"
)


def _noun_phrase(rng: random.Random) -> list[str]:
    words = [rng.choice(_DETS)]
    if rng.random() < 0.6:
        words.append(rng.choice(_ADJS))
    words.append(rng.choice(_NOUNS))
    return words


def _sentence(rng: random.Random) -> list[str]:
    """One sentence of 6-18 words; the last word carries its full stop."""
    words = [*_noun_phrase(rng), rng.choice(_VERBS), *_noun_phrase(rng)]
    if rng.random() < 0.7:
        words += [rng.choice(_PREPS), *_noun_phrase(rng)]
    if rng.random() < 0.3:
        words += ["and", rng.choice(_VERBS), *_noun_phrase(rng)]
    if rng.random() < 0.4:
        words.insert(0, rng.choice(_ADVS) + ",")
    words[0] = words[0].capitalize()
    words[-1] += "."
    return words


def _words(rng: random.Random, count: int) -> list[str]:
    """Exactly `count` words of running sentences, ending with a full stop."""
    out: list[str] = []
    while len(out) < count:
        out += _sentence(rng)
    out = out[:count]
    if not out[-1].endswith("."):
        out[-1] = out[-1].rstrip(",") + "."
    return out


def _short(rng: random.Random) -> str:
    return " ".join(_words(rng, rng.randint(13, 16)))


def _paragraph(rng: random.Random) -> str:
    return " ".join(_words(rng, rng.randint(107, 119)))


def _long(rng: random.Random) -> str:
    # 2-4k characters in paragraphs of 60-120 words, so the chunker cuts at blank lines.
    paragraphs: list[str] = []
    target = rng.randint(2000, 3600)
    while sum(len(p) + 2 for p in paragraphs) < target:
        paragraphs.append(" ".join(_words(rng, rng.randint(60, 120))))
    return "\n\n".join(paragraphs)


def _mixed(rng: random.Random) -> str:
    # Log-uniform word counts: as many short texts as long ones per doubling of length.
    count = round(math.exp(rng.uniform(math.log(6), math.log(160))))
    return " ".join(_words(rng, count))


_BUILDERS: dict[str, Callable[[random.Random], str]] = {
    "short": _short,
    "paragraph": _paragraph,
    "long": _long,
    "mixed": _mixed,
}


def build_corpus(profile: str, size: int = DEFAULT_SIZE, seed: int = 0) -> list[str]:
    """`size` texts of one profile; the same arguments always give the same texts."""
    if profile not in _BUILDERS:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
    if size < 1:
        raise ValueError("the corpus needs at least one text")
    # A string seed keeps profiles independent of each other and stable across Python versions.
    rng = random.Random(f"convoy-bench/{profile}/{seed}")
    return [_BUILDERS[profile](rng) for _ in range(size)]


def load_file(path: Path) -> list[str]:
    """Texts from a user file: JSON lines with a "text" field (.jsonl), else one text per line."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    texts: list[str] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f'{path}:{number}: expected an object with a "text" string')
            line = row["text"]
        texts.append(line)
    if not texts:
        raise ValueError(f"{path} holds no texts")
    return texts
