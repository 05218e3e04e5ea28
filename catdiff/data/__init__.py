"""Image sources, decoding, de-duplication, splits and Sobel edges. Pure torch + Pillow.

The fast path: ``list_images`` -> ``decode_images`` (once, into a uint8 tensor) ->
``drop_duplicates`` -> ``split_by_hash`` -> optional ``apply_edges``; ``load_folder`` does the
first three and returns a one-line :class:`LoadReport`. ``synthetic_cats`` draws an offline
stand-in; ``resolve_catfaces_root`` finds (or downloads once) the Kaggle cat faces.
"""

from catdiff.data.catfaces import KAGGLE_HANDLE, resolve_catfaces_root
from catdiff.data.decode import RESAMPLE_FILTERS, LoadReport, decode_images, load_folder
from catdiff.data.dedupe import drop_duplicates, file_sha1, image_key, split_by_hash
from catdiff.data.edges import EDGE_MODES, SOBEL_MAX, apply_edges, gaussian_blur, sobel
from catdiff.data.files import IMAGE_EXTENSIONS, list_images
from catdiff.data.synthetic import synthetic_cats

__all__ = [
    "EDGE_MODES",
    "IMAGE_EXTENSIONS",
    "KAGGLE_HANDLE",
    "RESAMPLE_FILTERS",
    "SOBEL_MAX",
    "LoadReport",
    "apply_edges",
    "decode_images",
    "drop_duplicates",
    "file_sha1",
    "gaussian_blur",
    "image_key",
    "list_images",
    "load_folder",
    "resolve_catfaces_root",
    "sobel",
    "split_by_hash",
    "synthetic_cats",
]
