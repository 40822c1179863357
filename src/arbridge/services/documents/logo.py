"""The business's logo for its PDF documents: checked as it is uploaded, stored on the company."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError
from sqlalchemy.orm import Session

from arbridge.sync.model import Company

MAX_BYTES = 512 * 1024
MAX_PIXELS = 4096  # on either side
FORMATS = {"PNG": "PNG", "JPEG": "JPEG"}


class LogoRefused(ValueError):
    """Why an upload is not a logo we can print, in words for the owner."""


def check_logo(data: bytes) -> str:
    """The image's format (PNG or JPEG) when `data` is one we can print; else LogoRefused."""
    if not data:
        raise LogoRefused("Choose a PNG or JPEG file.")
    if len(data) > MAX_BYTES:
        raise LogoRefused("The logo is larger than 512 KB: save it smaller and upload it again.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, (width, height) = image.format, image.size
            image.verify()  # a truncated or forged file fails here, not in the PDF later
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise LogoRefused("That file is not a PNG or JPEG image.") from None
    if fmt not in FORMATS:
        raise LogoRefused("The logo must be a PNG or JPEG image.")
    if not (0 < width <= MAX_PIXELS and 0 < height <= MAX_PIXELS):
        raise LogoRefused(f"The logo is at most {MAX_PIXELS} pixels on each side.")
    return FORMATS[fmt]


def set_logo(session: Session, company: Company, data: bytes | None) -> None:
    """Store the checked logo (None removes it)."""
    if data is not None:
        check_logo(data)
    row = session.get(Company, company.id)
    assert row is not None
    row.logo = data
