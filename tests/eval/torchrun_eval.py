"""What torchrun runs in tests/eval/test_sharded_eval.py: `animatex-pp eval`, each rank appending the id of every clip
result it saves to SAVED_LOG.<rank>; with DIE_RANK set, that rank kills itself (SIGKILL: no cleanup runs) right after
saving its first clip."""

import os
import signal
import sys
from pathlib import Path

import animatex_pp.eval.evaluate as evaluate_module
from animatex_pp.cli import main

rank = os.environ["RANK"]
save = evaluate_module._save


def logged_save(out, clip, result):
    saved = save(out, clip, result)
    with Path(f"{os.environ['SAVED_LOG']}.{rank}").open("a") as log:
        log.write(clip.id + "\n")
    if os.environ.get("DIE_RANK") == rank:
        os.kill(os.getpid(), signal.SIGKILL)
    return saved


evaluate_module._save = logged_save
sys.exit(main(sys.argv[1:]))
