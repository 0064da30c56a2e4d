"""The IPython face: %%launch and the other magics."""
