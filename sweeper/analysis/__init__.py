"""BatchNorm analysis and network visualisation: Santurkar et al. probes, 2D loss surfaces, filters.

Each module computes plain data (arrays, DataFrames); `figures.py` and the `*_figure` functions
turn them into plotly figures, so tests check numbers and the CLI draws.
"""
