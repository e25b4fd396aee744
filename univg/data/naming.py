"""Which images a text names: one parser, shared by the teachers, validation and the benchmark loaders.

Every chain must end by naming the target image; `last_named_image` is how that is read.
A benchmark question may say which image to ground in; `target_from_text` reads that, and
`decide_target` picks a row's target image from the texts it has.
`ORDINAL_WORDS` is the one table of ordinal image words ("the third image").
"""

from __future__ import annotations

import re

ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
ORDINALS = {w: k for k, w in enumerate(ORDINAL_WORDS, 1)}  # "third" -> 3
_ORDINALS = {**ORDINALS, **{f"{k}{'stndrd'[2 * k - 2:2 * k] if k < 4 else 'th'}": k for k in range(1, 9)}}
# "image 3", "Image-3", "image3", "frame 2", "images 1 and 3" (plural takes a list), "the third image".
_NAMED_IMAGE = re.compile(
    r"\b(?:(?:image|frame|picture)\s*[-#]?\s*(?P<one>\d+)"
    r"|(?:images|frames|pictures)\s*[-#]?\s*(?P<many>\d+(?:\s*(?:,|and|or|&)\s*\d+)*)"
    r"|(?P<ord>" + "|".join(_ORDINALS) + r")\s+(?:image|frame|picture)s?)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d+")


def named_images(chain: str) -> list[int]:
    """Every image a chain names, in reading order (1-based)."""
    names: list[int] = []
    for match in _NAMED_IMAGE.finditer(chain):
        if match.group("one"):
            names.append(int(match.group("one")))
        elif match.group("many"):
            names.extend(int(n) for n in _NUMBER.findall(match.group("many")))
        else:
            names.append(_ORDINALS[match.group("ord").lower()])
    return names


def last_named_image(chain: str) -> int | None:
    """The image a chain's conclusion names: the last one it mentions (None: it names none)."""
    names = named_images(chain)
    return names[-1] if names else None


# ----------------------------------------------------------------------------- a question's target
_NOUN = r"(?:image|picture|photo|frame|img|pic)"
_MENTION = re.compile(rf"\b(?P<ord>{'|'.join(ORDINALS)}|last|final|\d+(?:st|nd|rd|th))\s+{_NOUN}\b"
                      rf"|\b{_NOUN}\s*[-#:_]?\s*(?P<num>\d+)\b", re.IGNORECASE)
_IN_BEFORE = re.compile(r"\b(?:in|on|within|inside)\s+(?:the\s+)?$", re.IGNORECASE)
# "box" is a verb only when it is not the noun of "bounding box" (MIG-Bench's multi_view questions
# say "marked with red bounding box in the first image" before the image they ask about).
_VERB = re.compile(r"\b(?:locate|ground|find|detect|identify|output|give|mark|point out|determine|(?<!bounding )box|where)\b",
                   re.I)


def target_from_text(text: str, num_images: int) -> int | None:
    """The 1-based image a question asks to ground in, or None. Among valid mentions ("third image",
    "image 2", "Image-2", "second picture", "last frame"; not possessives like "Image-1's"): the
    first "in/on <mention>" after the first grounding verb (locate, find, ...), else the last
    "in/on <mention>", else the last mention."""
    mentions = []
    for match in _MENTION.finditer(text or ""):
        num, word = match.group("num"), (match.group("ord") or "").lower()
        k = int(num) if num else num_images if word in ("last", "final") else ORDINALS.get(word) or int(word[:-2])
        if not 1 <= k <= num_images or text[match.end() : match.end() + 2] == "'s":
            continue
        after_in = _IN_BEFORE.search(text[max(0, match.start() - 24) : match.start()]) is not None
        mentions.append((match.start(), k, after_in))
    if not mentions:
        return None
    verb = _VERB.search(text)
    after_verb = [k for start, k, after_in in mentions if verb and after_in and start > verb.start()]
    if after_verb:
        return after_verb[0]
    in_mentions = [k for _, k, after_in in mentions if after_in]
    return in_mentions[-1] if in_mentions else mentions[-1][1]


def decide_target(num_images: int, *texts: tuple[str, str]) -> tuple[int, str]:
    """(target, rule): the first (rule, text) that names an image, else the last image."""
    for rule, text in texts:
        found = target_from_text(text, num_images) if isinstance(text, str) else None
        if found is not None:
            return found, rule
    return num_images, "default_last"
