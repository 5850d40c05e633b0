"""Training data (docs/data.md): what a training run reads, and nothing below it.

`metadata` checks a dataset's clip list; `clips` and `buckets` cut clips of both tasks into samples; `sampler` mixes
the tasks across steps and ranks; `randomness` makes every random choice a function of its keys; `encode` turns
samples into model inputs with the pipeline's encoders; `cache` precomputes them. Video and image reading is
`animatex_pp.io`'s.
"""
