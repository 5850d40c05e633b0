"""Data: video I/O through PyAV, and the training data (DESIGN §5.1, docs/data.md).

`video` reads and writes videos; `image` reads images as a viewer shows them; `preview` draws contact sheets;
`metadata` checks a dataset's clip list; `clips` and `buckets` cut clips of both tasks into samples; `sampler` mixes
the tasks across steps and ranks; `encode` turns samples into model inputs with the pipeline's encoders; `cache`
precomputes them. The training modules are imported where they are used (they pull in the pipeline).
"""

from animatex_pp.data.video import VideoInfo, iter_video, read_video, source_frame_index, video_info, write_video

__all__ = ["VideoInfo", "iter_video", "read_video", "source_frame_index", "video_info", "write_video"]
