"""`python -m animatex_pp.cli`: the `animatex-pp` command."""

from animatex_pp.cli import console_main

console_main()
