"""The analyses of a run: each reads the run's curves or recorded activations and writes one NetCDF file.

registry.py lists them (the extract rules, the summary columns and the figures are made from it);
activations.py is the one reader of activations.zarr; stats.py holds the statistics they share.
"""
