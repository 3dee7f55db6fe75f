"""Lightning callbacks for DOODL runs (installed as ``doodl_pl.callbacks``)."""

__all__: list[str] = []
