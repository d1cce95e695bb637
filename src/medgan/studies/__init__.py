"""Study-level outputs: the figures and tables of the published studies."""
