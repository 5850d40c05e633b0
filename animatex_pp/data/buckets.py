"""Resolution buckets: each clip trains at the listed size whose aspect ratio is nearest its own.

A batch takes its samples from one bucket, so it never mixes sizes. Frames are resized to the bucket's size
without cropping, as the pipeline resizes its reference image, so that the skeleton rendered from the pose's
normalised coordinates lands on the character in training exactly as it does at inference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Bucket = tuple[int, int]  # (height, width)


def check_buckets(buckets: Sequence[Sequence[int]], multiple: int) -> list[Bucket]:
    """Validate `[[H, W], ...]` (positive multiples of `multiple`, no duplicates) and return them as tuples."""
    if not buckets:
        raise ValueError("give at least one resolution bucket [height, width]")
    checked = []
    for bucket in buckets:
        if len(bucket) != 2 or any(not isinstance(size, int) or size < multiple or size % multiple for size in bucket):
            raise ValueError(
                f"resolution bucket {list(bucket)} must be [height, width], positive multiples of {multiple}"
            )
        checked.append((int(bucket[0]), int(bucket[1])))
    if len(set(checked)) != len(checked):
        raise ValueError(f"resolution buckets {checked} repeat a size")
    return checked


def nearest_bucket(height: int, width: int, buckets: Sequence[Bucket]) -> Bucket:
    """The bucket whose aspect ratio is nearest (in log ratio) to `height / width`; ties go to the larger area."""
    aspect = math.log(height / width)
    return min(buckets, key=lambda bucket: (abs(math.log(bucket[0] / bucket[1]) - aspect), -bucket[0] * bucket[1]))
