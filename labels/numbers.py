"""Cell numbers as the lab, the labels and the batch record print them: one formatter, one superscript table.

"6.40 × 10⁸" for a measured count (three significant figures, trailing zeros kept: they say how precise the
count is), "5 × 10⁷" for a prescribed dose level, "5.0 × 10⁷" on a syringe label. Exponents are real
superscript digits, which DejaVu prints and pdftotext extracts as such. Volumes on labels: ``format_ml``.
"""

from __future__ import annotations

import math
import re
from typing import Literal

SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")

CellStyle = Literal["count", "dose", "label"]


def power_of_ten(exponent: int) -> str:
    return "10" + str(exponent).translate(SUPERSCRIPT)


def superscript_powers(text: str) -> str:
    """'5.0 × 10^7 cells' -> '5.0 × 10⁷ cells'."""
    return re.sub(r"10\^(-?\d+)", lambda m: power_of_ten(int(m.group(1))), text)


def format_cells(value: float, style: CellStyle = "count") -> str:
    """A number of cells in scientific notation with three significant figures.

    * ``count`` (measured): trailing zeros kept, "1.00 × 10⁵"; below 1000 written plainly ("512").
    * ``dose`` (prescribed): trailing zeros dropped, "5 × 10⁷", "3.5 × 10⁷".
    * ``label``: as ``dose`` with at least one decimal, "5.0 × 10⁷", "1.05 × 10⁷".

    A value no count can have (negative, not finite) is shown as it was recorded, never refused here: a page
    or a batch record must show what is stored (its deviation says it is wrong), not fail on it.
    """
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and style != "count"):
        return f"{number:g}"
    if style == "count" and float(f"{number:.2e}") < 1000:  # rounding first: 999.6 becomes 1.00 × 10³
        return f"{float(f'{number:.3g}'):g}"
    mantissa, exponent_text = f"{number:.2e}".split("e")
    if style != "count":
        mantissa = mantissa.rstrip("0").rstrip(".")
        if style == "label" and "." not in mantissa:
            mantissa += ".0"
    return f"{mantissa} × {power_of_ten(int(exponent_text))}"


def format_ml(volume_ml: float) -> str:
    """A measured volume as a label prints it: "5.0 mL", "4.95 mL" (to 0.01 mL, at least one decimal)."""
    text = f"{float(volume_ml):.2f}".rstrip("0")
    return f"{text}0 mL" if text.endswith(".") else f"{text} mL"
