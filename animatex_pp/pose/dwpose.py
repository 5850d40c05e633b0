"""DWPose on onnxruntime: a YOLOX-L person detector, then the `dw-ll_ucoco_384` whole-body model (133 COCO-WholeBody
keypoints) on an affine crop around the tracked person, decoded from SimCC vectors, as DWPose does it.

The ONNX files are the user's (Hugging Face `yzd-v/DWPose`: `yolox_l.onnx`, `dw-ll_ucoco_384.onnx`); the input
sizes are read from the models. Images go in the channel order each model was trained on: YOLOX takes raw 0-255
BGR (it was trained on OpenCV-loaded images, letterboxed on grey 114); the pose model takes RGB normalised with
ImageNet's mean and std.

This differs from the official data preparation on one point. DWPose's ONNX annotator, which Animate-X's pose
extraction uses, reads frames with OpenCV and feeds those BGR frames to both models. The pose model, though, was
trained on RGB: its mmpose config converts BGR to RGB in the data preprocessor (`bgr_to_rgb=True`) before
normalising with the RGB-ordered mean and std above, and that step is not part of the ONNX graph. Fed BGR, it sees
red and blue swapped and each channel normalised with the other's statistics; fed RGB, it sees what it learned from,
so we feed RGB. Keypoints may therefore differ slightly from those of the official annotator.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from animatex_pp.pose import skeleton as sk
from animatex_pp.pose.tracking import non_max_suppression, select_person

__all__ = ["DWPoseBackend"]

DETECTOR_STRIDES = (8, 16, 32)
LETTERBOX_FILL = 114
PERSON_CLASS = 0
BOX_PADDING = 1.25  # the crop is the person box enlarged by this factor
POSE_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
POSE_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
NUM_WHOLEBODY = 133


def _session(path: str | os.PathLike, role: str, providers: list[str]):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"DWPose {role} model not found: {path}. Download yolox_l.onnx and dw-ll_ucoco_384.onnx "
            "(Hugging Face yzd-v/DWPose) and pass their paths."
        )
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("the dwpose backend needs onnxruntime: pip install 'animatex_pp[pose]'") from error
    try:
        return onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types for unreadable models
        raise ValueError(f"cannot load DWPose {role} model {path}: not a valid ONNX model ({error})") from error


def _spatial_size(session, path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of a model's fixed NCHW input."""
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
        raise ValueError(f"{path} must take one NCHW image with a fixed height and width, its input is {shape}")
    return shape[2], shape[3]


def _detector_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """YOLOX's anchor-free grid: cell corner (A, 2) and stride (A, 1) of every output row, finest level first."""
    cells, strides = [], []
    for stride in DETECTOR_STRIDES:
        ys, xs = np.mgrid[: height // stride, : width // stride]
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))  # (cells at this stride, 2), row-major like YOLOX
        strides.append(np.full((xs.size, 1), stride))
    # per stride (cells, 2) and (cells, 1) -> (A, 2) and (A, 1)
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


