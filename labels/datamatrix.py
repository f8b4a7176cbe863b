"""DataMatrix ECC 200 encoding through treepoem (BWIPP, the Barcode Writer in Pure PostScript, run by
Ghostscript), reduced to a module matrix so the label draws the symbol as exact vector squares.

Why treepoem: reportlab's own pure-Python ``ECC200DataMatrix`` was seen to encode ``=``, ``<`` and ``:``
wrongly (shared/TOOLING.md), and both ISBT 128 identifiers start with ``=`` or ``&``. BWIPP is actively
maintained and treepoem releases track it. Needs ``pip install treepoem`` (brings Pillow) and the Debian
package ``ghostscript``. It is imported lazily, so container and syringe labels do not need it.

treepoem returns a 1-bit-clean bitmap cropped to the symbol with no quiet zone; the module size in pixels
is read from the top row of the finder pattern (alternating dark/light modules), and the whole image is
checked to be a clean grid with a valid finder pattern before it is used.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["DataMatrixError", "datamatrix_rows"]


class DataMatrixError(RuntimeError):
    """The encoder is missing or returned something that is not a clean DataMatrix bitmap."""


def _finder_ok(rows: list[str]) -> bool:
    n_rows, n_cols = len(rows), len(rows[0])
    left = all(row[0] == "1" for row in rows)
    bottom = set(rows[-1]) == {"1"}
    top = all(rows[0][c] == ("1" if c % 2 == 0 else "0") for c in range(n_cols))
    right = all(rows[n_rows - 1 - r][-1] == ("1" if r % 2 == 0 else "0") for r in range(n_rows))
    return left and bottom and top and right


@lru_cache(maxsize=128)
def datamatrix_rows(data: str) -> tuple[str, ...]:
    """Encode ``data`` as a square DataMatrix ECC 200; rows top to bottom, '1' for a dark module."""
    try:
        import treepoem
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise DataMatrixError("DataMatrix needs the treepoem package (and Debian's ghostscript)") from exc
    try:
        image = treepoem.generate_barcode("datamatrix", data, scale=1).convert("L")
    except (treepoem.TreepoemError, OSError) as exc:
        raise DataMatrixError(f"treepoem could not encode {data!r}: {exc}") from exc
    width, height = image.size
    px = 0
    while px < width and image.getpixel((px, 0)) < 128:  # type: ignore[operator]
        px += 1
    if px == 0 or width % px or height % px:
        raise DataMatrixError(f"unexpected DataMatrix bitmap {width}x{height} (module {px} px)")
    rows = []
    for r in range(height // px):
        row = []
        for c in range(width // px):
            values = {image.getpixel((c * px + i, r * px + j)) for i in range(px) for j in range(px)}
            if len(values) != 1 or not values <= {0, 255}:
                raise DataMatrixError("DataMatrix bitmap is not a clean module grid")
            row.append("1" if values.pop() == 0 else "0")
        rows.append("".join(row))
    if not _finder_ok(rows):
        raise DataMatrixError("DataMatrix bitmap has no valid finder pattern")
    return tuple(rows)
