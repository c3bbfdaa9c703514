"""ddscope: train networks on noisy labels and look inside them, epoch by epoch.

The library holds the science as pure functions (arrays in, arrays or xarray objects out);
`scripts/` are thin Snakemake adapters around it. Keep this module import-light: the
Snakefile imports ddscope.config at parse time.
"""

__version__ = "0.1.0"

__all__ = ["open_study", "open_activations"]


def __getattr__(name):
    # ddscope.open_study without importing xarray whenever the Snakefile imports ddscope.config
    if name in __all__:
        from ddscope import study

        return getattr(study, name)
    raise AttributeError(f"module 'ddscope' has no attribute {name!r}")
