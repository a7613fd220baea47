"""Ingest: probe sources with ffmpeg, transcode them into an HLS ladder, make demo films.

``ffmpeg`` runs and probes, ``ladder`` picks the rungs, ``transcode`` packages a
source as HLS, ``demo`` generates the synthetic demo film.
"""

from admin.ingest.demo import build_demo_film, generate_test_source
from admin.ingest.ffmpeg import (
    FfmpegError,
    IngestError,
    MediaInfo,
    find_ffmpeg,
    probe,
    run_ffmpeg,
)
from admin.ingest.ladder import (
    AUDIO_RUNG_NAME,
    DEFAULT_LADDER,
    Rung,
    h264_codec_string,
    h264_level,
    scaled_size,
    select_rungs,
)
from admin.ingest.transcode import (
    DOWNLOAD_FILE,
    DownloadFile,
    HlsPackage,
    Rendition,
    RenditionPlan,
    build_hls_args,
    plan_renditions,
    render_master_playlist,
    transcode_to_hls,
)

__all__ = [
    "AUDIO_RUNG_NAME",
    "DEFAULT_LADDER",
    "DOWNLOAD_FILE",
    "DownloadFile",
    "FfmpegError",
    "HlsPackage",
    "IngestError",
    "MediaInfo",
    "Rendition",
    "RenditionPlan",
    "Rung",
    "build_demo_film",
    "build_hls_args",
    "find_ffmpeg",
    "generate_test_source",
    "h264_codec_string",
    "h264_level",
    "plan_renditions",
    "probe",
    "render_master_playlist",
    "run_ffmpeg",
    "scaled_size",
    "select_rungs",
    "transcode_to_hls",
]
