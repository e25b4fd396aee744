"""Which images a text names: one parser, shared by the teachers, validation and the benchmark loaders.

Every chain must end by naming the target image; `last_named_image` is how that is read.
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
