"""The DWPose backend end to end on tiny ONNX models exported from torch with DWPose's inputs and outputs.

The detector (YOLOX signature: `images` (1, 3, 640, 640) -> `output` (1, 8400, 85)) returns fixed predictions:
two people, a duplicate box and a box of another class. The pose model (`input` (1, 3, 384, 288) -> `simcc_x`
(1, 133, 576), `simcc_y` (1, 133, 768)) points keypoint k at the brightest spot of colour channel k % 3 of its crop,
so a red, a green and a blue dot painted in the frame tell where every keypoint must land: this checks the
letterboxing, box decoding, NMS, person choice, the affine crop, the channel order and normalisation, SimCC
decoding, the mapping back to the frame and the COCO-WholeBody to OpenPose mapping.
"""

import numpy as np
import pytest
import torch

from animatex_pp.pose import extract
from animatex_pp.pose.dwpose import DWPoseBackend, decode_simcc, warp_affine

FRAME_H, FRAME_W = 600, 800
LETTERBOX = min(640 / FRAME_H, 640 / FRAME_W)  # 0.8
PERSON = (280.0, 100.0, 520.0, 560.0)  # large and central
BYSTANDER = (700.0, 350.0, 790.0, 480.0)  # small, at the edge, but detected with a higher score
DOTS = {0: (330, 170), 1: (430, 330), 2: (360, 500)}  # channel -> (x, y) of its dot, inside PERSON
# OpenPose-18 point -> COCO-17 index, by joint name (nose, neck (none), right shoulder = COCO 6, ...).
OPENPOSE_FROM_COCO = {0: 0, 2: 6, 3: 8, 4: 10, 5: 5, 6: 7, 7: 9, 8: 12, 9: 14, 10: 16, 11: 11, 12: 13, 13: 15,
                      14: 2, 15: 1, 16: 4, 17: 3}  # fmt: skip


