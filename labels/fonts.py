"""TrueType fonts for labels.

reportlab's built-in Helvetica has no em dash, multiplication sign or superscript digits, and cannot print
many names (Ł, Ő, Cyrillic). Labels therefore embed DejaVu, whose sans and mono faces cover all of these and
tell 0 from O and 1 from I/l, as ICCBBA ST-001 §7.4 asks.

The four faces travel with this package (``labels/dejavu``, with their licence beside them), pinned by
SHA-256: a validated label prints identically on every machine, and a fresh machine needs no font package.
A file that is missing or not the validated one is an error, never a silent fallback.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

__all__ = [
    "MONO",
    "MONO_BOLD",
    "SANS",
    "SANS_BOLD",
    "FONT_DIR",
    "FontMissing",
    "UnprintableCharacter",
    "check_printable",
    "register_fonts",
]

SANS = "LabelSans"
SANS_BOLD = "LabelSans-Bold"
MONO = "LabelMono"
MONO_BOLD = "LabelMono-Bold"

FONT_DIR = Path(__file__).resolve().parent / "dejavu"
# DejaVu 2.37, unmodified: the faces the labels were validated with.
_FILES = {
    SANS: ("DejaVuSans.ttf", "abdc775b21b1bc470d50c97e790d276f2054b7504e56e5bd3e64f48d68582322"),
    SANS_BOLD: ("DejaVuSans-Bold.ttf", "0d977336a6d5fba34eab8e3199eb218327161b5143749f802982c2bc34df0c96"),
    MONO: ("DejaVuSansMono.ttf", "0f5db4f1749979d961019838b160bec74abdf7f9eca69553fe1aa856bbff49a4"),
    MONO_BOLD: (
        "DejaVuSansMono-Bold.ttf",
        "2964f6dac8e6e9d71613928340f17bf868e9ea51692cca333c79e74962f02233",
    ),
}


class FontMissing(RuntimeError):
    """A label face is missing from the package, or is not the validated file."""


class UnprintableCharacter(ValueError):
    """A field holds a character the label font cannot draw (it would print as an empty box)."""


def _validated(filename: str, sha256: str) -> Path:
    path = FONT_DIR / filename
    if not path.is_file():
        raise FontMissing(f"label font {filename} is missing from {FONT_DIR}: reinstall the package")
    if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        raise FontMissing(f"label font {path} is not the validated DejaVu 2.37 file: reinstall the package")
    return path


@cache
def register_fonts() -> None:
    """Register the four label faces with reportlab once per process; raise FontMissing if one is absent or
    altered."""
    for name, (filename, sha256) in _FILES.items():
        pdfmetrics.registerFont(TTFont(name, str(_validated(filename, sha256))))


def check_printable(text: str, font: str, field: str) -> None:
    """Raise UnprintableCharacter naming ``field`` if ``font`` has no glyph for a character of ``text``."""
    register_fonts()
    glyphs = pdfmetrics.getFont(font).face.charToGlyph
    for ch in text:
        if ch in ("\n", "\u00a0"):  # a line break; a space that keeps a number or a phrase on one line
            continue
        if ord(ch) not in glyphs or not ch.isprintable():
            raise UnprintableCharacter(f"{field}: character U+{ord(ch):04X} {ch!r} cannot be printed")
