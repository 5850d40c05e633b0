"""Training configs shared by the training tests."""

from pathlib import Path


def tiny_overrides(metadata: Path, run_dir: Path, *extra: str) -> list[str]:
    """The tiny model on the sample-video dataset (9-frame clips; the tiny IPI's window is 9 frames)."""
    return [f"data.metadata={metadata}", f"run_dir={run_dir}", "data.clips.num_frames=9",
            "data.clips.buckets=[[96,64],[64,96]]", "trainer.max_steps=4", "trainer.checkpoint_every=2",
            "logger=none", *extra]  # fmt: skip
