"""Real-data sources (grain random-access) and the guarded, sharded, checkpointable pipeline around them.

Names resolve lazily (PEP 562) so that `vljax --help` does not import grain and jax.
"""
import importlib

_EXPORTS = {
    "array_record": ("ArrayRecordSource", "decode_record", "encode_record"),
    "audio": ("AudioSource", "decode_audio"),
    "bad_records": ("BadDataError", "BadRecordError", "BadRecordPolicy", "GuardedMap"),
    "coco": ("CocoCaptionsSource", "Flickr30kSource", "KarpathySource"),
    "llava": ("LlavaSource",),
    "loader": ("guarded_stream", "make_dataset", "make_map_dataset", "shard_for_host"),
    "mixture": ("Component", "make_mixture", "make_mixture_dataset"),
    "points": ("PointCloudSource", "decode_points", "read_ply"),
    "registry": ("FORMATS", "open_source"),
    "tfds": ("TfdsSource",),
    "video": ("VideoSource", "decode_frames"),
    "webdataset": ("WebDatasetSource",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    """Imports the submodule that defines `name` on first access."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
