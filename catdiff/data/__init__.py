"""Image sources, decoding, de-duplication, splits and Sobel edges. Pure torch + Pillow.

``load_source`` (list -> decode once through the on-disk cache -> drop exact duplicates, with
a one-line :class:`LoadReport`) -> ``split_loaded`` (by content hash, or the source's own
test set) -> optional ``apply_edges``; the pieces below are public too.
"""

from catdiff.data.catfaces import KAGGLE_HANDLE, resolve_catfaces_root
from catdiff.data.cifar import resolve_cifar_root
from catdiff.data.decode import (
    CROP_MODES,
    RESAMPLE_FILTERS,
    LoadedImages,
    LoadReport,
    decode_images,
    load_files,
    load_folder,
)
from catdiff.data.dedupe import drop_duplicates, file_sha1, image_key, split_by_hash
from catdiff.data.edges import (
    EDGE_MODES,
    SOBEL_MAX,
    apply_edges,
    data_channels,
    gaussian_blur,
    sobel,
)
from catdiff.data.files import IMAGE_EXTENSIONS, list_images
from catdiff.data.sources import SOURCES, load_source, split_loaded
from catdiff.data.synthetic import synthetic_cats

__all__ = [
    "CROP_MODES",
    "EDGE_MODES",
    "IMAGE_EXTENSIONS",
    "KAGGLE_HANDLE",
    "RESAMPLE_FILTERS",
    "SOBEL_MAX",
    "SOURCES",
    "LoadReport",
    "LoadedImages",
    "apply_edges",
    "data_channels",
    "decode_images",
    "drop_duplicates",
    "file_sha1",
    "gaussian_blur",
    "image_key",
    "list_images",
    "load_files",
    "load_folder",
    "load_source",
    "resolve_catfaces_root",
    "resolve_cifar_root",
    "sobel",
    "split_by_hash",
    "split_loaded",
    "synthetic_cats",
]
