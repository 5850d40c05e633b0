"""Keep third-party log noise out of the command's output and a Python user's, unless the user asks for it
(`--verbose`, or ANIMATEX_PP_VERBOSE=1 before `import animatex_pp`).

`import animatex_pp` drops the two notices below (`drop_known_notices`), which concern no choice of the user's;
`show_known_notices()` lets them through again. The command line also silences the native lines
(`quiet_third_party_logs`, `filtered_native_stderr`), which takes over the process's descriptor 2 and so is not
done for a library user.

What is silenced, and how (each has to be set before the library that logs it is imported, or on the logger object
that library will later configure):

- MediaPipe's C++ logging (absl: "W0000 ... inference_feedback_manager.cc", "All log messages before
  absl::InitializeLog()") and TensorFlow Lite's "INFO: Created TensorFlow Lite XNNPACK delegate": absl writes them
  straight to file descriptor 2 and ignores glog's environment variables, so `filtered_native_stderr` puts a pipe
  behind descriptor 2 for the command's lifetime and forwards every other byte unchanged (progress bars included);
- transformers' notice that `CLIPImageProcessor` falls back to its PIL backend without torchvision (the library
  works without torchvision by design, docs/architecture.md): a filter on transformers' logger for that one message;
- DeepSpeed's "Setting accelerator to CPU" line at import: a filter on the `DeepSpeed` logger, which DeepSpeed
  later configures but does not clear of filters.

Library warnings (the pipeline's, the pose tools') are left alone: they are meant for the user.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

VERBOSE_ENV = "ANIMATEX_PP_VERBOSE"

# Native logging thresholds, for the native libraries that do read them: 2 = errors only (glog), 3 (TensorFlow).
_NATIVE_LOG_LEVELS = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
# What absl and TensorFlow Lite write to descriptor 2, to the end of its line ("W0000 00:00:17.. 123 x.cc:114] ..."),
# possibly after a progress bar that has not ended its line.
_NATIVE_NOISE = re.compile(
    rb"(?:[IWE]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\] |WARNING: All log messages before absl::InitializeLog"
    rb"|INFO: Created TensorFlow Lite).*"
)


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


# Each notice's filter, on the logger that emits it (a filter on a parent logger would not see a child's records).
_NOTICE_FILTERS = {
    "transformers.utils.import_utils": _DropMessages("requires torchvision (not installed)"),
    "DeepSpeed": _DropMessages("Setting accelerator to", "Setting ds_accelerator to"),
}


def verbose_requested() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def drop_known_notices() -> None:
    """Drop transformers' torchvision notice and DeepSpeed's accelerator line (a logger keeps one filter once)."""
    for name, notice_filter in _NOTICE_FILTERS.items():
        logging.getLogger(name).addFilter(notice_filter)


def show_known_notices() -> None:
    """Let the notices `drop_known_notices` drops through again."""
    for name, notice_filter in _NOTICE_FILTERS.items():
        logging.getLogger(name).removeFilter(notice_filter)


def quiet_third_party_logs() -> None:
    """Silence the known noisy lines; call before MediaPipe, transformers or DeepSpeed is imported."""
    for name, level in _NATIVE_LOG_LEVELS.items():
        os.environ.setdefault(name, level)
    drop_known_notices()


def _forward(read_fd: int, write_fd: int) -> None:
    """Copy `read_fd` to `write_fd` without the native noise. A line that was only noise goes with its newline; a
    partial line (a progress bar's "\\r...") goes on at once unless it could still become noise."""
    pending = b""
    while chunk := os.read(read_fd, 65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        kept = []
        for line in lines:
            cleaned = _NATIVE_NOISE.sub(b"", line)
            kept.append(line + b"\n" if cleaned == line else cleaned)
        if pending and not pending[:1].isalpha():
            kept.append(pending)
            pending = b""
        if kept:
            os.write(write_fd, b"".join(kept))
    os.write(write_fd, _NATIVE_NOISE.sub(b"", pending))


@contextmanager
def filtered_native_stderr() -> Iterator[None]:
    """Route file descriptor 2 through a filter that drops absl's and TensorFlow Lite's log lines."""
    sys.stderr.flush()
    original = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    forwarder = threading.Thread(target=_forward, args=(read_fd, original), daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        # Closing the last write end ends the forwarder once it has passed on everything written.
        os.dup2(original, 2)
        forwarder.join(timeout=5)
        os.close(read_fd)
        os.close(original)
