"""How strong a configured secret is: a conservative estimate of its entropy, in bits.

The UI token and password, the webhook secret and the metrics token are compared with
what a client sends, and the webhook secret can even be attacked offline (one captured
callback URL is an HMAC of a known message), so each must carry at least
:data:`MIN_BITS`. A string does not say how it was made, so the estimate counts what an
attacker who guesses words, numbers and patterns first would still have to search:

- letters count ``log2(26)`` bits each when every letter of the secret has one case,
  ``log2(52)`` when both cases occur; digits ``log2(10)``; no character counts more than
  ``log2`` of the smallest usual alphabet that holds every letter and digit of the secret
  (hexadecimal: 4 bits);
- letters are read as words, split where the case changes (``CorrectHorse`` is
  ``Correct`` and ``Horse``); a word counts at most :data:`WORD_BITS`, as if drawn from a
  dictionary, and a long run of one case as one word per :data:`WORD_LETTERS` letters
  (``correcthorse``: two words);
- a symbol (``-``, ``_``, ``!``...) counts ``log2(33)`` bits the first time, nothing when
  it comes again (a separator);
- a character that repeats or steps on from the two before it (``aaa``, ``abc``, ``321``),
  or lies in a run of four or more characters that already occurred, counts nothing.

A random 32-byte secret (``secrets.token_urlsafe(32)``, ``openssl rand -hex 32`` or
``-base64 32``) scores about 210 bits (the lowest of 400,000 draws: 137) and passes; a
16-byte one sits at the line and is refused, as are phrases of a few words however long
they look (``change-me-to-a-long-random-string``: 93 bits).
"""

from __future__ import annotations

import math
import re
import string

__all__ = ["GENERATE", "MIN_BITS", "WORD_BITS", "WORD_LETTERS", "estimate_bits", "weakness"]

MIN_BITS = 128
WORD_BITS = 16.0  # a word from a list of about 65,000
WORD_LETTERS = 5  # letters per word, in a run of words written together
GENERATE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'

_SYMBOL_BITS = math.log2(33)  # printable ASCII that is neither a letter nor a digit
_DIGITS = frozenset(string.digits)
_ALPHABETS = (  # (size, characters): the smallest one holding a secret's letters and digits
    (10, _DIGITS),
    (16, frozenset("0123456789abcdef")),
    (16, frozenset("0123456789ABCDEF")),
    (36, frozenset(string.ascii_lowercase + string.digits)),
    (36, frozenset(string.ascii_uppercase + string.digits)),
    (62, frozenset(string.ascii_letters + string.digits)),
)
_REPEAT = 4  # a run this long seen before adds nothing
# A word (split where the case changes: CorrectHorse), or one other character.
_PIECE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[^\W\d_]+|.", re.DOTALL)


def _alphabet_bits(text: str) -> float:
    content = {c for c in text if c.isalnum()}
    for size, chars in _ALPHABETS:
        if content <= chars:
            return math.log2(size)
    return math.log2(95)  # letters beyond ASCII: no more than printable ASCII


def _is_word(run: str) -> bool:
    return run.islower() or run.isupper() or (run[0].isupper() and run[1:].islower())


def _patterned(text: str) -> list[bool]:
    """For each character, whether it repeats or continues a pattern (counts nothing)."""
    flags = [False] * len(text)
    for i in range(2, len(text)):
        a, b, c = (ord(ch) for ch in text[i - 2 : i + 1])
        if c - b == b - a and abs(c - b) <= 1:
            flags[i] = True
    for i in range(len(text) - _REPEAT + 1):
        if text[i : i + _REPEAT] in text[: i + _REPEAT - 1]:
            flags[i : i + _REPEAT] = [True] * _REPEAT
    return flags


def _run_bits(run: str, credits: list[float]) -> float:
    bits = sum(credits)
    if _is_word(run):  # words written together: one word per WORD_LETTERS letters
        return min(bits, WORD_BITS * max(1, round(len(run) / WORD_LETTERS)))
    return bits


def estimate_bits(secret: str) -> float:
    """A conservative estimate of the entropy of ``secret``, in bits (see the module)."""
    cap = _alphabet_bits(secret)
    letters = [c for c in secret if c.isalpha()]
    one_case = all(c.islower() for c in letters) or all(c.isupper() for c in letters)
    letter_bits = min(cap, math.log2(26 if one_case else 52))
    digit_bits = min(cap, math.log2(10))
    patterned = _patterned(secret)
    total, seen = 0.0, set()
    for found in _PIECE.finditer(secret):
        piece, at = found.group(), found.start()
        if piece.isalpha():
            credits = [0.0 if patterned[at + i] else letter_bits for i in range(len(piece))]
            total += _run_bits(piece, credits)
        elif patterned[at]:
            continue
        elif piece in _DIGITS:
            total += digit_bits
        elif piece not in seen:  # a symbol counts once; again, it is a separator
            seen.add(piece)
            total += _SYMBOL_BITS
    return total


def weakness(secret: str, *, purpose: str) -> str | None:
    """Why ``secret`` is too weak for ``purpose``, never repeating it; None when strong."""
    bits = estimate_bits(secret)
    if bits >= MIN_BITS:
        return None
    return (
        f"too weak to {purpose}: about {bits:.0f} bits by a conservative estimate, at least "
        f"{MIN_BITS} needed (docs/security.md says how it is estimated); generate one with "
        f"{GENERATE}"
    )
