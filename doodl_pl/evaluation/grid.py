"""``python -m doodl_pl.evaluation.grid RUN… --out PNG``: a side-by-side grid of runs."""

from .cli import grid_main

if __name__ == "__main__":
    grid_main()
