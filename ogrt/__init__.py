"""OGRT: track which programs and shared libraries HPC jobs really run."""
__version__ = "0.1.0"
