"""Person selection: box overlap, NMS, the most prominent person first, then the same person over time."""

import numpy as np

from animatex_pp.pose.tracking import box_iou, non_max_suppression, prominence, select_person


def test_box_iou():
    boxes = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 10]], dtype=float)
    np.testing.assert_allclose(box_iou(np.array([0, 0, 10, 10.0]), boxes), [50 / 150, 1.0, 0.0, 0.5])


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[1, 0, 11, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 4]], dtype=float)
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    # Box 0 overlaps box 1 by 90/110; box 3 overlaps box 1 by 0.4, under the 0.45 threshold.
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 0.45), [1, 2, 3])


def test_prominence_prefers_large_and_central():
    width, height = 200, 100
    central = [70, 20, 130, 80]  # 60 x 60 in the middle
    corner = [130, 30, 200, 100]  # 70 x 70 in the corner: larger, but far from the centre
    small_central = [90, 40, 110, 60]
    scores = prominence(np.array([central, corner, small_central], dtype=float), width, height)
    assert scores[0] > scores[1] > 0 and scores[0] > scores[2]
    np.testing.assert_allclose(scores[0], 3600 / 20000)  # centred: centrality 1


def test_select_person_follows_the_same_person():
    width, height = 200, 100
    first = np.array([[70, 20, 130, 80], [0, 0, 30, 30]], dtype=float)
    assert select_person(first, width, height) == 0
    # Next frame: our person walked right and a more prominent one came in on the left; keep ours.
    second = np.array([[0, 0, 80, 100], [90, 20, 150, 80]], dtype=float)
    assert prominence(second, width, height)[0] > prominence(second, width, height)[1]
    assert select_person(second, width, height, previous=first[0]) == 1
    # Our person is gone (no overlap): pick the most prominent again.
    third = np.array([[0, 0, 20, 20], [60, 10, 140, 90]], dtype=float)
    assert select_person(third, width, height, previous=np.array([170, 0, 200, 30.0])) == 1
    assert select_person(np.zeros((0, 4)), width, height) is None
