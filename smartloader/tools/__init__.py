"""Off the training path: the command line (``plan``, ``validate``, ``demo``), datasets."""
