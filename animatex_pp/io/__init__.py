"""Low-level I/O, below every other layer: videos through PyAV (`video`), still images as a viewer shows them
(`image`), previews and contact sheets (`preview`), every conversion between frame layouts and value ranges
(`frames`) and atomic file writes (`files`).

Nothing here knows of poses, models or training; the rest of the library reads and writes through it.
"""

from animatex_pp.io.video import VideoInfo, iter_video, read_video, source_frame_index, video_info, write_video

__all__ = ["VideoInfo", "iter_video", "read_video", "source_frame_index", "video_info", "write_video"]
