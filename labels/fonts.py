"""TrueType fonts for labels.

reportlab's built-in Helvetica has no em dash, multiplication sign or superscript digits, and cannot print
many names (Ł, Ő, Cyrillic). Labels therefore embed DejaVu (Debian package ``fonts-dejavu-core``), whose
sans and mono faces cover all of these and tell 0 from O and 1 from I/l, as ICCBBA ST-001 §7.4 asks.

A missing font is an error, never a silent fallback: a label printed in a different font on another
machine would be a different (unvalidated) label.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

__all__ = [
    "MONO",
    "MONO_BOLD",
    "SANS",
    "SANS_BOLD",
    "FontMissing",
    "UnprintableCharacter",
    "check_printable",
    "register_fonts",
]

SANS = "LabelSans"
SANS_BOLD = "LabelSans-Bold"
MONO = "LabelMono"
MONO_BOLD = "LabelMono-Bold"

_FILES = {
    SANS: "DejaVuSans.ttf",
    SANS_BOLD: "DejaVuSans-Bold.ttf",
    MONO: "DejaVuSansMono.ttf",
    MONO_BOLD: "DejaVuSansMono-Bold.ttf",
}
FONT_DIR_ENV = "LABELS_FONT_DIR"
_SEARCH_DIRS = (
    "/usr/share/fonts/truetype/dejavu",  # Debian, Ubuntu
    "/usr/share/fonts/dejavu-sans-fonts",  # Fedora
    "/usr/share/fonts/dejavu-sans-mono-fonts",
    "/usr/share/fonts/TTF",  # Arch
    "/usr/local/share/fonts",
)


class FontMissing(RuntimeError):
    """The DejaVu TrueType files are not installed where we look."""


class UnprintableCharacter(ValueError):
    """A field holds a character the label font cannot draw (it would print as an empty box)."""


def _find(filename: str) -> Path | None:
    dirs = [os.environ[FONT_DIR_ENV]] if os.environ.get(FONT_DIR_ENV) else []
    for directory in [*dirs, *_SEARCH_DIRS]:
        path = Path(directory) / filename
        if path.is_file():
            return path
    return None


@cache
def register_fonts() -> None:
    """Register the four label faces with reportlab once per process; raise FontMissing if absent."""
    missing = []
    for name, filename in _FILES.items():
        path = _find(filename)
        if path is None:
            missing.append(filename)
            continue
        pdfmetrics.registerFont(TTFont(name, str(path)))
    if missing:
        register_fonts.cache_clear()  # let a later call succeed once the fonts are installed
        looked = ", ".join([f"${FONT_DIR_ENV}", *_SEARCH_DIRS])
        raise FontMissing(
            f"label fonts not found: {', '.join(missing)} (looked in {looked}); "
            "install the Debian package fonts-dejavu-core or point LABELS_FONT_DIR at the DejaVu .ttf files"
        )


def check_printable(text: str, font: str, field: str) -> None:
    """Raise UnprintableCharacter naming ``field`` if ``font`` has no glyph for a character of ``text``."""
    register_fonts()
    glyphs = pdfmetrics.getFont(font).face.charToGlyph
    for ch in text:
        if ch == "\n":  # a line break, not a glyph
            continue
        if ord(ch) not in glyphs or not ch.isprintable():
            raise UnprintableCharacter(f"{field}: character U+{ord(ch):04X} {ch!r} cannot be printed")