def warp_affine(image: np.ndarray, scale: float, src_center: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV's `warpAffine` (bilinear, black border) for the map dst = scale * (src - src_center) + size / 2.

    `size` is (width, height). Pixel centres sit on integer coordinates as in OpenCV; PIL's affine transform samples
    at `coefficients . (x + 0.5, y + 0.5) - 0.5`, hence the half-pixel terms.
    """
    inverse = 1.0 / scale
    offset = src_center - np.asarray(size, dtype=np.float64) / 2 * inverse  # src = inverse * dst + offset
    pil_offset = offset + 0.5 - 0.5 * inverse
    coefficients = (inverse, 0.0, pil_offset[0], 0.0, inverse, pil_offset[1])
    warped = Image.fromarray(image).transform(size, Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)
    return np.asarray(warped)


class DWPoseBackend:
    """Whole-body keypoints of one tracked person per frame, from the DWPose ONNX models.

    `det_model`, `pose_model`: paths of `yolox_l.onnx` and `dw-ll_ucoco_384.onnx` (or models with the same inputs
    and outputs). `providers`: onnxruntime execution providers (default CPU). A person box needs a score above
    `score_threshold` after class-aware NMS at `nms_threshold` (DWPose: 0.3 and 0.45).
    """

    name = "dwpose"

    def __init__(
        self,
        det_model: str | os.PathLike,
        pose_model: str | os.PathLike,
        *,
        providers: list[str] | None = None,
        score_threshold: float = 0.3,
        nms_threshold: float = 0.45,
    ):
        providers = providers or ["CPUExecutionProvider"]
        self.detector = _session(det_model, "detector", providers)
        self.pose = _session(pose_model, "pose", providers)
        self.det_size = _spatial_size(self.detector, det_model)
        self.pose_size = _spatial_size(self.pose, pose_model)
        self.grid, self.grid_strides = _detector_grid(*self.det_size)
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.det_path, self.pose_path = Path(det_model), Path(pose_model)
        self.previous_box: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the tracked person (call between videos)."""
        self.previous_box = None

    def close(self) -> None:
        """Nothing to release: onnxruntime sessions free themselves."""

    # -- detection --------------------------------------------------------------------------------------------------

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Person boxes (N, 4) xyxy in frame pixels, best first."""
        det_h, det_w = self.det_size
        height, width = frame.shape[:2]
        ratio = min(det_h / height, det_w / width)
        resized = Image.fromarray(frame).resize((int(width * ratio), int(height * ratio)), Image.Resampling.BILINEAR)
        canvas = np.full((det_h, det_w, 3), LETTERBOX_FILL, dtype=np.uint8)
        canvas[: resized.height, : resized.width] = np.asarray(resized)
        batch = canvas[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32)  # RGB -> BGR, (1, 3, H, W)
        (predictions,) = self.detector.run(None, {self.detector.get_inputs()[0].name: batch})[:1]
        predictions = predictions[0]  # (anchors, 4 box + 1 objectness + classes)
        if predictions.ndim != 2 or predictions.shape[0] != len(self.grid) or predictions.shape[1] < 6:
            raise ValueError(
                f"{self.det_path} is not a YOLOX detector for {det_w}x{det_h} inputs: expected output "
                f"(1, {len(self.grid)}, 5 + classes), got {(1, *predictions.shape)}"
            )
        centers = (predictions[:, :2] + self.grid) * self.grid_strides
        sizes = np.exp(predictions[:, 2:4]) * self.grid_strides
        boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1) / ratio  # (anchors, 4) xyxy
        # Class-aware NMS keeps other classes from suppressing people, so only the person scores matter.
        scores = predictions[:, 4] * predictions[:, 5 + PERSON_CLASS]
        candidates = scores > 0.1
        boxes, scores = boxes[candidates], scores[candidates]
        keep = non_max_suppression(boxes, scores, self.nms_threshold)
        keep = keep[scores[keep] > self.score_threshold]
        return boxes[keep]

    # -- keypoints --------------------------------------------------------------------------------------------------

    def estimate(self, frame: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """133 whole-body keypoints (133, 2) in frame pixels and their scores (133,) for one person box."""
        pose_h, pose_w = self.pose_size
        center = (box[:2] + box[2:]) / 2
        box_w, box_h = (box[2:] - box[:2]) * BOX_PADDING
        # Grow the box to the model's aspect ratio, so the crop is not stretched.
        aspect = pose_w / pose_h
        box_w, box_h = (box_w, box_w / aspect) if box_w > box_h * aspect else (box_h * aspect, box_h)
        scale = pose_w / box_w
        crop = warp_affine(frame, scale, center, (pose_w, pose_h)).astype(np.float32)
        batch = ((crop - POSE_MEAN) / POSE_STD).transpose(2, 0, 1)[None]  # (1, 3, pose_h, pose_w)
        simcc_x, simcc_y = self.pose.run(None, {self.pose.get_inputs()[0].name: batch})[:2]
        if simcc_x.shape[1] != NUM_WHOLEBODY or simcc_y.shape[1] != NUM_WHOLEBODY:
            raise ValueError(
                f"{self.pose_path} must predict the {NUM_WHOLEBODY} COCO-WholeBody keypoints (dw-ll_ucoco_384), "
                f"got SimCC outputs {simcc_x.shape} and {simcc_y.shape}"
            )
        keypoints, scores = decode_simcc(simcc_x[0], simcc_y[0], split_ratio=simcc_x.shape[-1] / pose_w)
        # Crop pixels back to frame pixels: the inverse of the warp.
        return keypoints / scale + center - np.array([pose_w, pose_h]) / 2 / scale, scores

    def __call__(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        height, width = frame.shape[:2]
        boxes = self.detect(frame)
        chosen = select_person(boxes, width, height, self.previous_box)
        if chosen is not None:
            self.previous_box = boxes[chosen]
        # With no detection DWPose looks at the whole image; a tracked person's last box is a better guess.
        box = self.previous_box if self.previous_box is not None else np.array([0, 0, width, height], np.float64)
        keypoints, scores = self.estimate(frame, box)
        return wholebody_to_parts(keypoints, scores, width, height)


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """SimCC vectors (K, Wx), (K, Wy) to crop-pixel keypoints (K, 2) and scores (K,).

    Each coordinate is the argmax of its vector divided by the split ratio (bins per pixel); the score is the smaller
    of the two maxima, and a point whose score is not positive is placed at -1 before scaling, as RTMPose does.
    """
    # 2 x (K,) -> (K, 2)
    locations = np.stack([simcc_x.argmax(axis=1), simcc_y.argmax(axis=1)], axis=1).astype(np.float32)
    scores = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
    locations[scores <= 0] = -1
    return locations / split_ratio, scores


def wholebody_to_parts(keypoints: np.ndarray, scores: np.ndarray, width: int, height: int) -> dict[str, np.ndarray]:
    """COCO-WholeBody keypoints (133, 2) pixels and scores (133,) to one frame of `PoseSequence` fields."""
    normalised = (keypoints / (width, height)).astype(np.float32)
    scores = scores.astype(np.float32)
    coco = np.array(sk.COCO_TO_OPENPOSE)
    body, body_conf = normalised[np.maximum(coco, 0)], scores[np.maximum(coco, 0)]
    body[sk.NECK], body_conf[sk.NECK] = sk.neck_from_shoulders(
        normalised[sk.COCO_RIGHT_SHOULDER], normalised[sk.COCO_LEFT_SHOULDER],
        scores[sk.COCO_RIGHT_SHOULDER], scores[sk.COCO_LEFT_SHOULDER],
    )  # fmt: skip
    left, right = sk.WHOLEBODY_LEFT_HAND, sk.WHOLEBODY_RIGHT_HAND
    return {
        "body": body,
        "body_conf": body_conf,
        "feet": normalised[sk.WHOLEBODY_FEET],
        "feet_conf": scores[sk.WHOLEBODY_FEET],
        "hands": np.stack([normalised[left], normalised[right]]),  # 2 x (21, 2) -> (2, 21, 2), left first
        "hands_conf": np.stack([scores[left], scores[right]]),  # 2 x (21,) -> (2, 21)
        "face": normalised[sk.WHOLEBODY_FACE],
        "face_conf": scores[sk.WHOLEBODY_FACE],
    }
