"""Data: video I/O through PyAV (datasets, metadata and caches join here as they are written)."""

from animatex_pp.data.video import VideoInfo, iter_video, read_video, source_frame_index, video_info, write_video

__all__ = ["VideoInfo", "iter_video", "read_video", "source_frame_index", "video_info", "write_video"]
