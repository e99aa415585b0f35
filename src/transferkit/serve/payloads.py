"""Request bodies -> model inputs: JSON ``{"texts": [...]}`` / ``{"images": [base64, ...]}`` or multipart image
uploads, every field checked (422 with a message naming it) before anything reaches the model."""
from __future__ import annotations

import base64
import binascii
import io
import json
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..backbones.base import ImagePreprocessor
from ..data.images import load_rgb
from ..errors import DataError
from .responses import ApiError

IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")  # what Image.open may sniff (no EPS etc.)
MAX_SIDE = 65535
FIELDS = ("texts", "images", "top_k")
EXAMPLE = 'send {"texts": ["..."]} or {"images": ["<base64>"]} as JSON, or image files as multipart/form-data'


def invalid(message: str) -> ApiError:
    return ApiError(422, message, reason="invalid")


@dataclass
class PredictRequest:
    """What to predict: texts (str) or images (raw file bytes), and how many labels to return."""

    modality: str
    items: list[Any]
    top_k: int | None = None


def parse_top_k(value: Any) -> int | None:
    """``top_k`` from JSON (an int), a form field or the query string (digits); None when absent."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
        raise invalid(f"'top_k' must be an integer from 1 to 10000. Got {value!r} instead.")
    return value


def _b64(text: str, name: str) -> bytes:
    if text.startswith("data:"):  # a data URL: data:image/png;base64,....
        text = text.partition(",")[2]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{name} is not valid base64; send each image file's bytes base64-encoded.") from None


def _checked_items(key: str, values: Any, max_items: int) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise invalid(f"'{key}' must be a non-empty list of strings. Got {type(values).__name__} instead; {EXAMPLE}.")
    if len(values) > max_items:
        raise invalid(f"'{key}' holds {len(values)} inputs, more than the limit of {max_items} per request "
                      "(--max-items); split them over several requests.")
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise invalid(f"{key}[{i}] must be a string. Got {type(v).__name__} instead.")
    return values


def clean_text(text: str, name: str, max_chars: int) -> str:
    """The text as valid UTF-8 (lone surrogates replaced), refused when longer than ``max_chars``."""
    if len(text) > max_chars:
        raise invalid(f"{name} has {len(text)} characters, more than the limit of {max_chars} "
                      "(--max-text-chars); shorten it.")
    return text.encode("utf-8", "replace").decode("utf-8")


def parse_json(body: bytes, max_items: int, max_chars: int) -> PredictRequest:
    """A JSON prediction request (texts, or base64 images still encoded as bytes)."""
    if not body.strip():
        raise invalid(f"The request body is empty; {EXAMPLE}.")
    try:
        doc = json.loads(body)
    except UnicodeDecodeError:
        raise invalid("The request body is not UTF-8 text; send JSON encoded as UTF-8.") from None
    except json.JSONDecodeError as e:
        raise invalid(f"The request body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
                      f"{EXAMPLE}.") from None
    except RecursionError:
        raise invalid("The request body nests too deeply to be a prediction request; " f"{EXAMPLE}.") from None
    if not isinstance(doc, dict):
        raise invalid(f"The JSON body must be an object. Got {type(doc).__name__} instead; {EXAMPLE}.")
    unknown = sorted(str(k) for k in doc if k not in FIELDS)
    if unknown:
        raise invalid(f"Unknown field(s) {', '.join(repr(k)[:60] for k in unknown[:5])} in the request; "
                      "expected 'texts' or 'images', and optionally 'top_k'.")
    if ("texts" in doc) == ("images" in doc):
        raise invalid(f"Send exactly one of 'texts' or 'images'; {EXAMPLE}.")
    top_k = parse_top_k(doc.get("top_k"))
    if "texts" in doc:
        texts = _checked_items("texts", doc["texts"], max_items)
        return PredictRequest("text", [clean_text(t, f"texts[{i}]", max_chars) for i, t in enumerate(texts)], top_k)
    images = _checked_items("images", doc["images"], max_items)
    return PredictRequest("image", [_b64(s, f"images[{i}]") for i, s in enumerate(images)], top_k)


async def parse_multipart(request: Request, max_items: int, max_chars: int, max_part: int) -> PredictRequest:
    """Uploaded image files (any field name) or ``texts`` fields, and an optional ``top_k`` field."""
    try:
        form = await request.form(max_files=max_items, max_fields=max_items + len(FIELDS), max_part_size=max_part)
    except HTTPException as e:  # Starlette's parser: malformed multipart, too many files or fields
        raise invalid(f"The multipart body cannot be read ({e.detail}); send image files as multipart/form-data "
                      "fields.") from None
    files: list[bytes] = []
    texts: list[str] = []
    top_k = None
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append(await value.read())
            elif key == "texts":
                texts.append(value)
            elif key == "top_k":
                top_k = parse_top_k(value)
            else:
                raise invalid(f"Unknown form field {key!r:.60}; send image files, 'texts' fields and optionally "
                              "'top_k'.")
    finally:
        await form.close()
    if bool(files) == bool(texts):
        raise invalid("Send either image files or 'texts' fields in the multipart body.")
    if files:
        return PredictRequest("image", files, top_k)
    if len(texts) > max_items:
        raise invalid(f"The request holds {len(texts)} texts, more than the limit of {max_items} (--max-items).")
    return PredictRequest("text", [clean_text(t, f"texts[{i}]", max_chars) for i, t in enumerate(texts)], top_k)


def _header_size(data: bytes, name: str) -> tuple[int, int]:
    """The pixel size an image's header declares (nothing is decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's bomb warning: the size is checked by the caller
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
                return im.size
    except Image.DecompressionBombError:
        raise invalid(f"{name} is refused as a decompression bomb: its header declares more than "
                      f"{2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels; send a smaller image.") from None
    except Exception:  # noqa: BLE001 - PIL raises many types on malformed headers (OSError, SyntaxError, ...)
        raise invalid(f"{name} is not an image in a supported format ({', '.join(IMAGE_FORMATS)}).") from None


def decode_image(data: bytes, name: str, pre: ImagePreprocessor, max_pixels: int) -> np.ndarray:
    """An uploaded image as the uint8 array [3, S, S] the backbone takes, decoded exactly as
    ``transferkit predict`` decodes files (:func:`~transferkit.data.images.load_rgb`), after its header's size
    passed ``max_pixels``."""
    if not data:
        raise invalid(f"{name} is empty; send the bytes of an image file.")
    w, h = _header_size(data, name)
    if w * h > max_pixels or max(w, h) > MAX_SIDE:
        raise invalid(f"{name} declares {w}x{h} pixels, more than the server's limit of {max_pixels} "
                      "(--max-image-pixels), refused as a possible decompression bomb; send a smaller image.")
    with tempfile.NamedTemporaryFile(prefix="transferkit-serve-", suffix=".img") as f:
        f.write(data)
        f.flush()
        try:
            rgb = load_rgb(f.name, pre.size, pre.interpolation)
        except Exception as e:  # noqa: BLE001 - DataError, or whatever PIL raised on damaged data
            why = str(e).split(": ", 1)[-1].split(". Remove")[0] if isinstance(e, DataError) else type(e).__name__
            raise invalid(f"{name} cannot be decoded ({why}); send a complete image file.") from None
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))