def anchor_row(stride: int, cell_x: int, cell_y: int) -> int:
    """Row of YOLOX's output for a grid cell: strides 8, 16, 32 in turn, each row-major over a 640 x 640 input."""
    offset = {8: 0, 16: 80 * 80, 32: 80 * 80 + 40 * 40}[stride]
    return offset + cell_y * (640 // stride) + cell_x


def encode_box(predictions, box, stride, objectness, class_index=0):
    """Write the raw YOLOX prediction that decodes to `box` (frame pixels) into the anchor holding its centre."""
    x0, y0, x1, y1 = (v * LETTERBOX for v in box)
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    cell_x, cell_y = int(cx // stride), int(cy // stride)
    row = anchor_row(stride, cell_x, cell_y)
    predictions[row, :4] = [cx / stride - cell_x, cy / stride - cell_y, np.log(w / stride), np.log(h / stride)]
    predictions[row, 4] = objectness
    predictions[row, 5 + class_index] = 1.0


class FixedDetector(torch.nn.Module):
    def __init__(self):
        super().__init__()
        predictions = np.zeros((8400, 85), np.float32)
        encode_box(predictions, PERSON, 32, 0.9)
        encode_box(predictions, BYSTANDER, 16, 0.95)
        encode_box(predictions, (PERSON[0] + 6, PERSON[1] + 4, PERSON[2] + 6, PERSON[3]), 16, 0.8)  # a duplicate
        encode_box(predictions, (20.0, 20.0, 300.0, 300.0), 32, 0.99, class_index=3)  # a car, not a person
        self.register_buffer("predictions", torch.from_numpy(predictions)[None])

    def forward(self, images):
        return self.predictions + 0.0 * images.mean()


class ChannelPeakPose(torch.nn.Module):
    """Keypoint k's SimCC vectors are the column and row maxima of channel k % 3, at 2 bins per pixel."""

    def __init__(self, num_keypoints=133):
        super().__init__()
        self.register_buffer("channel", torch.arange(num_keypoints) % 3)

    def forward(self, x):
        batch, _, height, width = x.shape
        columns = x.amax(dim=2)[:, self.channel]  # (B, K, W)
        rows = x.amax(dim=3)[:, self.channel]  # (B, K, H)
        simcc_x = torch.stack([columns, columns], dim=-1).reshape(batch, -1, 2 * width)  # (B, K, 2W)
        simcc_y = torch.stack([rows, rows], dim=-1).reshape(batch, -1, 2 * height)  # (B, K, 2H)
        return simcc_x, simcc_y


def export(module, example, path, input_name, output_names):
    torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=output_names, dynamo=False)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dwpose")
    detector = export(FixedDetector(), torch.zeros(1, 3, 640, 640), folder / "yolox_l.onnx", "images", ["output"])
    pose = export(
        ChannelPeakPose(),
        torch.zeros(1, 3, 384, 288),
        folder / "dw-ll_ucoco_384.onnx",
        "input",
        ["simcc_x", "simcc_y"],
    )
    body_only = export(
        ChannelPeakPose(17), torch.zeros(1, 3, 384, 288), folder / "rtmpose_body.onnx", "input", ["simcc_x", "simcc_y"]
    )
    return {"det_model": detector, "pose_model": pose, "body_only": body_only}


def dotted_frame(shift=(0, 0)) -> np.ndarray:
    frame = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    for channel, (x, y) in DOTS.items():
        x, y = x + shift[0], y + shift[1]
        frame[y - 2 : y + 3, x - 2 : x + 3, channel] = 255
    return frame


def expected_point(coco_index: int, shift=(0, 0)) -> np.ndarray:
    return np.array(DOTS[coco_index % 3], dtype=float) + shift


def test_keypoints_land_on_the_dots(models):
    pose = extract(np.stack([dotted_frame(), dotted_frame((4, -3))]), backend="dwpose", fps=12.0, progress=False,
                   det_model=models["det_model"], pose_model=models["pose_model"])  # fmt: skip
    assert (len(pose), pose.width, pose.height, pose.fps) == (2, FRAME_W, FRAME_H, 12.0)
    assert pose.parts == ("body", "feet", "hands", "face")
    tolerance = 3.5  # pixels: a dot is 5 px wide and the crop is ~1.2 frame pixels per crop pixel
    for frame, shift in enumerate([(0, 0), (4, -3)]):
        body = pose.body[frame] * (FRAME_W, FRAME_H)
        for openpose, coco in OPENPOSE_FROM_COCO.items():
            np.testing.assert_allclose(body[openpose], expected_point(coco, shift), atol=tolerance)
        # The neck is the midpoint of the shoulders (COCO 5 and 6), detected because both are.
        neck = (expected_point(5, shift) + expected_point(6, shift)) / 2
        np.testing.assert_allclose(body[1], neck, atol=tolerance)
        assert (pose.body_conf[frame] >= 0.3).all()
        feet = pose.feet[frame] * (FRAME_W, FRAME_H)
        np.testing.assert_allclose(feet, [expected_point(k, shift) for k in range(17, 23)], atol=tolerance)
        hands = pose.hands[frame] * (FRAME_W, FRAME_H)
        np.testing.assert_allclose(hands[0], [expected_point(k, shift) for k in range(91, 112)], atol=tolerance)
        np.testing.assert_allclose(hands[1], [expected_point(k, shift) for k in range(112, 133)], atol=tolerance)
        face = pose.face[frame] * (FRAME_W, FRAME_H)
        np.testing.assert_allclose(face, [expected_point(k, shift) for k in range(23, 91)], atol=tolerance)


def test_detection_keeps_people_only_after_nms(models):
    backend = DWPoseBackend(models["det_model"], models["pose_model"])
    boxes = backend.detect(dotted_frame())
    # Best score first: the bystander (0.95), then the person (0.9); the duplicate and the car are gone.
    np.testing.assert_allclose(boxes, [BYSTANDER, PERSON], atol=1e-3)


def test_decode_simcc():
    simcc_x = np.array([[0.1, 0.9, 0.2, 0.0], [0.0, 0.0, 0.0, -0.5]])
    simcc_y = np.array([[0.0, 0.0, 0.0, 0.0, 0.7, 0.1], [0.2, 0.0, 0.0, 0.0, 0.0, 0.0]])
    points, scores = decode_simcc(simcc_x, simcc_y, split_ratio=2.0)
    np.testing.assert_allclose(points, [[0.5, 2.0], [-0.5, -0.5]])  # argmax / 2; not detected -> -1 / 2
    np.testing.assert_allclose(scores, [0.7, 0.0])


def test_missing_model_files_are_named(tmp_path, models):
    with pytest.raises(FileNotFoundError, match="nowhere_yolox.onnx"):
        DWPoseBackend(tmp_path / "nowhere_yolox.onnx", models["pose_model"])
    with pytest.raises(FileNotFoundError, match="nowhere_pose.onnx"):
        extract(
            dotted_frame(), backend="dwpose", det_model=models["det_model"], pose_model=tmp_path / "nowhere_pose.onnx"
        )
    with pytest.raises(ValueError, match="pose_model"):
        extract(dotted_frame(), backend="dwpose", det_model=models["det_model"])


def test_wrong_models_are_refused(tmp_path, models):
    backend = DWPoseBackend(models["det_model"], models["body_only"])
    with pytest.raises(ValueError, match="133 COCO-WholeBody"):
        backend(dotted_frame())
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        DWPoseBackend(not_onnx, models["pose_model"])
    with pytest.raises(ValueError, match="YOLOX"):
        DWPoseBackend(models["pose_model"], models["pose_model"]).detect(dotted_frame())


@pytest.mark.parametrize("scale", [0.6, 1.7])
def test_warp_affine_samples_where_opencv_does(scale):
    # Bilinear sampling of a linear ramp is exact, so each output pixel must hold the source coordinate it samples:
    # src = (dst - size / 2) / scale + center, with pixel centres on integers as in OpenCV's warpAffine.
    height, width = 60, 80
    ys, xs = np.mgrid[:height, :width].astype(np.float32)
    center, size = np.array([40.3, 25.6]), (30, 20)
    out_y, out_x = np.mgrid[: size[1], : size[0]]
    for ramp, out, axis in ((xs, out_x, 0), (ys, out_y, 1)):
        warped = warp_affine(ramp, scale, center, size)
        expected = (out - size[axis] / 2) / scale + center[axis]
        inside = (expected > 1) & (expected < ramp.shape[1 - axis] - 2)
        np.testing.assert_allclose(warped[inside], expected[inside], atol=2e-3)
